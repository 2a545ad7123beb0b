"""Power-law fits of performance against kept fraction, and ``molpeg scaling``."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from molpeg_plugins.cli import app
from molpeg_plugins.errors import ConfigError, MolPegError
from molpeg_plugins.scaling import laws as sc

runner = CliRunner()
FRACTIONS = [0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_exact_points_give_exact_a_and_b() -> None:
    x = np.array(FRACTIONS)
    fit = sc.fit_power_law(x, 0.849 * x**0.062, "hiv")  # the paper's HIV refit
    assert fit.a == pytest.approx(0.849, rel=1e-6)
    assert fit.b == pytest.approx(0.062, rel=1e-6)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.n_points == 7 and fit.n_fractions == 7


@pytest.mark.parametrize(("a", "b"), [(0.849, 0.062), (0.791, 0.108), (0.291, 0.338)])
def test_noisy_points_recover_a_b_and_the_interval_covers_b(a: float, b: float) -> None:
    """Three seeds per fraction with 2% multiplicative noise: over 200 repetitions the 95%
    interval must cover the true exponent about 95% of the time."""
    rng = np.random.default_rng(0)
    x = np.repeat(FRACTIONS, 3)
    covered = 0
    errors = []
    for _ in range(200):
        y = a * x**b * np.exp(rng.normal(0.0, 0.02, size=x.size))
        fit = sc.fit_power_law(x, y)
        covered += fit.b_low <= b <= fit.b_high
        errors.append((fit.a - a, fit.b - b))
    err = np.abs(np.mean(errors, axis=0))
    assert err[0] < 0.01 and err[1] < 0.005  # unbiased
    assert 0.90 <= covered / 200 <= 0.99


def test_two_points_give_a_line_without_interval_and_no_warning(tmp_path: Path) -> None:
    """Two fractions, one seed (what ``--run --fractions 0.3,1.0`` gives): an exact line, no
    degrees of freedom for an interval, and no ``OptimizeWarning`` on the user's terminal."""
    results = tmp_path / "results.csv"
    results.write_text("strategy,fraction,metric,seed\nel2n,0.3,0.81,0\nel2n,1.0,0.9,0\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(
        [Path(sys.executable).parent / "molpeg", "scaling", str(results),
         "-o", str(tmp_path / "out")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr
    with open(tmp_path / "out" / "scaling_fits.csv", newline="") as fh:
        (fit,) = csv.DictReader(fh)
    assert float(fit["b"]) == pytest.approx(np.log(0.9 / 0.81) / np.log(1 / 0.3), rel=1e-5)
    assert fit["b_low"] == fit["b_stderr"] == "nan" and int(fit["n_points"]) == 2


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="two distinct fractions"):
        sc.fit_power_law([0.5, 0.5], [0.7, 0.8])
    with pytest.raises(ConfigError, match="positive"):
        sc.fit_power_law([0.5, 1.0], [0.0, 0.8])
    path = tmp_path / "r.csv"
    path.write_text("strategy,fraction,score\nrandom,0.5,0.7\n")
    with pytest.raises(MolPegError, match="missing column"):
        sc.read_results(path)
    path.write_text("strategy,fraction,metric,seed\nrandom,half,0.7,0\n")
    with pytest.raises(MolPegError, match="line 2"):
        sc.read_results(path)


def test_cli_fits_a_results_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = ["strategy,fraction,metric,seed"]
    for strategy, (a, b) in {"random": (0.85, 0.06), "molpeg": (0.86, 0.03)}.items():
        for seed in range(2):
            rows += [
                f"{strategy},{x},{a * x**b * np.exp(rng.normal(0, 0.005)):.6f},{seed}"
                for x in FRACTIONS
            ]
    results = tmp_path / "results.csv"
    results.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["scaling", str(results), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "random" in result.output and "95% CI of b" in result.output
    with open(out / "scaling_fits.csv", newline="") as fh:
        fits = {r["strategy"]: r for r in csv.DictReader(fh)}
    assert float(fits["random"]["b"]) == pytest.approx(0.06, abs=0.01)
    assert float(fits["molpeg"]["b"]) == pytest.approx(0.03, abs=0.01)
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_needs_exactly_one_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["scaling", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "either RESULTS.csv" in result.output


@pytest.mark.slow
def test_cli_run_trains_at_each_fraction_then_fits(data_dir: Path, tmp_path: Path) -> None:
    """``--run`` with the real torch backend (MLP on Morgan fingerprints) on 1,000 BBBP rows."""
    out = tmp_path / "run"
    args = [
        "scaling", "--run", str(data_dir / "bbbp_1k.csv"), "--target-columns", "p_np",
        "--backend", "torch", "--strategies", "hard-random,el2n", "--fractions", "0.3,1.0",
        "--epochs", "2", "--split", "random", "-o", str(out),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["strategy"], float(r["fraction"])) for r in rows] == [
        (s, f) for s in ("hard-random", "el2n") for f in (0.3, 1.0)
    ]
    assert all(0.5 < float(r["metric"]) <= 1.0 for r in rows)  # test ROC-AUC of a real model
    assert {r["metric_name"] for r in rows} == {"roc_auc"}
    assert (out / "scaling_fits.csv").is_file() and (out / "scaling.png").is_file()
    # a second call resumes: nothing is retrained, the same rows are fitted
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4
