"""molpeg CLI: ``scaling`` (registered on import).

``molpeg scaling RESULTS.csv`` fits ``perf = a·x^b`` per strategy (see
:mod:`molpeg_plugins.scaling.laws`), prints a table and writes ``scaling_fits.csv`` and
``scaling.png``. ``molpeg scaling --run DATA.csv --output DIR`` first produces ``DIR/results.csv``
by one :func:`~molpeg_plugins.pipeline.run.run_prune` per kept fraction, strategy and seed, then
fits it.
"""

from __future__ import annotations

import csv
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from molpeg_plugins.cli.app import app
from molpeg_plugins.cli.errors import exit_on_error
from molpeg_plugins.errors import ConfigError


def _parse_list(text: str, cast: Any, option: str) -> list[Any]:
    try:
        items = [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: give a comma-separated list") from None
    if not items:
        raise ConfigError(f"{option} is empty")
    return items


def run_grid(
    data: Path,
    output: Path,
    *,
    backend_name: str,
    strategies: list[str],
    fractions: list[float],
    seeds: list[int],
    epochs: int,
    batch_size: int,
    smiles_column: str,
    target_columns: list[str] | None,
    split: str,
    console: Any,
) -> Path:
    """Train at every (strategy, fraction, seed) and append rows to ``output/results.csv``.

    Every grid point is one :func:`~molpeg_plugins.pipeline.run.run_prune` (on CPU, from
    scratch) whose result set goes to ``output/runs/<strategy>_<fraction>_s<seed>/``; the data
    is read once. Finished rows already in the results are skipped, so an interrupted grid
    resumes. The kept fraction ``x`` is passed as ``prune_ratio = 1 − x`` with the strategy
    (static strategies keep ``x`` of the training set once, dynamic ones ``x`` per epoch).
    Warm-up epochs on the full data are used only by strategies that need them to score
    (:func:`~molpeg_plugins.pipeline.run.default_warmup_epochs` with ``only_where_needed``).

    Returns:
        The results CSV (columns ``strategy, fraction, metric, seed`` then details).
    """
    from molpeg_plugins.pipeline.run import (
        PruneOptions,
        default_warmup_epochs,
        load_table,
        run_prune,
    )
    from molpeg_plugins.plugins import make_plugin_manager

    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise ConfigError(f"--fractions: {f:g} is outside (0, 1]")
    pm = make_plugin_manager()
    ok, why = pm.backend(backend_name).availability()
    if not ok:
        raise ConfigError(f"backend {backend_name!r} is not available: {why}")
    classes = {s: pm.strategy_class(s) for s in strategies}
    base = PruneOptions(
        output=output,
        data=data,
        backend=backend_name,
        smiles_column=smiles_column,
        target_columns=None if target_columns is None else tuple(target_columns),
        epochs=epochs,
        from_scratch=True,
        split=split,
        device="cpu",
        batch_size=batch_size,
        overwrite=True,
    )
    table = load_table(base)
    for cls in classes.values():
        cls.check_task(table.task)
    output.mkdir(parents=True, exist_ok=True)
    results = output / "results.csv"
    fields = ["strategy", "fraction", "metric", "seed", "metric_name", "num_train", "seconds"]
    done: set[tuple[str, float, str]] = set()
    if results.is_file():
        with open(results, newline="") as fh:
            done = {(r["strategy"], float(r["fraction"]), r["seed"]) for r in csv.DictReader(fh)}
    else:
        with open(results, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerow(fields)
    total = len(strategies) * len(fractions) * len(seeds)
    k = 0
    for seed in seeds:
        for strategy, cls in classes.items():
            for fraction in fractions:
                k += 1
                if (strategy, float(fraction), str(seed)) in done:
                    continue
                options = replace(
                    base,
                    output=output / "runs" / f"{strategy}_{fraction:g}_s{seed}",
                    strategy=strategy,
                    prune_ratio=round(1.0 - fraction, 10),
                    warmup_epochs=default_warmup_epochs(cls, epochs, only_where_needed=True),
                    seed=seed,
                )
                started = time.perf_counter()
                run = run_prune(options, table=table)
                seconds = time.perf_counter() - started
                result, num_train = run.result, run.report["counts"]["train"]
                metric = result.test_metrics.get(result.metric_name, float("nan"))
                with open(results, "a", newline="") as fh:
                    csv.writer(fh, lineterminator="\n").writerow(
                        [strategy, fraction, f"{metric:.6g}", seed, result.metric_name,
                         num_train, f"{seconds:.1f}"]
                    )  # fmt: skip
                console.print(
                    f"[{k}/{total}] {strategy:12s} x={fraction:<5g} seed {seed}: "
                    f"test {result.metric_name} {metric:.4f} ({seconds:.1f} s)"
                )
    return results


@app.command("scaling")
def scaling(
    results: Path | None = typer.Argument(
        None, help="Results CSV (strategy, fraction, metric, seed) to fit."
    ),
    run: Path | None = typer.Option(
        None, "--run", help="Molecule CSV: train at each fraction and strategy first."
    ),
    output: Path = typer.Option(Path("scaling_out"), "--output", "-o", help="Output folder."),
    backend: str = typer.Option("torch", "--backend", help="Training backend for --run."),
    strategies: str = typer.Option(
        "hard-random,molpeg", "--strategies", help="Comma-separated strategies for --run."
    ),
    fractions: str = typer.Option(
        "0.05,0.1,0.2,0.4,0.6,0.8,1.0", "--fractions", help="Kept fractions for --run."
    ),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds for --run."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs per run."),
    batch_size: int = typer.Option(64, "--batch-size"),
    smiles_column: str = typer.Option("smiles", "--smiles-column"),
    target_columns: str | None = typer.Option(None, "--target-columns"),
    split: str = typer.Option("scaffold", "--split", help="random or scaffold."),
    metric_label: str | None = typer.Option(
        None, "--metric-label", help="y-axis label of the plot (default: the metric name)."
    ),
) -> None:
    """Fit perf = a·x^b per strategy; with --run, produce the results by training first."""
    from rich.console import Console
    from rich.table import Table

    from molpeg_plugins.scaling import laws as sc

    console = Console()
    interrupted = (
        "Interrupted; rerun the same command to continue "
        f"(the finished runs are in {output / 'results.csv'})."
    )
    with exit_on_error(interrupted):
        if (results is None) == (run is None):
            raise ConfigError("give either RESULTS.csv to fit, or --run DATA.csv to train first")
        if run is not None:
            results = run_grid(
                run,
                output,
                backend_name=backend,
                strategies=_parse_list(strategies, str, "--strategies"),
                fractions=_parse_list(fractions, float, "--fractions"),
                seeds=_parse_list(seeds, int, "--seeds"),
                epochs=epochs,
                batch_size=batch_size,
                smiles_column=smiles_column,
                target_columns=_parse_list(target_columns, str, "--target-columns")
                if target_columns
                else None,
                split=split,
                console=console,
            )
        assert results is not None
        rows = sc.read_results(results)
        fits = sc.fit_results(rows)
        out_dir = output
        out_dir.mkdir(parents=True, exist_ok=True)
        sc.write_fits_csv(out_dir / "scaling_fits.csv", fits)
        label = metric_label or _metric_name(results)
        sc.plot_fits(out_dir / "scaling.png", rows, fits, label)
    table = Table(title=f"perf = a·x^b  ({results})")
    for col in ("strategy", "a", "b", "95% CI of b", "R² (log)", "points"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for f in fits:
        ci = "—" if f.b_low != f.b_low else f"[{f.b_low:.4f}, {f.b_high:.4f}]"
        table.add_row(
            f.strategy, f"{f.a:.4f}", f"{f.b:.4f}", ci, f"{f.r2:.3f}",
            f"{f.n_points} ({f.n_fractions} fractions)",
        )  # fmt: skip
    console.print(table)
    console.print(f"fits → {output / 'scaling_fits.csv'} · plot → {output / 'scaling.png'}")


def _metric_name(results: Path) -> str:
    with open(results, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames and "metric_name" in reader.fieldnames:
            for row in reader:
                if row.get("metric_name"):
                    return row["metric_name"]
    return "metric"
