"""CSV → validated molecules on the committed real data (no training)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from molpeg_plugins.errors import ConfigError
from molpeg_plugins.pipeline.data import (
    BUNDLED_DATASET,
    DataError,
    load_molecules,
    parse_split_sizes,
    read_records,
    split_positions,
)

INVALID_BBBP_1K = [59, 61, 391, 614, 642, 645, 646, 647, 648, 649, 685]


@pytest.fixture(scope="module")
def bbbp(data_dir_module: Path):
    return load_molecules(data_dir_module / "bbbp_1k.csv")


@pytest.fixture(scope="module")
def data_dir_module() -> Path:
    return Path(__file__).parent / "data"


def test_invalid_smiles_are_reported_by_row_with_rdkit_reason(bbbp):
    assert bbbp.num_rows == 1000
    invalid = [i for i, r in enumerate(bbbp.invalid_reason) if r]
    assert invalid == INVALID_BBBP_1K
    report = bbbp.skip_report()
    assert report[0].startswith("row 59 (line 61): invalid SMILES 'O=N([O-])C1=C")
    assert "Explicit valence for atom" in report[0]
    assert len(bbbp.valid_rows) == 989 and 59 not in bbbp.valid_rows


def test_records_are_the_original_text(bbbp, data_dir_module: Path):
    raw = (data_dir_module / "bbbp_1k.csv").read_bytes().decode()
    assert bbbp.csv.header + "".join(bbbp.csv.records) == raw
    assert bbbp.csv.records[0] == "1,Propanolol,1,[Cl].CC(C)NCC(O)COc1cccc2ccccc12\r\n"
    assert bbbp.csv.lines[:3] == [2, 3, 4]


def test_target_and_task_are_inferred(bbbp):
    assert bbbp.target_columns == ["p_np"] and bbbp.task == "classification"
    assert set(np.unique(bbbp.targets)) == {0.0, 1.0}


def test_duplicates_point_to_their_first_row(bbbp):
    dups = np.flatnonzero(bbbp.duplicate_of >= 0)
    assert len(dups) == 35
    for i in dups:
        first = bbbp.duplicate_of[i]
        assert first < i and bbbp.canonical[first] == bbbp.canonical[i]
        assert not bbbp.invalid_reason[i]


def test_gzip_and_lf_read_the_same(bbbp, data_dir_module: Path, tmp_path: Path):
    raw = (data_dir_module / "bbbp_1k.csv").read_bytes()
    gz = tmp_path / "b.csv.gz"
    gz.write_bytes(gzip.compress(raw))
    lf = tmp_path / "b.csv"
    lf.write_bytes(raw.replace(b"\r\n", b"\n"))
    for path in (gz, lf):
        other = load_molecules(path)
        assert other.invalid_reason == bbbp.invalid_reason
        assert other.canonical == bbbp.canonical
    assert load_molecules(lf).csv.records[0].endswith("\n")


def test_quoted_field_with_newline_stays_one_record(tmp_path: Path):
    path = tmp_path / "q.csv"
    path.write_bytes(b'smiles,y,note\nCCO,1,"two\nlines"\nc1ccccc1,0,plain\n')
    records = read_records(path)
    assert records.records == ['CCO,1,"two\nlines"\n', "c1ccccc1,0,plain\n"]
    assert records.lines == [2, 4]
    assert records.frame["note"].tolist() == ["two\nlines", "plain"]


def test_multitask_with_missing_labels(data_dir_module: Path):
    with pytest.raises(ConfigError, match=r"pass --target-columns .*NR-AR, NR-AR-LBD"):
        load_molecules(data_dir_module / "tox21_800.csv")
    table = load_molecules(data_dir_module / "tox21_800.csv", target_columns=["NR-AR", "SR-p53"])
    assert table.task == "classification" and table.targets.shape == (800, 2)
    assert np.isnan(table.targets).any() and not any(table.invalid_reason)


def test_regression_is_inferred(data_dir_module: Path):
    table = load_molecules(
        data_dir_module / "esol_600.csv",
        target_columns=["measured log solubility in mols per litre"],
    )
    assert table.task == "regression" and np.isfinite(table.targets).all()


@pytest.mark.parametrize(
    ("name", "hint"),
    [("SMILES", "'smiles'"), ("smile", "'smiles'"), ("p_mp", "'p_np'")],
)
def test_missing_column_suggests_the_closest(data_dir_module: Path, name: str, hint: str):
    kwargs = {"target_columns": [name]} if name.startswith("p_") else {"smiles_column": name}
    with pytest.raises(ConfigError, match=f"no column '{name}'; did you mean .*{hint}"):
        load_molecules(data_dir_module / "bbbp_1k.csv", **kwargs)


def test_empty_header_only_and_no_valid_molecule(tmp_path: Path):
    path = tmp_path / "x.csv"
    for content, message in [
        (b"", "empty"),
        (b"smiles,y\n", "no data rows"),
        (b"smiles,y\nnot-a-smiles,1\nC1CC,0\n", "none of the 2 rows is a valid molecule"),
    ]:
        path.write_bytes(content)
        with pytest.raises(DataError, match=message):
            load_molecules(path, target_columns=["y"])


def test_labels_inf_non_numeric_and_all_missing(tmp_path: Path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"smiles,y,z\nCCO,1,\nCCN,inf,\nCCC,abc,\nc1ccccc1,0,\n")
    table = load_molecules(path, target_columns=["y"])
    assert table.invalid_reason == [
        "",
        "infinite label 'inf' in column 'y'",
        "non-numeric label 'abc' in column 'y'",
        "",
    ]
    with pytest.raises(DataError, match="target column 'z' has no labels"):
        load_molecules(path, target_columns=["z"])


def test_bundled_dataset_is_full_bbbp():
    table = load_molecules(BUNDLED_DATASET)
    assert table.num_rows == 2050 and len(table.valid_rows) == 2039
    assert list(table.csv.frame.columns) == ["num", "name", "p_np", "smiles"]


def test_random_split_sizes_and_seed(bbbp):
    scaffolds = [bbbp.scaffolds[i] for i in bbbp.valid_rows]
    a = split_positions(scaffolds, "random", (0.8, 0.1, 0.1), 0)
    b = split_positions(scaffolds, "random", (0.8, 0.1, 0.1), 0)
    c = split_positions(scaffolds, "random", (0.8, 0.1, 0.1), 1)
    assert [len(p) for p in a] == [791, 99, 99]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert sorted(np.concatenate(a).tolist()) == list(range(989))


def test_scaffold_split_keeps_scaffolds_together(bbbp):
    scaffolds = [bbbp.scaffolds[i] for i in bbbp.valid_rows]
    train, val, test = split_positions(scaffolds, "scaffold", (0.8, 0.1, 0.1), 0)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(989))
    groups = [{scaffolds[i] for i in part} - {""} for part in (train, val, test)]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    assert abs(len(train) - 791) <= 20


@pytest.mark.parametrize("text", ["0.8,0.1", "a,b,c", "0.8,0.3,0.1", "0,0.5,0.5", "1,-0.5,0.5"])
def test_bad_split_sizes(text: str):
    with pytest.raises(ConfigError, match="--split-sizes"):
        parse_split_sizes(text)


def test_split_sizes_without_validation():
    assert parse_split_sizes("1,0,0") == (1.0, 0.0, 0.0)


def test_records_are_offsets_into_one_text_and_read_like_lists(tmp_path: Path):
    """A record is a slice of the file's text; records, lines and fields compare as lists."""
    path = tmp_path / "blank.csv"
    path.write_bytes(b'smiles,y\r\nCCO,1\r\n\r\n  \r\n"C\r\nC",0\r\nc1ccccc1,1')
    records = read_records(path)
    assert records.starts.dtype == records.ends.dtype == records.line_numbers.dtype == np.int64
    assert records.records == ["CCO,1\r\n", '"C\r\nC",0\r\n', "c1ccccc1,1"]
    assert records.records[-1] == "c1ccccc1,1" and records.records[1:] == records.records[-2:]
    assert records.lines == [2, 5, 7] and records.lines[:1] == [2]
    assert records.fields == [["CCO", "1"], ["C\r\nC", "0"], ["c1ccccc1", "1"]]
    assert records.records != ["CCO,1\r\n"] and records.records != "CCO,1\r\n"
    with pytest.raises(IndexError):
        records.records[3]
    assert records.frame["smiles"].tolist() == ["CCO", "C\r\nC", "c1ccccc1"]
    assert records.frame["y"].tolist() == ["1", "0", "1"]


def test_write_subset_streams_blocks_byte_for_byte(tmp_path: Path, monkeypatch):
    """Written in blocks smaller than the subset: the same bytes as the records joined."""
    from molpeg_plugins.pipeline import csv_records

    raw = b"smiles,y\nCCO,1\nCCN,0\nCCC,1\nc1ccccc1,0\nCCCl,1"  # no final line ending
    path = tmp_path / "d.csv"
    path.write_bytes(raw)
    records = read_records(path)
    monkeypatch.setattr(csv_records, "WRITE_BLOCK", 2)
    records.write_subset(tmp_path / "all.csv", [4, 0, 3, 1, 2])
    assert (tmp_path / "all.csv").read_bytes() == raw + b"\n"
    records.write_subset(tmp_path / "some.csv", np.array([3, 1]))
    assert (tmp_path / "some.csv").read_bytes() == b"smiles,y\nCCN,0\nc1ccccc1,0\n"
    records.write_subset(tmp_path / "none.csv", [])
    assert (tmp_path / "none.csv").read_bytes() == b"smiles,y\n"
