"""The options of a pruning run, validated once."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from molpeg_plugins.errors import ConfigError

REFERENCE_MODES = ("auto", "head", "model")
"""Values of :attr:`PruneConfig.reference`."""


@dataclass
class PruneConfig:
    """Options of a pruning run, shared by every front end (Python API, callbacks, CLI).

    Attributes:
        prune_ratio: fraction of the training set removed in a pruned epoch, in ``[0, 1)``.
        strategy: registered strategy name (``molpeg strategies`` lists them).
        ema_momentum: β of the reference update ``ξ ← β·ξ + (1−β)·θ``, in ``[0, 1]``.
        warmup_epochs: leading epochs on the full data, so that every sample is scored
            before the first pruning. ``0`` starts pruning at once from unscored samples
            (they are kept first, in random order).
        anneal_epochs: trailing epochs on the full data (InfoBatch's annealing); ``None``
            takes the strategy's default (0 for most, 12.5% of the epochs for InfoBatch).
        rescale: multiply the loss of kept samples by ``N / num_kept`` in pruned epochs
            (strategies that define their own weights, like InfoBatch, ignore it).
        shuffle: shuffle the kept samples of each epoch.
        seed: seed of every random choice the pruner makes.
        strategy_options: keyword arguments passed to the strategy's constructor.
        reference: what the EMA reference of a reference-based strategy (MolPeg) is.
            ``"head"`` averages only the prediction head and runs it on the embedding the
            online forward already computed (encoder shared), so the reference costs a head
            forward instead of a model forward; models whose head the adapter does not know
            use the whole model. ``"model"`` is the paper's rule: the whole model is averaged
            and runs its own forward pass on every batch. ``"auto"`` (default) is ``"head"``
            for classification and ``"model"`` for regression or an unknown task
            (:func:`resolve_reference`): on HIV-10k the head reference is within noise of the
            paper's at 40, 60 and 80% pruned, on Lipophilicity it is far worse (see the
            benchmarks page).
        reference_every: in pruned epochs, run the reference on every k-th training batch
            only; a molecule of the other batches is scored against its last reference
            loss (stale by at most the batches since its last refresh). Epochs on the full
            data (warm-up, annealing) refresh every batch, so every molecule has a reference
            loss before pruning starts. ``1`` (default) refreshes every batch.
    """

    prune_ratio: float = 0.6
    strategy: str = "molpeg"
    ema_momentum: float = 0.5
    warmup_epochs: int = 1
    anneal_epochs: int | None = None
    rescale: bool = False
    shuffle: bool = True
    seed: int = 0
    strategy_options: dict[str, Any] = field(default_factory=dict)
    reference: str = "auto"
    reference_every: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> PruneConfig:
        """Raise :class:`ConfigError` naming the first invalid option; return ``self``."""
        r = self.prune_ratio
        if not isinstance(r, (int, float)) or math.isnan(r) or not 0.0 <= r < 1.0:
            raise ConfigError(
                f"prune_ratio={r!r} is outside [0, 1): it is the fraction of samples removed, "
                "e.g. 0.6 keeps 40%."
            )
        b = self.ema_momentum
        if not isinstance(b, (int, float)) or math.isnan(b) or not 0.0 <= b <= 1.0:
            raise ConfigError(f"ema_momentum={b!r} is outside [0, 1]; the papers use 0.5.")
        for name in ("warmup_epochs", "anneal_epochs"):
            value = getattr(self, name)
            if value is None and name == "anneal_epochs":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name}={value!r} must be a whole number >= 0.")
        if self.reference not in REFERENCE_MODES:
            raise ConfigError(
                f"reference={self.reference!r}: use one of {', '.join(REFERENCE_MODES)} "
                "(model = the paper's full EMA model; head = EMA of the prediction head only; "
                "auto = head for classification, model otherwise)."
            )
        k = self.reference_every
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(
                f"reference_every={k!r} must be a whole number >= 1 (1 = every batch)."
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for reports and checkpoints."""
        return asdict(self)


def resolve_reference(mode: str, task: str | None) -> str:
    """The reference an adapter builds for ``mode`` (:attr:`PruneConfig.reference`) and ``task``.

    ``"auto"`` is ``"head"`` for classification and ``"model"`` otherwise (regression, or a
    task the adapter does not know); ``"head"`` and ``"model"`` are returned as they are.
    """
    if mode != "auto":
        return mode
    return "head" if task == "classification" else "model"


def num_kept(num_samples: int, prune_ratio: float) -> int:
    """Size of a pruned epoch: ``N − round_half_up(r·N)``, at least 1 when ``N > 0``.

    The rounding rule is *half up* (``floor(r·N + 0.5)`` samples are removed), which is
    platform independent, unlike Python's banker's ``round``. Example: N=5, r=0.5 removes
    3 and keeps 2. A non-empty set never shrinks to zero samples.
    """
    if num_samples <= 0:
        return 0
    removed = math.floor(prune_ratio * num_samples + 0.5)
    return max(1, num_samples - removed)
