"""Working through a large list of molecules in chunks, reporting progress as it goes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as chunks are processed (for progress bars)."""

R = TypeVar("R")


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def map_chunks(
    fn: Callable[[Any], R],
    n: int,
    job: Callable[[slice], Any],
    *,
    chunk_size: int,
    workers: int = 1,
    progress: Progress | None = None,
    stage: str = "",
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[tuple[slice, R]]:
    """``fn(job(s))`` for each chunk ``s`` of ``range(n)``, in order, as ``(s, result)``.

    With ``workers > 1`` and more than one chunk the calls run in a pool of spawned
    processes, each started with ``initializer(*initargs)``; otherwise in this process,
    after calling ``initializer(*initargs)`` here. ``progress(stage, s.stop, n)`` is called
    as each chunk's result arrives. Consume the whole iterator: the pool lives until then.
    """
    slices = list(chunks(n, chunk_size))
    jobs = (job(s) for s in slices)
    if workers > 1 and len(slices) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(
            workers, initializer=initializer, initargs=initargs
        ) as pool:
            yield from _reported(slices, pool.imap(fn, jobs), progress, stage, n)
    else:
        if initializer is not None:
            initializer(*initargs)
        yield from _reported(slices, map(fn, jobs), progress, stage, n)


def _reported(
    slices: list[slice],
    results: Iterator[R],
    progress: Progress | None,
    stage: str,
    n: int,
) -> Iterator[tuple[slice, R]]:
    for s, result in zip(slices, results, strict=True):
        yield s, result
        if progress:
            progress(stage, s.stop, n)
