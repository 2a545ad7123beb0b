"""The ``deepchem`` backend of ``molpeg prune``: fit(), validation hook, resume, fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("deepchem")

from molpeg_plugins import PruneConfig, hookimpl, make_plugin_manager
from molpeg_plugins.pipeline.backend import FitJob, FitResult
from molpeg_plugins.pipeline.checkpoints import safe_load

pytestmark = [
    pytest.mark.deepchem,
    pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad"),
]

DATA = Path(__file__).parent / "data"
EPOCHS = 3


class Validations:
    """A plugin that collects ``molpeg_validation_end`` calls and can interrupt the run."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []
        self.stop_at = stop_at

    @hookimpl
    def molpeg_validation_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """Record the call; raise at ``stop_at`` to simulate a killed run."""
        if epoch == self.stop_at:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")
        self.calls.append((epoch, dict(metrics)))


def split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded 70/15/15 random split."""
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(0.7 * n), int(0.85 * n)
    return perm[:a], perm[a:b], perm[b:]


def tox21_job(work: Path, observer: Validations, *, resume: bool = False) -> FitJob:
    """Tox21 (800 molecules, 12 tasks with missing labels), 50% pruning, 3 epochs."""
    frame = pd.read_csv(DATA / "tox21_800.csv")
    tasks = list(frame.columns[:12])
    train, val, test = split(len(frame))
    pm = make_plugin_manager()
    pm.register(observer)
    return FitJob(
        smiles=frame["smiles"].tolist(),
        targets=frame[tasks].to_numpy(dtype=float),
        target_names=tasks,
        task="classification",
        train_idx=train,
        val_idx=val,
        test_idx=test,
        config=PruneConfig(prune_ratio=0.5, seed=0),
        work_dir=work,
        epochs=EPOCHS,
        batch_size=64,
        resume=resume,
        plugin_manager=pm,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[FitResult, Validations]:
    """One complete 3-epoch run (shared by the tests below)."""
    from molpeg_deepchem import DeepChemBackend

    observer = Validations()
    work = tmp_path_factory.mktemp("full")
    return DeepChemBackend().fit(tox21_job(work, observer)), observer


def test_fit_reports_everything(uninterrupted: tuple[FitResult, Validations]) -> None:
    result, observer = uninterrupted
    n_train = 560
    assert result.metric_name == "roc_auc"
    assert [int(h["num_kept"]) for h in result.history] == [n_train, 280, 280]
    assert [e for e, _ in observer.calls] == [0, 1, 2]
    for (_, metrics), row in zip(observer.calls, result.history, strict=True):
        assert metrics["val_roc_auc"] == row["val_roc_auc"]
    assert 0 <= result.best_epoch < EPOCHS
    best = result.history[result.best_epoch]["val_roc_auc"]
    assert best == max(h["val_roc_auc"] for h in result.history)
    assert result.val_metrics["roc_auc"] == pytest.approx(best, abs=1e-9)
    assert 0.6 < result.test_metrics["roc_auc"] <= 1.0
    assert result.history[0]["train_loss"] > result.history[-1]["train_loss"]
    assert len(result.final_kept) == 280 and np.all(np.diff(result.final_kept) > 0)
    assert result.pruner_state["epoch"] == EPOCHS
    assert result.versions["deepchem"].startswith("2.")
    saved = safe_load(result.model_path)  # weights_only: no code in the file
    assert saved["task"] == "classification" and len(saved["target_names"]) == 12
    assert not (result.model_path.parent / "resume.pt").exists()


def test_resume_continues_exactly(
    uninterrupted: tuple[FitResult, Validations], tmp_path: Path
) -> None:
    from molpeg_deepchem import DeepChemBackend

    full, _ = uninterrupted
    with pytest.raises(KeyboardInterrupt):
        DeepChemBackend().fit(tox21_job(tmp_path, Validations(stop_at=1)))
    state = safe_load(tmp_path / "resume.pt")
    assert state["epoch"] == 1  # epoch 0 completed and saved, epoch 1 lost

    observer = Validations()
    resumed = DeepChemBackend().fit(tox21_job(tmp_path, observer, resume=True))
    assert [e for e, _ in observer.calls] == [1, 2]  # epoch 0 was not retrained
    assert resumed.history == full.history
    assert resumed.best_epoch == full.best_epoch
    assert resumed.test_metrics == full.test_metrics
    assert np.array_equal(resumed.final_kept, full.final_kept)
    a, b = safe_load(full.model_path), safe_load(resumed.model_path)
    for key, value in a["model_state_dict"].items():
        assert torch.equal(value, b["model_state_dict"][key]), key


def test_regression_fine_tunes_from_a_classification_model(
    uninterrupted: tuple[FitResult, Validations], tmp_path: Path
) -> None:
    from molpeg_deepchem import DeepChemBackend

    full, _ = uninterrupted
    frame = pd.read_csv(DATA / "esol_600.csv")
    train, val, test = split(len(frame), seed=1)
    observer = Validations()
    pm = make_plugin_manager()
    pm.register(observer)
    job = FitJob(
        smiles=frame["smiles"].tolist(),
        targets=frame[["measured log solubility in mols per litre"]].to_numpy(dtype=float),
        target_names=["logS"],
        task="regression",
        train_idx=train,
        val_idx=val,
        test_idx=test,
        config=PruneConfig(prune_ratio=0.5),
        work_dir=tmp_path,
        epochs=2,
        learning_rate=3e-3,
        pretrained=full.model_path,
        plugin_manager=pm,
    )
    result = DeepChemBackend().fit(job)
    assert result.metric_name == "rmse"
    assert [int(h["num_kept"]) for h in result.history] == [420, 210]
    assert [sorted(m) for _, m in observer.calls] == [["val_mae", "val_r2", "val_rmse"]] * 2
    assert np.isfinite(result.test_metrics["rmse"])
    # the hidden layer starts from the classifier's; the new output layer does not
    hidden = safe_load(full.model_path)["model_state_dict"]["layers.0.weight"]
    tuned = safe_load(result.model_path)["model_state_dict"]["layers.0.weight"]
    assert hidden.shape == tuned.shape
    assert float((hidden - tuned).abs().mean()) < float(hidden.abs().mean())


def test_backend_is_registered_without_importing_deepchem() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from molpeg_plugins import make_plugin_manager; "
        "b = make_plugin_manager().backend('deepchem'); "
        "print(b.name, 'deepchem' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["deepchem", "False"]
