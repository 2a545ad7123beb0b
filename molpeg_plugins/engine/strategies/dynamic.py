"""Dynamic strategies: the keep set is re-chosen before every epoch from fresh scores."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from molpeg_plugins.engine.strategies.base import (
    Selection,
    Strategy,
    StrategyList,
    random_k,
    spearman,
    top_k,
)
from molpeg_plugins.errors import ConfigError
from molpeg_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from molpeg_plugins.engine.scorebook import ScoreBook

STRATEGIES = StrategyList()
"""The built-in dynamic strategies, in registration order."""


@STRATEGIES.register
class MolPeg(Strategy):
    """MolPeg: keep the samples whose loss differs most between online and EMA reference.

    Score ``|ℓ(x; θ) − ℓ(x; ξ)|``. Large values cover both ends of the signed difference: the
    samples the online model has just learned (easy) and just got worse at (hard); samples
    whose loss barely moves carry little gradient along the current update and are dropped.
    Unscored samples (never seen) are kept first.

    A pruned-out sample keeps the score of the epoch it was last trained in, and scores
    shrink as the learning rate decays, so at high pruning ratios old, large scores crowd
    out fresh ones and most of the data is never seen again after the warm-up (see the
    staleness statistics ``visited_since_warmup`` and ``score_age_mean``). ``explore``
    spends a share of the budget outside the top-k to refresh such samples.

    Options:
        explore: share ``s`` of the kept budget ``k`` taken from outside the ``k`` highest
            scores (``round_half_up(s·k)`` samples, fewer only when fewer remain); ``0``
            (default) is the paper's rule, the plain top-k.
        explore_from: which of the samples outside the top-k: ``"stalest"`` (default:
            those whose score is oldest, ties at random, so every sample is revisited in
            turn), ``"random"`` (uniformly at random) or ``"loss"`` (the highest last online
            loss: the molecules the model still gets most wrong, as InfoBatch keeps them).
        calibrate: rank every stale score by the fresh score it predicts (needs
            ``explore_from="random"``). The random explorers are a random sample of the
            pruned-out molecules whose score is refreshed by training; a least-squares line
            through (score when picked, fresh score) maps every score older than the last
            epoch onto the fresh scale, taking both the shrinking scale and the regression
            toward the mean into account. Fresh scores are used as they are.
    """

    name = "molpeg"
    description = "Keep the largest |loss(online) − loss(EMA reference)| (MolPeg, NeurIPS 2024)."
    scales = "O(N log N) per epoch (one sort); ~200 B per molecule"
    needs_reference = True
    options = {"explore": 0.0, "explore_from": "stalest", "calibrate": False}
    EXPLORE_FROM = ("stalest", "random", "loss")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        share = self.settings["explore"]
        if not isinstance(share, (int, float)) or math.isnan(share) or not 0.0 <= share < 1.0:
            raise ConfigError(f"{self.name} option explore={share!r} must be in [0, 1)")
        if self.settings["explore_from"] not in self.EXPLORE_FROM:
            raise ConfigError(
                f"{self.name} option explore_from={self.settings['explore_from']!r}: use one of "
                f"{', '.join(self.EXPLORE_FROM)}"
            )
        if self.settings["calibrate"] and (not share or self.settings["explore_from"] != "random"):
            raise ConfigError(
                f"{self.name} option calibrate=true measures the score scale on random "
                "explorers: also set explore > 0 and explore_from=random"
            )
        # calibration: fresh ≈ intercept + slope · stale, fitted on the last random explorers
        self._line: tuple[float, float] | None = None
        self._probes: torch.Tensor | None = None
        self._probe_scores: torch.Tensor | None = None
        self._diagnostics: dict[str, float] = {}

    def score(self, online_loss: torch.Tensor, reference_loss: torch.Tensor | None) -> torch.Tensor:
        """``|online − reference|`` per sample; the reference losses are required."""
        if reference_loss is None:
            raise RuntimeError(
                "the molpeg strategy needs reference losses: pass reference_loss to "
                "Pruner.record()/loss() (the adapters do this for you)"
            )
        return (online_loss - reference_loss).abs()

    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """The ``num_keep`` largest scores (ties at random; unscored first), less exploration.

        With ``explore = s``, the top ``k − m`` scores plus ``m = round_half_up(s·k)``
        samples from outside the top ``k`` (``m`` capped at the ``N − k`` there are).
        """
        share = float(self.settings["explore"])
        wanted = math.floor(share * num_keep + 0.5) if share else 0
        if wanted == 0:
            return Selection(top_k(book.score, num_keep, generator))
        if self.settings["explore_from"] == "random":
            self._measure(book)
        score = self._calibrated(book) if self.settings["calibrate"] else book.score
        ranked = top_k(score, book.num_samples, generator)
        outside = ranked[num_keep:]
        m = min(wanted, outside.numel())
        if self.settings["explore_from"] == "random":
            picked = outside[random_k(outside.numel(), m, generator, book.device)]
            self._probes, self._probe_scores = picked, book.score[picked].clone()
        elif self.settings["explore_from"] == "loss":  # hardest first, ties at random
            loss = torch.nan_to_num(book.online_loss[outside], nan=float("-inf"))
            picked = outside[top_k(loss, m, generator)]
        else:  # stalest: oldest score first, ties at random
            shuffled = outside[torch.randperm(outside.numel(), generator=generator).to(book.device)]
            order = torch.argsort(book.last_epoch[shuffled], stable=True)
            picked = shuffled[order[:m]]
        return Selection(torch.cat([ranked[: num_keep - m], picked]))

    def _measure(self, book: ScoreBook) -> None:
        """Compare the last random explorers' fresh scores with their scores when picked.

        ``explore_score_drift`` is the ratio of their sums (fresh / when picked) and
        ``explore_rank_corr`` their Spearman correlation: how well a stale score still
        ranks a molecule. With ``calibrate``, also fits the line used by :meth:`_calibrated`.
        """
        self._diagnostics, self._line = {}, None
        latest = int(book.last_epoch.max().item())
        if self._probes is None or self._probe_scores is None or latest < 0:
            return
        fresh = (book.last_epoch[self._probes] == latest) & torch.isfinite(self._probe_scores)
        before, after = self._probe_scores[fresh].double(), book.score[self._probes][fresh].double()
        self._probes = self._probe_scores = None
        if before.numel() < 2:
            return
        self._diagnostics = {
            "explore_score_drift": (after.sum() / before.sum()).item(),
            "explore_rank_corr": spearman(before, after),
        }
        centred = before - before.mean()
        if self.settings["calibrate"] and bool((centred != 0).any()):
            slope = (centred @ (after - after.mean()) / (centred @ centred)).item()
            self._line = (after.mean().item() - slope * before.mean().item(), slope)

    def _calibrated(self, book: ScoreBook) -> torch.Tensor:
        """Stale scores replaced by the fresh score they predict (see ``calibrate``)."""
        if self._line is None:
            return book.score
        intercept, slope = self._line
        latest = int(book.last_epoch.max().item())
        stale = book.last_epoch < latest
        return torch.where(stale, intercept + slope * book.score, book.score)

    def selection_stats(self) -> dict[str, float]:
        """``explore_score_drift`` and ``explore_rank_corr`` (random exploration only)."""
        return dict(self._diagnostics)

    def state_dict(self) -> dict[str, Any]:
        """The last random explorers and their scores when picked (random exploration)."""
        if not self.settings["explore"] or self.settings["explore_from"] != "random":
            return {}
        return {
            "probes": None if self._probes is None else self._probes.cpu(),
            "probe_scores": None if self._probe_scores is None else self._probe_scores.cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if not state:
            return
        self._probes = None if state["probes"] is None else state["probes"].to(self.device)
        scores = state["probe_scores"]
        self._probe_scores = None if scores is None else scores.to(self.device)


@STRATEGIES.register
class SoftRandom(Strategy):
    """Soft random: a fresh uniform random subset every epoch."""

    name = "soft-random"
    description = "A new uniformly random subset every epoch (dynamic random baseline)."
    scales = "O(N) per epoch; ~200 B per molecule"

    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """A uniform random ``num_keep``-subset, drawn anew each epoch."""
        return Selection(random_k(book.num_samples, num_keep, generator, book.device))


@STRATEGIES.register
class InfoBatch(Strategy):
    """InfoBatch (ICLR 2024): randomly drop well-learned samples and rescale the rest.

    Samples whose last loss is below the mean are "well learned". Each epoch a random part of
    them is dropped and the kept ones among them get loss weight ``1 / (1 − q)``, where ``q``
    is the fraction of the well-learned samples dropped, so the expected gradient is kept.
    The pruner then trains the final epochs on the full data (annealing), as InfoBatch does:
    it prunes while ``epoch < 0.875·E``, i.e. ``E − ceil(0.875·E)`` epochs anneal, unless
    ``anneal_epochs`` is set.

    Options:
        budget: ``"exact"`` (default) removes exactly ``N − num_keep`` samples, so ratios
            are comparable with the other strategies: all of them from the well-learned set
            when it is large enough, else all well-learned ones plus the lowest-loss rest.
            ``"original"`` drops each well-learned sample with probability ``prune_ratio``
            (InfoBatch's own rule; the epoch is then larger than ``num_keep``).
        prune_ratio: the drop probability used by ``budget="original"`` (the pruner passes
            its ratio).
    """

    name = "infobatch"
    description = "Drop random below-mean-loss samples, rescale kept ones, anneal (ICLR 2024)."
    scales = "O(N) per epoch; ~200 B per molecule"
    default_anneal_fraction = 0.125
    options = {"budget": "exact", "prune_ratio": None}

    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """Drop well-learned (below-mean loss) samples at random; weight the kept ones."""
        n = book.num_samples
        loss = book.score
        finite = torch.isfinite(loss)
        if not bool(finite.any()):
            return Selection(random_k(n, num_keep, generator, book.device))
        mean = loss[finite].mean()
        low = (finite & (loss < mean)).nonzero().squeeze(1)
        high = (~(finite & (loss < mean))).nonzero().squeeze(1)
        weights_low: torch.Tensor
        if self.settings["budget"] == "original":
            q = float(self.settings["prune_ratio"] or 0.0)
            draw = torch.rand(low.numel(), generator=generator).to(book.device)
            kept_low = low[draw >= q]
            w = 1.0 / (1.0 - q) if q < 1.0 else 1.0
        else:
            num_drop = n - num_keep
            if low.numel() >= num_drop:
                perm = torch.randperm(low.numel(), generator=generator).to(book.device)
                kept_low = low[perm[num_drop:]]
                w = low.numel() / max(1, kept_low.numel())
            else:
                # Not enough well-learned samples: drop them all, then the lowest-loss rest.
                kept_low = low[:0]
                w = 1.0
                rest = num_drop - low.numel()
                order = top_k(loss[high], high.numel() - rest, generator)
                high = high[order]
        weights_low = torch.full((kept_low.numel(),), float(w), device=book.device)
        indices = torch.cat([high, kept_low])
        weights = torch.cat([torch.ones(high.numel(), device=book.device), weights_low])
        return Selection(indices, weights)


@STRATEGIES.register
class UCB(Strategy):
    """Upper-confidence-bound bandit on the running mean loss.

    Keeps the ``num_keep`` largest ``mean_loss + c·sqrt(2·ln(t) / n_i)``, where ``t`` is the
    epoch count and ``n_i`` the number of epochs sample ``i`` was scored; samples never
    scored are kept first.

    Options:
        exploration: ``c`` (default 1.0).
    """

    name = "ucb"
    description = "Upper-confidence-bound bandit on the running mean loss."
    scales = "O(N log N) per epoch (one sort); ~200 B per molecule"
    options = {"exploration": 1.0}

    def __init__(self, **options: float) -> None:
        super().__init__(**options)
        c = self.settings["exploration"]
        if not isinstance(c, (int, float)) or math.isnan(c) or c < 0:
            raise ConfigError(f"ucb option exploration={c!r} must be a number >= 0")

    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """The ``num_keep`` largest ``mean loss + c·sqrt(2 ln t / n)``; unseen ones first."""
        t = max(2, epoch + 1)
        n = book.num_updates.float()
        bonus = self.settings["exploration"] * torch.sqrt(2.0 * math.log(t) / n.clamp(min=1))
        value = torch.where(n > 0, book.loss_mean + bonus, torch.full_like(n, float("nan")))
        return Selection(top_k(value, num_keep, generator))


@STRATEGIES.register
class EpsilonGreedy(Strategy):
    """ε-greedy bandit: mostly the highest running mean losses, a fraction ε at random.

    Options:
        epsilon: fraction of the kept budget filled uniformly at random (default 0.1).
    """

    name = "epsilon-greedy"
    description = "ε-greedy bandit: top running-mean loss, with a random fraction ε explored."
    scales = "O(N log N) per epoch (one sort); ~200 B per molecule"
    options = {"epsilon": 0.1}

    def __init__(self, **options: float) -> None:
        super().__init__(**options)
        eps = self.settings["epsilon"]
        if not isinstance(eps, (int, float)) or math.isnan(eps) or not 0.0 <= eps <= 1.0:
            raise ConfigError(f"epsilon-greedy option epsilon={eps!r} must be in [0, 1]")

    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """Top running-mean losses for ``(1 − ε)`` of the budget, the rest at random."""
        eps = float(self.settings["epsilon"])
        n_random = math.floor(eps * num_keep + 0.5)  # half up, like num_kept
        value = torch.where(
            book.num_updates > 0, book.loss_mean, torch.full_like(book.loss_mean, float("nan"))
        )
        ranked = top_k(value, book.num_samples, generator)
        greedy = ranked[: num_keep - n_random]
        rest = ranked[num_keep - n_random :]
        explore = rest[random_k(rest.numel(), n_random, generator, book.device)]
        return Selection(torch.cat([greedy, explore]))


@hookimpl
def molpeg_register_strategies() -> list[type[Strategy]]:
    """Register the built-in dynamic strategies."""
    return list(STRATEGIES)
