"""Input integrity through the real CLIs: CSV quoting, misread SMILES, label and run checks.

``molpeg prune --backend torch`` runs in-process (Typer's runner) on ~30 real BBBP/ESOL rows;
``chemprop train --plugin molpeg`` runs as the real executable (one training run) and in its
explicit in-process form ``molpeg chemprop train`` for the error paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hostile_corpus import (
    BBBP,
    ESOL,
    ESOL_TARGET,
    bbbp,
    esol,
    esol_label,
    label_row,
    smiles_row,
    with_cell,
)
from typer.testing import CliRunner

from molpeg_plugins.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def prune(data: Path, out: Path, *extra: object):
    """``molpeg prune DATA --backend torch --epochs 1`` in-process."""
    args = ["prune", data, "--backend", "torch", "--epochs", 1, "--batch-size", 16, "-o", out]
    return runner.invoke(app, [str(a) for a in [*args, *extra]])


def write(tmp_path: Path, content: bytes, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def skipped(out: Path) -> dict[int, str]:
    """line → reason of every skipped row in report.json."""
    report = json.loads((out / "report.json").read_text())
    return {s["line"]: s["reason"] for s in report["skipped_rows"]}


# --------------------------------------------------------------------------- CSV quoting


def test_stray_quote_pair_is_reported_by_lines_not_swallowed(tmp_path: Path):
    rows = list(BBBP[:30])
    rows[11] = with_cell(rows[11], 1, '"' + rows[11].split(",")[1])  # line 13 opens a quote ...
    rows[15] = with_cell(rows[15], 1, rows[15].split(",")[1] + '"')  # ... line 17 closes it
    out = tmp_path / "out"
    result = prune(write(tmp_path, bbbp(rows)), out, "--target-columns", "p_np")
    assert result.exit_code == 0, result.output
    assert "lines 13-17 were read as one record" in result.output
    assert "lines 13-17" in skipped(out)[13]
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 26 and scores["split"].eq("skipped").sum() == 1


def test_unterminated_quote_is_a_one_line_error_naming_the_line(tmp_path: Path):
    rows = list(BBBP[:30])
    rows[13] = with_cell(rows[13], 1, '"open')
    result = prune(write(tmp_path, bbbp(rows)), tmp_path / "out", "--target-columns", "p_np")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "line 15: a quoted field opened on line 15 is never closed" in error_line(result)


def test_unclosed_quote_in_a_large_file_names_its_line(tmp_path: Path):
    rows = [*BBBP[:30]] * 100  # 3,000 real rows, about 190 kB
    rows[3] = with_cell(rows[3], 1, '"open')
    result = prune(write(tmp_path, bbbp(rows)), tmp_path / "out", "--target-columns", "p_np")
    assert result.exit_code == 1, result.output
    assert "line 5: a field is longer than 131,072 characters, usually because a quote" in (
        error_line(result)
    )


def test_multiline_quoted_field_that_is_a_note_is_kept(tmp_path: Path):
    rows = list(BBBP[:30])
    rows[14] = with_cell(rows[14], 1, '"two\nlines"')
    out = tmp_path / "out"
    result = prune(write(tmp_path, bbbp(rows)), out, "--target-columns", "p_np")
    assert result.exit_code == 0, result.output
    assert skipped(out) == {}


# --------------------------------------------------------------------------- SMILES misread


def test_whitespace_and_non_ascii_smiles_are_skipped_by_row(tmp_path: Path):
    rows = list(BBBP[:30])
    rows[3], rows[4], rows[5] = (
        smiles_row(3, "CC O"),
        smiles_row(4, "CC\tN"),
        smiles_row(5, "ＣＣO"),
    )
    rows[6] = smiles_row(6, "  CCO ")  # surrounding spaces are fine
    out = tmp_path / "out"
    result = prune(write(tmp_path, bbbp(rows)), out, "--target-columns", "p_np")
    assert result.exit_code == 0, result.output
    reasons = skipped(out)
    assert sorted(reasons) == [5, 6, 7]
    assert "contains whitespace (' ' at position 2)" in reasons[5]
    assert "contains whitespace ('\\t' at position 2)" in reasons[6]
    assert "non-ASCII character 'Ｃ' (U+FF23" in reasons[7]
    assert "row 3 (line 5): SMILES 'CC O' contains whitespace" in result.output


# --------------------------------------------------------------------------- labels and runs


def test_labels_2_and_minus_1_warn_that_they_are_treated_as_regression(tmp_path: Path):
    rows = [label_row(i, "2" if i % 2 else "-1") for i in range(30)]
    result = prune(write(tmp_path, bbbp(rows)), tmp_path / "out", "--target-columns", "p_np")
    assert result.exit_code == 0, result.output
    assert "labels are not 0/1 (-1, 2), treating as regression; pass --task" in result.output


def test_all_one_class_target_is_an_error(tmp_path: Path):
    rows = [label_row(i, "1") for i in range(30)]
    result = prune(write(tmp_path, bbbp(rows)), tmp_path / "out", "--target-columns", "p_np")
    assert result.exit_code == 1, result.output
    assert "every label in column 'p_np' is 1; classification needs both classes" in (
        error_line(result)
    )


def test_single_class_validation_split_is_warned(tmp_path: Path):
    rows = [label_row(i, "0" if i in (0, 1) else "1") for i in range(30)]  # seed 0: val = 9, 22, 27
    result = prune(write(tmp_path, bbbp(rows)), tmp_path / "out", "--target-columns", "p_np")
    assert result.exit_code == 0, result.output
    assert "Warning: the validation split (3 molecules) has a single class in 'p_np'" in (
        result.output
    )


def test_target_listed_twice_is_a_usage_error(tmp_path: Path):
    result = prune(write(tmp_path, bbbp()), tmp_path / "out", "--target-columns", "p_np,p_np")
    assert result.exit_code == 2, result.output
    assert "--target-columns names 'p_np' more than once" in error_line(result)


def test_repeated_header_name_is_an_error_when_used_and_a_warning_otherwise(tmp_path: Path):
    dup = bbbp(header="num,name,p_np,smiles,p_np", rows=[r + ",0" for r in BBBP[:30]])
    result = prune(write(tmp_path, dup), tmp_path / "o1", "--target-columns", "p_np")
    assert result.exit_code == 1, result.output
    assert "names column 'p_np' more than once (columns 3, 5)" in error_line(result)
    other = bbbp(header="num,name,p_np,smiles,name", rows=[r + ",x" for r in BBBP[:30]])
    result = prune(write(tmp_path, other, "e.csv"), tmp_path / "o2", "--target-columns", "p_np")
    assert result.exit_code == 0, result.output
    assert "Warning: the header repeats column name 'name'; the copies are read as 'name.1'" in (
        result.output
    )


def test_warmup_covering_every_epoch_is_refused_or_warned(tmp_path: Path):
    data = write(tmp_path, bbbp())
    result = prune(data, tmp_path / "o1", "--target-columns", "p_np", "--warmup-epochs", 1)
    assert result.exit_code == 2, result.output
    assert "--warmup-epochs 1 with --epochs 1: no epoch would be pruned" in error_line(result)
    result = prune(data, tmp_path / "o2", "--target-columns", "p_np")  # default warm-up
    assert result.exit_code == 0, result.output
    assert "Warning: the warm-up (1 epochs) covers all 1 epochs" in result.output


@pytest.mark.parametrize(
    ("rows", "extra"),
    [
        ([esol_label(i, "1e300") if i == 3 else r for i, r in enumerate(ESOL[:30])], []),
        (list(ESOL[:30]), ["--learning-rate", "1e6"]),
    ],
    ids=["label-1e300", "learning-rate-1e6"],
)
def test_diverged_training_stops_with_one_line_error(tmp_path: Path, rows, extra):
    data = write(tmp_path, esol(rows))
    result = prune(data, tmp_path / "out", "--target-columns", ESOL_TARGET, *extra)
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "training diverged in epoch 1" in line and "lower --learning-rate" in line


# --------------------------------------------------------------------------- chemprop train


CHEMPROP_ARGS = [
    "-s",
    "smiles",
    "--target-columns",
    "p_np",
    "--epochs",
    "1",
    "--warmup-epochs",
    "0",
]
SMALL = ["--message-hidden-dim", "16", "--ffn-hidden-dim", "16", "--depth", "2"]


def chemprop_train_inprocess(args: list[str], capsys) -> tuple[int, str]:
    from molpeg_chemprop.chemprop_cli import run_train

    code = run_train(args)
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.chemprop
def test_chemprop_plugin_skips_empty_short_misread_and_infinite_rows(tmp_path: Path):
    """The real ``chemprop`` executable; the file would crash stock Chemprop."""
    pytest.importorskip("chemprop")
    from test_chemprop_cli import finish, run_chemprop

    rows = list(BBBP[:40])
    rows[2] = smiles_row(2, "")  # empty SMILES cell: make_mol("") is a 0-atom molecule
    rows[4] = ",".join(rows[4].split(",")[:3])  # short row: no SMILES field at all
    rows[6] = smiles_row(6, "CC O")
    rows[8] = smiles_row(8, "ＣＣO")
    rows[10] = label_row(10, "inf")
    rows[12] = with_cell(rows[12], 1, '"two\nlines"')  # a valid multi-line record
    data = write(tmp_path, bbbp(rows))
    out = tmp_path / "o"
    code, log = finish(
        run_chemprop(
            [
                "-i",
                str(data),
                *CHEMPROP_ARGS,
                "-t",
                "classification",
                *SMALL,
                "-o",
                str(out),
                "--plugin",
                "molpeg",
            ]
        )
    )
    assert code == 0, log[-3000:]
    assert "row 2 (line 4): empty SMILES in column 'smiles', skipped" in log
    assert "row 4 (line 6): 3 fields but the header has 4 columns, skipped" in log
    assert "row 6 (line 8): SMILES 'CC O' contains whitespace" in log
    assert "row 8 (line 10): SMILES 'ＣＣO' contains the non-ASCII character" in log
    assert "row 10 (line 12): non-finite label 'inf' in column 'p_np', skipped" in log
    assert "skipped 5 of 40 rows" in log
    assert "row 12 " not in log and "line 14)" not in log


@pytest.mark.chemprop
@pytest.mark.parametrize(
    ("rows", "task", "message"),
    [
        (
            [smiles_row(i, "xyz") for i in range(20)],
            "classification",
            "none of the 20 rows can be trained on (row 0, line 2: invalid SMILES 'xyz'",
        ),
        (
            [label_row(i, "2" if i == 5 else BBBP[i].split(",")[2]) for i in range(20)],
            "classification",
            "row 5 (line 7): label '2' in column 'p_np' is not 0/1; --task-type classification",
        ),
        (
            [label_row(i, "-1" if i == 0 else BBBP[i].split(",")[2]) for i in range(20)],
            "classification",
            "row 0 (line 2): label '-1' in column 'p_np' is not 0/1",
        ),
    ],
    ids=["all-invalid", "label-2", "label-minus-1"],
)
def test_chemprop_plugin_refuses_unusable_files_with_one_line(
    tmp_path: Path, capsys, rows, task, message
):
    pytest.importorskip("chemprop")
    data = write(tmp_path, bbbp(rows))
    code, log = chemprop_train_inprocess(
        ["-i", str(data), *CHEMPROP_ARGS, "-t", task, *SMALL, "-o", str(tmp_path / "o")], capsys
    )
    assert code == 1, log[-3000:]
    errors = [ln for ln in log.splitlines() if ln.startswith("chemprop train: error:")]
    assert len(errors) == 1 and message in errors[0], log[-3000:]
    assert "Traceback" not in log
    assert "skipped" not in log.replace(errors[0], "")


def test_chemprop_filter_keeps_valid_rows_verbatim_even_when_multiline(tmp_path: Path):
    pytest.importorskip("chemprop")
    from molpeg_chemprop.chemprop_cli import filter_invalid_smiles

    rows = list(BBBP[:10])
    rows[1] = smiles_row(1, "CC\tN")
    rows[3] = with_cell(rows[3], 1, '"a\nb"')
    data = write(tmp_path, bbbp(rows))
    (tmp_path / "clean").mkdir()
    clean = filter_invalid_smiles(
        data,
        smiles_cols=["smiles"],
        out_dir=tmp_path / "clean",
        target_cols=["p_np"],
        task_type="classification",
    )
    before = pd.read_csv(data, dtype=str, keep_default_na=False)
    after = pd.read_csv(clean, dtype=str, keep_default_na=False)
    assert after.equals(before.drop(index=[1]).reset_index(drop=True))
    assert after.loc[2, "name"] == "a\nb"


def test_chemprop_filter_output_is_the_input_minus_the_invalid_record_byte_for_byte(
    tmp_path: Path,
):
    """Valid records reach Chemprop exactly as written: quoting, a line break inside a quoted
    field, CRLF line endings and number spellings such as ``1.50`` or ``1e-3`` survive."""
    pytest.importorskip("chemprop")
    from molpeg_chemprop.chemprop_cli import filter_invalid_smiles

    header = b"smiles,y,note\r\n"
    records = [
        b'CCO,1.50,"a note\r\nin two lines"\r\n',
        b'"c1ccccc1",1e-3,"quoted, with a comma"\r\n',
        b"not-a-smiles,2.0,plain\r\n",
        b'CC(=O)O,-0.250,""\r\n',
        b'"CCN",+7,"say ""hi"""',  # the last record has no line ending
    ]
    data = write(tmp_path, header + b"".join(records))
    (tmp_path / "clean").mkdir()
    clean = filter_invalid_smiles(
        data, smiles_cols=["smiles"], out_dir=tmp_path / "clean", target_cols=["y"]
    )
    assert clean != data
    kept = records[:2] + records[3:-1] + [records[-1] + b"\r\n"]
    assert clean.read_bytes() == header + b"".join(kept)


# --------------------------------------------------------------------------- prune-source


def test_prune_source_refuses_stray_quotes_and_misread_smiles(tmp_path: Path):
    target = write(tmp_path, esol(), "target.csv")
    rows = list(BBBP[:30])
    rows[11] = with_cell(rows[11], 1, '"' + rows[11].split(",")[1])
    rows[15] = with_cell(rows[15], 1, rows[15].split(",")[1] + '"')
    args = ["prune-source", "--target", str(target), "--keep", "0.5", "--groups", "3"]
    merged = write(tmp_path, bbbp(rows), "merged.csv")
    result = runner.invoke(app, [*args, str(merged), "-o", str(tmp_path / "o1")])
    assert result.exit_code == 1, result.output
    assert "line 13: lines 13-17 were read as one record" in result.output

    rows = list(BBBP[:30])
    rows[4], rows[5] = smiles_row(4, "CC O"), smiles_row(5, "ＣＣO")
    misread = write(tmp_path, bbbp(rows), "misread.csv")
    out = tmp_path / "o2"
    result = runner.invoke(app, [*args, str(misread), "-o", str(out)])
    assert result.exit_code == 0, result.output
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["row"].tolist() == [4, 5]
    assert "contains whitespace" in skipped["reason"][0]
    assert "non-ASCII" in skipped["reason"][1]
    kept = (out / "pruned.csv").read_text()
    assert "CC O" not in kept and "ＣＣO" not in kept


LABEL_CELLS = [
    *("", " ", "nan", "-nan", "NA", "None", "  nan "),  # missing
    *("0", "1", " 1 ", "1.0", "0.0", "-0", "1e0", "00", "١"),  # 0/1, however written
    *("2", "-1", ".5", "1e400", "inf", "-inf", "Infinity"),  # numbers, finite or not
    *("abc", "<1", ">0", "<", "1,0", "0x1", "True", "1 1", "--1"),  # text
]


@pytest.mark.parametrize("task_type", ["classification", "regression"])
@pytest.mark.parametrize("bounded", [False, True])
def test_chemprop_label_check_of_many_columns_equals_the_cell_by_cell_check(
    task_type: str, bounded: bool
):
    """The label pre-check judges each distinct cell text once; every row still gets the
    reason of its first unusable cell, in column order, exactly as cell by cell."""
    pytest.importorskip("chemprop")
    from molpeg_chemprop.chemprop_cli import _label_problem, _label_problems

    rng = np.random.default_rng(0)
    columns = [f"task{j}" for j in range(6)]
    cells = [[str(v) for v in rng.choice(LABEL_CELLS, size=6)] for _ in range(400)]
    expected = {}
    for row, values in enumerate(cells):
        for column, value in zip(columns, values, strict=True):
            why, fatal = _label_problem(value, column, task_type, bounded)
            if why:
                expected[row] = (why, fatal)
                break
    got = _label_problems(cells, columns, task_type, bounded)
    assert got == expected
    assert 0 < len(got) < len(cells)
