"""`molpeg prune` end to end through the real CLI (Typer's runner), torch backend, real data.

Every robustness case of issue 5 is one test here: each either finishes (exit 0) with a
row-numbered skip report, or fails with a one-line error naming the file/row/column and the
fix, with exit code 1 (data) or 2 (usage).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from molpeg_plugins.cli import app

runner = CliRunner()
TARGET = "measured log solubility in mols per litre"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def molpeg(*args: object):
    """Invoke ``molpeg ARGS`` in-process; return Click's result."""
    return runner.invoke(app, [str(a) for a in args])


def head(src: Path, dst: Path, rows: int) -> Path:
    """A byte-exact slice of ``src``: the header and the first ``rows`` records."""
    lines = src.read_bytes().splitlines(keepends=True)
    dst.write_bytes(b"".join(lines[: rows + 1]))
    return dst


def prune_torch(data: Path, out: Path, *extra: object):
    """A tiny torch-backend run (2 epochs)."""
    return molpeg("prune", data, "--backend", "torch", "--epochs", 2, "--output", out, *extra)


def error_line(result) -> str:
    """The single line starting with ``Error:`` (asserting there is exactly one)."""
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def bbbp300(tmp_path: Path, data_dir: Path) -> Path:
    """First 300 BBBP rows (CRLF, invalid SMILES at rows 59 and 61)."""
    return head(data_dir / "bbbp_1k.csv", tmp_path / "bbbp300.csv", 300)


# --------------------------------------------------------------------------- full runs


def test_prune_writes_every_output_and_keeps_rows_byte_exact(bbbp300: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = prune_torch(bbbp300, out, "--prune-ratio", 0.5, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert "row 59 (line 61): invalid SMILES" in result.output
    assert "molpeg prune: summary" in result.output
    assert "epoch 2/2  kept 119/238  score_mean" in result.output  # plain log: not a TTY

    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == [
        "row",
        "smiles",
        "split",
        "score",
        "kept",
        "epochs_kept",
        "invalid_reason",
        "duplicate",
        "duplicate_of",
    ]
    assert len(scores) == 300 and scores["row"].tolist() == list(range(300))
    skipped = scores[scores["split"] == "skipped"]
    assert skipped["row"].tolist() == [59, 61]
    assert skipped["invalid_reason"].str.contains("Explicit valence").all()
    assert not skipped["kept"].any()
    train = scores[scores["split"] == "train"]
    assert train["score"].notna().all() and (train["epochs_kept"] >= 1).all()
    assert scores.loc[scores["split"] != "train", "score"].isna().all()
    # 298 valid, random 80/10/10 → 238 train; half pruned (half-up rounding) → 119 kept
    assert len(train) == 238 and train["kept"].sum() == 119

    # pruned.csv: header + kept rows, byte for byte as in the input (CRLF, every column)
    original = bbbp300.read_bytes().splitlines(keepends=True)
    pruned = (out / "pruned.csv").read_bytes().splitlines(keepends=True)
    kept_rows = train.loc[train["kept"], "row"].tolist()
    assert pruned == [original[0]] + [original[r + 1] for r in kept_rows]
    assert all(line.endswith(b"\r\n") for line in pruned)

    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {
        "input_rows": 300,
        "invalid": 2,
        "valid": 298,
        "duplicates": 1,
        "cross_split_duplicates": 1,
        "train": 238,
        "validation": 30,
        "test": 30,
        "kept": 119,
        "dropped": 119,
    }
    assert report["best_epoch"] in (1, 2)  # epochs count from 1, as on screen
    assert [e["num_kept"] for e in report["epochs"]] == [238, 119]
    assert all("score_mean" in e for e in report["epochs"])
    assert 0.5 < report["validation_metrics"]["roc_auc"] <= 1.0
    assert "roc_auc" in report["test_metrics"]
    assert report["parameters"]["seed"] == 3 and report["parameters"]["backend"] == "torch"
    assert report["versions"]["molpeg"] and report["versions"]["torch"] == torch.__version__
    assert report["wall_time_s"] > 0
    assert [r["row"] for r in report["skipped_rows"]] == [59, 61]
    for name in report["files"]["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(report["files"]["plots"]) == 4
    model = torch.load(out / report["files"]["model"], weights_only=True)
    assert model["kind"] == "molpeg-torch-mlp"
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


def test_bundled_dataset_is_the_default(tmp_path: Path):
    result = molpeg(
        "prune", "--backend", "torch", "--epochs", 1, "--prune-ratio", 0.3, "-o", tmp_path
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["parameters"]["bundled_dataset"] is True
    assert report["parameters"]["target_columns"] == ["p_np"]
    assert report["counts"]["input_rows"] == 2050 and report["counts"]["invalid"] == 11


def test_regression_scaffold_split_parquet_and_quiet(data_dir: Path, tmp_path: Path):
    pytest.importorskip("pyarrow")
    esol = head(data_dir / "esol_600.csv", tmp_path / "esol.csv", 300)
    out = tmp_path / "out"
    result = prune_torch(
        esol,
        out,
        "--target-columns",
        TARGET,
        "--split",
        "scaffold",
        "--strategy",
        "infobatch",
        "--format",
        "parquet",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert result.output == ""
    scores = pd.read_parquet(out / "scores.parquet")
    report = json.loads((out / "report.json").read_text())
    assert report["parameters"]["task"] == "regression" and report["metric"] == "rmse"
    assert report["test_metrics"]["rmse"] > 0
    # scaffold split: no Bemis–Murcko scaffold is shared between train and test
    from molpeg_plugins.pipeline.data import load_molecules

    table = load_molecules(esol, target_columns=[TARGET])
    by_split = scores.groupby("split")["row"].apply(list)
    train = {table.scaffolds[r] for r in by_split["train"]} - {""}
    test = {table.scaffolds[r] for r in by_split["test"]} - {""}
    assert not train & test


def test_crlf_lf_and_gzip_give_the_same_result(bbbp300: Path, tmp_path: Path):
    lf = tmp_path / "lf.csv"
    lf.write_bytes(bbbp300.read_bytes().replace(b"\r\n", b"\n"))
    gz = tmp_path / "bbbp.csv.gz"
    gz.write_bytes(gzip.compress(bbbp300.read_bytes()))
    kept = {}
    for name, path in (("crlf", bbbp300), ("lf", lf), ("gz", gz)):
        assert prune_torch(path, tmp_path / name, "-q").exit_code == 0
        kept[name] = (tmp_path / name / "pruned.csv").read_bytes()
    assert kept["gz"] == kept["crlf"]
    assert kept["lf"] == kept["crlf"].replace(b"\r\n", b"\n")
    assert b"\r\n" not in kept["lf"]


def test_duplicates_are_kept_and_flagged(bbbp300: Path, tmp_path: Path):
    lines = bbbp300.read_bytes().splitlines(keepends=True)
    dup = tmp_path / "dup.csv"
    dup.write_bytes(b"".join([*lines, lines[1]]))  # row 300 repeats row 0
    assert prune_torch(dup, tmp_path / "o", "-q", "--target-columns", "p_np").exit_code == 0
    scores = pd.read_csv(tmp_path / "o" / "scores.csv")
    assert scores.loc[300, "duplicate"] and scores.loc[300, "duplicate_of"] == 0
    assert scores.loc[300, "split"] != "skipped" and scores.loc[0, "split"] != "skipped"
    assert scores.loc[267, "duplicate"] and scores.loc[267, "duplicate_of"] == 81


def test_duplicates_across_splits_are_reported(bbbp300: Path, tmp_path: Path):
    """A molecule in train and in test leaks between them: counted, warned, listed."""
    lines = bbbp300.read_bytes().splitlines(keepends=True)
    dup = tmp_path / "dup.csv"
    dup.write_bytes(b"".join([*lines, *[lines[k] for k in range(1, 21)]]))  # rows 300-319
    result = prune_torch(dup, tmp_path / "o", "--target-columns", "p_np")
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(tmp_path / "o" / "scores.csv")
    split = scores.set_index("row")["split"]
    flagged = scores[scores["duplicate"]]
    across = flagged[flagged["split"].to_numpy() != split[flagged["duplicate_of"]].to_numpy()]
    assert len(across) > 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["counts"]["cross_split_duplicates"] == len(across)
    assert [d["row"] for d in report["cross_split_duplicates"]] == across["row"].tolist()
    first = report["cross_split_duplicates"][0]
    assert first["split"] != first["split_of_original"]
    warning = [ln for ln in result.output.splitlines() if ln.startswith("Warning:")]
    assert len(warning) == 1 and f"{len(across)} duplicate molecules" in warning[0]
    assert f"duplicates flagged ({len(across)}" in result.output  # in the summary


def test_more_columns_than_needed_are_kept(bbbp300: Path, tmp_path: Path):
    frame_lines = bbbp300.read_bytes().decode().splitlines(keepends=True)
    wide = tmp_path / "wide.csv"
    wide.write_text(
        "".join(
            line.replace("\r\n", f',"note, {i}"\r\n') if i else line.replace("\r\n", ",note\r\n")
            for i, line in enumerate(frame_lines)
        ),
        newline="",
    )
    assert prune_torch(wide, tmp_path / "o", "-q").exit_code == 0
    pruned = (tmp_path / "o" / "pruned.csv").read_bytes().decode().splitlines(keepends=True)
    assert pruned[0] == "num,name,p_np,smiles,note\r\n"
    assert all(line in frame_lines or '"note, ' in line for line in pruned[1:])


def test_non_numeric_and_inf_labels_are_skipped_by_row(bbbp300: Path, tmp_path: Path):
    lines = bbbp300.read_bytes().decode().splitlines(keepends=True)
    lines[5] = lines[5].replace(",1,", ",yes,", 1)  # row 4
    lines[8] = lines[8].replace(",1,", ",inf,", 1)  # row 7
    bad = tmp_path / "labels.csv"
    bad.write_text("".join(lines), newline="")
    result = prune_torch(bad, tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "row 4 (line 6): non-numeric label 'yes' in column 'p_np'" in result.output
    assert "row 7 (line 9): infinite label 'inf' in column 'p_np'" in result.output
    scores = pd.read_csv(tmp_path / "o" / "scores.csv")
    assert scores.loc[[4, 7], "split"].tolist() == ["skipped", "skipped"]


# --------------------------------------------------------------------------- data errors (exit 1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\r\n  \r\n", "the file is empty"),
        (b"num,name,p_np,smiles\r\n", "has a header but no data rows"),
    ],
)
def test_empty_and_header_only_files(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    result = prune_torch(path, tmp_path / "o")
    assert result.exit_code == 1
    assert message in error_line(result) and str(path) in error_line(result)
    assert not (tmp_path / "o" / "pruned.csv").exists()


def test_row_with_an_extra_field_names_the_line(bbbp300: Path, tmp_path: Path):
    lines = bbbp300.read_bytes().splitlines(keepends=True)
    lines[11] = lines[11].replace(b"\r\n", b",extra\r\n")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"".join(lines))
    result = prune_torch(bad, tmp_path / "o")
    assert result.exit_code == 1
    assert "line 12 (row 10): 5 fields but the header has 4 columns" in error_line(result)


def test_all_nan_target_and_non_numeric_column(bbbp300: Path, tmp_path: Path):
    frame = bbbp300.read_bytes().decode().splitlines(keepends=True)
    empty = tmp_path / "empty_target.csv"
    empty.write_text(
        "".join(
            ln.replace("\r\n", ",\r\n") if i else ln.replace("\r\n", ",y\r\n")
            for i, ln in enumerate(frame)
        ),
        newline="",
    )
    result = prune_torch(empty, tmp_path / "o", "--target-columns", "y")
    assert result.exit_code == 1
    assert "target column 'y' has no labels (all 300 rows empty)" in error_line(result)

    result = prune_torch(bbbp300, tmp_path / "o", "--target-columns", "name")
    assert result.exit_code == 1
    assert "target column 'name' is not numeric (row 0, line 2" in error_line(result)


def test_classification_on_continuous_labels(data_dir: Path, tmp_path: Path):
    esol = head(data_dir / "esol_600.csv", tmp_path / "esol.csv", 50)
    result = prune_torch(
        esol, tmp_path / "o", "--target-columns", TARGET, "--task", "classification"
    )
    assert result.exit_code == 1
    assert "use --task regression" in error_line(result)


# --------------------------------------------------------------------------- usage errors (exit 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--smiles-column", "SMILES"],
            "no column 'SMILES'; did you mean --smiles-column 'smiles'?",
        ),
        (["--target-columns", "p_mp"], "no column 'p_mp'; did you mean --target-columns 'p_np'?"),
        (["--prune-ratio", "1.0"], "prune_ratio=1.0 is outside [0, 1)"),
        (["--prune-ratio", "-0.1"], "prune_ratio=-0.1 is outside [0, 1)"),
        (["--strategy", "molpg"], "unknown strategy 'molpg'. Did you mean 'molpeg'?"),
        (["--split-sizes", "0.8,0.3"], "--split-sizes '0.8,0.3'"),
        (["--pretrained", "no/such/model.pt"], "--pretrained no/such/model.pt: no such file"),
    ],
)
def test_usage_errors(bbbp300: Path, tmp_path: Path, args: list[str], message: str):
    result = prune_torch(bbbp300, tmp_path / "o", *args)
    assert result.exit_code == 2, result.output
    assert message in error_line(result)


def test_unknown_backend_lists_the_valid_ones(bbbp300: Path, tmp_path: Path):
    result = molpeg("prune", bbbp300, "--backend", "sklearn", "-o", tmp_path / "o")
    assert result.exit_code == 2
    line = error_line(result)
    assert "unknown backend 'sklearn'" in line and "torch" in line


def test_unknown_strategy_lists_the_valid_ones(bbbp300: Path, tmp_path: Path):
    result = prune_torch(bbbp300, tmp_path / "o", "--strategy", "nope")
    assert result.exit_code == 2
    assert "molpeg" in error_line(result) and "soft-random" in error_line(result)


def test_missing_data_file_and_bad_choices(tmp_path: Path):
    result = prune_torch(tmp_path / "nope.csv", tmp_path / "o")
    assert result.exit_code == 2 and "no such file" in error_line(result)
    result = molpeg("prune", "--task", "ranking", "-o", tmp_path / "o")
    assert result.exit_code == 2  # Click rejects the choice and lists the valid ones


def test_output_that_is_a_file_or_unwritable(bbbp300: Path, tmp_path: Path):
    afile = tmp_path / "file"
    afile.write_text("x")
    result = prune_torch(bbbp300, afile)
    assert result.exit_code == 2 and "is a file; give a folder" in error_line(result)
    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = prune_torch(bbbp300, locked / "out")
        assert result.exit_code == 1 and "Permission denied" in error_line(result)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu(bbbp300: Path, tmp_path: Path):
    result = prune_torch(bbbp300, tmp_path / "o", "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA GPU is visible" in error_line(result)


def test_help_documents_examples_and_exit_codes():
    result = runner.invoke(app, ["prune", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("Examples", "Exit codes", "--prune-ratio", "--resume", "--trust-checkpoint"):
        assert text in result.output


def test_rich_progress_bars_on_a_terminal(bbbp300: Path, tmp_path: Path):
    """On a terminal the epoch bar is driven by the observer plugin's hooks."""
    import io

    from rich.console import Console

    from molpeg_plugins.cli.display import Display, EpochProgress
    from molpeg_plugins.engine.config import PruneConfig
    from molpeg_plugins.pipeline.backend import FitJob
    from molpeg_plugins.pipeline.data import load_molecules, split_positions
    from molpeg_plugins.pipeline.torch_backend import TorchBackend
    from molpeg_plugins.plugins import make_plugin_manager

    table = load_molecules(bbbp300)
    valid = table.valid_rows
    train, val, test = split_positions([""] * len(valid), "random", (0.8, 0.1, 0.1), 0)
    screen = io.StringIO()
    display = Display(console=Console(file=screen, force_terminal=True, width=150))
    assert display.mode == "rich"
    pm = make_plugin_manager(entry_points=False)
    pm.register(EpochProgress(display, 3, len(train)))
    job = FitJob.from_table(
        table,
        (train, val, test),
        PruneConfig(),
        tmp_path,
        epochs=3,
        plugin_manager=pm,
        progress=display.task,
    )
    with display:
        TorchBackend().fit(job)
    shown = screen.getvalue()
    for text in ("Featurising", "Epoch 3/3", "kept 95/238", "val_roc_auc", "Evaluating", "3/3"):
        assert text in shown, text
    quiet = Display(quiet=True, console=Console(file=io.StringIO(), force_terminal=True))
    assert quiet.mode == "quiet" and quiet.progress is None


def test_default_backend_is_chemprop_when_installed_else_torch():
    from molpeg_plugins.pipeline.run import choose_backend
    from molpeg_plugins.plugins import make_plugin_manager

    assert choose_backend(make_plugin_manager(entry_points=False), None).name == "torch"
    pm = make_plugin_manager()
    chemprop = pm.backends().get("chemprop")
    expected = "chemprop" if chemprop is not None and chemprop.availability()[0] else "torch"
    assert choose_backend(pm, None).name == expected


def test_terminal_progress_shows_batches_and_finishes_every_stage(bbbp300: Path, tmp_path: Path):
    """On a terminal: a batch bar per epoch, and at the end no stage left running or ``0/?``."""
    import re
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env.update(FORCE_COLOR="1", COLUMNS="150", OMP_NUM_THREADS="1")
    molpeg_exe = Path(sys.executable).parent / "molpeg"
    proc = subprocess.run(
        [molpeg_exe, "prune", bbbp300, "--backend", "torch", "--epochs", "2", "-o", tmp_path / "o"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", proc.stderr)
    last = {}  # the last drawn state of each row
    for line in screen.splitlines():
        found = re.match(r"^(Parsing SMILES|Featurising|Epoch \d+/\d+|Training batches|"
                         r"Evaluating|Writing outputs)\s+\S+\s+(\d+)/(\S+)", line)  # fmt: skip
        if found:
            last[found.group(1).split()[0]] = (found.group(2), found.group(3))
    assert set(last) == {"Parsing", "Featurising", "Epoch", "Training", "Evaluating", "Writing"}
    for row, (done, total) in last.items():
        assert total != "?" and done == total, (row, done, total)
    assert last["Parsing"] == ("300", "300")
    assert last["Training"] == ("2", "2")  # the pruned epoch: 95 molecules in 64-row batches
