"""The strategy contract every pruning method implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from molpeg_plugins.errors import ConfigError

if TYPE_CHECKING:
    from molpeg_plugins.scorebook import ScoreBook


@dataclass
class Selection:
    """The samples a strategy keeps for one epoch.

    Attributes:
        indices: dataset indices of the kept samples (any order; the pruner shuffles).
        weights: optional loss weight of each kept sample, aligned with ``indices``
            (``None`` = weight 1 for all).
    """

    indices: torch.Tensor
    weights: torch.Tensor | None = None


class Strategy(ABC):
    """A pruning method: turns per-sample losses into scores and scores into a keep set.

    Subclasses set the class attributes and implement :meth:`select`; they are made known
    to molpeg through the ``molpeg_register_strategies`` hook.

    Class attributes:
        name: the name users pass as ``--strategy``.
        description: one line for ``molpeg strategies``.
        dynamic: ``True`` if the keep set is re-chosen every epoch from fresh scores;
            ``False`` for static strategies, whose subset is chosen once and then fixed.
        needs_reference: ``True`` if :meth:`score` needs the reference model's losses.
        tasks: the task types the strategy makes sense for.
        default_anneal_fraction: fraction of the final epochs trained on the full data when
            the user does not set ``anneal_epochs`` (InfoBatch uses 0.125).
        options: names and defaults of the keyword options the constructor accepts.
        signals: model outputs the strategy needs besides losses, delivered to
            :meth:`observe` (``"predictions"``, ``"targets"``, ``"mask"``, ``"embeddings"``,
            ``"features"``). Adapters only compute what some strategy asks for
            (:meth:`Pruner.wants`).
        needs_warmup: ``True`` if selection needs at least one scored warm-up epoch
            (static strategies use the warm-up epochs as their proxy training).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    dynamic: ClassVar[bool] = True
    needs_reference: ClassVar[bool] = False
    tasks: ClassVar[frozenset[str]] = frozenset({"classification", "regression"})
    default_anneal_fraction: ClassVar[float] = 0.0
    options: ClassVar[dict[str, Any]] = {}
    signals: ClassVar[frozenset[str]] = frozenset()
    needs_warmup: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(
                f"strategy {self.name!r} has no option {unknown[0]!r} (valid options: {valid})"
            )
        self.settings: dict[str, Any] = {**self.options, **options}

    def score(self, online_loss: torch.Tensor, reference_loss: torch.Tensor | None) -> torch.Tensor:
        """Per-sample score from the epoch's mean losses of the updated samples.

        The default is the online loss itself. ``nan`` inputs may be returned as ``nan``.
        """
        return online_loss

    def observe(self, epoch: int, indices: torch.Tensor, **signals: torch.Tensor) -> None:
        """Receive per-sample model outputs for the dataset ``indices`` of one batch.

        Called through :meth:`Pruner.observe` during training with the signals named in
        :attr:`signals`; each is a tensor whose first dimension matches ``indices``:
        ``predictions`` (``(B, T)`` probabilities for classification, raw values for
        regression), ``targets`` and ``mask`` (``(B, T)``, mask true where labelled),
        ``embeddings`` (``(B, D)`` the representation fed to the model's head), and
        ``features`` (``(B, D)`` fixed input features such as Morgan fingerprints).
        Must store by dataset index. The default ignores everything.
        """

    @abstractmethod
    def select(
        self, book: ScoreBook, num_keep: int, *, epoch: int, generator: torch.Generator
    ) -> Selection:
        """Choose ``num_keep`` dataset indices for ``epoch`` from the score table.

        ``generator`` is a CPU generator seeded from the run's seed and ``epoch``: draw all
        randomness from it so that every rank and every resumed run makes the same choice.
        """

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint besides the score table (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def top_k(values: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of the ``k`` largest ``values``; ``nan`` counts as +inf; ties broken at random.

    Deterministic for a given generator state, on any device.
    """
    n = values.numel()
    perm = torch.randperm(n, generator=generator).to(values.device)
    shuffled = torch.nan_to_num(values[perm].float(), nan=float("inf"))
    order = torch.argsort(shuffled, descending=True, stable=True)
    return perm[order[:k]]


def random_k(n: int, k: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``k`` distinct indices out of ``range(n)``, uniformly at random."""
    return torch.randperm(n, generator=generator)[:k].to(device)
