"""Working through a large list of molecules in chunks, reporting progress as it goes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as chunks are processed (for progress bars)."""


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))
