"""The cheaper MolPeg references: ``reference="head"`` and ``reference_every=k``.

Engine contracts on the score table and the pruner, then each option through the real torch
backend (with an exact resume), DeepChem's own ``fit`` and Chemprop's Lightning loop.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from molpeg_plugins import ConfigError, PruneConfig, Pruner, ScoreBook, hookimpl
from molpeg_plugins.pipeline.backend import FitJob
from molpeg_plugins.pipeline.torch_backend import FingerprintMLP, TorchBackend
from molpeg_plugins.plugins import make_plugin_manager


def molpeg_score(online: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
    assert reference is not None
    return (online - reference).abs()


# --------------------------------------------------------------------------- engine


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="reference='encoder'"):
        PruneConfig(reference="encoder")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError, match="reference_every"):
            PruneConfig(reference_every=bad)
    assert PruneConfig().reference == "auto" and PruneConfig().reference_every == 1


def test_auto_reference_is_the_head_for_classification_and_the_model_otherwise() -> None:
    from molpeg_plugins import Pruner
    from molpeg_plugins.engine.config import resolve_reference

    assert resolve_reference("auto", "classification") == "head"
    assert resolve_reference("auto", "regression") == "model"
    assert resolve_reference("auto", None) == "model"  # unknown task: the paper's rule
    assert resolve_reference("head", "regression") == "head"
    assert resolve_reference("model", "classification") == "model"
    assert Pruner(10, task="regression").reference == "model"
    assert Pruner(10, task="classification").reference == "head"
    assert Pruner(10, reference="head", task="regression").reference == "head"


def test_batches_without_reference_use_the_last_reference_loss() -> None:
    book = ScoreBook(4)
    idx = torch.arange(4)
    book.record(idx, torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.5, 2.5, 3.0, 1.0]))
    book.commit(0, molpeg_score)
    assert book.score.tolist() == [0.5, 0.5, 0.0, 3.0]

    # epoch 1: samples 0 and 1 without a fresh reference loss, 2 with one, 3 not visited
    book.record(torch.tensor([0, 1]), torch.tensor([0.25, 2.0]))
    book.record(torch.tensor([2]), torch.tensor([1.0]), torch.tensor([2.0]))
    book.commit(1, molpeg_score)
    assert book.score.tolist() == [0.25, 0.5, 1.0, 3.0]  # |0.25−0.5|, |2−2.5|, |1−2|, kept
    assert book.reference_loss.tolist() == [0.5, 2.5, 2.0, 1.0]  # stale ones stay


def test_a_sample_never_refreshed_stays_unscored() -> None:
    book = ScoreBook(3)
    book.record(torch.tensor([0]), torch.tensor([1.0]), torch.tensor([0.0]))
    book.record(torch.tensor([1, 2]), torch.tensor([1.0, 1.0]))  # no reference yet
    book.commit(0, molpeg_score)
    assert book.score[0] == 1.0
    assert math.isnan(book.score[1]) and math.isnan(book.score[2])


def test_reference_due_every_batch_on_full_epochs_and_every_kth_when_pruned() -> None:
    pruner = Pruner(100, prune_ratio=0.5, reference_every=3, total_epochs=3, warmup_epochs=1)
    assert not pruner.current.pruned
    assert all(pruner.reference_due(b) for b in range(10))  # warm-up: every batch
    pruner.record(torch.arange(100), torch.rand(100), torch.rand(100))
    pruner.end_epoch()
    assert pruner.current.pruned
    assert [b for b in range(10) if pruner.reference_due(b)] == [0, 3, 6, 9]
    # a batch recorded without reference losses is scored against the last ones
    pruner.record(torch.arange(10), torch.rand(10))
    faithful = Pruner(10, prune_ratio=0.5)
    assert all(faithful.reference_due(b) for b in range(5))


def test_a_second_epoch_without_any_reference_loss_is_an_error() -> None:
    pruner = Pruner(10, prune_ratio=0.5, total_epochs=3)
    pruner.record(torch.arange(10), torch.rand(10))  # a one-batch first epoch: no reference yet
    pruner.end_epoch()
    assert torch.isnan(pruner.book.score).all()  # unscored, not 0
    kept = pruner.current.indices  # a pruned epoch trains on its selection only
    pruner.record(kept, torch.rand(len(kept)))
    with pytest.raises(ValueError, match="needs reference losses"):
        pruner.end_epoch()


def test_no_score_before_the_reference_has_moved() -> None:
    # Before the first optimizer step the reference is the online model: no reference loss,
    # so the first batch's molecules stay unscored and the first pruned epoch keeps them.
    from molpeg_plugins import EMAReference

    model = torch.nn.Linear(3, 1)
    reference = EMAReference(model, momentum=0.5)
    pruner = Pruner(8, prune_ratio=0.5, total_epochs=2, shuffle=False)
    assert not pruner.reference_due(0, reference)
    pruner.record(torch.arange(4), torch.rand(4))  # batch 0: no reference loss
    reference.update(model)
    assert pruner.reference_due(1, reference)
    pruner.record(torch.arange(4, 8), torch.ones(4), torch.zeros(4))
    selection = pruner.end_epoch()
    assert torch.isnan(pruner.book.score[:4]).all()
    assert sorted(selection.indices.tolist()) == [0, 1, 2, 3]  # unscored ones first


# --------------------------------------------------------------------------- torch backend


class ReferenceSpy:
    """Observer plugin: each epoch's visiting order and the score table after it."""

    def __init__(self) -> None:
        self.scores: list[torch.Tensor] = []
        self.reference_losses: list[torch.Tensor] = []
        self.orders: list[torch.Tensor] = []

    @hookimpl
    def molpeg_epoch_start(self, pruner, epoch, num_kept) -> None:  # type: ignore[no-untyped-def]
        self.orders.append(torch.as_tensor(list(pruner.sampler)))

    @hookimpl
    def molpeg_epoch_end(self, pruner, epoch, stats) -> None:  # type: ignore[no-untyped-def]
        self.scores.append(pruner.book.score.clone())
        self.reference_losses.append(pruner.book.reference_loss.clone())


class StopBefore:
    """Observer plugin: interrupt the run when epoch ``epoch`` starts."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    @hookimpl
    def molpeg_epoch_start(self, pruner, epoch, num_kept) -> None:  # type: ignore[no-untyped-def]
        if epoch == self.epoch:
            raise KeyboardInterrupt


def torch_job(data_dir: Path, work: Path, config: PruneConfig, pm, **kw) -> FitJob:  # type: ignore[no-untyped-def]
    from molpeg_plugins.pipeline.data import parse_smiles

    frame = pd.read_csv(data_dir / "bbbp_1k.csv").head(300)
    frame = frame[[parse_smiles(s)[0] is not None for s in frame.smiles]].reset_index(drop=True)
    n = len(frame)
    order = np.random.default_rng(0).permutation(n)
    return FitJob(
        smiles=frame.smiles.tolist(),
        targets=frame[["p_np"]].to_numpy(float),
        target_names=["p_np"],
        task="classification",
        train_idx=np.sort(order[: int(0.8 * n)]),
        val_idx=np.sort(order[int(0.8 * n) : int(0.9 * n)]),
        test_idx=np.sort(order[int(0.9 * n) :]),
        config=config,
        work_dir=work,
        epochs=4,
        batch_size=32,
        plugin_manager=pm,
        **kw,
    )


def test_head_reference_shares_the_embedding(data_dir: Path, tmp_path: Path, one_torch_thread):
    # β = 0: the reference head is the online head of the previous step, run on the very
    # embedding the online forward computed (dropout included), so every score is 0. A
    # separate reference forward (eval mode, no dropout) would give non-zero scores.
    pm = make_plugin_manager()
    spy = ReferenceSpy()
    pm.register(spy)
    config = PruneConfig(prune_ratio=0.5, reference="head", ema_momentum=0.0)
    TorchBackend().fit(torch_job(data_dir, tmp_path / "head", config, pm))
    assert all(torch.all(s[torch.isfinite(s)] == 0) for s in spy.scores)
    assert torch.isfinite(spy.scores[-1]).sum() > 0

    pm = make_plugin_manager()
    spy = ReferenceSpy()
    pm.register(spy)
    config = PruneConfig(prune_ratio=0.5, reference="model", ema_momentum=0.0)
    TorchBackend().fit(torch_job(data_dir, tmp_path / "model", config, pm))
    assert all(s.nan_to_num().abs().sum() > 0 for s in spy.scores)


def test_head_reference_averages_the_head_only() -> None:
    from molpeg_plugins import EMAReference

    model = FingerprintMLP(16, 1)
    reference = EMAReference(model.head, momentum=0.5)
    before = {k: v.clone() for k, v in reference.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    reference.update(model.head)
    assert set(reference.module.state_dict()) == {"weight", "bias"}  # no encoder copy
    for name, value in reference.module.state_dict().items():
        online = model.head.state_dict()[name]
        assert torch.allclose(value, 0.5 * before[name] + 0.5 * online)


def test_stale_reference_losses_between_refreshes(data_dir: Path, tmp_path: Path, one_torch_thread):
    # refresh every 1000th batch: in pruned epochs only batch 0 runs the reference, so a
    # molecule's reference loss changes after the warm-up only if it was in one of those
    pm = make_plugin_manager()
    spy = ReferenceSpy()
    pm.register(spy)
    config = PruneConfig(prune_ratio=0.5, reference_every=1000)
    job = torch_job(data_dir, tmp_path / "stale", config, pm)
    TorchBackend().fit(job)
    warmup, later = spy.reference_losses[0], spy.reference_losses[-1]
    # the warm-up scored all but its first batch (run before the reference had moved)
    assert torch.isnan(warmup[spy.orders[0][: job.batch_size]]).all()
    assert torch.isfinite(warmup).sum() == len(warmup) - job.batch_size
    refreshed = torch.zeros_like(warmup, dtype=torch.bool)
    for order in spy.orders[1:]:
        refreshed[order[: job.batch_size]] = True
    same = lambda a, b: torch.equal(a.nan_to_num(-1.0), b.nan_to_num(-1.0))  # noqa: E731
    assert same(later[~refreshed], warmup[~refreshed])  # stale between refreshes
    assert not same(later[refreshed], warmup[refreshed])  # refreshed at batch 0
    assert (~refreshed).float().mean() > 0.5


@pytest.mark.parametrize(
    ("reference", "every"), [("model", 1), ("head", 1), ("model", 3), ("head", 3)]
)
def test_resume_is_exact_with_each_option(
    data_dir: Path, tmp_path: Path, reference: str, every: int, one_torch_thread
) -> None:
    config = PruneConfig(prune_ratio=0.5, reference=reference, reference_every=every, seed=3)
    whole = TorchBackend().fit(
        torch_job(data_dir, tmp_path / "whole", config, make_plugin_manager())
    )

    pm = make_plugin_manager()
    pm.register(StopBefore(2))
    work = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        TorchBackend().fit(torch_job(data_dir, work, config, pm))
    assert (work / "resume.pt").is_file()
    resumed = TorchBackend().fit(
        torch_job(data_dir, work, config, make_plugin_manager(), resume=True)
    )

    assert np.array_equal(whole.final_kept, resumed.final_kept)
    assert whole.history == resumed.history
    assert whole.test_metrics == resumed.test_metrics
    for name in ("score", "reference_loss"):  # nan = not scored (yet)
        a, b = whole.pruner_state["book"][name], resumed.pruner_state["book"][name]
        assert torch.equal(a.nan_to_num(-1.0), b.nan_to_num(-1.0))


# --------------------------------------------------------------------------- DeepChem


@pytest.mark.deepchem
def test_deepchem_head_reference(data_dir: Path) -> None:
    dc = pytest.importorskip("deepchem")
    from molpeg_deepchem import MolPegDeepChem
    from molpeg_deepchem.featurize import ecfp, labelled_dataset

    frame = pd.read_csv(data_dir / "tox21_800.csv").head(256)
    targets = frame.iloc[:, :12].to_numpy(dtype=float)
    dataset = labelled_dataset(
        ecfp(frame.smiles.tolist(), size=512), targets, frame.smiles.to_numpy()
    )
    torch.manual_seed(0)
    model = dc.models.MultitaskClassifier(12, 512, layer_sizes=[64], dropouts=0.3, batch_size=64)
    pruning = MolPegDeepChem(
        model, dataset, prune_ratio=0.5, epochs=3, reference="head", ema_momentum=0.0
    )
    assert pruning.reference is not None
    assert isinstance(pruning.reference.module, torch.nn.Linear)  # the output layer only
    model.fit(pruning.dataset, nb_epoch=3, loss=pruning.loss, callbacks=[pruning.callback])
    # β = 0 and the online embedding (dropout on): reference and online losses coincide
    assert torch.all(pruning.pruner.book.score[torch.isfinite(pruning.pruner.book.score)] == 0)
    assert pruning.pruner.epoch == 3


@pytest.mark.deepchem
def test_deepchem_model_without_a_known_head_uses_the_model_reference(data_dir: Path) -> None:
    dc = pytest.importorskip("deepchem")
    from molpeg_deepchem import MolPegDeepChem

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.linear(x)

    model = dc.models.TorchModel(Plain(), loss=dc.models.losses.L2Loss())
    dataset = dc.data.NumpyDataset(np.zeros((8, 4), np.float32), np.zeros((8, 1), np.float32))
    with pytest.warns(UserWarning, match="uses the full-model reference"):
        pruning = MolPegDeepChem(model, dataset, reference="head")
    assert not pruning.head_only and isinstance(pruning.reference.module, Plain)


# --------------------------------------------------------------------------- Chemprop


class ReferenceForwards:
    """Counts the model-reference forwards, passing each on to the real loss function."""

    def __init__(self, loss) -> None:  # type: ignore[no-untyped-def]
        self.loss = loss
        self.calls = 0

    def __call__(self, model, batch):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.loss(model, batch)


@pytest.mark.chemprop
@pytest.mark.parametrize("reference", ["head", "every2"])
def test_chemprop_callback_options(
    data_dir: Path, reference: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("chemprop")
    import lightning.pytorch as pl
    from chemprop import data, featurizers, models, nn
    from chemprop.utils import make_mol

    from molpeg_chemprop import reference as chemprop_reference
    from molpeg_chemprop.callback import MolPegCallback

    frame = pd.read_csv(data_dir / "bbbp_1k.csv").head(260)
    points = []
    for smi, y in zip(frame.smiles, frame.p_np, strict=True):
        try:
            make_mol(smi)
        except Exception:
            continue
        points.append(data.MoleculeDatapoint.from_smi(smi, [float(y)]))
    dataset = data.MoleculeDataset(points[:200], featurizers.SimpleMoleculeMolGraphFeaturizer())
    torch.manual_seed(0)
    model = models.MPNN(
        nn.BondMessagePassing(d_h=48, depth=2),
        nn.MeanAggregation(),
        nn.BinaryClassificationFFN(input_dim=48, hidden_dim=32),
        warmup_epochs=1,
    )
    pm = make_plugin_manager()
    counter = ReferenceForwards(chemprop_reference.per_sample_loss)
    monkeypatch.setattr(chemprop_reference, "per_sample_loss", counter)
    options = (
        {"reference": "head"}
        if reference == "head"
        else {"reference": "model", "reference_every": 2}
    )
    molpeg = MolPegCallback(prune_ratio=0.5, plugin_manager=pm, **options)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[molpeg],
    )
    trainer.fit(model, data.build_dataloader(dataset, batch_size=32, seed=0))
    book = molpeg.pruner.book
    if reference == "head":  # the first batch (unscored) is kept first in epoch 1
        assert torch.isfinite(book.score).all() and torch.isfinite(book.reference_loss).all()
    else:  # with refreshes every other batch, some of the first batch are still unscored
        assert int(torch.isfinite(book.score).sum()) >= 200 - 32
    batches = [math.ceil(200 / 32), math.ceil(100 / 32), math.ceil(100 / 32)]
    if reference == "head":
        assert counter.calls == 0  # no model-reference forward at all
        assert type(molpeg.reference.module) is type(model.predictor)
        assert molpeg.reference.num_updates == sum(batches)
    else:
        # every warm-up batch but the first (run before the reference moved), then every
        # other batch of the two pruned epochs
        assert counter.calls == batches[0] - 1 + 2 * math.ceil(batches[1] / 2)
