"""The strategy contract every pruning method implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, get_args

import torch

from molpeg_plugins.errors import ConfigError

if TYPE_CHECKING:
    from molpeg_plugins.engine.scorebook import ScoreBook

TaskType = Literal["classification", "regression"]
"""A learning task: binary (multi-task) classification or regression."""

TASKS: frozenset[str] = frozenset(get_args(TaskType))
"""The task types a strategy can declare in :attr:`Strategy.tasks`."""


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
        min_warmup_epochs: the fewest warm-up epochs the strategy can work with when
            ``needs_warmup`` is set (forgetting needs two to see a transition).
        scales: how the engine's cost of one epoch with this strategy grows with the
            number of molecules ``N``, and its practical limit, for ``molpeg strategies``
            (empty: not stated). The built-ins' are measured by
            ``benchmarks/bench_engine_scaling.py``.
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
    min_warmup_epochs: ClassVar[int] = 1
    scales: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(
                f"strategy {self.name!r} has no option {unknown[0]!r} (valid options: {valid})"
            )
        self.settings: dict[str, Any] = {**self.options, **options}
        self.num_samples: int | None = None
        self.device: torch.device = torch.device("cpu")

    @classmethod
    def parse_options(cls, pairs: Sequence[str]) -> dict[str, Any]:
        """Turn command-line ``KEY=VALUE`` strings into constructor options.

        Each value is converted to the type of the option's default (``float``, ``int``,
        ``bool`` from ``true/false/1/0``, else the string; an option whose default is
        ``None`` takes a number when the value is one). A :class:`ConfigError` names the
        first malformed pair or unknown option.
        """
        parsed: dict[str, Any] = {}
        for pair in pairs:
            key, sep, text = pair.partition("=")
            key, text = key.strip(), text.strip()
            if not sep or not key or not text:
                raise ConfigError(f"strategy option {pair!r} must be KEY=VALUE, e.g. explore=0.2")
            if key not in cls.options:
                valid = ", ".join(sorted(cls.options)) or "none"
                raise ConfigError(
                    f"strategy {cls.name!r} has no option {key!r} (valid options: {valid})"
                )
            parsed[key] = _convert(key, text, cls.options[key])
        return parsed

    def bind(self, num_samples: int, device: torch.device | str | None = None) -> None:
        """Learn the dataset size and the device of the score table before training.

        Called once by :class:`~molpeg_plugins.engine.pruner.Pruner` when it is built, so that
        strategies that keep per-sample state (static ones) can allocate it by dataset
        index. Overrides must call ``super().bind(...)``.
        """
        self.num_samples = int(num_samples)
        self.device = torch.device(device or "cpu")

    @classmethod
    def check_task(cls, task: str) -> None:
        """Raise :class:`ConfigError` if the strategy makes no sense for ``task``.

        Args:
            task: ``"classification"`` (binary or multitask binary, labels may be missing)
                or ``"regression"``.
        """
        if task not in TASKS:
            raise ConfigError(f"unknown task type {task!r}: use one of {', '.join(sorted(TASKS))}")
        if task not in cls.tasks:
            applies = " and ".join(sorted(cls.tasks))
            why = (
                ": it ranks class probabilities, which a regression model does not produce"
                if task == "regression"
                else ""
            )
            raise ConfigError(
                f"strategy {cls.name!r} applies to {applies} data only, not {task}{why}; pick "
                f"one whose tasks include {task} in `molpeg strategies`"
            )

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

    def selection_stats(self) -> dict[str, float]:
        """Diagnostics of the last :meth:`select`, added to that epoch's statistics.

        They reach the observer hooks, the per-epoch history, ``report.json`` and the
        Lightning logger with the pruner's own statistics. The default adds none.
        """
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint besides the score table (default: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


StrategyClass = TypeVar("StrategyClass", bound=type[Strategy])


class StrategyList(list[type[Strategy]]):
    """The strategies a plugin module registers, collected by decorating each class.

    Example::

        STRATEGIES = StrategyList()

        @STRATEGIES.register
        class MyStrategy(Strategy): ...

        @hookimpl
        def molpeg_register_strategies():
            return list(STRATEGIES)
    """

    def register(self, cls: StrategyClass) -> StrategyClass:
        """Class decorator: add ``cls`` to this list and return it unchanged."""
        self.append(cls)
        return cls


def _convert(key: str, text: str, default: Any) -> Any:
    """``text`` as the type of ``default`` (see :meth:`Strategy.parse_options`)."""
    try:
        if isinstance(default, bool):
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = type(default).__name__
        raise ConfigError(f"strategy option {key}={text!r} must be a {kind}") from None
    if default is None:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def top_k(values: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of the ``k`` largest ``values``; ``nan`` counts as +inf; ties broken at random.

    Deterministic for a given generator state, on any device.
    """
    n = values.numel()
    perm = torch.randperm(n, generator=generator).to(values.device)
    shuffled = torch.nan_to_num(values[perm].float(), nan=float("inf"))
    order = torch.argsort(shuffled, descending=True, stable=True)
    return perm[order[:k]]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (``nan`` if either is constant)."""
    ranks = [torch.argsort(torch.argsort(x.float())).double() for x in (a, b)]
    x, y = (r - r.mean() for r in ranks)
    denom = (x.norm() * y.norm()).item()
    return (x @ y).item() / denom if denom else float("nan")


def random_k(n: int, k: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``k`` distinct indices out of ``range(n)``, uniformly at random."""
    return torch.randperm(n, generator=generator)[:k].to(device)
