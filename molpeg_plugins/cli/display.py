"""The progress display of the ``molpeg`` commands: Rich bars on a terminal, log lines otherwise.

One protocol for every command. :class:`Display` is the run observer of
:func:`molpeg_plugins.pipeline.run.run_prune` (its ``log`` and ``task`` methods, the
:class:`~molpeg_plugins.pipeline.run.RunObserver` protocol); ``task`` is also what a backend
receives as :attr:`FitJob.progress`, and :meth:`Display.stages` adapts it to the
``progress(stage, done, total)`` callbacks of :mod:`molpeg_plugins.source.pruning`
(``prune-source``).
:class:`EpochProgress` turns the pruner's observer hooks into the epoch bar.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from molpeg_plugins.hookspecs import hookimpl
from molpeg_plugins.pipeline.backend import BATCH_PROGRESS, Advance


class Display:
    """Progress output of one run: Rich bars on a terminal, plain log lines otherwise.

    Args:
        quiet: print nothing but errors.
        console: where progress and logs go (default: standard error).
    """

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.mode = "quiet" if quiet else ("rich" if self.console.is_terminal else "plain")
        self.progress: Progress | None = None
        self._rows: dict[str, Any] = {}  # description → Rich task id
        if self.mode == "rich":
            self.progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
            )

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def log(self, message: str, style: str | None = None) -> None:
        """Print a line of plain text (not in quiet mode); no markup is interpreted."""
        if self.mode != "quiet":
            self.console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Advance]:
        """A progress task; yields ``advance(n)`` (this is :attr:`FitJob.progress`).

        A task that ends is marked complete, so its clock stops (one of unknown size shows
        what it counted). A task opened again under the same description (the
        :data:`~molpeg_plugins.pipeline.backend.BATCH_PROGRESS` task, once per epoch) reuses its
        row, restarted. Plain mode logs one line per finished task, except the per-epoch batch
        task (the epoch line says it all).
        """
        if self.progress is not None:
            task_id = self._rows.get(description)
            if task_id is None:
                task_id = self.progress.add_task(description, total=total, info="")
                self._rows[description] = task_id
            else:
                self.progress.reset(task_id, total=total, completed=0)
            yield lambda n=1: self.progress.advance(task_id, n)
            done = self.progress.tasks[self.progress.task_ids.index(task_id)].completed
            final = total if total is not None else max(int(done), 1)
            self.progress.update(task_id, total=final, completed=final)
            return
        started = time.perf_counter()
        yield lambda n=1: None
        if description != BATCH_PROGRESS:
            self.log(f"{description}: done in {time.perf_counter() - started:.1f} s")

    def stages(self) -> Callable[[str, int, int], None]:
        """A ``progress(stage, done, total)`` callback: one bar per stage (``prune-source``).

        Plain mode logs ``<stage>: done in … s`` once a stage reaches its total.
        """
        rows: dict[str, Any] = {}
        started: dict[str, float] = {}

        def update(stage: str, done: int, total: int) -> None:
            if self.progress is not None:
                if stage not in rows:
                    rows[stage] = self.progress.add_task(stage, total=total, info="")
                self.progress.update(rows[stage], completed=done, total=total)
                return
            first = started.setdefault(stage, time.perf_counter())
            if done >= total and stage not in rows:
                rows[stage] = None
                self.log(f"{stage}: done in {time.perf_counter() - first:.1f} s")

        return update

    def add_task(self, description: str, total: int | None, completed: int = 0) -> Any:
        """Add a Rich task (``None`` when not on a terminal)."""
        if self.progress is None:
            return None
        return self.progress.add_task(description, total=total, completed=completed, info="")


class EpochProgress:
    """Observer plugin: an epoch progress bar (or one log line per epoch).

    Registered on the run's plugin manager; implements the ``molpeg_epoch_start``,
    ``molpeg_validation_end``, ``molpeg_epoch_end`` and ``molpeg_selection_made`` hooks.

    Args:
        display: where to show progress.
        total_epochs: epochs of the run (default: the pruner's ``total_epochs``).
        num_train: size of the training split (default: the pruner's ``num_samples``).
    """

    def __init__(
        self, display: Display, total_epochs: int | None = None, num_train: int | None = None
    ) -> None:
        self.display = display
        self.total_epochs = total_epochs
        self.num_train = num_train
        self.task_id: Any = None
        self.metrics: dict[int, dict[str, float]] = {}
        self.kept: dict[int, int] = {}
        self.logged: set[int] = set()

    @hookimpl
    def molpeg_epoch_start(self, pruner: Any, epoch: int, num_kept: int) -> None:
        """Open the bar (at the resumed epoch if any) and show the epoch's kept count."""
        if self.total_epochs is None:
            self.total_epochs = pruner.total_epochs
        if self.num_train is None:
            self.num_train = pruner.num_samples
        self.kept[epoch] = num_kept
        if self.task_id is None:
            self.task_id = self.display.add_task("Training", self.total_epochs, completed=epoch)
        if self.task_id is not None:
            self.display.progress.update(
                self.task_id,
                description=f"Epoch {epoch + 1}/{self.total_epochs}",
                info=f"kept {num_kept}/{self.num_train}",
            )

    @hookimpl
    def molpeg_validation_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Remember the epoch's validation metrics (logged late if the epoch was logged)."""
        self.metrics[epoch] = dict(metrics)
        if epoch in self.logged:
            self.display.log(f"  epoch {epoch + 1} validation: {_fmt_metrics(metrics)}")

    @hookimpl
    def molpeg_epoch_end(self, pruner: Any, epoch: int, stats: dict[str, float]) -> None:
        """Advance the bar, or log ``epoch 3/10  kept …  score_mean …  val_…``."""
        line = f"kept {self.kept.get(epoch, self.num_train)}/{self.num_train}"
        if "score_mean" in stats:
            line += f"  score_mean {stats['score_mean']:.4g}"
        if epoch in self.metrics:
            line += f"  {_fmt_metrics(self.metrics[epoch])}"
        if self.task_id is not None:
            short = f"kept {self.kept.get(epoch, self.num_train)}/{self.num_train}"
            first = next(iter(self.metrics.get(epoch, {}).items()), None)
            if first is not None:
                short += f"  {first[0]} {first[1]:.3f}"
            self.display.progress.update(self.task_id, advance=1, info=short)
        else:
            self.display.log(f"epoch {epoch + 1}/{self.total_epochs}  {line}")
        self.logged.add(epoch)

    @hookimpl
    def molpeg_selection_made(self, pruner: Any, selection: Any) -> None:
        """Note the size of the next epoch's keep set."""
        self.kept[selection.epoch] = int(selection.indices.numel())


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
