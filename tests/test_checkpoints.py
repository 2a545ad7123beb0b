"""The safe checkpoint loader: real Chemprop checkpoints load, a malicious pickle is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from molpeg_plugins.cli import app
from molpeg_plugins.errors import MolPegError
from molpeg_plugins.pipeline.checkpoints import UnsafeCheckpointError, safe_load, vet_checkpoint
from molpeg_plugins.plugins import make_plugin_manager

REAL = "admet_ai_v2_classification_model_0.pt"


class _Payload:
    """Unpickling this runs a shell command (what an attacker would put in a checkpoint)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def malicious(tmp_path: Path) -> tuple[Path, Path]:
    """A zip-format ``torch.save`` whose pickle calls ``os.system`` on load, and its marker."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


def chemprop_allowed() -> bool:
    """Whether an installed plugin allows Chemprop's classes (the chemprop adapter)."""
    from molpeg_plugins.pipeline.checkpoints import allowed_globals

    return any("chemprop.nn" in repr(obj) for obj in allowed_globals())


def test_real_chemprop_checkpoint_loads_with_weights_only(data_dir: Path):
    if not chemprop_allowed():
        pytest.skip("the chemprop adapter does not contribute its safe globals (not installed)")
    ckpt = safe_load(data_dir / REAL)
    assert isinstance(ckpt, dict) and "state_dict" in ckpt
    assert any(k.startswith("message_passing.") for k in ckpt["state_dict"])
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values())


def test_real_checkpoint_is_refused_without_the_framework_allow_list(data_dir: Path):
    bare = make_plugin_manager(entry_points=False)  # built-ins only: no chemprop classes
    with pytest.raises(UnsafeCheckpointError) as info:
        vet_checkpoint(data_dir / REAL, plugin_manager=bare)
    assert "'chemprop." in str(info.value) and "--trust-checkpoint" in str(info.value)
    assert safe_load(data_dir / REAL, trust=True, plugin_manager=bare)["state_dict"]


def test_malicious_pickle_is_refused_and_not_executed(malicious: tuple[Path, Path]):
    path, marker = malicious
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_load(path)
    message = str(info.value)
    assert "system" in message and "not on molpeg's allow-list" in message
    assert "--trust-checkpoint" in message and str(path) in message
    assert not marker.exists(), "the payload ran"


def test_malicious_legacy_pickle_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.pt"
    torch.save({"x": _Payload(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(MolPegError):
        safe_load(path)
    assert not marker.exists()


def test_cli_refuses_a_malicious_pretrained_checkpoint(
    malicious: tuple[Path, Path], data_dir: Path, tmp_path: Path
):
    path, marker = malicious
    result = CliRunner().invoke(
        app,
        [
            "prune",
            str(data_dir / "bbbp_1k.csv"),
            "--backend",
            "torch",
            "--pretrained",
            str(path),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "refused to load" in result.output and "--trust-checkpoint" in result.output
    assert not marker.exists()
    assert not (tmp_path / "out" / "pruned.csv").exists()


def test_missing_checkpoint(tmp_path: Path):
    with pytest.raises(MolPegError, match="no such checkpoint file"):
        safe_load(tmp_path / "missing.pt")
