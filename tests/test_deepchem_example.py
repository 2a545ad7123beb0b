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
    assert rows == [("1", "640"), ("2", "320"), ("3", "320")]  # 800·0.8 train, half kept
    auc = float(re.search(r"validation ROC-AUC ([\d.]+)", result.stdout).group(1))
    assert 0.6 < auc <= 1.0


@pytest.mark.deepchem
@pytest.mark.slow
def test_deepchem_tox21_example_skips_rows_rdkit_cannot_parse(tmp_path: Path) -> None:
    """Real Tox21 rows with an aluminium SMILES (row 1,322 of the full file): a row-numbered
    skip report, every other row trained on, no traceback."""
    data = tmp_path / "tox21_840.csv"
    extra = (ROOT / "tests" / "data" / "tox21_rows_1300_1339.csv").read_text().splitlines(True)
    data.write_text((ROOT / "tests" / "data" / "tox21_800.csv").read_text() + "".join(extra[1:]))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "deepchem_tox21.py"), str(data), "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "skipped 1 of 840 rows:" in result.stderr
    assert "row 822 (line 824): invalid SMILES 'NC(=O)NC1N=C(O[AlH3](O)O)NC1=O'" in result.stderr
    rows = re.findall(r"epoch (\d+) trained on (\d+) molecules", result.stdout)
    assert rows == [("1", str(int(0.8 * 839)))]  # the 839 valid rows, 80% for training
