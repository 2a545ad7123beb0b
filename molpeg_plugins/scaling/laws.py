"""Scaling laws of performance against the fraction of training data kept.

Performance as a function of the kept fraction ``x`` is modelled as ``perf = a·x^b``
(arXiv:2309.15123). The fit is an ordinary least-squares line in log space,
``log perf = log a + b·log x`` (:func:`scipy.stats.linregress`); the 95% interval on ``b``
uses Student's t with ``n − 2`` degrees of freedom, so two points give a line but no interval
(``nan``). Every point of every seed enters the fit (seeds are replicates).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from molpeg_plugins.errors import ConfigError, MolPegError

RESULT_COLUMNS = ("strategy", "fraction", "metric", "seed")
FRACTIONS = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Default kept fractions of ``molpeg scaling --run``."""


@dataclass
class PowerLawFit:
    """``perf = a·x^b`` fitted to one strategy's points.

    Attributes:
        strategy: the strategy's name.
        a: performance extrapolated to the full data (``x = 1``).
        b: the exponent (``> 0``: performance grows with data, for higher-is-better metrics).
        b_low, b_high: 95% confidence interval of ``b`` (``nan`` with fewer than 3 points).
        b_stderr: standard error of ``b``.
        r2: coefficient of determination in log space.
        n_points: points fitted.
        n_fractions: distinct fractions among them.
    """

    strategy: str
    a: float
    b: float
    b_low: float
    b_high: float
    b_stderr: float
    r2: float
    n_points: int
    n_fractions: int

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        """``a·x^b``."""
        return self.a * np.power(np.asarray(x, dtype=float), self.b)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for CSV/JSON)."""
        return asdict(self)


def fit_power_law(
    fractions: Sequence[float], values: Sequence[float], strategy: str = ""
) -> PowerLawFit:
    """Fit ``perf = a·x^b`` in log space.

    Args:
        fractions: kept fractions ``x`` in ``(0, 1]`` (any positive value is accepted).
        values: the metric at each fraction; must be positive.
        strategy: name carried into the result.

    Raises:
        ConfigError: fewer than two distinct fractions, or a non-positive value.
    """
    from scipy import stats

    x = np.asarray(fractions, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape:
        raise ConfigError("fractions and values must have the same length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if np.any(x <= 0) or np.any(y <= 0):
        raise ConfigError(
            f"strategy {strategy!r}: the power law needs positive fractions and metric values "
            f"(got min fraction {x.min():g}, min metric {y.min():g}); for an error metric that can "
            "be zero or negative, fit a transformed metric"
        )
    if len(np.unique(x)) < 2:
        raise ConfigError(
            f"strategy {strategy!r}: at least two distinct fractions are needed to fit a·x^b"
        )
    lx, ly = np.log(x), np.log(y)
    line = stats.linregress(lx, ly)
    log_a, b = float(line.intercept), float(line.slope)
    n = len(x)
    resid = ly - (log_a + b * lx)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    if n > 2:  # with two points the line is exact: no degree of freedom for an error
        se = float(line.stderr)
        half = float(stats.t.ppf(0.975, n - 2)) * se
        low, high = b - half, b + half
    else:
        se = low = high = float("nan")
    return PowerLawFit(
        strategy=strategy,
        a=float(math.exp(log_a)),
        b=float(b),
        b_low=float(low),
        b_high=float(high),
        b_stderr=float(se),
        r2=r2,
        n_points=n,
        n_fractions=len(np.unique(x)),
    )


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Read a results CSV (columns ``strategy, fraction, metric, seed``; others ignored).

    Raises:
        MolPegError: a missing column, or a row whose fraction/metric is not a number
            (named by line).
    """
    path = Path(path)
    if not path.is_file():
        raise MolPegError(
            f"{path}: no such file; give a CSV with columns {', '.join(RESULT_COLUMNS)}"
        )
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in RESULT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise MolPegError(
                f"{path}: missing column(s) {', '.join(missing)}; the results CSV needs "
                f"{', '.join(RESULT_COLUMNS)} (one row per training run)"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            if not any((v or "").strip() for v in row.values()):
                continue
            try:
                fraction, metric = float(row["fraction"]), float(row["metric"])
            except (TypeError, ValueError):
                raise MolPegError(
                    f"{path}, line {line}: fraction {row['fraction']!r} / metric "
                    f"{row['metric']!r} must be numbers"
                ) from None
            rows.append(
                {
                    "strategy": row["strategy"],
                    "fraction": fraction,
                    "metric": metric,
                    "seed": row["seed"],
                }
            )
    if not rows:
        raise MolPegError(f"{path}: no result rows")
    return rows


def fit_results(rows: Iterable[dict[str, Any]]) -> list[PowerLawFit]:
    """One :class:`PowerLawFit` per strategy (in first-seen order)."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        groups.setdefault(str(r["strategy"]), []).append((float(r["fraction"]), float(r["metric"])))
    fits = []
    for strategy, pts in groups.items():
        xs, ys = zip(*pts, strict=True)
        fits.append(fit_power_law(xs, ys, strategy))
    return fits


def plot_fits(
    path: str | Path, rows: Sequence[dict[str, Any]], fits: Sequence[PowerLawFit], ylabel: str
) -> None:
    """Log-log plot of the points (mean ± sd over seeds) and the fitted lines, atomically."""
    import matplotlib as mpl
    from matplotlib.figure import Figure

    from molpeg_plugins.pipeline.atomic import atomic_path

    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    colours = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, fit in enumerate(fits):
        colour = colours[k % len(colours)]
        pts = [(r["fraction"], r["metric"]) for r in rows if str(r["strategy"]) == fit.strategy]
        xs = np.array(sorted({p[0] for p in pts}))
        means = np.array([np.mean([m for f, m in pts if f == x]) for x in xs])
        sds = np.array([np.std([m for f, m in pts if f == x]) for x in xs])
        ax.errorbar(xs, means, yerr=sds, fmt="o", color=colour, ms=4, capsize=2)
        grid = np.geomspace(xs.min(), xs.max(), 50)
        ax.plot(
            grid,
            fit.predict(grid),
            "-",
            color=colour,
            label=f"{fit.strategy}: {fit.a:.3f}·x^{fit.b:.3f}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("fraction of training data kept")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def write_fits_csv(path: str | Path, fits: Sequence[PowerLawFit]) -> None:
    """Write the fits as CSV, atomically."""
    import io

    from molpeg_plugins.pipeline.atomic import write_text

    keys = list(PowerLawFit.__dataclass_fields__)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(keys)
    for fit in fits:
        d = fit.to_dict()
        writer.writerow([f"{d[k]:.6g}" if isinstance(d[k], float) else d[k] for k in keys])
    write_text(path, buf.getvalue())
