"""Shared fixtures: paths to the committed real-data subsets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread for the test.

    The models in the tests are tiny: thread start-up and barriers would dominate their cost,
    badly so on a busy 2-core CI machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def csv_head(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], Path]:
    """``csv_head(name, rows)``: a new byte-exact copy of the header and the first ``rows``
    data rows of the committed subset ``tests/data/<name>``, named ``<stem><rows>.csv``."""

    def head(name: str, rows: int) -> Path:
        lines = (DATA / name).read_bytes().splitlines(keepends=True)[: rows + 1]
        stem = Path(name).stem.split("_")[0]
        path = tmp_path_factory.mktemp("csv") / f"{stem}{rows}.csv"
        path.write_bytes(b"".join(lines))
        return path

    return head


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
