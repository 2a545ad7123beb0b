"""The training loader MolPeg serves to Lightning, and which molecules each batch holds.

:class:`PrunedLoader` rebuilds the user's training ``DataLoader`` around the pruner's
:class:`~molpeg_plugins.PruningSampler` (same dataset, batch size, collate function and
workers). The loader iterates the sampler's order of the epoch in consecutive chunks of
``batch_size`` and returns batches in order, so batch ``k`` holds the dataset indices
``order[k*B:(k+1)*B]``: :meth:`PrunedLoader.start_epoch` snapshots that order and
:meth:`PrunedLoader.batch_indices` slices it, checking each batch's size against its slice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from molpeg_plugins.errors import MolPegError


class PrunedLoader:
    """Serves training loaders whose sampler is the pruner's, and maps batches to indices.

    Args:
        seed: seed of the served loaders' generator (worker seeds).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.batch_size = 1
        self.drop_last = False
        self.order: torch.Tensor | None = None
        self._order_device: torch.Tensor | None = None
        self._served: dict[int, DataLoader] = {}

    @staticmethod
    def check(loader: Any) -> DataLoader:
        """``loader`` if it is a ``DataLoader`` with a batch size.

        Raises:
            MolPegError: it is not.
        """
        if not isinstance(loader, DataLoader) or loader.batch_size is None:
            raise MolPegError(
                "MolPegCallback needs a torch DataLoader built with batch_size (e.g. chemprop's "
                f"build_dataloader); got {type(loader).__name__}"
            )
        return loader

    def served(self, loader: DataLoader) -> DataLoader | None:
        """What was already served for ``loader`` (itself, if it is a served one), or None."""
        if id(loader) in self._served:
            return self._served[id(loader)]
        if any(served is loader for served in self._served.values()):
            return loader
        return None

    def serve(self, loader: DataLoader, sampler: Sampler[int]) -> DataLoader:
        """``loader`` rebuilt around ``sampler``; remembered for :meth:`served`."""
        served = DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            persistent_workers=loader.persistent_workers,
            prefetch_factor=loader.prefetch_factor if loader.num_workers else None,
            generator=torch.Generator().manual_seed(self.seed),
        )
        self.batch_size = int(loader.batch_size)  # type: ignore[arg-type]
        self.drop_last = bool(loader.drop_last)
        self._served[id(loader)] = served
        return served

    def start_epoch(self, sampler: Sampler[int], device: torch.device) -> None:
        """Snapshot this rank's order of dataset indices for the epoch."""
        self.order = torch.as_tensor(list(iter(sampler)), dtype=torch.long)
        self._order_device = self.order.to(device)

    def batch_indices(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Dataset indices of the molecules in training batch ``batch_idx`` (on the device).

        Raises:
            RuntimeError: the batch does not fit the epoch's order (a foreign loader).
        """
        assert self.order is not None and self._order_device is not None
        start = batch_idx * self.batch_size
        size = len(batch[0])
        if start + size > self.order.numel():
            raise RuntimeError(
                f"molpeg: training batch {batch_idx} of {size} molecules does not fit the "
                f"epoch's order of {self.order.numel()} indices; the training loader is not "
                "the one MolPegCallback installed"
            )
        return self._order_device[start : start + size]
