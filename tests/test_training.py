"""The training driver's shared parts: history records, random generators, resume identity."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from molpeg_plugins.engine.config import PruneConfig
from molpeg_plugins.errors import ConfigError
from molpeg_plugins.pipeline.backend import FitJob
from molpeg_plugins.pipeline.data import load_molecules, split_positions
from molpeg_plugins.pipeline.torch_backend import TorchBackend
from molpeg_plugins.pipeline.training import (
    RESUME_FILE,
    EpochRecord,
    capture_rng,
    restore_rng,
    run_fingerprint,
)
from molpeg_plugins.plugins import make_plugin_manager


def test_a_record_is_the_history_row_and_reads_back():
    record = EpochRecord(
        epoch=2,
        num_kept=40,
        train_loss=0.5,
        validation={"val_roc_auc": 0.8, "val_accuracy": 0.7},
        scores={"score_mean": 0.1, "score_max": 0.3},
    )
    row = record.as_row()
    assert list(row) == [
        "epoch",
        "num_kept",
        "train_loss",
        "val_roc_auc",
        "val_accuracy",
        "score_mean",
        "score_max",
    ]
    assert row["epoch"] == 2.0 and row["num_kept"] == 40.0
    assert EpochRecord.from_row(row) == record


def test_restored_generators_repeat_their_draws():
    state = capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def job(data: Path, work: Path, **config) -> FitJob:
    table = load_molecules(data)
    split = split_positions(
        [table.scaffolds[i] for i in table.valid_rows], "random", (0.8, 0.1, 0.1), 0
    )
    return FitJob.from_table(
        table,
        split,
        PruneConfig(**config),
        work,
        epochs=2,
        plugin_manager=make_plugin_manager(entry_points=False),
        keep_resume_state=True,
    )


@pytest.fixture(scope="module")
def bbbp200(csv_head) -> Path:
    return csv_head("bbbp_1k.csv", 200)


@pytest.mark.usefixtures("one_torch_thread")
def test_resume_refuses_a_run_with_other_options(bbbp200: Path, tmp_path: Path):
    first = job(bbbp200, tmp_path, prune_ratio=0.5)
    TorchBackend().fit(first)
    assert (tmp_path / RESUME_FILE).is_file()
    changed = job(bbbp200, tmp_path, prune_ratio=0.3)
    assert run_fingerprint(changed, "torch") != run_fingerprint(first, "torch")
    assert run_fingerprint(first, "torch") != run_fingerprint(first, "deepchem")
    changed.resume = True
    with pytest.raises(ConfigError, match="cannot resume: the data, split or training options"):
        TorchBackend().fit(changed)
