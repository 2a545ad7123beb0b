"""A sampler whose index set changes between epochs, sharded like DistributedSampler."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class PruningSampler(Sampler[int]):
    """Yields the current epoch's kept dataset indices; the set is swapped with :meth:`set_order`.

    The DataLoader that owns this sampler never needs rebuilding: ``len(loader)`` and
    ``iter(loader)`` read the order that is current at the time of the call.

    Under ``torch.distributed`` (or with explicit ``num_replicas``/``rank``) every rank gets a
    disjoint, interleaved slice ``order[rank::num_replicas]`` of the *same* order. As in
    :class:`torch.utils.data.DistributedSampler`, the order is padded by repeating its first
    indices so that every rank gets the same number of samples (or truncated with
    ``drop_last=True``); the pruner averages the duplicate records.

    Args:
        order: initial order of dataset indices (default: ``range(num_samples)``).
        num_samples: size of the dataset, used when ``order`` is not given.
        num_replicas: number of ranks (default: the initialised process group's size, else 1).
        rank: this process's rank (default: from the process group, else 0).
        drop_last: drop the tail instead of padding when sharding.
    """

    def __init__(
        self,
        order: torch.Tensor | None = None,
        *,
        num_samples: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if order is None:
            if num_samples is None:
                raise ValueError("give either the initial order or num_samples")
            order = torch.arange(num_samples)
        self._order = torch.as_tensor(order).long().cpu()
        self._num_replicas = num_replicas
        self._rank = rank
        self.drop_last = drop_last

    @property
    def num_replicas(self) -> int:
        """Number of ranks the order is split over (resolved lazily)."""
        if self._num_replicas is not None:
            return self._num_replicas
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
        return 1

    @property
    def rank(self) -> int:
        """This process's rank (resolved lazily)."""
        if self._rank is not None:
            return self._rank
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
        return 0

    @property
    def order(self) -> torch.Tensor:
        """The full (unsharded) order of the current epoch."""
        return self._order

    def set_order(self, order: torch.Tensor) -> None:
        """Replace the indices visited from the next ``iter()`` on."""
        self._order = torch.as_tensor(order).long().cpu()

    def _local(self) -> torch.Tensor:
        world, order = self.num_replicas, self._order
        if world == 1:
            return order
        n = order.numel()
        if self.drop_last:
            total = (n // world) * world
            order = order[:total]
        else:
            total = math_ceil_div(n, world) * world
            if total > n and n > 0:
                reps = math_ceil_div(total - n, n)
                order = torch.cat([order, order.repeat(reps)[: total - n]])
        return order[self.rank : total : world]

    def indices(self) -> torch.Tensor:
        """This rank's indices of the epoch as one ``int64`` tensor: what iterating yields,
        without a Python int per sample (a training loop that batches by slicing uses it)."""
        return self._local()

    def __iter__(self) -> Iterator[int]:
        return iter(self._local().tolist())

    def __len__(self) -> int:
        n, world = self._order.numel(), self.num_replicas
        if world == 1:
            return n
        return n // world if self.drop_last else math_ceil_div(n, world)


def math_ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative integers."""
    return -(-a // b)
