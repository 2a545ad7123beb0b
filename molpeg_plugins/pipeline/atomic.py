"""Atomic file writes: a crash never leaves a truncated output.

Every writer creates a temporary file in the destination folder (same file system), flushes
it to disk and renames it over the destination with :func:`os.replace`, which is atomic on
POSIX and Windows. Readers therefore see either the old file or the complete new one.

Temporary files are named ``.molpeg-NAME.XXXXXXXX.tmp``; :func:`remove_stale_temporaries`
deletes only names of that form, never a user's own ``.*.tmp`` files.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

TEMP_PREFIX = ".molpeg-"
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"\.molpeg-.+\.[a-z0-9_]{8}\.tmp")  # what mkstemp makes of the prefix


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` if the block succeeds.

    Use it for libraries that want a file name (``torch.save``, ``DataFrame.to_parquet``,
    ``Figure.savefig``). On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get normal modes
    try:
        try:
            yield tmp_path
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, path)
        except OSError as exc:  # name the destination, not the temporary file
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_path`."""
    return _TEMP_NAME.fullmatch(Path(path).name) is not None


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files that a killed writer left in ``folder``; return them.

    Only names of the form :func:`atomic_path` creates (``.molpeg-NAME.XXXXXXXX.tmp``) are
    touched; any other file, whatever its name, is left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")
    stale = [p for p in candidates if is_temporary(p) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], *, binary: bool) -> None:
    """Call ``write(handle)`` on a temporary file, then rename it onto ``path``."""
    with atomic_path(path) as tmp:
        if binary:
            with open(tmp, "wb") as fh:
                write(fh)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                write(fh)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    atomic_write(path, lambda fh: fh.write(data), binary=True)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8, newlines untranslated) to ``path``."""
    atomic_write(path, lambda fh: fh.write(text), binary=False)


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (``nan``/``inf`` become ``null``)."""
    write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n")


def torch_save(path: str | Path, obj: Any) -> None:
    """Atomically ``torch.save`` ``obj`` to ``path``.

    The archive is built in memory: its bytes depend only on ``obj`` (``torch.save`` names
    the zip's root folder after the file it writes to, which would be the random temporary
    name), and a full disk surfaces as an :class:`OSError` naming ``path``.
    """
    write_bytes(path, torch_bytes(obj))


def torch_bytes(obj: Any) -> bytes:
    """``obj`` serialised by ``torch.save`` into memory (root folder ``archive``)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` recursively (JSON has no ``nan``)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
