"""A DeepChem dataset view that yields only the samples the pruner keeps, in its order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import deepchem as dc
import numpy as np

from molpeg_plugins import MolPegError, Pruner


@dataclass
class BatchInfo:
    """What the view knows about the batch it yielded last.

    Attributes:
        indices: dataset indices of the real (non-padding) rows, in row order.
        padded_indices: dataset index of every row, padding included (DeepChem pads by
            repeating the batch's own rows).
        X, y, w: the raw, unpadded arrays of the real rows.
        last: ``True`` for the final batch of the epoch.
    """

    indices: np.ndarray
    padded_indices: np.ndarray
    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    last: bool


class PrunedDataset(dc.data.Dataset):
    """The training set as :class:`Pruner` wants it visited: kept samples only, in order.

    Every call of :meth:`iterbatches` (DeepChem calls it once per epoch) yields the current
    epoch's kept samples in the pruner's (shuffled) order and remembers, in :attr:`batch`,
    the dataset indices of the batch it just yielded. Nothing is copied per epoch for a
    ``NumpyDataset``; a ``DiskDataset`` is read with ``select(..., output_numpy_dataset=True)``
    once per epoch, so no shards are written.

    Use it only as the ``dataset`` argument of ``model.fit``: evaluating on it would iterate
    the kept samples and disturb the batch bookkeeping.

    Args:
        base: the full training set (``NumpyDataset`` or ``DiskDataset``); dataset index
            ``i`` is its ``i``-th sample.
        pruner: the pruner whose current selection is visited.
    """

    def __init__(self, base: dc.data.Dataset, pruner: Pruner) -> None:
        if len(base) != pruner.num_samples:
            raise MolPegError(
                f"the dataset has {len(base)} samples but the pruner was built for "
                f"{pruner.num_samples}; build both from the same training set"
            )
        self.base = base
        self.pruner = pruner
        self.batch: BatchInfo | None = None
        self.epochs_started = 0

    # ------------------------------------------------------------------ Dataset API

    def __len__(self) -> int:
        """Number of samples in the current epoch."""
        return int(self.pruner.current.indices.numel())

    def get_shape(self) -> tuple[tuple[int, ...], ...]:
        """Shapes of X, y, w, ids of the current epoch's samples."""
        n = len(self)
        return tuple((n, *shape[1:]) for shape in self.base.get_shape())

    def get_task_names(self) -> np.ndarray:
        """Task names of the underlying dataset."""
        return self.base.get_task_names()

    @property
    def X(self) -> np.ndarray:
        """Features of the current epoch's samples, in visiting order."""
        return self.base.X[self.order()]

    @property
    def y(self) -> np.ndarray:
        """Labels of the current epoch's samples, in visiting order."""
        return self.base.y[self.order()]

    @property
    def w(self) -> np.ndarray:
        """Weights of the current epoch's samples, in visiting order."""
        return self.base.w[self.order()]

    @property
    def ids(self) -> np.ndarray:
        """Identifiers of the current epoch's samples, in visiting order."""
        return self.base.ids[self.order()]

    def order(self) -> np.ndarray:
        """Dataset indices of the current epoch, in visiting order."""
        return self.pruner.current.indices.cpu().numpy().astype(np.int64)

    def _arrays(self, order: np.ndarray) -> tuple[Any, Any, Any, Any, np.ndarray]:
        """``(X, y, w, ids, rows)``: arrays holding the epoch's samples and each one's row."""
        base = self.base
        if isinstance(base, dc.data.DiskDataset):
            sorted_idx = np.sort(order)
            sub = base.select(sorted_idx, output_numpy_dataset=True)
            rows = np.searchsorted(sorted_idx, order)
            return sub.X, sub.y, sub.w, sub.ids, rows
        return base.X, base.y, base.w, base.ids, order

    def iterbatches(
        self,
        batch_size: int | None = None,
        epochs: int = 1,
        deterministic: bool = False,
        pad_batches: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(X, y, w, ids)`` batches of the kept samples of each epoch.

        The order is the pruner's (already shuffled when ``shuffle`` is on), so
        ``deterministic`` is ignored. The next epoch's selection is read when its first
        batch is requested, i.e. after the callback has ended the previous epoch.
        """
        for _ in range(epochs):
            selection = self.pruner.start_epoch()
            self.epochs_started += 1
            order = selection.indices.cpu().numpy().astype(np.int64)
            X, y, w, ids, rows = self._arrays(order)
            size = batch_size or len(order)
            starts = range(0, len(order), size)
            for start in starts:
                part = rows[start : start + size]
                indices = order[start : start + size]
                X_b, y_b, w_b, ids_b = X[part], y[part], w[part], ids[part]
                padded = indices
                if pad_batches and len(part) < size:
                    X_b, y_b, w_b, ids_b = dc.data.pad_batch(size, X_b, y_b, w_b, ids_b)
                    padded = np.resize(indices, size)  # pad_batch repeats rows in tiles
                self.batch = BatchInfo(
                    indices=indices,
                    padded_indices=padded,
                    X=X[part],
                    y=y[part],
                    w=w[part],
                    last=start + size >= len(order),
                )
                yield X_b, y_b, w_b, ids_b

    def itersamples(self) -> Iterator[tuple[Any, Any, Any, Any]]:
        """Yield ``(x, y, w, id)`` of the current epoch's samples, in visiting order."""
        X, y, w, ids, rows = self._arrays(self.order())
        for r in rows:
            yield X[r], y[r], w[r], ids[r]
