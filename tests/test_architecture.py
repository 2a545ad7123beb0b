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


FRAMEWORKS = "The core never imports a framework or an adapter"
ENGINE = "The engine and the plugin contract never import the application"
LAYERS = "The command line, the applications, the pipeline and the engine are layers"
ACYCLIC = "No import cycles inside the core"
CONTRACTS = (FRAMEWORKS, ENGINE, LAYERS, ACYCLIC)


@pytest.mark.parametrize(
    ("module", "added", "broken"),
    [
        (
            "engine/pruner.py",
            "\n\ndef _uses_chemprop():\n    import chemprop  # noqa: F401\n",
            {FRAMEWORKS},
        ),
        # Every layer above the engine imports it, so an engine import of the command line
        # is also a layer violation and a cycle.
        (
            "engine/scoring.py",
            "\n\ndef _uses_the_cli():\n    from molpeg_plugins.cli import app  # noqa: F401\n",
            {ENGINE, LAYERS, ACYCLIC},
        ),
        (
            "scaling/laws.py",
            "\n\ndef _uses_source():\n    import molpeg_plugins.source.pruning  # noqa: F401\n",
            {LAYERS},
        ),
        (
            "engine/scorebook.py",
            "\n\ndef _uses_pruner():\n    from molpeg_plugins.engine import pruner  # noqa: F401\n",
            {ACYCLIC},
        ),
    ],
)
def test_the_contract_bites(tmp_path: Path, module: str, added: str, broken: set[str]) -> None:
    """One added (lazy) import in a copy of the core breaks exactly the rules it violates."""
    shutil.copytree(
        ROOT / "molpeg_plugins",
        tmp_path / "molpeg_plugins",
        ignore=shutil.ignore_patterns("__pycache__", "data"),
    )
    with open(tmp_path / "molpeg_plugins" / module, "a", encoding="utf-8") as fh:
        fh.write(added)
    result = _lint(tmp_path)
    assert result.returncode != 0
    for contract in CONTRACTS:
        verdict = "BROKEN" if contract in broken else "KEPT"
        assert f"{contract} {verdict}" in result.stdout, result.stdout
    kept = len(CONTRACTS) - len(broken)
    assert f"{kept} kept, {len(broken)} broken" in result.stdout, result.stdout
