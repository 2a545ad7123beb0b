"""Static strategies: a subset chosen once from a proxy model, then fixed for the whole run.

The warm-up epochs are the proxy training: while they run, the training loop hands the
model's per-sample outputs to :meth:`Pruner.observe` (the signals each strategy declares),
the strategy stores them **by dataset index**, and at the first pruned epoch it picks the
subset that every later epoch reuses.

Task types (the ``tasks`` attribute; :meth:`Strategy.check_task` refuses the others):

- classification and regression: ``hard-random``, ``el2n`` (regression: ``|ŷ − y|``),
  ``grand`` (regression: the squared-error gradient ``ŷ − y`` in place of ``p − y``),
  ``herding`` and ``kmeans`` (they only use embeddings / fingerprints);
- classification only: ``forgetting``, ``least-confidence``, ``entropy``, ``margin``: they
  need class probabilities (a correct/incorrect decision for forgetting).

Predictions are ``(B, T)`` probabilities of the positive class of each binary task (multitask
binary data is scored per task, never with a softmax across tasks), ``(B, T, C)`` class
probabilities for multiclass tasks, or ``(B, T)`` raw values for regression. Per-task values
are averaged over the sample's labelled tasks (``mask``); a sample without any label scores 0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from molpeg_plugins.engine.strategies.base import Selection, Strategy, StrategyList, random_k, top_k
from molpeg_plugins.errors import ConfigError
from molpeg_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from molpeg_plugins.engine.scorebook import ScoreBook

_CLASSIFICATION = frozenset({"classification"})
_EPS = 1e-12

STRATEGIES = StrategyList()
"""The built-in static strategies, in registration order."""


# --------------------------------------------------------------------------- helpers


def _as_2d(values: torch.Tensor, batch: int) -> torch.Tensor:
    """``(B,)`` or ``(B, T, …)`` → at least ``(B, T)`` float."""
    values = values.float()
    return values.reshape(batch, 1) if values.ndim == 1 else values


def _labelled(
    predictions: torch.Tensor,
    targets: torch.Tensor | None,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """``(B, T)`` bool: where a label exists (all tasks if neither mask nor targets given)."""
    shape = predictions.shape[:2]
    labelled = torch.ones(shape, dtype=torch.bool, device=predictions.device)
    if mask is not None:
        labelled &= mask.reshape(shape).bool()
    if targets is not None:
        labelled &= torch.isfinite(targets.reshape(shape).float())
    return labelled


def _masked_mean(values: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Mean of ``(B, T)`` values over the labelled tasks; 0 for a sample with no label."""
    total = torch.where(labelled, values, torch.zeros_like(values)).sum(dim=1)
    return total / labelled.sum(dim=1).clamp(min=1)


def _class_probs(predictions: torch.Tensor) -> torch.Tensor:
    """``(B, T, C)`` class probabilities from ``(B, T)`` binary or ``(B, T, C)`` inputs."""
    if predictions.ndim == 3:
        return predictions
    return torch.stack([1.0 - predictions, predictions], dim=-1)


def _errors(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-task error vector ``p − y``: ``(B, T)`` or ``(B, T, C)`` (one-hot ``y``)."""
    if predictions.ndim == 3:
        num_classes = predictions.shape[-1]
        y = torch.nan_to_num(targets.float(), nan=0.0).long().clamp(0, num_classes - 1)
        onehot = torch.nn.functional.one_hot(y, num_classes).to(predictions.dtype)
        return predictions - onehot
    return predictions - torch.nan_to_num(targets.reshape(predictions.shape).float(), nan=0.0)


def _squared_error(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` squared norm of the per-task error (summed over classes if multiclass)."""
    err = _errors(predictions, targets)
    return err.pow(2).sum(-1) if err.ndim == 3 else err.pow(2)


def _seed(generator: torch.Generator) -> int:
    """A NumPy/scikit-learn seed drawn from the run's generator."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


class StaticStrategy(Strategy):
    """Base of the proxy-model strategies: store per-sample signals, rank once.

    Subclasses implement :meth:`observe` (writing into tables allocated with
    :meth:`_table`) and either :meth:`sample_scores` (keep the largest) or :meth:`select`.
    Samples that were never observed are kept first, as in the dynamic strategies.
    """

    dynamic = False
    needs_warmup = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._tables: dict[str, torch.Tensor] = {}
        self._invalid = torch.zeros((), dtype=torch.bool)

    # ------------------------------------------------------------------ storage

    def _table(
        self, name: str, trailing: tuple[int, ...], *, fill: float = 0.0, dtype: torch.dtype
    ) -> torch.Tensor:
        """The per-sample table ``name`` of shape ``(N, *trailing)``, created on first use."""
        table = self._tables.get(name)
        if table is None:
            if self.num_samples is None:
                raise RuntimeError(
                    f"strategy {self.name!r} was not bound to a dataset: build it through "
                    "Pruner, or call strategy.bind(num_samples) before observe()"
                )
            table = torch.full((self.num_samples, *trailing), fill, dtype=dtype, device=self.device)
            self._tables[name] = table
        return table

    def _mark_seen(self, indices: torch.Tensor) -> None:
        self._table("seen", (), dtype=torch.bool)[indices] = True

    def _flag_invalid(self, bad: torch.Tensor) -> None:
        """Remember (without a host sync) that some input was out of range."""
        self._invalid = self._invalid.to(bad.device) | bad.any()

    def _check_probabilities(self, predictions: torch.Tensor) -> None:
        self._flag_invalid((predictions < 0) | (predictions > 1) | ~torch.isfinite(predictions))

    def _seen(self) -> torch.Tensor:
        seen = self._tables.get("seen")
        if seen is None or not bool(seen.any()):
            needed = ", ".join(sorted(self.signals))
            raise RuntimeError(
                f"strategy {self.name!r} received no signals during warm-up: the training "
                f"loop must call pruner.observe(indices, {needed}=...) on every batch"
            )
        if bool(self._invalid):
            raise ConfigError(
                f"strategy {self.name!r} received predictions outside [0, 1] (or nan) or "
                "non-binary labels: it needs class probabilities (apply sigmoid/softmax to "
                "the logits) and 0/1 labels; for regression use a strategy that applies to "
                "regression (el2n, grand, herding, kmeans)"
            )
        return seen

    # ------------------------------------------------------------------ selection

    def sample_scores(self) -> torch.Tensor:
        """Score of every sample (higher = kept first); ``nan`` for never-observed ones."""
        raise NotImplementedError

    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """Keep the ``num_keep`` largest :meth:`sample_scores` (unobserved ones first)."""
        seen = self._seen()
        scores = self.sample_scores().float()
        scores = torch.where(seen, scores, torch.full_like(scores, float("nan")))
        return Selection(top_k(scores, num_keep, generator))

    def _keep_unseen_then(
        self, num_keep: int, generator: torch.Generator, choose: Any
    ) -> torch.Tensor:
        """Keep unobserved samples first, fill the rest with ``choose(seen_idx, k)``."""
        seen = self._seen()
        unseen = (~seen).nonzero().squeeze(1)
        if unseen.numel() >= num_keep:
            return unseen[random_k(unseen.numel(), num_keep, generator, unseen.device)]
        seen_idx = seen.nonzero().squeeze(1)
        chosen = choose(seen_idx, num_keep - unseen.numel())
        return torch.cat([unseen, seen_idx[chosen.to(seen_idx.device)]])

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """The stored per-sample signals (on CPU), to resume inside the warm-up."""
        return {
            "tables": {k: v.detach().cpu().clone() for k, v in self._tables.items()},
            "invalid": bool(self._invalid),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._tables = {k: v.to(self.device) for k, v in state.get("tables", {}).items()}
        self._invalid = torch.tensor(bool(state.get("invalid", False)))


# --------------------------------------------------------------------------- strategies


@STRATEGIES.register
class HardRandom(Strategy):
    """Hard random: one uniformly random subset, drawn once and kept for the whole run."""

    name = "hard-random"
    description = "One uniformly random subset, fixed for the whole run (static random baseline)."
    scales = "O(N), once; ~200 B per molecule"
    dynamic = False

    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """A uniformly random ``num_keep``-subset."""
        return Selection(random_k(book.num_samples, num_keep, generator, book.device))


@STRATEGIES.register
class EL2N(StaticStrategy):
    """EL2N (Paul et al. 2021): keep the largest error norm ``‖p − y‖`` of the proxy model.

    Score of a sample: the root mean square of its per-task errors over its *labelled*
    tasks, ``sqrt(mean_t (p_t − y_t)²)`` (the norm ``‖p − y‖`` divided by the square root of
    the number of labelled tasks, so molecules with few labels are not ranked low for that
    reason; with all tasks labelled the ranking is that of ``‖p − y‖``). Multiclass tasks use
    the one-hot error ``‖p − onehot(y)‖``. Regression uses the absolute error ``|ŷ − y|`` of
    the raw predictions. The predictions of the last warm-up epoch are used.
    """

    name = "el2n"
    description = "Keep the largest error norm ‖p − y‖ of the warm-up (proxy) model (EL2N)."
    scales = "O(N) per warm-up epoch, one sort; ~200 B per molecule"
    signals = frozenset({"predictions", "targets", "mask"})

    def observe(self, epoch: int, indices: torch.Tensor, **signals: torch.Tensor) -> None:
        """Store ``sqrt(mean over labelled tasks of (p − y)²)`` by dataset index."""
        pred = _as_2d(signals["predictions"], indices.numel())
        targets = _as_2d(signals["targets"], indices.numel())
        labelled = _labelled(pred, targets, signals.get("mask"))
        score = _masked_mean(_squared_error(pred, targets), labelled).sqrt()
        self._table("score", (), fill=float("nan"), dtype=torch.float32)[indices] = score
        self._mark_seen(indices)

    def sample_scores(self) -> torch.Tensor:
        """Latest error norm per sample."""
        return self._tables["score"]


@STRATEGIES.register
class GraNd(StaticStrategy):
    """GraNd (Paul et al. 2021): keep the largest expected gradient norm early in training.

    Approximation (no extra backward pass): the gradient norm of the per-sample loss with
    respect to the **last linear layer** (weights and bias) that maps the embedding ``h`` to
    the outputs. For sigmoid/softmax cross-entropy and for squared error that gradient is the
    outer product ``e·[h, 1]ᵀ`` with ``e = ∂ℓ/∂z = (p − y)/n_labelled`` (``ŷ − y`` up to a
    constant factor for regression; unlabelled tasks contribute 0), so its norm is
    ``‖e‖·sqrt(‖h‖² + 1)``. Earlier layers are ignored; the paper's expectation over
    initialisations is replaced by the mean over the warm-up epochs (each sample once per
    epoch, with the model as it was when the sample was visited).
    """

    name = "grand"
    description = "Keep the largest early-training gradient norm (GraNd, last-layer estimate)."
    scales = "O(N·D) per warm-up epoch, one sort; ~200 B per molecule"
    signals = frozenset({"predictions", "targets", "mask", "embeddings"})

    def observe(self, epoch: int, indices: torch.Tensor, **signals: torch.Tensor) -> None:
        """Add ``‖e‖·sqrt(‖h‖² + 1)`` of this presentation to the sample's running mean."""
        batch = indices.numel()
        pred = _as_2d(signals["predictions"], batch)
        targets = _as_2d(signals["targets"], batch)
        labelled = _labelled(pred, targets, signals.get("mask"))
        sq = torch.where(labelled, _squared_error(pred, targets), 0.0)
        err_norm = sq.sum(dim=1).sqrt() / labelled.sum(dim=1).clamp(min=1)
        emb = signals["embeddings"].float().reshape(batch, -1)
        norm = err_norm * (emb.pow(2).sum(dim=1) + 1.0).sqrt()
        self._table("total", (), dtype=torch.float64).index_add_(0, indices, norm.double())
        count = self._table("count", (), dtype=torch.float64)
        count.index_add_(0, indices, torch.ones(batch, dtype=torch.float64, device=count.device))
        self._mark_seen(indices)

    def sample_scores(self) -> torch.Tensor:
        """Mean gradient-norm estimate over the warm-up presentations."""
        return self._tables["total"] / self._tables["count"].clamp(min=1)


@STRATEGIES.register
class Forgetting(StaticStrategy):
    """Forgetting events (Toneva et al. 2019): keep the samples forgotten most often.

    A forgetting event is a transition from correctly to incorrectly classified between two
    consecutive presentations of a sample (per task; threshold 0.5 for binary tasks, argmax
    for multiclass), counted during the warm-up epochs. A task the proxy never classified
    correctly counts as "forgotten infinitely" (the paper's rule), represented by the number
    of warm-up epochs observed, which exceeds any possible count of events. The score is the
    mean over the sample's labelled tasks. Classification only (a correct/incorrect decision
    is needed); needs at least 2 warm-up epochs.
    """

    name = "forgetting"
    description = "Keep the samples with most learned→forgotten transitions (Toneva et al.)."
    scales = "O(N) per warm-up epoch, one sort; ~200 B per molecule"
    tasks = _CLASSIFICATION
    signals = frozenset({"predictions", "targets", "mask"})
    min_warmup_epochs = 2

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._epochs: set[int] = set()

    def observe(self, epoch: int, indices: torch.Tensor, **signals: torch.Tensor) -> None:
        """Compare this presentation's correctness with the previous one, by dataset index."""
        batch = indices.numel()
        pred = _as_2d(signals["predictions"], batch)
        targets = _as_2d(signals["targets"], batch)
        labelled = _labelled(pred, targets, signals.get("mask"))
        self._check_probabilities(pred)
        y = torch.nan_to_num(targets.reshape(pred.shape[:2]), nan=0.0)
        if pred.ndim == 3:
            correct = pred.argmax(-1) == y.long()
        else:
            self._flag_invalid(labelled & (y != 0) & (y != 1))
            correct = (pred > 0.5) == (y > 0.5)
        correct &= labelled
        tasks = labelled.shape[1]
        prev = self._table("previous", (tasks,), dtype=torch.bool)
        presented = self._table("presented", (tasks,), dtype=torch.bool)
        learned = self._table("learned", (tasks,), dtype=torch.bool)
        events = self._table("events", (tasks,), dtype=torch.float32)
        forgot = presented[indices] & prev[indices] & labelled & ~correct
        events.index_add_(0, indices, forgot.float())
        prev[indices] = torch.where(labelled, correct, prev[indices])
        presented[indices] |= labelled
        learned[indices] |= correct
        self._epochs.add(int(epoch))
        self._mark_seen(indices)

    def sample_scores(self) -> torch.Tensor:
        """Mean forgetting count over labelled tasks (never learned = number of epochs)."""
        presented = self._tables["presented"]
        never = float(max(1, len(self._epochs)))
        events = self._tables["events"]
        per_task = torch.where(self._tables["learned"], events, torch.full_like(events, never))
        return _masked_mean(per_task, presented)

    def state_dict(self) -> dict[str, Any]:
        """Tables plus the set of epochs observed."""
        return {**super().state_dict(), "epochs": sorted(self._epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        self._epochs = set(state.get("epochs", []))


class _Uncertainty(StaticStrategy):
    """Shared code of least-confidence, entropy and margin: per-task, labelled-task mean."""

    tasks = _CLASSIFICATION
    signals = frozenset({"predictions", "mask"})

    @staticmethod
    def per_task(probs: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` uncertainty from ``(B, T, C)`` class probabilities (higher = kept)."""
        raise NotImplementedError

    def observe(self, epoch: int, indices: torch.Tensor, **signals: torch.Tensor) -> None:
        """Store the mean per-task uncertainty over labelled tasks by dataset index."""
        pred = _as_2d(signals["predictions"], indices.numel())
        self._check_probabilities(pred)
        labelled = _labelled(pred, signals.get("targets"), signals.get("mask"))
        probs = _class_probs(pred.clamp(0.0, 1.0))
        score = _masked_mean(self.per_task(probs), labelled)
        self._table("score", (), fill=float("nan"), dtype=torch.float32)[indices] = score
        self._mark_seen(indices)

    def sample_scores(self) -> torch.Tensor:
        """Latest uncertainty per sample."""
        return self._tables["score"]


@STRATEGIES.register
class LeastConfidence(_Uncertainty):
    """Least confidence: keep the samples whose top class probability is lowest.

    Per task ``1 − max_c p_c`` (binary: ``1 − max(p, 1 − p)``, largest at ``p = 0.5``),
    averaged over the labelled tasks. Classification only.
    """

    name = "least-confidence"
    description = "Keep the least confident samples, 1 − max class probability, per task."
    scales = "O(N) per warm-up epoch, one sort; ~200 B per molecule"

    @staticmethod
    def per_task(probs: torch.Tensor) -> torch.Tensor:
        """``1 − max_c p_c``."""
        return 1.0 - probs.max(dim=-1).values


@STRATEGIES.register
class Entropy(_Uncertainty):
    """Entropy: keep the samples whose predictive entropy ``−Σ_c p_c log p_c`` is largest.

    Computed per task (binary tasks: the Bernoulli entropy, never a softmax across tasks),
    averaged over the labelled tasks. Classification only.
    """

    name = "entropy"
    description = "Keep the samples with the highest predictive entropy, per task."
    scales = "O(N) per warm-up epoch, one sort; ~200 B per molecule"

    @staticmethod
    def per_task(probs: torch.Tensor) -> torch.Tensor:
        """``−Σ_c p_c log p_c`` in nats."""
        return -(probs * probs.clamp(min=_EPS).log()).sum(dim=-1)


@STRATEGIES.register
class Margin(_Uncertainty):
    """Margin: keep the samples with the smallest gap between the two most likely classes.

    Per task ``1 − (p_(1) − p_(2))`` (binary: ``1 − |2p − 1|``), averaged over the labelled
    tasks of multitask binary data, not a softmax across tasks. Classification only.
    """

    name = "margin"
    description = "Keep the smallest top-1/top-2 probability margin, per task."
    scales = "O(N) per warm-up epoch, one sort; ~200 B per molecule"

    @staticmethod
    def per_task(probs: torch.Tensor) -> torch.Tensor:
        """``1 − (p_(1) − p_(2))``."""
        top = probs.topk(2, dim=-1).values
        return 1.0 - (top[..., 0] - top[..., 1])


@STRATEGIES.register
class Herding(StaticStrategy):
    """Herding (Welling 2009; Chen et al. 2010): greedily match the mean embedding.

    Step ``i`` adds the not-yet-chosen sample ``x`` that brings the running sum closest to
    ``i·μ`` (``μ`` = mean embedding of the samples herded): ``argmin_x ‖i·μ − (s + x)‖``.
    Each step is one matrix–vector product over the samples herded, so herding all ``N`` at
    once costs ``O(k·N·D)``: quadratic in ``N`` (about 4 minutes at 40,000 molecules).

    Above ``block_size`` samples the data is therefore split into random blocks of at most
    ``block_size`` (sizes differ by at most one), every block herds a quota proportional to
    its size toward its own mean, and the keep set is their union (as herding per class
    does, with random classes). Since the quotas are proportional, the block means average
    to ``μ``, so the union's mean still tracks ``μ`` with each block's herding error, far
    closer than a random subset of the same size. The cost, ``O(k·block_size·D)``, is
    linear in ``N``. Uses the embeddings of the last warm-up epoch; applies to any task.

    Options:
        block_size: the most samples herded together (default 2048; ``0`` herds all ``N``
            at once, the exact quadratic greedy). Up to ``block_size`` samples the result
            is the exact greedy either way.
    """

    name = "herding"
    description = "Greedily pick samples whose mean embedding matches the full mean (herding)."
    signals = frozenset({"embeddings"})
    options = {"block_size": 2048}
    scales = (
        "O(N·block_size·D), linear (block_size=0: O(N²·D)); keeps the embeddings, 1.2 KB "
        "per molecule at D = 300"
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        size = self.settings["block_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ConfigError(f"herding option block_size={size!r} must be a whole number >= 0")

    def observe(self, epoch: int, indices: torch.Tensor, **signals: torch.Tensor) -> None:
        """Store the embeddings by dataset index."""
        emb = signals["embeddings"].float().reshape(indices.numel(), -1)
        self._table("embeddings", (emb.shape[1],), dtype=torch.float32)[indices] = emb
        self._mark_seen(indices)

    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """Herd ``num_keep`` samples (unobserved ones kept first)."""
        embeddings = self._tables.get("embeddings")

        def choose(rows: torch.Tensor, k: int) -> torch.Tensor:
            # all rows seen (the usual case): herd the table itself, without a copy
            x = embeddings if rows.numel() == embeddings.shape[0] else embeddings[rows]
            return herd_in_blocks(x, k, self.settings["block_size"], generator)

        return Selection(self._keep_unseen_then(num_keep, generator, choose))


def herd(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` rows of ``x`` chosen greedily so their mean tracks the mean of ``x``.

    ``‖c − x_j‖² = ‖c‖² − 2⟨c, x_j⟩ + ‖x_j‖²`` with ``c = (i+1)·μ − s``: one fused
    matrix–vector product (``addmv``) and one ``argmin`` per step, no host synchronisation;
    a chosen row gets ``‖x_j‖² = +inf`` so it is never chosen again.
    """
    n = x.shape[0]
    x = x.float().contiguous()
    picks = torch.zeros(k, dtype=torch.long, device=x.device)
    if k == 0:
        return picks
    mu = x.mean(dim=0)
    sq_norm = x.pow(2).sum(dim=1)
    running = torch.zeros_like(mu)
    distance = torch.empty(n, dtype=x.dtype, device=x.device)
    for i in range(k):
        target = (i + 1) * mu - running
        torch.addmv(sq_norm, x, target, alpha=-2.0, out=distance)
        j = distance.argmin()
        picks[i] = j
        sq_norm[j] = float("inf")
        running += x[j]
    return picks


def herd_in_blocks(
    x: torch.Tensor, k: int, block_size: int, generator: torch.Generator
) -> torch.Tensor:
    """:func:`herd` ``k`` rows of ``x`` within random blocks of at most ``block_size`` rows.

    The rows are shuffled with ``generator`` and split into ``ceil(N / block_size)`` blocks
    whose sizes differ by at most one; each block herds its share of ``k`` (proportional to
    its size, largest remainder, see :func:`cluster_quotas`) toward its own mean. With
    ``block_size = 0`` or ``N <= block_size`` this is :func:`herd` of all rows.
    """
    n = x.shape[0]
    if block_size <= 0 or n <= block_size:
        return herd(x, k)
    perm = torch.randperm(n, generator=generator).to(x.device)
    blocks = perm.tensor_split(math.ceil(n / block_size))
    quotas = cluster_quotas(np.array([b.numel() for b in blocks]), k)
    picks = [rows[herd(x[rows], int(q))] for rows, q in zip(blocks, quotas, strict=True) if q]
    return torch.cat(picks) if picks else perm[:0]


@STRATEGIES.register
class KMeansPrototypes(StaticStrategy):
    """k-means prototypes (Sorscher et al. 2022): keep the least prototypical samples.

    Clusters the Morgan fingerprints (``features`` signal, default) or the model embeddings
    (``source="embeddings"``) with scikit-learn k-means, then keeps from every cluster a quota
    proportional to its size (largest-remainder rounding, so quotas sum to ``num_keep``) made
    of the samples farthest from their centroid. Applies to any task.

    Cost: above 10,000 samples, one k-means++ seeding on a sample of the rows, at most about
    1,000 mini-batch steps of 4,096 rows (at least one pass over the data) and one chunked
    pass assigning every row to its nearest centroid, so the selection is linear in ``N``
    and needs no dense float copy of the fingerprints. (Before: three seedings, up to 100
    passes over the data, an ``N × clusters`` distance matrix and a float32 copy of the
    fingerprints, 8 GB at a million molecules.)

    Options:
        source: ``"features"`` (fixed input features, e.g. Morgan fingerprints) or
            ``"embeddings"`` (the proxy model's representation, last warm-up epoch).
        clusters: number of clusters (default ``clamp(round(sqrt(N)/2), 2, 256)``).
        minibatch: ``None`` (default) uses ``MiniBatchKMeans`` above 10,000 samples and
            ``KMeans`` below; ``True``/``False`` force one.
    """

    name = "kmeans"
    description = "Cluster fingerprints/embeddings; keep the farthest from centroid per cluster."
    scales = "O(N·clusters), once; keeps the fingerprints, 2 KB per molecule at 2048 bits"
    signals = frozenset({"features", "embeddings"})
    options = {"source": "features", "clusters": None, "minibatch": None}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        source = self.settings["source"]
        if source not in ("features", "embeddings"):
            raise ConfigError(
                f"kmeans option source={source!r} must be 'features' (Morgan fingerprints) "
                "or 'embeddings'"
            )
        clusters = self.settings["clusters"]
        if clusters is not None and (not isinstance(clusters, int) or clusters < 1):
            raise ConfigError(f"kmeans option clusters={clusters!r} must be a whole number >= 1")
        self.signals = frozenset({source})
        self.clustering: dict[str, torch.Tensor] = {}
        """After selection: ``labels`` (cluster id, -1 = not clustered) and ``distance`` to
        the centroid of every dataset index."""

    def observe(self, epoch: int, indices: torch.Tensor, **signals: torch.Tensor) -> None:
        """Store the clustering input by dataset index (fingerprints keep their dtype)."""
        source = self.settings["source"]
        rows = signals[source].reshape(indices.numel(), -1)
        dtype = rows.dtype if source == "features" else torch.float32
        self._table("points", (rows.shape[1],), dtype=dtype)[indices] = rows.to(dtype)
        self._mark_seen(indices)

    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """Per-cluster quotas of the samples farthest from their centroid."""
        points = self._tables.get("points")
        seed = _seed(generator)

        def choose(rows: torch.Tensor, k: int) -> torch.Tensor:
            # all rows seen (the usual case): cluster the table itself, without a copy
            table = points if rows.numel() == points.shape[0] else points[rows]
            labels, distance = self._cluster(table.cpu().numpy(), seed)
            full_labels = torch.full((points.shape[0],), -1, dtype=torch.long)
            full_distance = torch.full((points.shape[0],), float("nan"))
            full_labels[rows.cpu()] = torch.from_numpy(labels).long()
            full_distance[rows.cpu()] = torch.from_numpy(distance).float()
            self.clustering = {"labels": full_labels, "distance": full_distance}
            return torch.from_numpy(quota_farthest(labels, distance, k))

        return Selection(self._keep_unseen_then(num_keep, generator, choose))

    def _cluster(self, x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Cluster labels and distance to the own centroid of every row of ``x``.

        Sparse inputs (fingerprints, a few % of bits set) are clustered as a float64 CSR
        matrix built straight from the stored integers (never a dense float copy), which
        scikit-learn handles much faster than the dense array (float32 would make its
        k-means++ seeding convert chunks to dense float64 again). One k-means++ seeding
        (scikit-learn's default for it), and at most about ``FIT_STEPS`` mini-batch steps
        (at least one pass over the data), then every row goes to its nearest centroid.
        """
        from scipy import sparse
        from sklearn.cluster import KMeans, MiniBatchKMeans

        n = x.shape[0]
        clusters = self.settings["clusters"] or min(256, max(2, round(math.sqrt(n) / 2)))
        clusters = min(clusters, n)
        minibatch = self.settings["minibatch"]
        if minibatch is None:
            minibatch = n > 10_000
        if minibatch:
            passes = max(1, min(100, math.ceil(FIT_STEPS * MINIBATCH / n)))
            model = MiniBatchKMeans(
                clusters,
                random_state=seed,
                n_init=1,
                batch_size=MINIBATCH,
                max_iter=passes,
                compute_labels=False,
            )
        else:
            model = KMeans(clusters, random_state=seed, n_init=1)
        sparse_input = np.count_nonzero(x) < 0.1 * x.size
        data = sparse.csr_matrix(x, dtype=np.float64) if sparse_input else np.asarray(x, np.float32)
        model.fit(data)
        return nearest_centroid(data, model.cluster_centers_.astype(data.dtype))


MINIBATCH = 4096
"""Rows per mini-batch step of :class:`KMeansPrototypes` above 10,000 samples."""

FIT_STEPS = 1000
"""About the most mini-batch steps :class:`KMeansPrototypes` takes (at least one pass)."""


def nearest_centroid(
    data: np.ndarray | Any, centres: np.ndarray, chunk: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """Label of the nearest of ``centres`` and the distance to it, for every row of ``data``.

    ``data`` is a dense array or a CSR matrix; rows are processed ``chunk`` at a time with
    ``‖x − c‖² = ‖x‖² − 2⟨x, c⟩ + ‖c‖²``, so memory stays ``O(chunk · clusters)``.
    """
    from scipy import sparse

    n = data.shape[0]
    labels = np.empty(n, dtype=np.int64)
    distance = np.empty(n, dtype=np.float64)
    centre_sq = (centres**2).sum(axis=1)
    for start in range(0, n, chunk):
        rows = data[start : start + chunk]
        if sparse.issparse(rows):
            row_sq = np.asarray(rows.multiply(rows).sum(axis=1)).ravel()
        else:
            row_sq = (rows * rows).sum(axis=1)
        d2 = np.asarray(rows @ centres.T) * -2.0 + centre_sq
        nearest = d2.argmin(axis=1)
        labels[start : start + chunk] = nearest
        best = d2[np.arange(nearest.size), nearest] + row_sq
        distance[start : start + chunk] = np.sqrt(np.maximum(best, 0.0))
    return labels, distance


def cluster_quotas(sizes: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` over clusters proportionally to ``sizes`` (largest remainder; sums to k)."""
    total = int(sizes.sum())
    exact = sizes * (k / total)
    quota = np.floor(exact).astype(np.int64)
    left = k - int(quota.sum())
    if left > 0:
        order = np.argsort(-(exact - quota), kind="stable")
        quota[order[:left]] += 1
    return np.minimum(quota, sizes)


def quota_farthest(labels: np.ndarray, distance: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``quota_c`` samples farthest from the centroid in every cluster ``c``."""
    sizes = np.bincount(labels)
    quota = cluster_quotas(sizes, k)
    order = np.lexsort((-distance, labels))
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(labels.size) - start[labels[order]]
    return order[rank < quota[labels[order]]]


@hookimpl
def molpeg_register_strategies() -> list[type[Strategy]]:
    """Register the built-in static strategies."""
    return list(STRATEGIES)
