"""Carrying dataset indices through a DataLoader."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wraps a map-style dataset so that each item is ``(index, item)``.

    The index travels with the sample through any sampler, shuffling and collation, so the
    per-sample losses of a batch can be recorded against the molecules actually in it.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]
