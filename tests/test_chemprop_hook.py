"""The start-up hook behind ``chemprop train --plugin molpeg``: packaging and activation rules."""

from __future__ import annotations

import importlib.metadata
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PTH = "molpeg_chemprop_hook.pth"


def test_pth_is_installed_in_site_packages() -> None:
    """``pip install -e .`` (PEP 660) put the hook file next to the editable finder."""
    dists = list(importlib.metadata.distributions(name="molpeg"))
    if not dists:
        pytest.skip("molpeg is not installed")
    listed = {str(f) for dist in dists for f in dist.files or []}
    assert PTH in listed, "the installed distribution does not record the .pth file"
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    found = [Path(d) / PTH for d in dirs if (Path(d) / PTH).is_file()]
    assert found, f"{PTH} not found in {dirs}"
    line = found[0].read_text().strip()
    assert "\n" not in line and "import molpeg_chemprop.autohook" in line
    assert "except ImportError" in line


def test_pth_line_never_fails_without_the_package() -> None:
    """With molpeg gone (stale .pth), the line is a silent no-op."""
    line = (REPO / "adapters" / PTH).read_text()
    code = f"import sys; sys.modules['molpeg_chemprop'] = None\n{line}"
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""


@pytest.mark.slow
def test_regular_wheel_ships_the_pth(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("molpeg_plugins", "adapters"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    out = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("molpeg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert PTH in names and "molpeg_chemprop/autohook.py" in names


@pytest.mark.parametrize(
    ("argv", "env", "registered"),
    [
        (["chemprop", "train", "-i", "x.csv"], None, False),
        (["chemprop", "train", "--plugin", "molpeg"], None, True),
        (["chemprop", "train", "--plugin=molpeg"], None, True),
        (["chemprop", "train", "--plugin", "molpeg"], "1", False),
        (["python", "-c", "pass"], None, False),
    ],
)
def test_hook_registers_only_for_plugin_runs(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: str | None, registered: bool
) -> None:
    wrapt = pytest.importorskip("wrapt")
    from molpeg_chemprop import autohook

    calls: list[str] = []
    monkeypatch.setattr(wrapt, "register_post_import_hook", lambda fn, name: calls.append(name))
    monkeypatch.setattr(sys, "argv", argv)
    if env is None:
        monkeypatch.delenv("MOLPEG_DISABLE_CHEMPROP_HOOK", raising=False)
    else:
        monkeypatch.setenv("MOLPEG_DISABLE_CHEMPROP_HOOK", env)
    assert autohook.install() is registered
    assert calls == (["chemprop.cli.main"] if registered else [])
