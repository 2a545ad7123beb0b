"""One end-to-end ``molpeg prune`` run per framework backend (real training, 2 epochs)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from molpeg_plugins.cli import app
from molpeg_plugins.hookspecs import hookimpl
from molpeg_plugins.pipeline.backend import Backend
from molpeg_plugins.plugins import get_plugin_manager

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def registered(name: str) -> bool:
    """Whether a backend called ``name`` is registered and its framework imports."""
    backend = get_plugin_manager().backends().get(name)
    return backend is not None and backend.availability()[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("chemprop", marks=pytest.mark.chemprop),
        pytest.param("deepchem", marks=pytest.mark.deepchem),
    ],
)
def test_prune_with_framework_backend(name: str, csv_head, tmp_path: Path):
    if not registered(name):
        pytest.skip(f"backend {name!r} is not registered or its framework is not installed")
    data = csv_head("bbbp_1k.csv", 300)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["prune", str(data), "--backend", name, "--epochs", "2", "--seed", "0", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "row 59 (line 61): invalid SMILES" in result.output

    report = json.loads((out / "report.json").read_text())
    assert report["parameters"]["backend"] == name
    counts = report["counts"]
    assert counts["invalid"] == 2 and counts["train"] == 238 and counts["kept"] == 95
    assert [e["num_kept"] for e in report["epochs"]] == [238, 95]
    assert report["validation_metrics"] and report["test_metrics"]
    assert name in report["versions"]
    scores = pd.read_csv(out / "scores.csv")
    assert scores["kept"].sum() == 95
    assert scores.loc[scores["split"] == "train", "score"].notna().all()
    original = data.read_bytes().splitlines(keepends=True)
    kept = scores.loc[scores["kept"], "row"].tolist()
    assert (out / "pruned.csv").read_bytes() == b"".join(
        [original[0]] + [original[r + 1] for r in kept]
    )
    assert report["files"]["model"] and (out / report["files"]["model"]).exists()
    assert len(list((out / "plots").glob("*.png"))) == 4
    if name == "chemprop":  # the default job fine-tunes the bundled encoder, and says so
        from molpeg_chemprop.backend import BUNDLED_ENCODER

        assert report["parameters"]["pretrained"] == str(BUNDLED_ENCODER)
        assert report["parameters"]["initialisation"].startswith(
            "fine-tuned from the bundled ADMET-AI encoder"
        )
        assert "fine-tuned from the bundled ADMET-AI encoder" in " ".join(result.output.split())
        # the resume state (checkpoints/) goes once the result set is complete
        assert not (out / "checkpoints").exists()
    else:
        assert report["parameters"]["initialisation"] == "trained from scratch"
        assert report["parameters"]["pretrained"] is None


@pytest.mark.slow
@pytest.mark.chemprop
def test_chemprop_from_scratch_and_conflicting_options(csv_head, tmp_path: Path):
    if not registered("chemprop"):
        pytest.skip("chemprop is not installed")
    data = csv_head("bbbp_1k.csv", 120)
    args = ["prune", str(data), "--from-scratch", "--pretrained", str(data)]
    both = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "x")])
    assert both.exit_code == 2 and "exclude each other" in both.output
    out = tmp_path / "scratch"
    result = CliRunner().invoke(
        app, ["prune", str(data), "--from-scratch", "--epochs", "1", "-q", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    parameters = json.loads((out / "report.json").read_text())["parameters"]
    assert parameters["backend"] == "chemprop" and parameters["pretrained"] is None
    assert parameters["initialisation"] == "trained from scratch"


@pytest.mark.chemprop
def test_bundled_encoder_is_the_documented_file_and_loads_safely():
    """The shipped checkpoint is byte for byte the one SOURCES.md names, and passes the vetting."""
    import hashlib

    pytest.importorskip("chemprop")
    from molpeg_chemprop.backend import BUNDLED_ENCODER
    from molpeg_plugins.pipeline.checkpoints import vet_checkpoint

    digest = hashlib.sha256(BUNDLED_ENCODER.read_bytes()).hexdigest()
    sources = (BUNDLED_ENCODER.parent / "SOURCES.md").read_text(encoding="utf-8")
    assert digest in sources and "MIT" in sources
    assert (BUNDLED_ENCODER.parent / "LICENSE-ADMET-AI.txt").read_text().startswith("MIT License")
    vet_checkpoint(BUNDLED_ENCODER, plugin_manager=get_plugin_manager())


class _NeedsAMissingFramework(Backend):
    """A real backend plugin whose framework is not installed."""

    name = "needs-missing"
    description = "Needs [a framework] that is not installed."
    requires = ("molpeg_no_such_framework",)

    def fit(self, job):  # pragma: no cover - never available
        raise AssertionError("not available")


class _MissingFrameworkPlugin:
    @hookimpl
    def molpeg_register_backends(self):
        return [_NeedsAMissingFramework()]


def test_backends_shows_the_install_command_as_written():
    """``pip install 'molpeg[needs-missing]'``: Rich must not swallow the extra as markup."""
    pm = get_plugin_manager()
    plugin = _MissingFrameworkPlugin()
    pm.register(plugin, name="test-missing-framework")
    try:
        result = CliRunner().invoke(app, ["backends"], env={"COLUMNS": "250"})
    finally:
        pm.unregister(plugin)
    assert result.exit_code == 0, result.output
    assert "pip install 'molpeg[needs-missing]'" in result.output
    assert "Needs [a framework] that is not installed." in result.output
