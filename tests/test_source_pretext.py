"""The descriptor pretext: raw RDKit descriptors of known molecules and their standardisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molpeg_plugins.errors import MolPegError
from molpeg_plugins.source.pretext import (
    DescriptorScaling,
    compute_descriptors,
    descriptor_names,
    descriptor_pretext,
    write_pretext,
)

ETHANOL, BENZENE, ASPIRIN = "CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O"
MOLECULES = [
    ETHANOL, BENZENE, ASPIRIN, "CCN", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "c1ccncc1", "OCC(O)CO",
    "CCCCCCCCCC", "Clc1ccc(Cl)cc1", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
]  # fmt: skip


def value(raw: np.ndarray, row: int, name: str) -> float:
    """One raw descriptor of one molecule."""
    return float(raw[row, descriptor_names().index(name)])


def test_raw_descriptors_of_known_molecules() -> None:
    raw = compute_descriptors([ETHANOL, BENZENE, ASPIRIN])
    assert raw.shape == (3, len(descriptor_names()))
    assert len(descriptor_names()) > 150
    assert value(raw, 0, "MolWt") == pytest.approx(46.07, abs=0.01)
    assert value(raw, 1, "RingCount") == 1
    assert value(raw, 1, "NumAromaticRings") == 1
    assert value(raw, 2, "TPSA") == pytest.approx(63.6, abs=0.05)
    assert value(raw, 2, "NumHDonors") == 1


def test_unparsable_smiles_give_nan_rows() -> None:
    raw = compute_descriptors([ETHANOL, "not a smiles", "", "C1CC", BENZENE])
    assert np.isnan(raw[1:4]).all()
    assert not np.isnan(raw[0]).all() and not np.isnan(raw[4]).all()


def test_chunks_in_worker_processes_give_the_same_table() -> None:
    alone = compute_descriptors(MOLECULES)
    pooled = compute_descriptors(MOLECULES, chunk_size=3, workers=2)
    np.testing.assert_array_equal(np.isnan(alone), np.isnan(pooled))
    np.testing.assert_allclose(alone[~np.isnan(alone)], pooled[~np.isnan(pooled)])


def test_scaling_gives_mean_zero_sd_one_and_drops_constants() -> None:
    raw = compute_descriptors([*MOLECULES, "nonsense"])
    scaling = DescriptorScaling.fit(raw, quantile=0.0)
    targets = scaling.transform(raw)
    fitted = targets[:-1]  # the unparsable row is ignored by the fit and stays nan
    assert np.isnan(targets[-1]).all()
    np.testing.assert_allclose(fitted.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(fitted.std(axis=0), 1.0, atol=1e-9)
    parsed = raw[:-1]
    constant = [n for j, n in enumerate(descriptor_names()) if np.ptp(parsed[:, j]) == 0]
    assert "NumRadicalElectrons" in constant  # no radical in the set
    assert not set(constant) & set(scaling.names)
    assert set(scaling.names) == set(descriptor_names()) - set(constant)


def test_clipping_bounds_an_outlier() -> None:
    raw = np.tile(compute_descriptors(MOLECULES), (20, 1))
    column = descriptor_names().index("MolWt")
    raw[0, column] = 1e9  # one absurd value
    scaling = DescriptorScaling.fit(raw, quantile=0.01)
    targets = scaling.transform(raw)
    kept = scaling.names.index("MolWt")
    assert targets[0, kept] == pytest.approx(targets[:, kept].max())
    assert targets[0, kept] < 5  # a plain z-score would put it near sqrt(200) ≈ 14
    np.testing.assert_allclose(targets.mean(axis=0), 0.0, atol=1e-9)


def test_non_finite_descriptors_are_dropped() -> None:
    raw = compute_descriptors(MOLECULES)
    raw[2, descriptor_names().index("Ipc")] = np.nan  # as compute_descriptors writes an inf
    assert "Ipc" not in DescriptorScaling.fit(raw).names


def test_scaling_round_trips_through_json() -> None:
    raw = compute_descriptors(MOLECULES)
    scaling = DescriptorScaling.fit(raw)
    again = DescriptorScaling.from_dict(json.loads(json.dumps(scaling.to_dict())))
    assert again.names == scaling.names
    np.testing.assert_allclose(again.transform(raw), scaling.transform(raw))


def test_descriptor_pretext_returns_targets_and_scaling() -> None:
    targets, scaling = descriptor_pretext(MOLECULES)
    assert targets.shape == (len(MOLECULES), len(scaling.names))
    assert np.isfinite(targets).all()


def test_write_pretext_keeps_the_chosen_parsable_rows(tmp_path: Path) -> None:
    smiles = [*MOLECULES, "not a molecule"]
    raw = compute_descriptors(smiles)
    rows = np.array([0, 2, 4, 5, 6, 7, 8, len(smiles) - 1])  # the last one cannot be parsed
    written, scaling = write_pretext(tmp_path / "pretext.csv", smiles, raw, rows)
    frame = pd.read_csv(tmp_path / "pretext.csv")
    assert written == 7
    assert frame.smiles.tolist() == [smiles[i] for i in rows[:-1]]
    assert frame.columns.tolist() == ["smiles", *scaling.names]
    np.testing.assert_allclose(frame[list(scaling.names)].mean(), 0, atol=1e-3)


def test_bad_fits_are_clear_errors() -> None:
    with pytest.raises(MolPegError, match="no parsable molecule"):
        DescriptorScaling.fit(compute_descriptors(["nonsense"]))
    with pytest.raises(MolPegError, match="columns"):
        DescriptorScaling.fit(np.zeros((3, 4)))
    with pytest.raises(MolPegError, match="quantile"):
        DescriptorScaling.fit(compute_descriptors(MOLECULES), quantile=0.7)
