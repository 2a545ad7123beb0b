"""Static strategies: a subset chosen once from a proxy model, then fixed (see issue #6)."""

from __future__ import annotations

import torch

from molpeg_plugins.hookspecs import hookimpl
from molpeg_plugins.strategies.base import Selection, Strategy, random_k


class HardRandom(Strategy):
    """Hard random: one uniformly random subset, drawn once and kept for the whole run."""

    name = "hard-random"
    description = "One uniformly random subset, fixed for the whole run (static random baseline)."
    dynamic = False

    def select(self, book, num_keep: int, *, epoch: int, generator: torch.Generator) -> Selection:
        return Selection(random_k(book.num_samples, num_keep, generator, book.device))


@hookimpl
def molpeg_register_strategies() -> list[type[Strategy]]:
    """Register the built-in static strategies."""
    return [HardRandom]
