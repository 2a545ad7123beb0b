"""The built-in ``torch`` backend on real molecules: training, pruning, signals, fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from molpeg_plugins.engine.config import PruneConfig, num_kept
from molpeg_plugins.hookspecs import hookimpl
from molpeg_plugins.pipeline.backend import FitJob
from molpeg_plugins.pipeline.checkpoints import safe_load
from molpeg_plugins.pipeline.data import load_molecules, split_positions
from molpeg_plugins.pipeline.torch_backend import (
    FingerprintMLPModel,
    TorchBackend,
    morgan_fingerprints,
    packed_morgan_fingerprints,
    unpack_bits,
)
from molpeg_plugins.plugins import make_plugin_manager

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Recorder:
    """Observer plugin that records every event it gets."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    @hookimpl
    def molpeg_epoch_start(self, pruner, epoch, num_kept):
        self.events.append(("start", epoch))

    @hookimpl
    def molpeg_validation_end(self, epoch, metrics):
        self.events.append(("validation", epoch))

    @hookimpl
    def molpeg_epoch_end(self, pruner, epoch, stats):
        self.events.append(("end", epoch))


def make_job(path: Path, work: Path, targets=None, **config) -> FitJob:
    table = load_molecules(path, target_columns=targets)
    split = split_positions(
        [table.scaffolds[i] for i in table.valid_rows], "random", (0.8, 0.1, 0.1), 0
    )
    pm = make_plugin_manager(entry_points=False)
    return FitJob.from_table(table, split, PruneConfig(**config), work, epochs=3, plugin_manager=pm)


@pytest.fixture(scope="module")
def bbbp300(csv_head) -> Path:
    return csv_head("bbbp_1k.csv", 300)


def test_molpeg_run_prunes_learns_and_reports(bbbp300: Path, tmp_path: Path):
    job = make_job(bbbp300, tmp_path, prune_ratio=0.6)
    recorder = Recorder()
    job.plugin_manager.register(recorder)
    result = TorchBackend().fit(job)
    n = len(job.train_idx)
    assert [h["num_kept"] for h in result.history] == [n, num_kept(n, 0.6), num_kept(n, 0.6)]
    assert len(result.final_kept) == num_kept(n, 0.6)
    assert np.all(np.diff(result.final_kept) > 0) and result.final_kept.max() < n
    assert result.metric_name == "roc_auc" and 0.5 < result.val_metrics["roc_auc"] <= 1
    assert set(result.test_metrics) == {"roc_auc", "prc_auc", "accuracy"}
    assert recorder.events == [
        (kind, e) for e in range(3) for kind in ("start", "validation", "end")
    ]
    scores = result.pruner_state["book"]["score"]
    assert torch.isfinite(scores).all() and (scores > 0).any()
    model = safe_load(result.model_path, plugin_manager=job.plugin_manager)
    assert model["kind"] == "molpeg-torch-mlp" and model["target_names"] == ["p_np"]
    assert not (tmp_path / "resume.pt").exists()


def test_same_seed_same_scores(bbbp300: Path, tmp_path: Path):
    a = TorchBackend().fit(make_job(bbbp300, tmp_path / "a"))
    b = TorchBackend().fit(make_job(bbbp300, tmp_path / "b"))
    assert torch.equal(a.pruner_state["book"]["score"], b.pruner_state["book"]["score"])
    assert np.array_equal(a.final_kept, b.final_kept)


def test_static_strategy_gets_its_signals(bbbp300: Path, tmp_path: Path):
    result = TorchBackend().fit(make_job(bbbp300, tmp_path, strategy="el2n", prune_ratio=0.5))
    assert len(result.final_kept) == num_kept(len(result.pruner_state["book"]["score"]), 0.5)


def test_multitask_regression_and_fine_tuning(csv_head, tmp_path: Path):
    tox = csv_head("tox21_800.csv", 300)
    job = make_job(tox, tmp_path / "tox", targets=["NR-AR", "NR-AhR", "SR-p53"])
    assert np.isnan(job.targets).any()
    first = TorchBackend().fit(job)
    assert np.isfinite(first.history[-1]["train_loss"])

    job2 = make_job(tox, tmp_path / "ft", targets=["NR-AR", "NR-AhR", "SR-p53"])
    job2.pretrained = first.model_path
    tuned = TorchBackend().fit(job2)
    assert tuned.history[0]["train_loss"] < first.history[0]["train_loss"]

    esol = csv_head("esol_600.csv", 200)
    reg = make_job(esol, tmp_path / "reg", targets=["measured log solubility in mols per litre"])
    out = TorchBackend().fit(reg)
    assert out.metric_name == "rmse" and out.test_metrics["rmse"] > 0


def test_fingerprints_are_morgan_bits():
    fp = morgan_fingerprints(["CCO", "c1ccccc1"])
    assert fp.shape == (2, 2048) and set(np.unique(fp)) <= {0.0, 1.0}
    assert 0 < fp[0].sum() < fp[1].sum() + 10


def test_packed_fingerprints_are_rdkits_bits(csv_head):
    """The packed bits of real molecules are RDKit's ``GetFingerprintAsNumPy`` bits, and both
    unpackings (NumPy's, the model's on torch) give the dense matrix back."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    table = load_molecules(csv_head("bbbp_1k.csv", 40))
    smiles = [table.smiles[i].strip() for i in table.valid_rows]
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    expected = np.stack([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles])
    packed = packed_morgan_fingerprints(smiles)
    assert packed.dtype == np.uint8 and packed.shape == (len(smiles), 256)
    assert np.array_equal(np.unpackbits(packed, axis=1), expected)
    assert np.array_equal(unpack_bits(torch.from_numpy(packed)).numpy(), expected)
    assert unpack_bits(torch.from_numpy(packed)).dtype == torch.float32
    dense = morgan_fingerprints(smiles)
    assert dense.dtype == np.float32 and np.array_equal(dense, expected)
    odd = packed_morgan_fingerprints(smiles[:3], bits=1001)  # the last byte padded
    assert odd.shape == (3, 126)
    odd_generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1001)
    odd_bits = [odd_generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles[:3]]
    assert np.array_equal(np.unpackbits(odd, axis=1, count=1001), np.stack(odd_bits))


class DenseFingerprintModel(FingerprintMLPModel):
    """The torch backend's model as it was before packing: a dense float32 matrix, indexed."""

    def __init__(self, job, pruner) -> None:
        super().__init__(job, pruner)
        self.dense = torch.from_numpy(morgan_fingerprints(job.smiles)).to(self.device)

    def features(self, rows: torch.Tensor) -> torch.Tensor:
        return self.dense[rows]


class DenseBackend(TorchBackend):
    def build(self, job, pruner):
        return DenseFingerprintModel(job, pruner)


@pytest.mark.parametrize("strategy", ["molpeg", "el2n"])
def test_packed_training_equals_dense_training(bbbp300: Path, tmp_path: Path, strategy: str):
    """Same seed, packed or dense fingerprints: the same scores, keep set and metrics (a
    static strategy also observes the unpacked ``features`` of every batch)."""
    packed = TorchBackend().fit(make_job(bbbp300, tmp_path / "p", strategy=strategy))
    dense = DenseBackend().fit(make_job(bbbp300, tmp_path / "d", strategy=strategy))
    assert torch.equal(packed.pruner_state["book"]["score"], dense.pruner_state["book"]["score"])
    assert np.array_equal(packed.final_kept, dense.final_kept)
    assert packed.val_metrics == dense.val_metrics and packed.test_metrics == dense.test_metrics
    assert packed.history == dense.history


def test_predictions_in_chunks_equal_one_pass(bbbp300: Path, tmp_path: Path, monkeypatch):
    """Predicting in chunks (a large split's inputs never all in memory) gives every row."""
    from molpeg_plugins.engine.pruner import Pruner
    from molpeg_plugins.pipeline import torch_training

    job = make_job(bbbp300, tmp_path)
    pruner = Pruner(len(job.train_idx), job.config, plugin_manager=job.plugin_manager)
    model = FingerprintMLPModel(job, pruner)
    rows = np.arange(len(job.smiles))
    whole = model.predict(rows)
    monkeypatch.setattr(torch_training, "PREDICT_CHUNK", 7)
    chunked = model.predict(rows)
    assert whole.shape == (len(rows), 1)
    assert np.allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    assert model.predict(rows[:0]).shape == (0, 1)
