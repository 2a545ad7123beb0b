"""The architecture contract of ``[tool.importlinter]`` in ``pyproject.toml`` holds, and bites.

``lint-imports`` (import-linter) checks the real tree; then the same contract is run on a copy
of the core with one import added, to prove each rule fails when it is broken (a function-level
import counts as much as a top-level one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the ``molpeg_plugins`` found in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_architecture_contract_is_kept() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "added", "contract"),
    [
        (
            "pruner.py",
            "\n\ndef _uses_chemprop():\n    import chemprop  # noqa: F401\n",
            "The core never imports a framework or an adapter",
        ),
        (
            "scoring.py",
            "\n\ndef _uses_the_cli():\n    from molpeg_plugins.cli import app  # noqa: F401\n",
            "The engine never imports the application",
        ),
        (
            "data.py",
            "\n\ndef _uses_source():\n    from molpeg_plugins import source  # noqa: F401\n",
            "No import cycles inside the core",
        ),
    ],
)
def test_the_contract_bites(tmp_path: Path, module: str, added: str, contract: str) -> None:
    """One added (lazy) import in a copy of the core breaks exactly the rule it violates."""
    shutil.copytree(
        ROOT / "molpeg_plugins",
        tmp_path / "molpeg_plugins",
        ignore=shutil.ignore_patterns("__pycache__", "data"),
    )
    with open(tmp_path / "molpeg_plugins" / module, "a", encoding="utf-8") as fh:
        fh.write(added)
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout
    assert "2 kept, 1 broken" in result.stdout
