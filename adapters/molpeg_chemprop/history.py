"""What each epoch of a Chemprop run reports: logged ``molpeg/*`` metrics and history rows.

The score statistics live in one place, the pruner's
:attr:`~molpeg_plugins.Pruner.history`; :class:`LoopRecords` keeps only what the Lightning
loop adds per epoch (batches, optimizer steps, learning rate, validation metrics), and
:meth:`LoopRecords.rows` joins the two into the rows of ``molpeg_history.csv``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from molpeg_plugins.pipeline.atomic import atomic_write


def log_scores(pl_module: Any, stats: dict[str, float]) -> None:
    """Log an epoch's pruner statistics as ``molpeg/<name>`` (finite values only)."""
    for key, value in stats.items():
        if key == "epoch" or not math.isfinite(value):
            continue
        pl_module.log(f"molpeg/{key}", float(value), on_step=False, on_epoch=True, batch_size=1)


class LoopRecords:
    """Per-epoch facts of the Lightning loop, joined with the pruner's history on demand."""

    def __init__(self) -> None:
        self.loop: dict[int, dict[str, float]] = {}

    def record(self, epoch: int, trainer: Any) -> None:
        """Note pruner epoch ``epoch``'s batches, global step, learning rate and val metrics."""
        row = {
            "num_batches": float(trainer.num_training_batches),
            "global_step": float(trainer.global_step),
        }
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val") and value.numel() == 1:
                row[name] = float(value)
        self.loop[epoch] = row

    def rows(self, pruner_history: list[dict[str, float]]) -> list[dict[str, float]]:
        """One row per finished epoch: the pruner's statistics, then the loop's facts."""
        return [
            {**{k: float(v) for k, v in stats.items()}, **self.loop[int(stats["epoch"])]}
            for stats in pruner_history
            if int(stats["epoch"]) in self.loop
        ]

    def state_dict(self) -> list[dict[str, float]]:
        """The loop's facts, one row with its ``epoch`` per epoch (for Lightning checkpoints)."""
        return [{"epoch": float(epoch), **row} for epoch, row in self.loop.items()]

    def load_state_dict(self, rows: list[dict[str, float]]) -> None:
        """Restore what :meth:`state_dict` saved (older full history rows load too)."""
        self.loop = {
            int(row["epoch"]): {k: float(v) for k, v in row.items() if k != "epoch"} for row in rows
        }


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """Write ``rows`` to the CSV file ``path`` (atomically; columns in order of appearance)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def write(handle: Any) -> None:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write, binary=False)
