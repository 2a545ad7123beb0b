"""The pruning engine: per-epoch selection driven by a strategy and a score table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from molpeg_plugins.engine.config import PruneConfig, num_kept, resolve_reference
from molpeg_plugins.engine.sampler import PruningSampler
from molpeg_plugins.engine.scorebook import ScoreBook
from molpeg_plugins.engine.strategies.base import Selection, Strategy
from molpeg_plugins.errors import ConfigError, SamplerError

if TYPE_CHECKING:
    from molpeg_plugins.plugins import MolPegPluginManager


@dataclass
class EpochSelection:
    """The samples of one epoch, as the pruner hands them to the sampler.

    Attributes:
        epoch: the epoch this selection is for (0-based).
        indices: dataset indices in visiting order (shuffled if the run shuffles).
        weights: loss weight per dataset index (length ``num_samples``; 1 where not rescaled).
        pruned: ``False`` for warm-up, annealing and unpruned runs (all samples visited).
        stats: score statistics of the samples kept (``num_kept``, ``score_*``).
    """

    epoch: int
    indices: torch.Tensor
    weights: torch.Tensor
    pruned: bool
    stats: dict[str, float] = field(default_factory=dict)


class Pruner:
    """Dynamic data pruning for any training loop that can report per-sample losses.

    The pruner owns the score table, the strategy and a :class:`PruningSampler`. A training
    loop draws batches of dataset indices from :attr:`sampler`, hands each batch's
    per-sample losses to :meth:`loss` (or :meth:`record`), and calls :meth:`end_epoch`
    once per epoch; the sampler then yields the next epoch's kept samples.

    Epoch schedule (``E`` = ``total_epochs``): epochs ``0 … warmup_epochs−1`` and the last
    ``anneal_epochs`` visit every sample; the others visit the ``num_kept(N, r)`` samples the
    strategy keeps (see :func:`molpeg_plugins.engine.config.num_kept` for the rounding rule).
    A static strategy chooses its subset once, at the first pruned epoch.

    Args:
        num_samples: size of the training set (dataset indices are ``0 … N−1``).
        config: run options; keyword overrides (``prune_ratio=0.6`` …) are applied on top.
        total_epochs: number of epochs of the run, needed for annealing.
        device: where the score table lives (put it with the losses, e.g. the GPU).
        plugin_manager: where strategies are looked up and events are sent (required here;
            :class:`molpeg_plugins.Pruner` defaults it to the process-wide manager).
        strategy: a strategy name, or an already constructed :class:`Strategy`, overriding
            ``config.strategy``. A named strategy is built with ``config.strategy_options``,
            plus ``prune_ratio`` when it declares that option (InfoBatch); a constructed one
            is used as it is.
        num_replicas, rank: sharding of the sampler (default: from ``torch.distributed``).
        task: ``"classification"`` or ``"regression"`` if known; a strategy that makes no
            sense for it (e.g. entropy on regression) is refused with a :class:`ConfigError`.
    """

    def __init__(
        self,
        num_samples: int,
        config: PruneConfig | None = None,
        *,
        total_epochs: int | None = None,
        device: torch.device | str | None = None,
        plugin_manager: MolPegPluginManager,
        strategy: Strategy | str | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        task: str | None = None,
        **overrides: Any,
    ) -> None:
        base = config.to_dict() if config is not None else {}
        if isinstance(strategy, str):
            overrides["strategy"] = strategy
        elif strategy is not None:
            overrides["strategy"] = strategy.name
        self.config = PruneConfig(**{**base, **overrides})
        self.pm = plugin_manager
        self.strategy: Strategy = (
            strategy
            if isinstance(strategy, Strategy)
            else self.pm.create_strategy(self.config.strategy, **self._strategy_options())
        )
        self.task = task
        if task is not None:
            self.strategy.check_task(task)
        self.num_samples = int(num_samples)
        if total_epochs is not None and total_epochs < 1:
            raise ConfigError(f"total_epochs={total_epochs} must be >= 1")
        self.total_epochs = total_epochs
        self.anneal_epochs = self._resolve_anneal(total_epochs)
        min_warmup = max(1, getattr(self.strategy, "min_warmup_epochs", 1))
        if (
            self.strategy.needs_warmup
            and self.config.warmup_epochs < min_warmup
            and self.config.prune_ratio
        ):
            raise ConfigError(
                f"strategy {self.strategy.name!r} scores samples with a proxy model trained "
                f"during warm-up: set warmup_epochs >= {min_warmup}"
            )
        self.book = ScoreBook(self.num_samples, device)
        self.strategy.bind(self.num_samples, self.book.device)
        self.sampler = PruningSampler(
            num_samples=self.num_samples, num_replicas=num_replicas, rank=rank
        )
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self._static_selection: Selection | None = None
        self.current = self._select(0)

    def _strategy_options(self) -> dict[str, Any]:
        """``config.strategy_options``, plus the run's ``prune_ratio`` for a strategy that
        declares that option and was not given one (InfoBatch's ``budget="original"``)."""
        options = dict(self.config.strategy_options)
        declared = self.pm.strategy_class(self.config.strategy).options
        if "prune_ratio" in declared and options.get("prune_ratio") is None:
            options["prune_ratio"] = self.config.prune_ratio
        return options

    # ------------------------------------------------------------------ schedule

    def _resolve_anneal(self, total_epochs: int | None) -> int:
        if self.config.anneal_epochs is not None:
            return self.config.anneal_epochs
        if total_epochs is None:
            return 0
        # As InfoBatch: prune while epoch < (1 − δ)·E, i.e. anneal E − ceil((1 − δ)·E) epochs.
        fraction = self.strategy.default_anneal_fraction
        return total_epochs - math.ceil((1.0 - fraction) * total_epochs) if fraction else 0

    @property
    def reference(self) -> str:
        """The EMA reference adapters build: ``"head"`` or ``"model"``.

        :attr:`PruneConfig.reference` resolved for the pruner's task
        (:func:`~molpeg_plugins.engine.config.resolve_reference`).
        """
        return resolve_reference(self.config.reference, self.task)

    @property
    def num_kept(self) -> int:
        """Number of samples in a pruned epoch."""
        return num_kept(self.num_samples, self.config.prune_ratio)

    @property
    def device(self) -> torch.device:
        """Device of the score table."""
        return self.book.device

    def is_pruned_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` trains on a pruned subset (not warm-up, annealing, or r=0)."""
        if self.config.prune_ratio == 0.0 or self.num_kept >= self.num_samples:
            return False
        if epoch < self.config.warmup_epochs:
            return False
        return not (
            self.total_epochs is not None and epoch >= self.total_epochs - self.anneal_epochs
        )

    def _generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)

    def _staleness(
        self, epoch: int, indices: torch.Tensor, previous: torch.Tensor | None
    ) -> dict[str, float]:
        """How old the scores behind a pruned epoch's keep set are, and how much it changed.

        ``score_age_mean``/``score_age_max``: epochs since the kept samples' scores were
        computed (0 = in the epoch just finished); ``visited_since_warmup``: fraction of the
        training set scored in at least one pruned epoch; ``keep_turnover``: fraction of the
        keep set that was not trained on in the previous epoch.
        """
        last = self.book.last_epoch
        scored = last[indices]
        scored = scored[scored >= 0]
        out: dict[str, float] = {}
        if scored.numel():
            age = (epoch - 1 - scored).float()
            out.update(score_age_mean=age.mean().item(), score_age_max=age.max().item())
        first = self.config.warmup_epochs
        out["visited_since_warmup"] = (
            (last >= first).float().mean().item() if epoch > first else 0.0
        )
        if previous is not None:
            before = torch.zeros(self.num_samples, dtype=torch.bool, device=self.device)
            before[previous.to(self.device).long()] = True
            out["keep_turnover"] = 1.0 - before[indices].float().mean().item()
        return out

    def _select(self, epoch: int, previous: torch.Tensor | None = None) -> EpochSelection:
        gen = self._generator(epoch)
        weights = torch.ones(self.num_samples, device=self.device)
        extra: dict[str, float] = {}
        if not self.is_pruned_epoch(epoch):
            indices = torch.arange(self.num_samples, device=self.device)
            pruned = False
        else:
            if self.strategy.dynamic or self._static_selection is None:
                choice = self.strategy.select(self.book, self.num_kept, epoch=epoch, generator=gen)
                extra = self.strategy.selection_stats()
                if not self.strategy.dynamic:
                    self._static_selection = choice
            else:
                choice = self._static_selection
            indices = choice.indices.to(self.device).long()
            if indices.numel() != indices.unique().numel():
                raise RuntimeError(f"strategy {self.strategy.name!r} selected an index twice")
            if choice.weights is not None:
                weights[indices] = choice.weights.to(self.device).float()
            elif self.config.rescale:
                weights[indices] = self.num_samples / max(1, indices.numel())
            pruned = True
        if self.config.shuffle:
            perm = torch.randperm(indices.numel(), generator=gen).to(self.device)
            indices = indices[perm]
        stats = {"num_kept": float(indices.numel()), **self.book.stats(indices)}
        if pruned:
            stats.update(self._staleness(epoch, indices, previous), **extra)
        selection = EpochSelection(epoch, indices, weights, pruned, stats)
        self.sampler.set_order(indices)
        return selection

    # ------------------------------------------------------------------ training loop API

    def start_epoch(self) -> EpochSelection:
        """Announce the current epoch to observers and return its selection."""
        self.pm.hook.molpeg_epoch_start(
            pruner=self, epoch=self.epoch, num_kept=int(self.current.indices.numel())
        )
        return self.current

    def wants(self, signal: str) -> bool:
        """Whether the strategy needs ``signal`` (see :attr:`Strategy.signals`).

        ``False`` once a static strategy has fixed its subset: nothing more to observe.
        """
        if not self.strategy.dynamic and self._static_selection is not None:
            return False
        return signal in self.strategy.signals

    def observe(self, indices: torch.Tensor, **signals: torch.Tensor | None) -> None:
        """Pass per-sample model outputs of one batch to the strategy (detached).

        Only signals the strategy asked for are forwarded; ``None`` values are dropped.
        """
        wanted = {k: v.detach() for k, v in signals.items() if v is not None and self.wants(k)}
        if wanted:
            idx = torch.as_tensor(indices, device=self.device).long().reshape(-1)
            self.strategy.observe(self.epoch, idx, **wanted)

    def reference_due(self, batch_index: int, reference: Any = None) -> bool:
        """Whether the reference forward must run on training batch ``batch_index`` (0-based).

        Always in epochs on the full data (warm-up, annealing, unpruned runs), so that every
        sample has a reference loss before pruning starts; in pruned epochs on every
        :attr:`~PruneConfig.reference_every`-th batch (batches ``0, k, 2k, …``). Pass the
        batch's reference loss to :meth:`record`/:meth:`loss` only when this is ``True``;
        without one, the batch is scored against each sample's last reference loss.

        Given the :class:`~molpeg_plugins.engine.scoring.EMAReference`, also ``False`` while it has
        not been updated yet: before the first optimizer step it *is* the online model, and
        ``|ℓ − ℓ| = 0`` says nothing about a molecule. The molecules of such a batch stay
        unscored, so the first pruned epoch keeps them (instead of dropping them for good on
        a score of 0).
        """
        if reference is not None and reference.num_updates == 0:
            return False
        every = self.config.reference_every
        return every == 1 or not self.current.pruned or batch_index % every == 0

    def weights(self, indices: torch.Tensor) -> torch.Tensor:
        """Loss weight of each of ``indices`` in the current epoch."""
        return self.current.weights[torch.as_tensor(indices, device=self.device).long()]

    def record(
        self,
        indices: torch.Tensor,
        online_loss: torch.Tensor,
        reference_loss: torch.Tensor | None = None,
    ) -> None:
        """Record one batch's per-sample losses against their dataset ``indices``.

        Losses are detached and stay on their device; nothing is synchronised with the host.
        A reference-based strategy scores a batch recorded without ``reference_loss``
        against each sample's last reference loss (see :meth:`reference_due`); if no
        reference loss has been recorded by the end of the second epoch, :meth:`end_epoch`
        raises (only the batches before the reference first moves may go without one).
        """
        self.book.record(indices, online_loss, reference_loss)

    def loss(
        self,
        indices: torch.Tensor,
        online_loss: torch.Tensor,
        reference_loss: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Record the batch and return the scalar loss to backpropagate.

        The result is the weighted mean of the per-sample ``online_loss`` over samples with
        a finite loss (the weights are 1 unless the strategy or ``rescale`` set them).
        """
        self.record(indices, online_loss, reference_loss)
        w = self.weights(indices).to(online_loss.device, online_loss.dtype)
        finite = torch.isfinite(online_loss)
        safe = torch.where(finite, online_loss, torch.zeros_like(online_loss))
        return (safe * w).sum() / finite.sum().clamp(min=1)

    def _check_recorded_in_selection(self) -> None:
        """Refuse a pruned epoch whose recorded samples are not all in its selection."""
        selected = torch.zeros(self.num_samples, dtype=torch.bool, device=self.device)
        selected[self.current.indices] = True
        recorded = self.book.recorded
        stray = recorded & ~selected
        count = int(stray.sum())
        if count:
            first = int(stray.nonzero()[0, 0])
            raise SamplerError(
                f"epoch {self.epoch}: {count} of the {int(recorded.sum())} samples trained on "
                f"were not in the epoch's selection (first: dataset index {first}); the "
                "training DataLoader must draw from pruner.sampler as it is, not from a "
                "DistributedSampler that replaces or wraps it (it shards itself)"
            )

    def end_epoch(self) -> EpochSelection:
        """Fold the epoch's scores in, choose the next epoch's samples and advance.

        Call once at the end of every epoch (on every rank). Returns the new selection,
        which the sampler already yields.

        Raises:
            SamplerError: a pruned epoch recorded a sample the epoch did not select (the
                loader does not draw from :attr:`sampler`, e.g. a ``DistributedSampler``
                replaces or wraps it).
        """
        if self.current.pruned:
            self._check_recorded_in_selection()
        needs_reference = self.strategy.needs_reference
        self.book.commit(self.epoch, self.strategy.score, needs_reference)
        if needs_reference and self.epoch > 0 and not self.book.has_reference_losses:
            # only the very first batches may go without (see reference_due)
            raise ValueError(
                f"strategy {self.strategy.name!r} needs reference losses: pass reference_loss "
                "to Pruner.record()/loss() (the adapters do this for you)"
            )
        self.book.mark_kept(self.current.indices)  # counted for epochs trained, not announced
        stats = self.book.stats()
        self.history.append({"epoch": float(self.epoch), **self.current.stats, **stats})
        self.pm.hook.molpeg_epoch_end(pruner=self, epoch=self.epoch, stats=stats)
        self.epoch += 1
        self.current = self._select(self.epoch, previous=self.current.indices)
        self.pm.hook.molpeg_selection_made(pruner=self, selection=self.current)
        return self.current

    def final_selection(self) -> torch.Tensor:
        """The keep set the strategy would choose from the final scores (sorted indices).

        This is what ``pruned.csv`` contains: the pruned dataset, independent of annealing.
        """
        if self.config.prune_ratio == 0.0:
            return torch.arange(self.num_samples, device=self.device)
        if not self.strategy.dynamic and self._static_selection is not None:
            return self._static_selection.indices.sort().values
        choice = self.strategy.select(
            self.book, self.num_kept, epoch=self.epoch, generator=self._generator(self.epoch)
        )
        return choice.indices.long().sort().values

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly at an epoch boundary (tensors on CPU)."""
        static = self._static_selection
        return {
            "config": self.config.to_dict(),
            "num_samples": self.num_samples,
            "total_epochs": self.total_epochs,
            "epoch": self.epoch,
            "book": self.book.state_dict(),
            "strategy": self.strategy.state_dict(),
            "history": [dict(h) for h in self.history],
            "current": {
                "epoch": self.current.epoch,
                "indices": self.current.indices.cpu(),
                "weights": self.current.weights.cpu(),
                "pruned": self.current.pruned,
                "stats": dict(self.current.stats),
            },
            "static": None
            if static is None
            else {
                "indices": static.indices.cpu(),
                "weights": None if static.weights is None else static.weights.cpu(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state saved by :meth:`state_dict` at an epoch boundary."""
        if int(state["num_samples"]) != self.num_samples:
            raise ValueError(
                f"pruner state is for {state['num_samples']} samples, not {self.num_samples}"
            )
        mine = self.config.to_dict()
        diff = sorted(k for k, v in state["config"].items() if v != mine.get(k))
        if diff:
            raise ConfigError(f"cannot resume: options differ from the saved run ({diff})")
        self.epoch = int(state["epoch"])
        self.book.load_state_dict(state["book"])
        self.strategy.load_state_dict(state["strategy"])
        self.history = [dict(h) for h in state["history"]]
        cur = state["current"]
        self.current = EpochSelection(
            int(cur["epoch"]),
            cur["indices"].to(self.device),
            cur["weights"].to(self.device),
            bool(cur["pruned"]),
            dict(cur["stats"]),
        )
        static = state["static"]
        self._static_selection = (
            None
            if static is None
            else Selection(
                static["indices"].to(self.device),
                None if static["weights"] is None else static["weights"].to(self.device),
            )
        )
        self.sampler.set_order(self.current.indices)
