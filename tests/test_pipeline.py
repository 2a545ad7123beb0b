"""The application layer: the frozen run options, the warm-up rule and the error printer."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer

from molpeg_plugins.cli.errors import exit_on_error
from molpeg_plugins.errors import ConfigError, MolPegError
from molpeg_plugins.pipeline.run import PruneOptions, RunObserver, default_warmup_epochs
from molpeg_plugins.plugins import make_plugin_manager


def test_options_are_frozen_and_default_to_the_cli_defaults(tmp_path: Path) -> None:
    options = PruneOptions(output=tmp_path)
    assert (options.prune_ratio, options.strategy, options.epochs, options.split) == (
        0.6,
        "molpeg",
        10,
        "random",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.epochs = 3  # type: ignore[misc]


def test_warmup_default_is_decided_in_one_place() -> None:
    pm = make_plugin_manager(entry_points=False)
    molpeg, el2n, forgetting = (pm.strategy_class(s) for s in ("molpeg", "el2n", "forgetting"))
    assert default_warmup_epochs(molpeg, 10) == 1
    assert default_warmup_epochs(forgetting, 10) == forgetting.min_warmup_epochs == 2
    # the scaling grid: a warm-up only where the strategy needs one, leaving a pruned epoch
    assert default_warmup_epochs(molpeg, 10, only_where_needed=True) == 0
    assert default_warmup_epochs(el2n, 10, only_where_needed=True) == 1
    assert default_warmup_epochs(forgetting, 2, only_where_needed=True) == 1


def test_the_cli_display_is_a_run_observer() -> None:
    from molpeg_plugins.cli.display import Display, EpochProgress

    display = Display(quiet=True)
    assert isinstance(display, RunObserver)
    assert not isinstance(EpochProgress(display), RunObserver)  # it listens to hooks only


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (ConfigError("--seed -1: must be a whole number"), 2, "Error: --seed -1: must be"),
        (MolPegError("no valid [molecule]"), 1, "Error: no valid [molecule]"),
        (FileNotFoundError(2, "No such file or directory", "in.csv"), 1, "in.csv"),
        (KeyboardInterrupt(), 130, "Interrupted; rerun"),
    ],
)
def test_one_error_printer_maps_errors_to_a_line_and_an_exit_code(
    error: BaseException, code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exit_info, exit_on_error("Interrupted; rerun."):
        raise error
    assert exit_info.value.exit_code == code
    printed = " ".join(capsys.readouterr().err.split())
    assert message in printed, printed
    assert "Traceback" not in printed


class TaskRecorder:
    """A :class:`RunObserver` that records the description of every progress task."""

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def log(self, message: str, style: str | None = None) -> None:
        """Ignore log lines."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        self.tasks.append(description)
        yield lambda n=1: None


def test_every_phase_of_a_run_is_a_progress_task(csv_head, tmp_path: Path) -> None:
    """Reading, validation, split, fingerprints, epochs and each output: a task each, in order
    (what the command line shows, and where a benchmark reads the phase boundaries)."""
    from molpeg_plugins.pipeline import report, run
    from molpeg_plugins.pipeline.backend import BATCH_PROGRESS

    recorder = TaskRecorder()
    options = PruneOptions(
        output=tmp_path / "out",
        data=csv_head("bbbp_1k.csv", 120),
        backend="torch",
        target_columns=("p_np",),
        epochs=2,
        device="cpu",
    )
    run.run_prune(options, observers=[recorder])
    assert recorder.tasks == [
        run.READING_PROGRESS,
        run.VALIDATION_PROGRESS,
        run.SPLIT_PROGRESS,
        "Featurising",
        BATCH_PROGRESS,
        BATCH_PROGRESS,
        "Evaluating",
        "Writing outputs",
        report.PRUNED_PROGRESS,
        report.SCORES_PROGRESS,
        report.PLOTS_PROGRESS,
    ]
    assert (tmp_path / "out" / "pruned.csv").is_file()
