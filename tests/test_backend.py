"""The backend helpers every framework shares: metrics, model selection, jobs from a table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics

from molpeg_plugins.engine.config import PruneConfig, num_kept
from molpeg_plugins.pipeline.backend import BATCH_PROGRESS, FitJob, evaluate, improves
from molpeg_plugins.pipeline.data import load_molecules, split_positions
from molpeg_plugins.plugins import get_plugin_manager

nan = math.nan


def test_classification_metrics_per_task_then_mean():
    targets = np.array([[1, 0], [0, 0], [1, 1], [0, nan], [1, 0]], dtype=float)
    probs = np.array([[0.9, 0.2], [0.3, 0.1], [0.4, 0.8], [0.6, 0.5], [0.7, 0.4]])
    got = evaluate("classification", probs, targets)
    auc = [  # the second task is labelled on rows 0, 1, 2 and 4 only
        metrics.roc_auc_score(targets[:, 0], probs[:, 0]),
        metrics.roc_auc_score([0, 0, 1, 0], [0.2, 0.1, 0.8, 0.4]),
    ]
    assert got["roc_auc"] == pytest.approx(np.mean(auc))
    labelled = ~np.isnan(targets)
    expected_acc = ((probs[labelled] > 0.5) == (targets[labelled] > 0.5)).mean()
    assert got["accuracy"] == pytest.approx(expected_acc)
    assert 0.0 < got["prc_auc"] <= 1.0


def test_a_task_with_one_class_is_left_out_and_none_left_gives_nan():
    targets = np.array([[1, 1], [0, 1], [1, 1]], dtype=float)
    probs = np.array([[0.8, 0.1], [0.2, 0.2], [0.7, 0.3]])
    assert evaluate("classification", probs, targets)["roc_auc"] == 1.0  # task 2 ignored
    only_one_class = evaluate("classification", probs[:, 1:], targets[:, 1:])
    assert math.isnan(only_one_class["roc_auc"]) and math.isnan(only_one_class["prc_auc"])


def test_regression_metrics_skip_missing_labels():
    targets = np.array([[1.0], [2.0], [nan], [4.0]])
    preds = np.array([[1.5], [2.0], [100.0], [3.0]])
    got = evaluate("regression", preds, targets)
    err = np.array([0.5, 0.0, -1.0])
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert got["mae"] == pytest.approx(0.5)
    assert got["r2"] == pytest.approx(1 - np.mean(err**2) / np.var([1.0, 2.0, 4.0]))
    assert evaluate("regression", preds, np.full((4, 1), nan)) == {}


def test_model_selection_ignores_non_finite_values():
    assert improves(0.8, nan, higher_is_better=True)
    assert not improves(nan, 0.1, higher_is_better=True)
    assert improves(0.3, 0.5, higher_is_better=False) and not improves(0.5, 0.3, False)


def test_job_from_table_uses_the_valid_rows_only(csv_head, tmp_path: Path):
    data = csv_head("bbbp_1k.csv", 300)
    table = load_molecules(data)
    valid = table.valid_rows
    assert len(valid) == 298  # two rows of the subset are invalid SMILES
    split = split_positions([table.scaffolds[i] for i in valid], "scaffold", (0.8, 0.1, 0.1), 0)
    job = FitJob.from_table(table, split, PruneConfig(), tmp_path, epochs=3, seed=7)
    assert job.smiles == [table.smiles[i].strip() for i in valid]
    assert job.targets.shape == (298, 1) and job.task == "classification"
    assert job.target_names == ["p_np"] and (job.epochs, job.seed) == (3, 7)
    assert sorted(np.concatenate(split).tolist()) == list(range(298))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["chemprop", "deepchem", "torch"])
def test_every_backend_reports_progress_and_the_shared_metrics(name: str, csv_head, tmp_path: Path):
    """Each backend shows its long phases through ``job.progress`` and returns ``evaluate``'s
    metric names, so that runs of different frameworks compare."""
    backend = get_plugin_manager().backends().get(name)
    if backend is None or not backend.availability()[0]:
        pytest.skip(f"backend {name!r} is not registered or its framework is not installed")
    data = csv_head("bbbp_1k.csv", 300)
    table = load_molecules(data)
    split = split_positions(
        [table.scaffolds[i] for i in table.valid_rows], "random", (0.8, 0.1, 0.1), 0
    )
    opened: list[tuple[str, list[int]]] = []  # (description, [done, total]) per task

    from contextlib import contextmanager

    @contextmanager
    def progress(description: str, total: int | None = None):
        done = [0, total or 0]
        opened.append((description, done))
        yield lambda n=1: done.__setitem__(0, done[0] + n)

    job = FitJob.from_table(
        table, split, PruneConfig(prune_ratio=0.5), tmp_path / "run", epochs=2, progress=progress
    )
    result = backend.fit(job)
    assert opened, "no progress reported"
    assert all(done == total for _, (done, total) in opened if total), opened
    # one batch task per epoch, sized with that epoch's (pruned) number of batches
    per_epoch = [total for name, (_, total) in opened if name == BATCH_PROGRESS]
    n_train = len(split[0])
    assert per_epoch == [-(-n_train // 64), -(-num_kept(n_train, 0.5) // 64)], opened
    assert set(result.test_metrics) == {"roc_auc", "prc_auc", "accuracy"}
    assert 0.0 <= result.test_metrics["roc_auc"] <= 1.0


@pytest.mark.slow
@pytest.mark.chemprop
def test_quiet_chemprop_fit_hides_only_lightning_noise(csv_head, tmp_path: Path):
    """A quiet fit (what ``molpeg prune`` runs) drops Lightning's tips, not other warnings."""
    import warnings

    from molpeg_plugins.hookspecs import hookimpl
    from molpeg_plugins.plugins import make_plugin_manager

    backend = get_plugin_manager().backends().get("chemprop")
    if backend is None or not backend.availability()[0]:
        pytest.skip("chemprop is not installed")

    class WarnsOnce:
        @hookimpl
        def molpeg_epoch_end(self, pruner, epoch, stats):
            warnings.warn(f"plugin note after epoch {epoch}", UserWarning, stacklevel=1)

    data = csv_head("bbbp_1k.csv", 200)
    table = load_molecules(data)
    split = split_positions(
        [table.scaffolds[i] for i in table.valid_rows], "random", (0.8, 0.1, 0.1), 0
    )
    pm = make_plugin_manager()
    pm.register(WarnsOnce())
    job = FitJob.from_table(
        table, split, PruneConfig(), tmp_path / "run", epochs=1, plugin_manager=pm, quiet=True
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend.fit(job)
    messages = [str(w.message) for w in caught]
    assert "plugin note after epoch 0" in messages, messages
    assert not [m for m in messages if "treespec" in m or "does not have many workers" in m]
