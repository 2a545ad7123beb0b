"""Source-set pruning (feature and label mapping) on real molecules, and its CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors
from typer.testing import CliRunner

from molpeg_plugins.cli import app
from molpeg_plugins.errors import ConfigError
from molpeg_plugins.source import pruning as S

runner = CliRunner()
ADMET = "admet_ai_v2_classification_model_0.pt"


def _rings(smiles: str) -> int:
    return rdMolDescriptors.CalcNumRings(Chem.MolFromSmiles(smiles))


def _smiles(path: Path) -> list[str]:
    records, col = S.read_records(path)
    return records.values[col]


@pytest.fixture(scope="module")
def two_families(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str], int]:
    """Source = 600 MOSES lead-like ring systems + half of ESOL's acyclic molecules;
    target = the other half of ESOL's acyclic molecules (real molecules, two chemistries)."""
    data = Path(__file__).parent / "data"
    acyclic = [s for s in _smiles(data / "esol_600.csv") if _rings(s) == 0]
    leads = _smiles(data / "moses_2k.csv")[:600]
    assert all(_rings(s) > 0 for s in leads)
    return leads + acyclic[::2], acyclic[1::2], len(leads)


@pytest.mark.parametrize(("features", "groups"), [("morgan", 10), ("morgan", 20), ("scaffold", 20)])
def test_feature_mapping_keeps_the_target_family(two_families, features, groups) -> None:
    source, target, n_leads = two_families
    n_family = len(source) - n_leads
    sel = S.feature_mapping(
        source, target, n_family / len(source), groups=groups, features=features
    )
    assert len(sel.kept) == n_family
    from_family = (sel.kept >= n_leads).mean()
    assert from_family >= 0.9, f"only {from_family:.0%} of kept molecules are acyclic"
    top = sel.units[0]
    assert top["hits"] >= 0.9 * len(target)  # nearly every target molecule maps to one group
    # groups are ranked by hits, and the hits add up to the valid target molecules
    hits = [u["hits"] for u in sel.units]
    assert hits == sorted(hits, reverse=True)
    assert sum(hits) == len(target)
    # each kept row belongs to a group that was (partly) kept
    kept_groups = {u["group"] for u in sel.units if u["kept"] > 0}
    assert set(sel.group_of[sel.kept].tolist()) <= kept_groups


@pytest.mark.chemprop
def test_feature_mapping_on_pretrained_embeddings(two_families, data_dir: Path) -> None:
    """Groups on the learned fingerprint of a real pretrained Chemprop model (ADMET-AI)."""
    source, target, n_leads = two_families
    n_family = len(source) - n_leads
    sel = S.feature_mapping(
        source, target, n_family / len(source), groups=10, checkpoint=data_dir / ADMET
    )
    assert sel.details["features"] == "embedding"
    assert sel.units[0]["hits"] >= 0.8 * len(target)
    assert (sel.kept >= n_leads).mean() >= 0.75  # measured: 0.81


def test_feature_mapping_is_seeded_and_fills_exactly(two_families) -> None:
    source, target, _ = two_families
    a = S.feature_mapping(source, target, 0.37, groups=12, seed=3)
    b = S.feature_mapping(source, target, 0.37, groups=12, seed=3)
    np.testing.assert_array_equal(a.kept, b.kept)
    assert len(a.kept) == S.kept_count(len(source), 0.37)
    full = S.feature_mapping(source, target, 1.0, groups=12)
    np.testing.assert_array_equal(full.kept, np.arange(len(source)))


def test_feature_mapping_skips_unparsable_molecules(data_dir: Path) -> None:
    bbbp = _smiles(data_dir / "bbbp_1k.csv")  # 11 rows RDKit cannot parse
    sel = S.feature_mapping(bbbp, _smiles(data_dir / "esol_600.csv")[:100], 0.5, groups=8)
    assert sel.invalid_rows == [59, 61, 391, 614, 642, 645, 646, 647, 648, 649, 685]
    assert not set(sel.invalid_rows) & set(sel.kept.tolist())
    assert sel.num_valid == 1000 - 11
    # real overlap: a few BBBP molecules are also ESOL molecules; they are not eligible
    assert sel.target_overlap is not None and len(sel.target_overlap) > 0
    assert len(sel.kept) == S.kept_count(sel.num_valid - len(sel.target_overlap), 0.5)
    assert (sel.group_of[sel.invalid_rows] == -1).all()


@pytest.mark.chemprop
@pytest.mark.parametrize("task", ["NR-AR", "NR-AhR", "SR-MMP"])
def test_label_mapping_ranks_the_task_the_target_is_active_in(data_dir: Path, task: str) -> None:
    """Tox21 as a 12-task source, ADMET-AI (trained on Tox21 among others) as the source model:
    a target made of the molecules active in one assay must rank that assay first."""
    source, col = S.read_records(data_dir / "tox21_800.csv", None, None)
    target = [s for s, v in zip(source.values[col], source.values[task], strict=True) if v == "1"]
    for score in ("probability", "argmax", "lift"):
        sel = S.label_mapping(source, col, target, 0.3, checkpoint=data_dir / ADMET, score=score)
        assert sel.units[0]["name"] == task, (score, [u["name"] for u in sel.units[:3]])
    assert sel.details["tasks"] == 12  # mol_id is not a task; the 12 assays are
    # the target molecules are source molecules: none of them may be kept
    assert sel.target_overlap is not None
    leaked = set(sel.target_overlap.source_rows.tolist())
    assert len(leaked) >= len(set(target)) and not leaked & set(sel.kept.tolist())
    measured = {i for i, v in enumerate(source.values[task]) if v.strip()} - leaked
    top_kept = sel.units[0]["kept"]
    assert top_kept == min(len(measured), len(sel.kept))
    assert sel.num_eligible == sel.num_valid - len(leaked)
    assert len(sel.kept) == S.kept_count(sel.num_eligible, 0.3)


@pytest.mark.chemprop
def test_label_mapping_lift_is_one_for_a_target_like_the_source(data_dir: Path) -> None:
    """Lift divides the target's mean probability by the source's: a target that is the
    source itself lifts no task, whatever the tasks' base rates (which rank the other scores)."""
    source, col = S.read_records(data_dir / "tox21_800.csv", None, None)
    smiles = source.values[col]
    kw = {"checkpoint": data_dir / ADMET, "drop_target_molecules": False}
    lift = S.label_mapping(source, col, smiles, 0.5, score="lift", **kw)
    np.testing.assert_allclose([u["hits"] for u in lift.units], 1.0, rtol=1e-4)
    assert len({round(u["mean_probability"], 3) for u in lift.units}) > 1  # base rates differ


def test_cli_feature_mapping_end_to_end_byte_exact(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fm"
    result = runner.invoke(
        app,
        ["prune-source", str(data_dir / "bbbp_1k.csv"), "--target",
         str(data_dir / "esol_600.csv"), "--keep", "0.4", "--groups", "10", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    original = (data_dir / "bbbp_1k.csv").read_bytes().splitlines(keepends=True)
    kept = (out / "pruned.csv").read_bytes().splitlines(keepends=True)
    assert kept[0] == original[0]  # header, CRLF kept
    report = json.loads((out / "report.json").read_text())
    assert report["num_source"] == 1000 and report["num_source_invalid"] == 11
    leaked = report["num_source_target_molecules"]  # BBBP molecules that are ESOL molecules
    assert leaked > 0 and report["num_source_eligible"] == 989 - leaked
    assert report["num_kept"] == len(kept) - 1 == S.kept_count(989 - leaked, 0.4)
    with open(out / "scores.csv", newline="") as fh:
        scores = list(csv.DictReader(fh))
    assert len(scores) == 1000
    kept_rows = [int(r["row"]) for r in scores if r["kept"] == "1"]
    assert kept[1:] == [original[i + 1] for i in kept_rows]  # verbatim, original order
    with open(out / "skipped.csv", newline="") as fh:
        skipped = list(csv.DictReader(fh))
    assert [int(r["row"]) for r in skipped if r["file"] == "source"][:2] == [59, 61]
    assert (out / "groups.png").stat().st_size > 1000
    assert (out / "groups.csv").read_text().startswith("name,group,rank,size,hits")
    # the summary looks like `molpeg prune`'s: a table, no raw JSON line, the same counts
    assert "molpeg prune-source: summary" in result.output
    assert '{"kept"' not in result.output
    assert not (out / "kept.csv").exists()
    flat = " ".join(result.output.replace("│", " ").split())  # the table, cells unwrapped
    eligible = f"{report['num_kept']} of {989 - leaked} valid source molecules not in the target"
    assert eligible in flat
    assert "1,000 rows, 11 skipped (invalid SMILES), 989 valid" in flat


def test_groups_plot_has_integer_axes_and_counts_valid_molecules(data_dir: Path) -> None:
    from molpeg_plugins.cli.source import groups_figure

    smiles = _smiles(data_dir / "bbbp_1k.csv")
    sel = S.feature_mapping(smiles[:400], smiles[400:600], 0.4, groups=8, seed=0)
    ax, hits = groups_figure(sel).axes
    for axis in (ax.get_xticks(), ax.get_yticks(), hits.get_yticks()):
        assert all(float(t).is_integer() for t in axis), axis
    assert ax.get_title() == (
        f"feature-mapping: {len(sel.kept):,} of {sel.num_valid:,} valid source molecules "
        "kept, by group"
    )
    assert sel.num_valid < 400  # the unparsable rows are not counted as source molecules


def test_cli_errors_are_not_read_as_markup(data_dir: Path, tmp_path: Path) -> None:
    """A file name with brackets reaches the user as written (Rich would eat ``[x]``)."""
    result = runner.invoke(
        app,
        ["prune-source", str(tmp_path / "no[such]file.csv"), "--target",
         str(data_dir / "esol_600.csv"), "-o", str(tmp_path / "x")],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "no[such]file.csv" in result.output, result.output


@pytest.mark.chemprop
def test_cli_label_mapping_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.csv"
    rows = (data_dir / "tox21_800.csv").read_text().splitlines()
    header = rows[0].split(",")
    j = header.index("NR-AhR")
    target.write_text(
        "smiles\n" + "".join(r.split(",")[-1] + "\n" for r in rows[1:] if r.split(",")[j] == "1")
    )
    out = tmp_path / "lm"
    result = runner.invoke(
        app,
        ["prune-source", str(data_dir / "tox21_800.csv"), "--target", str(target),
         "--method", "label-mapping", "--checkpoint", str(data_dir / ADMET),
         "--keep", "0.25", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["units"][0]["name"] == "NR-AhR"
    original = (data_dir / "tox21_800.csv").read_bytes().splitlines(keepends=True)
    kept = (out / "pruned.csv").read_bytes().splitlines(keepends=True)
    leaked = report["num_source_target_molecules"]
    assert leaked >= len(target.read_text().splitlines()) - 1  # every target row is a source row
    assert len(kept) - 1 == report["num_kept"] == S.kept_count(800 - leaked, 0.25)
    with open(out / "overlap.csv", newline="") as fh:
        overlap = [int(r["row"]) for r in csv.DictReader(fh)]
    assert len(overlap) == leaked
    assert not {original[i + 1] for i in overlap} & set(kept[1:])
    assert set(kept[1:]) <= set(original[1:])
    positions = [original.index(line) for line in kept[1:]]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "nope"], "unknown --method"),
        (["--keep", "1.5"], "--keep"),
        (["--smiles-column", "SMILEZ"], "no column 'SMILEZ'"),
        (["--method", "label-mapping"], "needs --checkpoint"),
    ],
)
def test_cli_bad_options_fail_with_one_line(data_dir: Path, tmp_path: Path, args, message) -> None:
    result = runner.invoke(
        app,
        ["prune-source", str(data_dir / "moses_2k.csv"), "--target",
         str(data_dir / "esol_600.csv"), "-o", str(tmp_path / "x"), *args],
    )  # fmt: skip
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "x" / "pruned.csv").exists()


def test_keep_and_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        S.random_selection(10, 0.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("smiles,y\nCCO,1\nCCN,1,2\n")
    with pytest.raises(S.MolPegError, match=r"line 3: 3 fields"):
        S.read_records(bad)


def test_model_features_need_a_plugin_that_runs_model_files(two_families, tmp_path) -> None:
    """Without the Chemprop adapter nothing answers ``molpeg_model_outputs``: a clear error."""
    from molpeg_plugins.errors import MolPegError
    from molpeg_plugins.plugins import make_plugin_manager

    source, target, _ = two_families
    bare = make_plugin_manager(entry_points=False)
    with pytest.raises(MolPegError, match=r"pip install 'molpeg\[chemprop\]'"):
        S.feature_mapping(
            source, target, 0.5, groups=4, checkpoint=tmp_path / "model.pt", plugin_manager=bare
        )


STEREO_TARGET = "C[C@H](N)C(=O)O"  # L-alanine


@pytest.fixture(scope="module")
def leaky_source(two_families) -> tuple[list[str], list[str], set[int], set[int]]:
    """The two-families source with target molecules hidden in it under other SMILES.

    Returns the source, the target (with L-alanine added), the rows that are target molecules
    (other atom orders of 20 target molecules, and L-alanine written from the N) and the rows
    that only look like one (D-alanine and alanine without stereo: other molecules).
    """
    source, target, _ = two_families
    target = [*target, STEREO_TARGET]
    rewritten = []
    for smi in target[:20]:
        mol = Chem.MolFromSmiles(smi)
        written = {Chem.MolToSmiles(mol, doRandom=True, canonical=False) for _ in range(5)}
        # (RDKit's random atom order is seeded by its own default seed: reproducible)
        rewritten.append(sorted(written - {smi})[0] if written - {smi} else smi)
    leaks = [*rewritten, "N[C@@H](C)C(=O)O"]  # the last one is L-alanine as well
    lookalikes = ["C[C@@H](N)C(=O)O", "CC(N)C(=O)O"]  # D-alanine; alanine, stereo unknown
    extended = list(source)
    leak_rows, lookalike_rows = set(), set()
    for smi in leaks:
        leak_rows.add(len(extended))
        extended.append(smi)
    for smi in lookalikes:
        lookalike_rows.add(len(extended))
        extended.append(smi)
    return extended, target, leak_rows, lookalike_rows


def test_target_overlap_is_by_canonical_molecule_and_stereo_aware(leaky_source) -> None:
    from molpeg_plugins.source.overlap import canonical_key, find_target_overlap

    source, target, leak_rows, _ = leaky_source
    assert canonical_key("N[C@@H](C)C(=O)O") == canonical_key(STEREO_TARGET)
    assert canonical_key("C[C@@H](N)C(=O)O") != canonical_key(STEREO_TARGET)
    assert canonical_key("not a smiles") is None
    for workers in (1, 2):
        found = find_target_overlap(source, target, chunk_size=100, workers=workers)
        assert set(found.source_rows.tolist()) == leak_rows
        assert found.source_rows.tolist() == sorted(found.source_rows.tolist())
        for row, target_row, molecule in zip(
            found.source_rows, found.target_rows, found.molecules, strict=True
        ):
            assert canonical_key(source[row]) == canonical_key(target[target_row]) == molecule


@pytest.mark.parametrize("features", ["morgan", "scaffold"])
def test_a_target_molecule_never_survives_in_the_pruned_source(leaky_source, features) -> None:
    source, target, leak_rows, lookalike_rows = leaky_source
    sel = S.feature_mapping(source, target, 1.0, groups=10, features=features)
    kept = set(sel.kept.tolist())
    assert not kept & leak_rows  # keep=1.0 keeps everything else …
    assert lookalike_rows <= kept  # … including the other stereoisomer and the flat molecule
    assert len(kept) == sel.num_eligible == sel.num_valid - len(leak_rows)
    assert all(sel.group_of[r] == -1 for r in leak_rows)
    assert sum(u["size"] for u in sel.units) == sel.num_eligible
    half = S.feature_mapping(source, target, 0.5, groups=10, features=features)
    assert not set(half.kept.tolist()) & leak_rows
    assert len(half.kept) == S.kept_count(half.num_eligible, 0.5)
    # an explicit opt-out keeps them
    kept_all = S.feature_mapping(source, target, 1.0, groups=10, drop_target_molecules=False)
    assert kept_all.target_overlap is None and leak_rows <= set(kept_all.kept.tolist())


def test_cli_lists_the_dropped_target_molecules(leaky_source, tmp_path: Path) -> None:
    source, target, leak_rows, _ = leaky_source
    src, tgt = tmp_path / "source.csv", tmp_path / "target.csv"
    src.write_text("smiles\n" + "".join(f"{s}\n" for s in source))
    tgt.write_text("smiles\n" + "".join(f"{s}\n" for s in target))
    out = tmp_path / "fm"
    args = ["prune-source", str(src), "--target", str(tgt), "--keep", "1", "--groups", "8"]
    result = runner.invoke(app, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "overlap.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {int(r["row"]) for r in rows} == leak_rows
    assert all(target[int(r["target_row"])] for r in rows)
    report = json.loads((out / "report.json").read_text())
    assert report["num_source_target_molecules"] == len(leak_rows)
    pruned = (out / "pruned.csv").read_text().splitlines()[1:]
    assert len(pruned) == len(source) - len(leak_rows)
    assert not {source[r] for r in leak_rows} & set(pruned)
    flat = " ".join(result.output.replace("│", " ").split())
    assert f"{len(leak_rows)} source rows are target molecules: dropped" in flat
    kept_out = tmp_path / "kept"
    result = runner.invoke(app, [*args, "--keep-target-molecules", "-o", str(kept_out)])
    assert result.exit_code == 0, result.output
    assert len((kept_out / "pruned.csv").read_text().splitlines()) == len(source) + 1
    assert (kept_out / "overlap.csv").read_text().strip() == "row,target_row,molecule"
