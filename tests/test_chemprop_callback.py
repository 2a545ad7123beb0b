"""MolPegCallback in Chemprop's real Lightning loop, on real molecules (BBBP, Tox21, ESOL)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("chemprop")
pytestmark = pytest.mark.chemprop

import lightning.pytorch as pl  # noqa: E402
from chemprop import data, featurizers, models, nn  # noqa: E402
from chemprop.utils import make_mol  # noqa: E402

from molpeg_chemprop.callback import MolPegCallback  # noqa: E402
from molpeg_chemprop.losses import per_sample_loss  # noqa: E402
from molpeg_plugins import num_kept  # noqa: E402
from molpeg_plugins.errors import ConfigError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def valid_rows(frame: pd.DataFrame, column: str = "smiles") -> pd.DataFrame:
    ok = []
    for smi in frame[column]:
        try:
            make_mol(smi)
            ok.append(True)
        except Exception:
            ok.append(False)
    return frame[ok].reset_index(drop=True)


def datasets(path: Path, targets: list[str], n: int, n_val: int = 40):
    frame = valid_rows(pd.read_csv(path)).head(n + n_val)
    featurizer = featurizers.SimpleMoleculeMolGraphFeaturizer()
    points = [
        data.MoleculeDatapoint.from_smi(smi, y)
        for smi, y in zip(frame.smiles, frame[targets].to_numpy(float), strict=True)
    ]
    return data.MoleculeDataset(points[:n], featurizer), data.MoleculeDataset(
        points[n:], featurizer
    )


def small_mpnn(n_tasks: int = 1, regression: bool = False, criterion=None, scaler=None):
    torch.manual_seed(0)
    mp = nn.BondMessagePassing(d_h=48, depth=2)
    if regression:
        predictor = nn.RegressionFFN(
            n_tasks=n_tasks,
            input_dim=48,
            hidden_dim=32,
            output_transform=nn.UnscaleTransform.from_standard_scaler(scaler),
        )
    else:
        predictor = nn.BinaryClassificationFFN(
            n_tasks=n_tasks, input_dim=48, hidden_dim=32, criterion=criterion
        )
    return models.MPNN(mp, nn.MeanAggregation(), predictor, warmup_epochs=1)


def trainer(callbacks, epochs: int = 3, **kw) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **kw,
    )


class RecordSpy(pl.Callback):
    """Independent check of every training batch (runs after MolPegCallback's hooks).

    Before the optimizer step it computes, with the online model, (a) the per-sample losses
    of the batch Lightning actually delivered and (b) those of a batch rebuilt from the
    dataset at the indices the pruner records; it captures what the pruner records.
    """

    def __init__(self, molpeg: MolPegCallback, dataset) -> None:
        self.molpeg, self.dataset = molpeg, dataset
        self.expected: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.epoch_indices: dict[int, list[torch.Tensor]] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        pruner = self.molpeg.pruner
        original = pruner.record

        def record(indices, online_loss, reference_loss=None):
            self.recorded.append((indices.clone(), online_loss.detach().clone()))
            self.epoch_indices.setdefault(trainer.current_epoch, []).append(indices.clone())
            return original(indices, online_loss, reference_loss)

        pruner.record = record

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        indices = self.molpeg.batch_indices(batch, batch_idx)
        actual = per_sample_loss(pl_module, batch)
        rebuilt_batch = data.collate_batch([self.dataset[int(i)] for i in indices])
        rebuilt = per_sample_loss(pl_module, rebuilt_batch)
        assert torch.equal(rebuilt_batch.Y, batch.Y), "targets of the rebuilt batch differ"
        self.expected.append((indices.clone(), actual, rebuilt))


def test_recorded_losses_belong_to_the_molecules_in_each_batch(data_dir: Path) -> None:
    train, val = datasets(data_dir / "bbbp_1k.csv", ["p_np"], 160)
    molpeg = MolPegCallback(prune_ratio=0.5, warmup_epochs=1)
    spy = RecordSpy(molpeg, train)
    fit = trainer([molpeg, spy])
    fit.fit(
        small_mpnn(),
        data.build_dataloader(train, batch_size=24, seed=3),
        data.build_dataloader(val, batch_size=64, shuffle=False),
    )
    assert len(spy.recorded) == len(spy.expected) == 7 + 4 + 4
    for (idx_rec, online), (idx_exp, actual, rebuilt) in zip(
        spy.recorded, spy.expected, strict=True
    ):
        assert torch.equal(idx_rec, idx_exp)
        torch.testing.assert_close(online, actual, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(online, rebuilt, rtol=1e-5, atol=1e-6)
    # every epoch visits its keep set exactly once, in a shuffled order
    for epoch, batches in spy.epoch_indices.items():
        seen = torch.cat(batches)
        assert seen.unique().numel() == seen.numel()
        assert seen.numel() == (160 if epoch == 0 else num_kept(160, 0.5))
        assert not torch.equal(seen, seen.sort().values)
    history = molpeg.pruner.history
    assert [int(h["num_kept"]) for h in history] == [160, 80, 80]
    assert all(math.isfinite(h["score_mean"]) and h["score_max"] > 0 for h in history)


def test_multitask_with_missing_labels_tox21(data_dir: Path) -> None:
    tasks = list(pd.read_csv(data_dir / "tox21_800.csv", nrows=0).columns[:12])
    train, val = datasets(data_dir / "tox21_800.csv", tasks, 160)
    assert np.isnan(train.Y).any(), "the Tox21 subset must have missing labels"
    molpeg = MolPegCallback(prune_ratio=0.5, warmup_epochs=1, strategy="molpeg")
    manual: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Manual(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            with torch.no_grad():
                logits = pl_module.predictor.train_step(pl_module.fingerprint(batch.bmg))
            y = batch.Y
            mask = y.isfinite()
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y.nan_to_num(0.0), reduction="none"
            )
            per_sample = (bce * mask).sum(1) / mask.sum(1)
            per_sample[mask.sum(1) == 0] = float("nan")
            manual.append((molpeg.batch_indices(batch, batch_idx).clone(), per_sample))

    fit = trainer([molpeg, Manual()])
    fit.fit(
        small_mpnn(n_tasks=12),
        data.build_dataloader(train, batch_size=32, seed=0),
        data.build_dataloader(val, batch_size=64, shuffle=False),
    )
    book = molpeg.pruner.book
    last_idx, last_loss = manual[-1]
    torch.testing.assert_close(
        book.online_loss[last_idx].float(), last_loss, rtol=1e-5, atol=1e-6, equal_nan=True
    )
    labelled = torch.as_tensor(np.isfinite(train.Y).any(1))
    scored = book.num_updates > 0
    assert torch.isfinite(book.score[scored & labelled]).all()
    assert [int(h["num_kept"]) for h in molpeg.pruner.history] == [160, 80, 80]


MUV_TASKS = [
    "MUV-466", "MUV-548", "MUV-600", "MUV-644", "MUV-652", "MUV-689", "MUV-692", "MUV-712",
]  # fmt: skip


def test_muv_molecules_without_labels_score_zero_and_are_pruned_first(data_dir: Path) -> None:
    """Real MUV rows trained on 8 of the 17 tasks: about a third of the molecules have no
    label in those tasks. Missing labels never reach a loss; an unlabelled molecule's loss is
    ``nan`` and its score 0, so MolPeg (default head reference) drops it first."""
    from molpeg_chemprop.losses import sample_loss

    train, val = datasets(data_dir / "muv_300.csv", MUV_TASKS, 240, n_val=60)
    labelled = torch.as_tensor(np.isfinite(train.Y).any(1))
    unlabelled = int((~labelled).sum())
    assert 40 < unlabelled < 240 - num_kept(240, 0.5), "the slice must leave room to drop all"
    assert np.isnan(train.Y[labelled.numpy()]).any(), "labelled rows must miss some labels too"
    molpeg = MolPegCallback(prune_ratio=0.5, warmup_epochs=1, strategy="molpeg")
    expected: dict[tuple[int, int], torch.Tensor] = {}
    recorded: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

    class Check(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            original = molpeg.pruner.record

            def record(indices, online_loss, reference_loss=None):
                reference = None if reference_loss is None else reference_loss.clone()
                recorded.append(
                    (trainer.current_epoch, indices.clone(), online_loss.clone(), reference)
                )
                return original(indices, online_loss, reference_loss)

            molpeg.pruner.record = record

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            with torch.no_grad():
                logits = pl_module.predictor.train_step(pl_module.fingerprint(batch.bmg))
            mask = batch.Y.isfinite()
            weights = torch.ones(len(mask), 1)
            criterion = nn.BCELoss()  # the model's own one is tapped by MolPegCallback
            # whatever value a missing label is filled with, no loss changes
            filled = [batch.Y.nan_to_num(nan=value) for value in (0.0, 1.0, 1e6)]
            per_molecule = [sample_loss(criterion, logits, y, mask, weights, None, None)
                            for y in filled]  # fmt: skip
            batch_loss = [criterion(logits, y, mask, weights) for y in filled]
            for other in per_molecule[1:]:
                torch.testing.assert_close(other, per_molecule[0], equal_nan=True)
            for other in batch_loss[1:]:
                torch.testing.assert_close(other, batch_loss[0])
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, filled[0], reduction="none"
            )
            manual = (bce * mask).sum(1) / mask.sum(1)  # nan where a molecule has no label
            torch.testing.assert_close(per_molecule[0], manual, equal_nan=True)
            for i, loss in zip(
                molpeg.batch_indices(batch, batch_idx).tolist(), manual, strict=True
            ):
                expected[(trainer.current_epoch, i)] = loss

    fit = trainer([molpeg, Check()])
    fit.fit(
        small_mpnn(n_tasks=len(MUV_TASKS)),
        data.build_dataloader(train, batch_size=32, seed=0),
        data.build_dataloader(val, batch_size=64, shuffle=False),
    )
    assert [int(h["num_kept"]) for h in molpeg.pruner.history] == [240, 120, 120]
    for epoch, indices, online, reference in recorded:
        gone = ~labelled[indices]
        assert torch.isnan(online[gone]).all() and torch.isfinite(online[~gone]).all()
        want = torch.stack([expected[(epoch, int(i))] for i in indices])
        torch.testing.assert_close(online, want, rtol=1e-5, atol=1e-6, equal_nan=True)
        if reference is not None:  # the head reference ignores missing labels the same way
            assert torch.isnan(reference[gone]).all()
            assert torch.isfinite(reference[~gone]).all()
    book = molpeg.pruner.book
    assert bool((book.num_updates[~labelled] > 0).all())
    assert bool((book.score[~labelled] == 0).all()), "an unlabelled molecule scores 0"
    assert bool(torch.isnan(book.online_loss[~labelled]).all())
    assert bool(torch.isfinite(book.score[labelled & (book.num_updates > 0)]).all())
    # the pruned epochs keep only labelled molecules: the unlabelled ones go first
    for epoch in (1, 2):
        kept = torch.cat([idx for e, idx, _, _ in recorded if e == epoch])
        assert kept.numel() == 120 and bool(labelled[kept].all())
    assert bool(labelled[molpeg.pruner.final_selection()].all())


def test_regression_esol_and_noam_schedule_resized(data_dir: Path) -> None:
    target = "measured log solubility in mols per litre"
    train, val = datasets(data_dir / "esol_600.csv", [target], 160)
    scaler = train.normalize_targets()
    val.normalize_targets(scaler)
    molpeg = MolPegCallback(prune_ratio=0.6, warmup_epochs=1)
    model = small_mpnn(regression=True, scaler=scaler)
    fit = trainer([molpeg], epochs=4)
    fit.fit(
        model,
        data.build_dataloader(train, batch_size=32, seed=0),
        data.build_dataloader(val, batch_size=64, shuffle=False),
    )
    kept = [int(h["num_kept"]) for h in molpeg.pruner.history]
    assert kept == [160, 64, 64, 64]
    steps = molpeg.planned_steps(fit)
    assert steps == [5, 2, 2, 2] and fit.global_step == sum(steps)
    # the decay ends exactly at the last real step: the LR has reached final_lr
    lr = fit.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(model.final_lr, rel=1e-9)
    assert all(math.isfinite(h["score_mean"]) for h in molpeg.pruner.history)
    assert model.criterion.__dict__.get("update") is not None  # torchmetrics' own wrapper


def test_mcc_loss_is_refused(data_dir: Path) -> None:
    train, _ = datasets(data_dir / "bbbp_1k.csv", ["p_np"], 40, n_val=20)
    model = small_mpnn(criterion=nn.BinaryMCCLoss())
    fit = trainer([MolPegCallback(prune_ratio=0.5)], epochs=1)
    with pytest.raises(ConfigError, match="BinaryMCCLoss is not a per-sample loss"):
        fit.fit(model, data.build_dataloader(train, batch_size=16, seed=0))


DDP_SCRIPT = """
import sys, torch, pandas as pd, lightning.pytorch as pl
from chemprop import data, featurizers, models, nn
from molpeg_chemprop.callback import MolPegCallback

out = sys.argv[1]
frame = pd.read_csv(sys.argv[2]).head(200)
frame = frame[[s == s and len(s) > 0 for s in frame.smiles]]
from chemprop.utils import make_mol
good = []
for s in frame.smiles:
    try:
        make_mol(s); good.append(True)
    except Exception:
        good.append(False)
frame = frame[good].head(120)
feat = featurizers.SimpleMoleculeMolGraphFeaturizer()
points = [data.MoleculeDatapoint.from_smi(s, [y]) for s, y in zip(frame.smiles, frame.p_np)]
train = data.MoleculeDataset(points, feat)
torch.manual_seed(0)
model = models.MPNN(nn.BondMessagePassing(d_h=32, depth=2), nn.MeanAggregation(),
                    nn.BinaryClassificationFFN(input_dim=32, hidden_dim=16), warmup_epochs=1)
molpeg = MolPegCallback(prune_ratio=0.5, warmup_epochs=1)
orders, served = [], []

class Orders(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        orders.append((molpeg.pruner.current.indices.cpu().clone(), molpeg.loader.order.clone()))
        served.append(trainer.train_dataloader.sampler is molpeg.pruner.sampler)

# use_distributed_sampler is left at Lightning's default (True): the callback must stop it
trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=2, strategy="ddp",
                     logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=[molpeg, Orders()])
trainer.fit(model, data.build_dataloader(train, batch_size=16, seed=0))
torch.save({"orders": orders, "served": served, "score": molpeg.pruner.book.score.cpu(),
            "history": molpeg.pruner.history, "world": trainer.world_size},
           f"{out}/rank{trainer.global_rank}.pt")
"""


@pytest.mark.slow
def test_ddp_two_cpu_ranks_keep_identical_sets(tmp_path: Path, data_dir: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(data_dir / "bbbp_1k.csv")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["world"] == r1["world"] == 2
    assert len(r0["orders"]) == 3
    # Lightning did not wrap the pruning sampler in a DistributedSampler on either rank
    assert r0["served"] == r1["served"] == [True, True, True]
    for (full0, local0), (full1, local1) in zip(r0["orders"], r1["orders"], strict=True):
        assert torch.equal(full0, full1), "ranks disagree on the keep set"
        assert torch.equal(local0, full0[0::2]) and torch.equal(local1, full0[1::2])
    assert [int(h["num_kept"]) for h in r0["history"]] == [120, 60, 60]
    torch.testing.assert_close(r0["score"], r1["score"], equal_nan=True)


RESUME_SCRIPT = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from chemprop_job import make_job
from molpeg_chemprop.backend import ChempropBackend
from molpeg_plugins import hookimpl

class KillMidEpoch:
    @hookimpl
    def molpeg_epoch_start(self, pruner, epoch, num_kept):
        if epoch != 2:
            return
        record, calls = pruner.record, []
        def dying_record(*args, **kwargs):
            record(*args, **kwargs)
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        pruner.record = dying_record

job = make_job(sys.argv[1], sys.argv[3])
job.plugin_manager.register(KillMidEpoch())
ChempropBackend(hidden_dim=32, depth=2, ffn_hidden_dim=32).fit(job)
"""

JOB_MODULE = """
from pathlib import Path
import numpy as np, pandas as pd
from chemprop.utils import make_mol
from molpeg_plugins import PruneConfig
from molpeg_plugins.pipeline.backend import FitJob
from molpeg_plugins.plugins import make_plugin_manager

def make_job(work, csv, resume=False):
    frame = pd.read_csv(csv).head(220)
    good = []
    for s in frame.smiles:
        try:
            make_mol(s); good.append(True)
        except Exception:
            good.append(False)
    frame = frame[good].head(200)
    perm = np.random.default_rng(0).permutation(len(frame))
    return FitJob(
        smiles=list(frame.smiles), targets=frame[["p_np"]].to_numpy(float),
        target_names=["p_np"], task="classification", train_idx=perm[:160],
        val_idx=perm[160:180], test_idx=perm[180:], config=PruneConfig(prune_ratio=0.5),
        work_dir=Path(work), epochs=4, batch_size=32, resume=resume, seed=0,
        plugin_manager=make_plugin_manager())
"""


@pytest.mark.slow
def test_backend_resume_after_sigkill_matches_uninterrupted_run(
    tmp_path: Path, data_dir: Path
) -> None:
    from molpeg_chemprop.backend import ChempropBackend

    (tmp_path / "chemprop_job.py").write_text(textwrap.dedent(JOB_MODULE))
    (tmp_path / "kill.py").write_text(textwrap.dedent(RESUME_SCRIPT))
    bbbp = str(data_dir / "bbbp_1k.csv")
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "kill.py"), str(killed), str(tmp_path), bbbp],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    assert not list((killed / "checkpoints").glob("*.tmp"))

    sys.path.insert(0, str(tmp_path))
    try:
        from chemprop_job import make_job
    finally:
        sys.path.remove(str(tmp_path))
    backend = ChempropBackend(hidden_dim=32, depth=2, ffn_hidden_dim=32)
    resumed = backend.fit(make_job(killed, bbbp, resume=True))
    straight = backend.fit(make_job(tmp_path / "straight", bbbp))

    assert [h["num_kept"] for h in resumed.history] == [160, 80, 80, 80]
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    np.testing.assert_array_equal(resumed.final_kept, straight.final_kept)
    for key in ("score", "online_loss", "reference_loss", "num_updates"):
        torch.testing.assert_close(
            resumed.pruner_state["book"][key], straight.pruner_state["book"][key], equal_nan=True
        )
    torch.testing.assert_close(
        resumed.pruner_state["current"]["indices"], straight.pruner_state["current"]["indices"]
    )
    assert resumed.test_metrics == pytest.approx(straight.test_metrics)
    assert resumed.best_epoch == straight.best_epoch


@pytest.mark.gpu
def test_cuda_scores_stay_on_the_gpu(data_dir: Path) -> None:
    train, _ = datasets(data_dir / "bbbp_1k.csv", ["p_np"], 96, n_val=32)
    molpeg = MolPegCallback(prune_ratio=0.5, warmup_epochs=1)
    fit = pl.Trainer(
        max_epochs=2,
        accelerator="gpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[molpeg],
    )
    fit.fit(small_mpnn(), data.build_dataloader(train, batch_size=32, seed=0))
    assert molpeg.pruner.book.score.device.type == "cuda"
    assert [int(h["num_kept"]) for h in molpeg.pruner.history] == [96, 48]
