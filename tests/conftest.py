"""Shared fixtures: paths to the committed real-data subsets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    """Folder of the committed real-data subsets (see tests/data/SOURCES.md)."""
    return DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
