"""Outputs of a run: byte-exact pruned.csv, scores, report.json, plots, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molpeg_plugins.engine.config import PruneConfig, num_kept
from molpeg_plugins.pipeline.atomic import atomic_path, write_json, write_text
from molpeg_plugins.pipeline.backend import FitJob
from molpeg_plugins.pipeline.data import load_molecules, split_positions
from molpeg_plugins.pipeline.report import PLOTS, RunLayout, kept_rows, write_report
from molpeg_plugins.pipeline.torch_backend import TorchBackend
from molpeg_plugins.plugins import make_plugin_manager

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real 2-epoch torch run on 200 BBBP rows whose last line has no line ending."""
    folder = tmp_path_factory.mktemp("run")
    src = Path(__file__).parent / "data" / "bbbp_1k.csv"
    data = folder / "bbbp200.csv"
    data.write_bytes(b"".join(src.read_bytes().splitlines(keepends=True)[:201]).rstrip(b"\r\n"))
    table = load_molecules(data)
    valid = table.valid_rows
    train, val, test = split_positions(
        [table.scaffolds[i] for i in valid], "scaffold", (0.8, 0.1, 0.1), 0
    )
    job = FitJob.from_table(
        table,
        (train, val, test),
        PruneConfig(prune_ratio=0.5),
        folder / "out",
        epochs=2,
        plugin_manager=make_plugin_manager(entry_points=False),
    )
    result = TorchBackend().fit(job)
    layout = RunLayout(valid, train, val, test)
    report = write_report(
        folder / "out", table, layout, result, parameters={"x": 1}, wall_time_s=1.5
    )
    return data, table, layout, result, report, folder / "out"


def test_pruned_csv_is_byte_exact_even_without_final_newline(run):
    data, _, layout, result, _, out = run
    lines = data.read_bytes().splitlines(keepends=True)
    assert not lines[-1].endswith(b"\n")
    rows = kept_rows(layout, result)
    expected = [lines[0]] + [
        lines[r + 1] if lines[r + 1].endswith(b"\r\n") else lines[r + 1] + b"\r\n" for r in rows
    ]
    assert (out / "pruned.csv").read_bytes() == b"".join(expected)
    assert len(rows) == num_kept(len(layout.train), 0.5)


def test_scores_and_report(run):
    *_, layout, result, report, out = run
    n_train, n_kept = len(layout.train), num_kept(len(layout.train), 0.5)
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 200 and scores["kept"].sum() == n_kept
    train = scores[scores["split"] == "train"]
    book = result.pruner_state["book"]
    np.testing.assert_allclose(train["score"].to_numpy(), book["score"].double().numpy())
    assert train["epochs_kept"].tolist() == book["epochs_kept"].tolist()
    # 2 epochs: the warm-up epoch trains on everything, the pruned one on half of it
    assert train["epochs_kept"].min() == 1 and train["epochs_kept"].max() == 2
    assert int(train["epochs_kept"].sum()) == n_train + n_kept
    counts = scores["split"].value_counts().to_dict()
    assert counts == {
        "train": n_train,
        "val": len(layout.val),
        "test": len(layout.test),
        "skipped": 2,  # rows 59 and 61: invalid SMILES
    }

    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["counts"]["kept"] == n_kept
    assert on_disk["counts"]["dropped"] == n_train - n_kept
    assert "pruned" not in on_disk["counts"]  # pruned.csv holds the kept rows: no such count
    assert on_disk["files"]["model"] == "model.pt" and (out / "model.pt").is_file()
    assert on_disk["wall_time_s"] == 1.5 and on_disk["parameters"] == {"x": 1}
    buckets = on_disk["scaffolds"]
    assert sum(b["molecules"] for b in buckets) == n_train
    assert sum(b["kept"] for b in buckets) == n_kept


def test_four_png_plots(run):
    out = run[-1]
    for name in PLOTS:
        data = (out / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_atomic_write_keeps_the_old_file_on_error(tmp_path: Path):
    target = tmp_path / "report.json"
    write_json(target, {"a": 1, "nan": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1, "nan": None}
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"a": 2, "trunc')
        raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"a": 1, "nan": None}
    assert os.listdir(tmp_path) == ["report.json"]


def test_atomic_write_replaces_and_uses_normal_permissions(tmp_path: Path):
    target = tmp_path / "x.csv"
    write_text(target, "a\r\n")
    write_text(target, "b\r\n")
    assert target.read_bytes() == b"b\r\n"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_epochs_count_from_one_and_counts_are_integers(run):
    *_, result, _, out = run
    text = (out / "report.json").read_text()
    on_disk = json.loads(text)
    assert [e["epoch"] for e in on_disk["epochs"]] == [1, 2]
    assert 1 <= on_disk["best_epoch"] <= 2 and on_disk["best_epoch"] == result.best_epoch + 1
    for e in on_disk["epochs"]:
        assert isinstance(e["num_kept"], int) and isinstance(e["epoch"], int)
    assert f'"num_kept": {on_disk["epochs"][1]["num_kept"]},' in text  # not 119.0


def test_score_histogram_shows_every_molecule_including_zero_scores(run):
    """On the wide-range axis molecules scoring exactly 0 are drawn, and counted in the legend."""
    from matplotlib.figure import Figure

    from molpeg_plugins.pipeline.report import plot_score_histogram

    out = run[-1]
    train = pd.read_csv(out / "scores.csv").query("split == 'train'").reset_index(drop=True)
    train.loc[:4, "score"] = 0.0  # five molecules the reference agrees with exactly
    train.loc[5, "score"] = train["score"].max() * 1e4  # a range wide enough for a log axis
    ax = Figure().subplots()
    drawn = plot_score_histogram(ax, train, "molpeg")
    assert drawn == len(train)
    assert sum(p.get_height() for p in ax.patches) == len(train)  # no molecule left out
    assert ax.get_xscale() == "symlog"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    n_kept = int(train["kept"].sum())
    assert legend == [
        f"kept ({n_kept})",
        f"dropped ({len(train) - n_kept})",
        "5 scored 0 (first bar)",
    ]
    assert ax.get_title() == "Final molpeg scores of the training molecules: kept vs dropped"


def test_scores_csv_written_in_blocks_is_the_whole_frame(run, tmp_path: Path, monkeypatch):
    """``scores.csv`` streamed a few rows at a time: the bytes of the whole frame's CSV."""
    from molpeg_plugins.pipeline import report
    from molpeg_plugins.pipeline.report import scores_frame, write_run_scores, write_scores

    _, table, layout, result, _, out = run
    whole = write_scores(tmp_path, scores_frame(table, layout, result), "csv").read_bytes()
    assert (out / "scores.csv").read_bytes() == whole
    monkeypatch.setattr(report, "SCORES_BLOCK", 7)
    (tmp_path / "blocks").mkdir()
    streamed = write_run_scores(tmp_path / "blocks", table, layout, result, "csv")
    assert streamed.read_bytes() == whole
    assert len(pd.read_csv(streamed)) == table.num_rows == 200
