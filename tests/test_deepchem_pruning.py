"""MolPeg inside DeepChem's own ``model.fit``: real training on real Tox21 and ESOL molecules."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

dc = pytest.importorskip("deepchem")

from molpeg_deepchem import MolPegDeepChem  # noqa: E402
from molpeg_deepchem.featurize import ecfp, labelled_dataset  # noqa: E402
from molpeg_plugins import MolPegError, num_kept  # noqa: E402

pytestmark = [
    pytest.mark.deepchem,
    # DeepChem 2.8's own fit() converts its running loss with float() before detaching
    pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad"),
]

TOX21_TASKS = 12
BATCH = 64  # 800 and 400 are not multiples of 64: every epoch ends with a padded batch


@pytest.fixture(scope="module")
def tox21(request: pytest.FixtureRequest) -> Any:
    """Tox21 (800 molecules, 12 tasks, missing labels) as ECFP NumpyDataset + raw labels."""
    frame = pd.read_csv(Path(request.config.rootpath) / "tests/data/tox21_800.csv")
    targets = frame.iloc[:, :TOX21_TASKS].to_numpy(dtype=float)
    X = ecfp(frame["smiles"].tolist(), size=1024)
    return labelled_dataset(X, targets, frame["smiles"].to_numpy()), targets


@pytest.fixture(scope="module")
def esol(request: pytest.FixtureRequest) -> Any:
    """ESOL (600 molecules, measured log-solubility) as ECFP features + targets."""
    frame = pd.read_csv(Path(request.config.rootpath) / "tests/data/esol_600.csv")
    targets = frame[["measured log solubility in mols per litre"]].to_numpy(dtype=float)
    return ecfp(frame["smiles"].tolist(), size=1024), targets, frame["smiles"].to_numpy()


class Recorder:
    """Spies on ``Pruner.record`` and recomputes each batch's losses independently."""

    def __init__(self, pruning: MolPegDeepChem, independent: Any) -> None:
        self.pruning = pruning
        self.independent = independent
        self.epochs: list[list[np.ndarray]] = [[]]
        self.max_online_err = 0.0
        self.max_reference_err = 0.0
        self._record = pruning.pruner.record
        self._epoch = pruning.pruner.epoch
        pruning.pruner.record = self.record  # type: ignore[method-assign]

    def record(self, indices: Any, online: torch.Tensor, reference: Any = None) -> None:
        pruner = self.pruning.pruner
        if pruner.epoch != self._epoch:
            self.epochs.append([])
            self._epoch = pruner.epoch
        idx = np.asarray(torch.as_tensor(indices).cpu())
        self.epochs[-1].append(idx)
        expected_online = self.independent(self.pruning.model.model, idx)
        self.max_online_err = max(
            self.max_online_err, float((online.cpu() - expected_online).abs().max())
        )
        if reference is None:  # only before the reference's first update (it is the model)
            assert self.pruning.reference.num_updates == 0
        else:
            expected_ref = self.independent(self.pruning.reference.module, idx)
            self.max_reference_err = max(
                self.max_reference_err, float((reference.cpu() - expected_ref).abs().max())
            )
        self._record(indices, online, reference)


def tox21_loss(dataset: Any) -> Any:
    """Per-molecule softmax cross-entropy mean over labelled tasks, computed from scratch."""

    @torch.no_grad()
    def loss(module: torch.nn.Module, idx: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(dataset.X[idx], dtype=torch.float32)
        logits = module(x)[1].cpu()  # MultitaskClassifier: (probabilities, logits, embedding)
        y = torch.as_tensor(dataset.y[idx]).long()
        labelled = torch.as_tensor(dataset.w[idx]) != 0
        nll = -torch.log_softmax(logits, dim=-1).gather(-1, y[..., None])[..., 0]
        total = (nll * labelled).sum(dim=1)
        count = labelled.sum(dim=1)
        return torch.where(count > 0, total / count, torch.tensor(float("nan")))

    return loss


def test_tox21_pruned_epochs_losses_map_to_molecules(tox21: Any) -> None:
    dataset, _ = tox21
    torch.manual_seed(0)
    model = dc.models.MultitaskClassifier(
        TOX21_TASKS, 1024, layer_sizes=[64], dropouts=0.0, batch_size=BATCH
    )
    pruning = MolPegDeepChem(model, dataset, prune_ratio=0.5, epochs=3, seed=1, reference="model")
    spy = Recorder(pruning, tox21_loss(dataset))

    model.fit(
        pruning.dataset,
        nb_epoch=3,
        loss=pruning.loss,
        callbacks=[pruning.callback],
        checkpoint_interval=0,
    )

    expected = [800, num_kept(800, 0.5), num_kept(800, 0.5)]  # warm-up epoch, then 400
    assert [len(np.concatenate(e)) for e in spy.epochs] == expected
    assert [int(h["num_kept"]) for h in pruning.pruner.history] == expected
    for epoch in spy.epochs:
        seen = np.concatenate(epoch)
        assert len(np.unique(seen)) == len(seen)  # padding rows are never recorded
    assert len(spy.epochs[0][-1]) == 800 % BATCH and len(spy.epochs[1][-1]) == 400 % BATCH
    # the recorded losses are those of these very molecules, online and reference
    assert spy.max_online_err < 1e-5
    assert spy.max_reference_err < 1e-5
    # pruned epochs keep the highest scores of the previous epoch
    book = pruning.pruner.book
    assert int((book.epochs_kept == 3).sum()) > 0 and int((book.num_updates == 0).sum()) == 0
    # held-out validation: the next test
    assert pruning.epoch_losses[0] > pruning.epoch_losses[-1]


def test_tox21_validation_metric_on_held_out_molecules(tox21: Any) -> None:
    dataset, _ = tox21
    train, valid = dataset.select(np.arange(640)), dataset.select(np.arange(640, 800))
    torch.manual_seed(0)
    model = dc.models.MultitaskClassifier(TOX21_TASKS, 1024, layer_sizes=[256], batch_size=BATCH)
    pruning = MolPegDeepChem(model, train, prune_ratio=0.5, epochs=6)
    model.fit(pruning.dataset, nb_epoch=6, loss=pruning.loss, callbacks=[pruning.callback])
    assert [int(h["num_kept"]) for h in pruning.pruner.history] == [640] + [320] * 5
    metric = dc.metrics.Metric(dc.metrics.roc_auc_score, np.mean, mode="classification")
    auc = model.evaluate(valid, [metric])["mean-roc_auc_score"]
    assert 0.6 < auc <= 1.0


def esol_loss(X: np.ndarray, y: np.ndarray) -> Any:
    """Per-molecule squared error of a MultitaskRegressor, computed from scratch."""

    @torch.no_grad()
    def loss(module: torch.nn.Module, idx: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(X[idx], dtype=torch.float32)
        pred = module((x, torch.zeros(1)))[0].reshape(len(idx))
        return (pred.cpu() - torch.as_tensor(y[idx, 0], dtype=torch.float32)) ** 2

    return loss


def test_esol_disk_dataset_writes_no_shards(
    esol: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, targets, smiles = esol
    disk = dc.data.DiskDataset.from_numpy(
        X, targets, np.ones_like(targets), ids=smiles, data_dir=str(tmp_path / "disk")
    )
    disk.reshard(150)  # 4 shards
    before = sorted(p.name for p in (tmp_path / "disk").iterdir())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where select() would write

    torch.manual_seed(0)
    model = dc.models.MultitaskRegressor(
        1,
        1024,
        layer_sizes=[64],
        dropouts=0.0,
        batch_size=BATCH,
        learning_rate=0.01,
        model_dir=str(tmp_path / "m"),
    )
    pruning = MolPegDeepChem(model, disk, prune_ratio=0.5, epochs=5, reference="model")
    spy = Recorder(pruning, esol_loss(X, targets))
    model.fit(pruning.dataset, nb_epoch=5, loss=pruning.loss, callbacks=[pruning.callback])

    assert [len(np.concatenate(e)) for e in spy.epochs] == [600, 300, 300, 300, 300]
    assert spy.max_online_err < 1e-4 and spy.max_reference_err < 1e-4
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == before
    assert list(scratch.iterdir()) == []
    pred = np.asarray(model.predict(dc.data.NumpyDataset(X))).reshape(-1)
    rmse = float(np.sqrt(np.mean((pred - targets[:, 0]) ** 2)))
    assert rmse < float(np.std(targets))  # better than predicting the mean


def test_newer_callback_signature_with_iteration_loss(tox21: Any) -> None:
    dataset, _ = tox21
    small = dataset.select(np.arange(200))
    model = dc.models.MultitaskClassifier(TOX21_TASKS, 1024, layer_sizes=[32], batch_size=BATCH)
    pruning = MolPegDeepChem(model, small, prune_ratio=0.5, epochs=2)
    losses: list[float] = []

    def newer_deepchem(model: Any, step: int) -> None:
        # what DeepChem > 2.8 does: callback(model, step, iteration_loss=...)
        losses.append(pruning.epoch_losses[-1] if pruning.epoch_losses else 0.0)
        pruning.callback(model, step, iteration_loss=losses[-1])

    model.fit(pruning.dataset, nb_epoch=2, loss=pruning.loss, callbacks=[newer_deepchem])
    assert [int(h["num_kept"]) for h in pruning.pruner.history] == [200, 100]
    assert len(losses) == 4 + 2  # ceil(200/64) + ceil(100/64) optimizer steps


def test_forgetting_the_loss_is_a_clear_error(tox21: Any) -> None:
    dataset, _ = tox21
    model = dc.models.MultitaskClassifier(TOX21_TASKS, 1024, layer_sizes=[16], batch_size=BATCH)
    pruning = MolPegDeepChem(model, dataset.select(np.arange(100)), prune_ratio=0.5)
    with pytest.raises(MolPegError, match=r"loss=pruning\.loss"):
        model.fit(pruning.dataset, nb_epoch=1, callbacks=[pruning.callback])


def test_static_strategy_gets_probabilities_and_embeddings(tox21: Any) -> None:
    dataset, _ = tox21
    small = dataset.select(np.arange(300))
    model = dc.models.MultitaskClassifier(TOX21_TASKS, 1024, layer_sizes=[32], batch_size=BATCH)
    pruning = MolPegDeepChem(model, small, prune_ratio=0.5, epochs=3, strategy="grand")
    seen: dict[str, torch.Tensor] = {}
    observe = pruning.pruner.strategy.observe

    def spy(epoch: int, indices: torch.Tensor, **signals: torch.Tensor) -> None:
        seen.update(signals)
        observe(epoch, indices, **signals)

    pruning.pruner.strategy.observe = spy  # type: ignore[method-assign]
    model.fit(pruning.dataset, nb_epoch=3, loss=pruning.loss, callbacks=[pruning.callback])
    assert [int(h["num_kept"]) for h in pruning.pruner.history] == [300, 150, 150]
    assert set(seen) == {"predictions", "targets", "mask", "embeddings"}
    assert seen["embeddings"].shape[1] == 32 and seen["mask"].dtype == torch.bool
    pred = seen["predictions"]
    assert pred.shape[1] == TOX21_TASKS and float(pred.min()) >= 0 and float(pred.max()) <= 1


def test_dmpnn_graph_model(request: pytest.FixtureRequest) -> None:
    pytest.importorskip("torch_geometric")
    frame = pd.read_csv(Path(request.config.rootpath) / "tests/data/esol_600.csv").head(90)
    graphs = dc.feat.DMPNNFeaturizer().featurize(frame["smiles"].tolist())
    y = frame[["measured log solubility in mols per litre"]].to_numpy(dtype=float)
    dataset = dc.data.NumpyDataset(graphs, y, np.ones_like(y))
    torch.manual_seed(0)
    model = dc.models.DMPNNModel(
        n_tasks=1, batch_size=32, enc_hidden=32, ffn_hidden=32, depth=2, ffn_layers=2
    )
    pruning = MolPegDeepChem(model, dataset, prune_ratio=0.5, epochs=3)
    recorded: list[int] = []
    record = pruning.pruner.record

    def spy(indices: Any, online: torch.Tensor, reference: Any = None) -> None:
        assert torch.isfinite(online).all()
        assert (reference is None) == (pruning.reference.num_updates == 0)
        recorded.append(len(indices))
        record(indices, online, reference)

    pruning.pruner.record = spy  # type: ignore[method-assign]
    model.fit(pruning.dataset, nb_epoch=3, loss=pruning.loss, callbacks=[pruning.callback])
    assert [int(h["num_kept"]) for h in pruning.pruner.history] == [90, 45, 45]
    assert sum(recorded) == 90 + 45 + 45
    assert int((pruning.pruner.book.num_updates > 0).sum()) == 90


def test_per_sample_loss_masks_missing_labels(tox21: Any) -> None:
    from molpeg_deepchem.losses import loss_outputs, per_sample_loss

    dataset, targets = tox21
    model = dc.models.MultitaskClassifier(
        TOX21_TASKS, 1024, layer_sizes=[16], dropouts=0.0, batch_size=8
    )
    batch = model._prepare_batch(([dataset.X[:8]], [dataset.y[:8]], [dataset.w[:8]]))
    # MultitaskClassifier wants one-hot labels; prepare them the way its generator does
    labels = [torch.nn.functional.one_hot(batch[1][0].long(), 2).float()]
    model.model.eval()
    with torch.no_grad():
        output = model.model(batch[0][0])
    losses = per_sample_loss(model, loss_outputs(model, output), labels, batch[2])
    assert losses.shape == (8,)
    expected = tox21_loss(dataset)(model.model, np.arange(8))
    assert torch.allclose(losses, expected, atol=1e-6)
    assert np.isnan(targets[:8]).any()  # the batch really has missing labels


@pytest.mark.gpu
def test_scores_stay_on_the_gpu(tox21: Any) -> None:
    dataset, _ = tox21
    model = dc.models.MultitaskClassifier(
        TOX21_TASKS, 1024, layer_sizes=[64], batch_size=BATCH, device=torch.device("cuda")
    )
    pruning = MolPegDeepChem(model, dataset, prune_ratio=0.5, epochs=2)
    model.fit(pruning.dataset, nb_epoch=2, loss=pruning.loss, callbacks=[pruning.callback])
    assert pruning.pruner.book.score.device.type == "cuda"
    assert [int(h["num_kept"]) for h in pruning.pruner.history] == [800, 400]
    assert pruning.reference is not None
    assert next(pruning.reference.module.parameters()).device.type == "cuda"


def test_deepchem_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    from molpeg_plugins.pipeline.checkpoints import safe_load

    model = dc.models.MultitaskRegressor(2, 64, layer_sizes=[8], model_dir=str(tmp_path))
    model._ensure_built()
    model.save_checkpoint()
    (path,) = model.get_checkpoints()
    state = safe_load(path)  # weights_only=True with the plugins' allow-list
    assert set(state) >= {"model_state_dict", "optimizer_state_dict", "global_step"}
    own = model.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state["model_state_dict"].items())
