"""The plain-PyTorch example runs on real molecules and learns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_torch_minimal_example_prunes_and_learns() -> None:
    bundled = ROOT / "molpeg_plugins" / "data" / "bbbp.csv"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "torch_minimal.py"),
            str(bundled),
            "--epochs",
            "4",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    rows = re.findall(
        r"epoch\s+(\d+)\s+trained on\s+(\d+) molecules\s+val ROC-AUC ([\d.]+)", result.stdout
    )
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]
    kept = [int(r[1]) for r in rows]
    assert kept[0] == 1632 and kept[1:] == [653, 653, 653]  # 1632 − round(0.6·1632) = 653
    assert float(rows[-1][2]) > 0.8
