"""The DeepChem example runs on real Tox21 molecules, prunes and learns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepchem")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.deepchem
@pytest.mark.slow
def test_deepchem_tox21_example() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "deepchem_tox21.py"), "--epochs", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r"epoch (\d+) trained on (\d+) molecules", result.stdout)
    assert rows == [("0", "640"), ("1", "320"), ("2", "320")]  # 800·0.8 train, half kept
    auc = float(re.search(r"validation ROC-AUC ([\d.]+)", result.stdout).group(1))
    assert 0.6 < auc <= 1.0
