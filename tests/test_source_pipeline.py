"""examples/source_pipeline.py end to end on real molecules: no leakage, a report, a resume.

A 200-molecule MOSES source and the first 1,000 BBBP rows as the target, with a tiny Chemprop
model and one epoch everywhere: the point is the pipeline's bookkeeping, not its accuracy.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from molpeg_plugins.source.overlap import canonical_key
from molpeg_plugins.source.pruning import kept_count

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
TINY = (
    "--num-workers 0 --accelerator cpu --devices 1 --message-hidden-dim 32 "
    "--ffn-hidden-dim 32 --depth 2 --warmup-epochs 0 --batch-size 64"
)


def load_example():
    spec = importlib.util.spec_from_file_location(
        "source_pipeline", ROOT / "examples" / "source_pipeline.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, list[str], Path]:
    """One whole run: full source and feature mapping at keep 0.5, one seed, no scratch."""
    pipeline = load_example()
    work = tmp_path_factory.mktemp("source_pipeline")
    argv = [
        "--source", str(DATA / "moses_2k.csv"), "--num-source", "200",
        "--target", str(DATA / "bbbp_1k.csv"), "--target-column", "p_np",
        "--keep", "0.5", "--methods", "feature-mapping", "--groups", "5", "--seeds", "0",
        "--pretrain-epochs", "1", "--finetune-epochs", "1", "--no-scratch",
        "--chemprop-args", TINY, "--work", str(work),
    ]  # fmt: skip
    pipeline.main(argv)
    return pipeline, argv, work


def test_no_target_molecule_is_pretrained_on(finished_run) -> None:
    _, _, work = finished_run
    target = {canonical_key(s) for s in pd.read_csv(work / "target.csv").smiles}
    source = pd.read_csv(work / "source.csv").smiles
    assert not {canonical_key(s) for s in source} & target
    info = json.loads((work / "data.json").read_text())
    assert info["source_rows"] == 200
    assert info["source_kept"] == len(source) == 200 - info["source_target_molecules"]
    pretext = pd.read_csv(work / "pretrain-feature-mapping-0.5" / "pretext.csv")
    assert len(pretext) == kept_count(len(source), 0.5)
    assert set(pretext.smiles) <= set(source)


def test_a_run_writes_its_rows_table_and_plot(finished_run) -> None:
    _, _, work = finished_run
    rows = pd.read_csv(work / "results.csv")
    assert list(rows.arm) == ["full", "feature-mapping-0.5"]
    assert rows.metric.between(0, 1).all() and (rows.metric_name == "roc").all()
    source = len(pd.read_csv(work / "source.csv"))
    assert list(rows.num_pretrain) == [source, kept_count(source, 0.5)]
    table = (work / "results.md").read_text()
    assert "| full | 1 | 1 |" in table and "| feature-mapping-0.5 | 0.5 | 1 |" in table
    assert (work / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_redoes_only_the_unfinished_fine_tune(finished_run) -> None:
    """Interrupted before the last row was written: the rerun fine-tunes that one again and
    reuses every descriptor, selection, pretrained model and finished fine-tune."""
    pipeline, argv, work = finished_run
    results = work / "results.csv"
    rows = pd.read_csv(results)
    rows.iloc[:-1].to_csv(results, index=False)  # the last fine-tune "never finished"
    kept = {
        path: path.stat().st_mtime_ns
        for path in [
            work / "descriptors.npy",
            work / "select-feature-mapping-0.5" / "rows.npy",
            work / "pretrain-full" / "pretrain.json",
            work / "pretrain-feature-mapping-0.5" / "pretrain.json",
            work / "finetune-full-0.log",
        ]
    }
    redone = work / "finetune-feature-mapping-0.5-0.log"
    before = redone.stat().st_mtime_ns
    pipeline.main(argv)
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    assert redone.stat().st_mtime_ns > before
    again = pd.read_csv(results)
    assert list(again.arm) == list(rows.arm)
    assert again.iloc[0].to_dict() == rows.iloc[0].to_dict()
    logs = {path: path.stat().st_mtime_ns for path in work.glob("*.log")}
    pipeline.main(argv)  # everything finished: nothing runs, nothing is appended
    assert len(pd.read_csv(results)) == len(rows)
    assert {path: path.stat().st_mtime_ns for path in work.glob("*.log")} == logs
