"""The output folder of ``molpeg prune``: checks, staging and the all-at-once result set.

A run never writes its results straight into the output folder. The backend's model and
every file of :func:`~molpeg_plugins.pipeline.report.write_report` go into the staging folder
``OUTPUT/.molpeg-staging/``; only when all of them are written does :func:`commit` move them
into place, ``report.json`` last. ``report.json`` is the completion marker: a folder that has
it holds one complete result set, all from the same run. A run killed at any moment leaves

- the previous complete set (or none), plus the resume state (``resume.pt`` or
  ``checkpoints/``) and perhaps an unfinished staging folder, which the next run removes; or
- in the instant of the move itself, a staging folder whose ``report.json`` says what is
  still to be moved: the next ``molpeg`` run on the folder (:func:`recover`) finishes it.

The resume state is removed only after the result set is complete (:func:`remove_resume_state`).

Folder rules (:func:`check_output_folder`): a new or empty folder is fine; one that holds
anything else needs ``--overwrite`` (which replaces what molpeg writes and never touches other
files), or ``--resume`` if it holds an unfinished run. No output may land on an input file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from molpeg_plugins.errors import ConfigError, MolPegError
from molpeg_plugins.pipeline.atomic import is_temporary, remove_stale_temporaries

STAGING = ".molpeg-staging"
MARKER = "report.json"
RESULT_FILES = ("pruned.csv", "scores.csv", "scores.parquet", "model.pt", MARKER)
PLOTS_DIR = "plots"
RESUME_FILE = "resume.pt"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERNS = ("last*.ckpt", "best*.ckpt")


@dataclass
class FolderState:
    """What an existing output folder holds.

    Attributes:
        entries: names in the folder, molpeg's temporary files and staging folder left out.
        complete: it holds a complete result set (``report.json``).
        resume_state: the resume files of an unfinished run (``resume.pt``, ``checkpoints``).
    """

    entries: list[str]
    complete: bool
    resume_state: list[str]


def inspect_folder(output: Path) -> FolderState:
    """Read what ``output`` holds (an absent folder holds nothing)."""
    if not output.is_dir():
        return FolderState([], False, [])
    entries = sorted(p.name for p in output.iterdir() if p.name != STAGING and not is_temporary(p))
    resume = [n for n in (RESUME_FILE, CHECKPOINT_DIR) if (output / n).exists()]
    return FolderState(entries, (output / MARKER).is_file(), resume)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _output_paths(output: Path) -> list[Path]:
    """Every file or folder a run writes or clears in ``output``."""
    names = [*RESULT_FILES, PLOTS_DIR, RESUME_FILE, CHECKPOINT_DIR, STAGING]
    return [output / name for name in names]


def check_not_an_input(output: Path, inputs: dict[str, Path | None]) -> None:
    """Refuse a run whose outputs would overwrite or delete one of its ``inputs``.

    Args:
        output: the output folder.
        inputs: option name (``"DATA"``, ``"--pretrained"``) → file it reads.

    Raises:
        ConfigError: an input is one of the output files, or inside an output sub-folder.
    """
    for option, path in inputs.items():
        if path is None or not path.exists():
            continue
        resolved = path.resolve()
        for target in _output_paths(output):
            hit = resolved == target.resolve() or (
                target.is_dir() and resolved.is_relative_to(target.resolve())
            )
            if not hit and target.is_file():
                hit = os.path.samefile(path, target)
            if hit:
                raise ConfigError(
                    f"{option} {path} is inside --output {output} where this run writes "
                    f"{target.name}; move the input elsewhere or choose another --output folder"
                )


def check_output_folder(
    output: Path,
    *,
    overwrite: bool,
    resume: bool,
    inputs: dict[str, Path | None] | None = None,
) -> None:
    """Refuse an unusable output folder before anything is read or written.

    Raises:
        ConfigError: ``output`` is a file; it holds results or an interrupted run and
            neither ``--overwrite`` nor ``--resume`` says what to do; it is not empty;
            an output would land on an input; ``--overwrite`` together with ``--resume``.
        MolPegError: the folder (or the folder it would be created in) is not writable.
    """
    if overwrite and resume:
        raise ConfigError(
            "--overwrite and --resume contradict each other: --resume continues the "
            "interrupted run in OUTPUT, --overwrite starts a new one; pass one of them"
        )
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: is a file; give a folder")
    base = _nearest_existing(output)
    if not base.is_dir():
        raise ConfigError(f"--output {output}: {base} is a file; give a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise MolPegError(
            f"--output {output}: {base} is not writable "
            f"({os.strerror(errno.EACCES)}); check its permissions or choose another folder"
        )
    check_not_an_input(output, inputs or {})
    state = inspect_folder(output)
    if not state.entries or overwrite:
        return
    if resume:
        if state.complete and not state.resume_state:
            raise ConfigError(
                f"--output {output} holds a finished run ({MARKER}); there is nothing to "
                "resume: pass --overwrite to run again, or choose another folder"
            )
        return
    if state.resume_state:
        raise ConfigError(
            f"--output {output} holds an interrupted run ({', '.join(state.resume_state)}): "
            "add --resume to continue it, or --overwrite to start over"
        )
    if state.complete:
        raise ConfigError(
            f"--output {output} already holds results ({MARKER}); pass --overwrite to "
            "replace them, or choose another folder"
        )
    shown = ", ".join(state.entries[:3]) + (", …" if len(state.entries) > 3 else "")
    raise ConfigError(
        f"--output {output} is not empty ({shown}); choose a new or empty folder, or pass "
        "--overwrite (it replaces only the files molpeg writes)"
    )


def _remove(path: Path) -> None:
    """Delete a file molpeg wrote, or a folder of them (other files in it are kept)."""
    if path.is_dir() and not path.is_symlink():
        patterns = CHECKPOINT_PATTERNS if path.name == CHECKPOINT_DIR else ()
        for pattern in patterns:
            for file in path.glob(pattern):
                file.unlink(missing_ok=True)
        remove_stale_temporaries(path)
        with contextlib.suppress(OSError):  # not empty: it holds files molpeg did not write
            path.rmdir()
    else:
        path.unlink(missing_ok=True)


def remove_resume_state(output: Path) -> None:
    """Delete the resume state of a run (``resume.pt``, molpeg's files in ``checkpoints/``)."""
    for name in (RESUME_FILE, CHECKPOINT_DIR):
        _remove(output / name)


def _listed_files(report: dict[str, Any]) -> list[str]:
    """Relative names of the result files a report lists (``report.json`` included)."""
    files = report.get("files", {}) if isinstance(report, dict) else {}
    names = [files.get("pruned"), files.get("scores"), files.get("model"), MARKER]
    names += list(files.get("plots") or [])
    return [
        n
        for n in names
        if isinstance(n, str) and n and not Path(n).is_absolute() and ".." not in Path(n).parts
    ]


def _old_results(output: Path) -> set[str]:
    """Result files of a previous run in ``output``: the known names and its listed plots."""
    from molpeg_plugins.pipeline.report import PLOTS

    names = {*RESULT_FILES, *(f"{PLOTS_DIR}/{p}" for p in PLOTS)}
    with contextlib.suppress(OSError, ValueError):  # no old report, or a damaged one
        listed = _listed_files(json.loads((output / MARKER).read_text(encoding="utf-8")))
        names |= {n for n in listed if Path(n).parent == Path(PLOTS_DIR) and n.endswith(".png")}
    return names


def commit(staging: Path, output: Path) -> None:
    """Replace the result set in ``output`` by the complete one in ``staging``.

    The old ``report.json`` goes first, then the other old files, and the new ``report.json``
    comes last: ``output`` never shows the marker beside files of another run, nor files of
    two runs side by side. Safe to repeat after a kill (see :func:`recover`).
    """
    report = json.loads((staging / MARKER).read_text(encoding="utf-8"))
    new = _listed_files(report)
    old = _old_results(output)
    moving = [n for n in new if n != MARKER and (staging / n).exists()]
    (output / MARKER).unlink(missing_ok=True)  # from here on: no complete set in output
    for name in sorted((old - set(new)) | set(moving)):  # old files first: never a mix
        _remove(output / name)
    for name in moving:
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, output / name)
    os.replace(staging / MARKER, output / MARKER)
    shutil.rmtree(staging, ignore_errors=True)


def stage_file(path: Path | None, output: Path, staging: Path) -> Path | None:
    """Move a result file a backend wrote into ``output`` itself into ``staging``.

    Backends write their model into :attr:`FitJob.model_dir` (the staging folder); one that
    writes into the work folder instead still gets its model into the result set. Any other
    ``path`` is returned unchanged.
    """
    if path is None or not Path(path).is_file():
        return path
    path = Path(path)
    if path.parent.resolve() != output.resolve():
        return path
    target = staging / path.name
    os.replace(path, target)
    return target


def recover(output: Path) -> bool:
    """Finish a result set whose move into ``output`` was interrupted; return whether it did.

    A staging folder with its ``report.json`` is complete and is moved into place; one
    without is the unfinished output of a killed run and is left for :func:`prepare`.
    """
    staging = output / STAGING
    if not (staging / MARKER).is_file():
        return False
    commit(staging, output)
    return True


def prepare(output: Path, *, overwrite: bool, log: Callable[[str], None]) -> Path:
    """Create ``output`` and an empty staging folder in it; return the staging folder.

    Removes molpeg's temporary files left by a killed run and, with ``overwrite``, the
    resume state of an earlier run. The previous result set stays until :func:`commit`.
    """
    output.mkdir(parents=True, exist_ok=True)
    for folder in (output, output / PLOTS_DIR, output / CHECKPOINT_DIR):
        for stale in remove_stale_temporaries(folder):
            log(f"Removed {stale.relative_to(output)}, left by an interrupted run")
    if overwrite:
        remove_resume_state(output)
    staging = output / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def describe_os_error(exc: OSError) -> str:
    """One line for a failed read or write: what failed and what to do."""
    text = str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"{text}; free disk space (or choose an --output folder on another disk)"
    return f"{text}; check the path and its permissions"
