"""The ``chemprop`` backend of ``molpeg prune``: a Chemprop MPNN trained with MolPeg.

With ``job.pretrained`` the model is the message-passing encoder and aggregation of that
Chemprop model file with a new FFN head for the job's tasks (what ``chemprop train
--from-foundation`` does); ``molpeg prune`` passes :data:`BUNDLED_ENCODER` (ADMET-AI's
regression model) unless told otherwise. Without one (``--from-scratch``) it is Chemprop's
default D-MPNN (bond message passing, mean aggregation). Training is a Lightning ``Trainer`` with
:class:`~molpeg_chemprop.callback.MolPegCallback`; the reported model is the epoch with the
best validation ROC-AUC (classification) or RMSE (regression).

Lightning runs the epoch loop, so this backend uses the training driver's parts
(:mod:`molpeg_plugins.pipeline.training`) without its loop: the resume fingerprint, the
:class:`~molpeg_plugins.pipeline.training.EpochRecord` history and the ``FitResult``; Lightning's
``ModelCheckpoint`` picks the best epoch. Resume: Lightning writes ``checkpoints/last.ckpt``
(atomically) after every epoch; it holds the model, optimizer, LR schedule, loop counters, the
pruner, the EMA reference, the RNG states and the history. ``job.resume`` continues from it
and reproduces the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from molpeg_plugins.pipeline.atomic import write_bytes
from molpeg_plugins.pipeline.backend import Backend, FitJob, FitResult, evaluate
from molpeg_plugins.pipeline.training import ensure_same_run, fit_result, run_fingerprint

BUNDLED_ENCODER = Path(__file__).parent / "data" / "admet_ai_regression_model_0.pt"
"""ADMET-AI's Chemprop model of 10 ADMET regression tasks (MIT; see ``data/SOURCES.md``)."""
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
MODEL_FILE = "model.pt"


def lightning_noise() -> list[tuple[str, type[Warning], str]]:
    """``(message regex, category, module regex)`` of the warnings a quiet run hides.

    Lightning's tips, its own deprecation shims and its note on a reused checkpoint folder
    (molpeg manages the output folder), and torch's notes about ``deterministic="warn"``.
    Every other warning (from Chemprop, torch, a plugin, the user's code) still reaches the
    user.
    """
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    return [
        ("", PossibleUserWarning, r"lightning\."),  # tips: dataloader workers, log interval, …
        (r".*treespec", FutureWarning, r"lightning\."),  # Lightning's pytree shim on new torch
        (r".*does not have a deterministic implementation", UserWarning, ""),
        (r"Checkpoint directory .* exists and is not empty", UserWarning, r"lightning\."),
    ]


@contextlib.contextmanager
def _lightning_quiet(quiet: bool) -> Iterator[None]:
    """Silence Lightning's informational messages (device summary, tips) when ``quiet``.

    Only the warnings of :func:`lightning_noise` are hidden; nothing else is filtered.
    """
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message, category, module in lightning_noise():
                warnings.filterwarnings("ignore", message, category, module)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _interrupts_raised(trainer: Any) -> Iterator[None]:
    """Turn Lightning's handling of Ctrl-C back into a :class:`KeyboardInterrupt`.

    On ``KeyboardInterrupt`` Lightning's trainer shuts down, ignores further SIGINTs and
    calls ``sys.exit(1)``; the CLI wants the interrupt itself (exit code 130, ``--resume``
    hint, as on the other backends) and Ctrl-C working again afterwards.
    """
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit:
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt from None
    finally:
        if handler is not None:
            with contextlib.suppress(ValueError):  # only the main thread may set handlers
                signal.signal(signal.SIGINT, handler)


class ChempropBackend(Backend):
    """Fine-tune a Chemprop v2 MPNN with pruning inside Chemprop's Lightning loop."""

    name = "chemprop"
    description = (
        "Chemprop v2 D-MPNN (Lightning) with MolPegCallback, fine-tuned from the bundled "
        "ADMET-AI encoder (or --pretrained FILE, or --from-scratch)."
    )
    requires = ("chemprop", "lightning")
    default_pretrained = (BUNDLED_ENCODER, "the bundled ADMET-AI encoder")

    def __init__(self, hidden_dim: int = 300, depth: int = 3, ffn_hidden_dim: int = 300) -> None:
        """Model size of a new (not ``--pretrained``) MPNN; Chemprop's defaults."""
        self.hidden_dim, self.depth, self.ffn_hidden_dim = hidden_dim, depth, ffn_hidden_dim

    def fit(self, job: FitJob) -> FitResult:
        """Train with pruning, pick the best validation epoch, evaluate, save; see module doc."""
        import chemprop
        import lightning
        import torch
        from lightning import pytorch as pl
        from lightning.pytorch.callbacks import ModelCheckpoint
        from torch.serialization import safe_globals

        from molpeg_chemprop.callback import MolPegCallback
        from molpeg_chemprop.lightning_parts import (
            AtomicCheckpointIO,
            BatchProgress,
            HistoryCallback,
        )
        from molpeg_plugins.pipeline.checkpoints import load_resume_state, vet_checkpoint

        pm = job.plugin_manager
        work = Path(job.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        classification = job.task == "classification"
        monitor = "val/roc" if classification else "val/rmse"

        pl.seed_everything(job.seed, workers=True, verbose=False)
        train, val, test, scaler = self._datasets(job)
        model = self._model(job, train, scaler)
        loaders = self._loaders(job, train, val, test)

        fingerprint = run_fingerprint(job, self.name)
        pruning = MolPegCallback(job.config, plugin_manager=pm)
        reporter = HistoryCallback(pruning, pm, fingerprint)
        ckpt_dir = work / CHECKPOINT_DIR
        # last.ckpt after every epoch (the resume state), the best one beside it
        latest = ModelCheckpoint(
            ckpt_dir,
            "last",
            save_top_k=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
        checkpointing = latest
        if len(job.val_idx):
            checkpointing = ModelCheckpoint(
                ckpt_dir,
                "best",  # no epoch in the name: Lightning's {epoch} counts from 0, molpeg's from 1
                monitor=monitor,
                mode="max" if classification else "min",
                save_top_k=1,
            )
        with _lightning_quiet(job.quiet):
            trainer = pl.Trainer(
                max_epochs=job.epochs,
                accelerator="gpu" if job.device.startswith("cuda") else "cpu",
                devices=1,
                logger=False,
                callbacks=[
                    pruning,
                    reporter,
                    *dict.fromkeys([checkpointing, latest]),
                    BatchProgress(job.progress),
                ],
                plugins=[AtomicCheckpointIO()],
                enable_progress_bar=not job.quiet,
                enable_model_summary=not job.quiet,
                num_sanity_val_steps=0,
                deterministic="warn",
                reload_dataloaders_every_n_epochs=1,
                use_distributed_sampler=False,
            )
        last = ckpt_dir / LAST_CHECKPOINT
        ckpt_path = None
        if job.resume and last.is_file():
            saved = load_resume_state(last, plugin_manager=pm)
            state = saved.get("callbacks", {}).get(HistoryCallback.KEY, {})
            ensure_same_run(last, state.get("fingerprint"), fingerprint)
            ckpt_path = last
        train_loader, val_loader, test_loader = loaders
        with _lightning_quiet(job.quiet), _interrupts_raised(trainer):
            if ckpt_path is not None:
                with safe_globals(vet_checkpoint(ckpt_path, plugin_manager=pm)):
                    trainer.fit(
                        model, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True
                    )
            else:
                trainer.fit(model, train_loader, val_loader)

        best_path = checkpointing.best_model_path or checkpointing.last_model_path
        if best_path:
            with safe_globals(vet_checkpoint(best_path, plugin_manager=pm)):
                best = torch.load(best_path, map_location="cpu", weights_only=True)
            model.load_state_dict(best["state_dict"])
            best_epoch = int(best["epoch"])
        else:
            best_epoch = job.epochs - 1
        with _lightning_quiet(job.quiet):
            val_metrics = self._evaluate(trainer, model, val_loader, job, job.val_idx)
            test_metrics = self._evaluate(trainer, model, test_loader, job, job.test_idx)

        model_path = job.model_folder / MODEL_FILE
        buffer = io.BytesIO()  # in memory: the file's bytes do not depend on a temporary name
        chemprop.models.save_model(buffer, model, list(job.target_names))
        write_bytes(model_path, buffer.getvalue())
        pruner = pruning.pruner
        assert pruner is not None
        if not job.keep_resume_state:
            last.unlink(missing_ok=True)
        return fit_result(
            job,
            pruner,
            reporter.records,
            best_epoch=best_epoch,
            val_metrics=val_metrics,
            test_metrics=test_metrics,
            model_path=model_path,
            versions={
                "chemprop": chemprop.__version__,
                "lightning": lightning.__version__,
                "torch": torch.__version__,
            },
        )

    # ------------------------------------------------------------------ pieces

    @staticmethod
    def _datasets(job: FitJob) -> tuple[Any, Any, Any, Any]:
        from chemprop import data, featurizers

        featurizer = featurizers.SimpleMoleculeMolGraphFeaturizer()
        points = []
        with job.progress("Parsing molecules", total=len(job.smiles)) as advance:
            for smi, y in zip(job.smiles, job.targets, strict=True):
                points.append(data.MoleculeDatapoint.from_smi(smi, np.asarray(y, dtype=float)))
                advance(1)

        def subset(idx: np.ndarray) -> Any:
            return data.MoleculeDataset([points[i] for i in idx], featurizer)

        train, val, test = subset(job.train_idx), subset(job.val_idx), subset(job.test_idx)
        scaler = None
        if job.task == "regression":
            scaler = train.normalize_targets()
            if len(val):
                val.normalize_targets(scaler)
        with job.progress("Featurising molecular graphs", total=len(train) + len(val)) as advance:
            train.cache = True  # Chemprop featurises the whole set when caching is switched on
            advance(len(train))
            val.cache = True
            advance(len(val))
        return train, val, test, scaler

    def _model(self, job: FitJob, train: Any, scaler: Any) -> Any:
        from chemprop import models, nn
        from chemprop.nn.transforms import UnscaleTransform

        from molpeg_chemprop.models import load_model

        n_tasks = int(np.asarray(job.targets).shape[1])
        if job.pretrained is not None:
            foundation = load_model(
                job.pretrained, plugin_manager=job.plugin_manager, trust=job.trust_checkpoint
            )
            message_passing, agg = foundation.message_passing, foundation.agg
        else:
            message_passing = nn.BondMessagePassing(d_h=self.hidden_dim, depth=self.depth)
            agg = nn.MeanAggregation()
        if job.task == "classification":
            predictor = nn.BinaryClassificationFFN(
                n_tasks=n_tasks,
                input_dim=message_passing.output_dim,
                hidden_dim=self.ffn_hidden_dim,
            )
            metrics = [nn.BinaryAUROC()]
        else:
            predictor = nn.RegressionFFN(
                n_tasks=n_tasks,
                input_dim=message_passing.output_dim,
                hidden_dim=self.ffn_hidden_dim,
                output_transform=UnscaleTransform.from_standard_scaler(scaler),
            )
            metrics = [nn.RMSE()]
        max_lr = job.learning_rate or 1e-3
        return models.MPNN(
            message_passing,
            agg,
            predictor,
            metrics=metrics,
            init_lr=max_lr / 10,
            max_lr=max_lr,
            final_lr=max_lr / 10,
        )

    @staticmethod
    def _loaders(job: FitJob, train: Any, val: Any, test: Any) -> tuple[Any, Any, Any]:
        from chemprop import data

        def loader(dataset: Any, shuffle: bool) -> Any:
            if not len(dataset):
                return None
            return data.build_dataloader(
                dataset, job.batch_size, shuffle=shuffle, seed=job.seed if shuffle else None
            )

        return loader(train, True), loader(val, False), loader(test, False)

    @staticmethod
    def _evaluate(
        trainer: Any, model: Any, loader: Any, job: FitJob, idx: np.ndarray
    ) -> dict[str, float]:
        import torch

        if loader is None:
            return {}
        preds = torch.cat(trainer.predict(model, dataloaders=loader))
        if preds.ndim == 3:
            preds = preds[..., 0]
        targets = np.asarray(job.targets, dtype=float)[np.asarray(idx)]
        return evaluate(job.task, preds.float().cpu().numpy(), targets)
