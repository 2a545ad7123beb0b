"""The per-sample score table, indexed by dataset index.

Scores are never stored by batch position: every record carries the dataset indices of the
molecules it belongs to, so a shuffled (or pruned, or sharded) loader cannot misplace them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

_COLUMNS = ("score", "online_loss", "reference_loss", "loss_mean")
_COUNTERS = ("num_updates", "epochs_kept", "last_epoch")
_PENDING = (
    "_pending_online",
    "_pending_reference",
    "_pending_count",
    "_pending_reference_count",
)


class ScoreBook:
    """Per-sample bookkeeping of losses and scores for ``num_samples`` dataset indices.

    Records of one epoch are accumulated in pending buffers (on the device of the
    losses, without host synchronisation) and folded into the table by :meth:`commit`, which
    also sums the buffers across ``torch.distributed`` ranks, so that every rank ends the
    epoch with the same table.

    Columns (1-D tensors of length ``num_samples``):
        score: the strategy's score (``nan`` = never scored).
        online_loss, reference_loss: last per-sample losses seen (``nan`` = never seen).
        loss_mean: running mean of the online loss over all updates (for bandit strategies).
        num_updates: how many epochs the sample was scored in.
        epochs_kept: how many trained epochs the sample was in.
        last_epoch: the last epoch it was scored in (``-1`` = never).
    """

    def __init__(self, num_samples: int, device: torch.device | str | None = None) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples = int(num_samples)
        self.device = torch.device(device or "cpu")
        n, dev = self.num_samples, self.device
        self.score = torch.full((n,), float("nan"), device=dev)
        self.online_loss = torch.full((n,), float("nan"), device=dev)
        self.reference_loss = torch.full((n,), float("nan"), device=dev)
        self.loss_mean = torch.zeros(n, device=dev)
        self.num_updates = torch.zeros(n, dtype=torch.long, device=dev)
        self.epochs_kept = torch.zeros(n, dtype=torch.long, device=dev)
        self.last_epoch = torch.full((n,), -1, dtype=torch.long, device=dev)
        self._has_reference = False  # some sample has a (possibly stale) reference loss
        self._reset_pending()

    # ------------------------------------------------------------------ recording

    def _reset_pending(self) -> None:
        n, dev = self.num_samples, self.device
        self._pending_online = torch.zeros(n, dtype=torch.float64, device=dev)
        self._pending_reference = torch.zeros(n, dtype=torch.float64, device=dev)
        self._pending_count = torch.zeros(n, dtype=torch.float64, device=dev)
        self._pending_reference_count = torch.zeros(n, dtype=torch.float64, device=dev)
        self._pending_has_reference = False

    def record(
        self,
        indices: torch.Tensor,
        online_loss: torch.Tensor,
        reference_loss: torch.Tensor | None = None,
    ) -> None:
        """Add per-sample losses for the dataset ``indices`` to this epoch's records.

        ``online_loss`` (and ``reference_loss``) are 1-D with one value per index, in the
        same order. Values are detached. An index recorded twice in one epoch (padding of a
        distributed sampler) gets the mean of its records. A ``nan`` loss (a molecule
        without any label) is recorded as is. A batch recorded without ``reference_loss``
        (the reference was not refreshed, see :attr:`PruneConfig.reference_every`) is scored
        against each molecule's last reference loss when the epoch is committed.
        """
        indices = torch.as_tensor(indices, device=self.device).long().reshape(-1)
        online = online_loss.detach().reshape(-1).to(self.device, torch.float64)
        if online.numel() != indices.numel():
            raise ValueError(
                f"got {online.numel()} losses for {indices.numel()} indices; pass one "
                "per-sample loss per dataset index (reduce over tasks, not over the batch)"
            )
        self._pending_online.index_add_(0, indices, online)
        self._pending_count.index_add_(0, indices, torch.ones_like(online))
        if reference_loss is not None:
            ref = reference_loss.detach().reshape(-1).to(self.device, torch.float64)
            if ref.numel() != indices.numel():
                raise ValueError(
                    f"got {ref.numel()} reference losses for {indices.numel()} indices"
                )
            self._pending_reference.index_add_(0, indices, ref)
            self._pending_reference_count.index_add_(0, indices, torch.ones_like(ref))
            self._pending_has_reference = True

    # ------------------------------------------------------------------ folding

    @property
    def recorded(self) -> torch.Tensor:
        """Boolean mask of the samples recorded since the last :meth:`commit`."""
        return self._pending_count > 0

    @property
    def has_reference_losses(self) -> bool:
        """Whether any reference loss has been committed (so stale ones exist)."""
        return self._has_reference

    def commit(self, epoch: int, score_fn: Any, needs_reference: bool = False) -> torch.Tensor:
        """Fold the pending records into the table and return the indices that got scores.

        Sums the pending buffers over all ranks first when ``torch.distributed`` is
        initialised. ``score_fn(online, reference)`` turns the epoch's mean losses of the
        updated samples into scores (``reference`` is ``None`` if no reference losses were
        ever recorded). A sample recorded this epoch without a reference loss is scored
        against its last one (stale); if it never had one, its score is left as it was.
        With ``needs_reference`` and no reference loss at all yet (a run whose first epoch is
        a single batch, taken before the reference moved), no score changes.
        """
        count, online, reference, ref_count = (
            self._pending_count,
            self._pending_online,
            self._pending_reference,
            self._pending_reference_count,
        )
        has_reference = self._pending_has_reference
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([float(has_reference)], device=self.device, dtype=torch.float64)
            stacked = torch.stack([count, online, reference, ref_count])
            dist.all_reduce(stacked)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            count, online, reference, ref_count = stacked.unbind(0)
            has_reference = bool(flag.item())
        self._has_reference = self._has_reference or has_reference
        updated = (count > 0).nonzero().squeeze(1)
        if updated.numel():
            c = count[updated]
            mean_online = (online[updated] / c).float()
            self.online_loss[updated] = mean_online
            mean_reference, unscorable = None, None
            if self._has_reference:
                rc = ref_count[updated]
                fresh = (reference[updated] / rc.clamp(min=1)).float()
                mean_reference = torch.where(rc > 0, fresh, self.reference_loss[updated])
                self.reference_loss[updated] = mean_reference
                unscorable = ~torch.isfinite(mean_reference) & torch.isfinite(mean_online)
            if mean_reference is not None or not needs_reference:
                scores = score_fn(mean_online, mean_reference).float()
                # A sample without labels has nothing to teach: score 0, not "unscored".
                scores = torch.nan_to_num(scores, nan=0.0)
                if unscorable is not None:  # no reference loss yet: keep the score it had
                    scores = torch.where(unscorable, self.score[updated], scores)
                self.score[updated] = scores
            finite = torch.isfinite(mean_online)
            n_prev = self.num_updates[updated].float()
            new_mean = (self.loss_mean[updated] * n_prev + mean_online) / (n_prev + 1)
            self.loss_mean[updated] = torch.where(finite, new_mean, self.loss_mean[updated])
            self.num_updates[updated] += 1
            self.last_epoch[updated] = epoch
        self._reset_pending()
        return updated

    def mark_kept(self, indices: torch.Tensor) -> None:
        """Count one more kept epoch for each of ``indices`` (called once per trained epoch)."""
        idx = torch.as_tensor(indices, device=self.device).long().unique()
        self.epochs_kept[idx] += 1

    def stats(self, indices: torch.Tensor | None = None) -> dict[str, float]:
        """Summary statistics of the finite scores (of ``indices``, or of all samples)."""
        s = self.score if indices is None else self.score[indices]
        s = s[torch.isfinite(s)]
        if s.numel() == 0:
            return {"num_scored": 0.0}
        return {
            "num_scored": float(s.numel()),
            "score_mean": s.mean().item(),
            "score_std": s.std().item() if s.numel() > 1 else 0.0,
            "score_min": s.min().item(),
            "score_max": s.max().item(),
        }

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """Tensors of the table (on CPU); pending records are not saved (save at epoch end)."""
        state: dict[str, Any] = {"num_samples": self.num_samples}
        for name in _COLUMNS + _COUNTERS:
            state[name] = getattr(self, name).detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a table saved by :meth:`state_dict` (sizes must match)."""
        if int(state["num_samples"]) != self.num_samples:
            raise ValueError(
                f"score table is for {state['num_samples']} samples, this run has "
                f"{self.num_samples}: resume with the same data and split"
            )
        for name in _COLUMNS + _COUNTERS:
            getattr(self, name).copy_(state[name].to(self.device))
        self._has_reference = bool(torch.isfinite(self.reference_loss).any().item())
        self._reset_pending()

    def to(self, device: torch.device | str) -> ScoreBook:
        """Move the table and this epoch's pending records to ``device``; return ``self``."""
        self.device = torch.device(device)
        for name in (*_COLUMNS, *_COUNTERS, *_PENDING):
            setattr(self, name, getattr(self, name).to(self.device))
        return self
