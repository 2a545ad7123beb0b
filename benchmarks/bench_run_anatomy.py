"""Where the wall time of a whole ``chemprop train`` run goes, with and without pruning.

Each configuration runs the real command line, ``chemprop train [--plugin molpeg …]``, in a
child process whose phases are timed from the inside: interpreter start and imports, molpeg's
input check, parsing and splitting, featurisation (Chemprop's dataset cache), model set-up,
training (and within it MolPeg's reference forward, EMA update and selection), validation,
checkpoint writes, and the final test evaluation. The configurations run back to back on the
same prepared data (HIV-10k from ``benchmarks/run.py``), so their ratios come from one sitting.

    python benchmarks/bench_run_anatomy.py --epochs 10          # all configurations
    python benchmarks/bench_run_anatomy.py --only full,molpeg   # a subset
    python benchmarks/bench_run_anatomy.py --ratio 0.4 --only soft-random,molpeg-head --repeat 3
    python benchmarks/bench_run_anatomy.py --report             # the table from the CSV only

One CSV row per run is appended to ``benchmarks/results/run_anatomy.csv`` (with the load
average before and after the run, and the molecules and atoms the training epochs
processed); the table, the mean of every run of each configuration in the CSV, is printed
and written to ``benchmarks/results/run_anatomy.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# name → extra command-line options (None: stock chemprop, no plugin)
CONFIGS: dict[str, list[str] | None] = {
    "full": None,
    "soft-random": ["--prune-strategy", "soft-random"],
    "infobatch": ["--prune-strategy", "infobatch"],
    "molpeg": ["--prune-strategy", "molpeg", "--prune-reference", "model"],
    "molpeg-head": ["--prune-strategy", "molpeg", "--prune-reference", "head"],
    "molpeg-every4": [
        "--prune-strategy",
        "molpeg",
        "--prune-reference",
        "model",
        "--prune-reference-every",
        "4",
    ],
}
PHASES = [
    "startup",
    "input_check",
    "parse_split",
    "datasets",
    "featurise",
    "model_setup",
    "train",
    "reference",
    "ema",
    "selection",
    "validation",
    "checkpoint",
    "test",
    "total",
]
# what the training epochs processed: molecules and atoms (the cost of a message-passing step
# grows with the atoms of its batch, so a strategy that keeps larger molecules trains slower)
COUNTS = ["molecules_trained", "atoms_trained"]
FIELDS = [
    "config", "ratio", "epochs", "rows", *PHASES, *COUNTS, "load_before", "load_after", "finished"
]  # fmt: skip


# --------------------------------------------------------------------------- child


def child(argv: list[str], out: Path) -> None:
    """Run ``chemprop train argv`` in this process with phase timers; write them to ``out``."""
    clock: dict[str, float] = {p: 0.0 for p in [*PHASES, *COUNTS]}
    marks: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock[name] += time.perf_counter() - start

        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapper

    sys.argv = ["chemprop", "train", *argv]
    import lightning.pytorch as pl
    from chemprop.cli import main as cli_main
    from chemprop.cli import train as cli_train

    import molpeg_chemprop.callback  # noqa: F401  (loaded before the "imported" mark)
    import molpeg_plugins.engine.pruner
    import molpeg_plugins.engine.scoring
    from molpeg_chemprop import chemprop_cli
    from molpeg_chemprop.reference import ChempropReference

    marks["imported"] = time.perf_counter()

    class Timer(pl.Callback):
        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            marks["fit_start"] = time.perf_counter()

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            marks.setdefault("first_epoch", time.perf_counter())

        def on_train_batch_start(
            self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
        ) -> None:
            clock["molecules_trained"] += len(batch.Y)
            clock["atoms_trained"] += batch.bmg.V.shape[0]

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            marks["val_start"] = time.perf_counter()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            clock["validation"] += time.perf_counter() - marks["val_start"]

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            marks["fit_end"] = time.perf_counter()

    class TimedTrainer(pl.Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if "max_epochs" in kwargs:
                kwargs["callbacks"] = [Timer(), *(kwargs.get("callbacks") or [])]
            super().__init__(*args, **kwargs)

    pl.Trainer = TimedTrainer
    pl.Trainer.save_checkpoint = timed("checkpoint", pl.Trainer.save_checkpoint)
    chemprop_cli.filter_invalid_smiles = timed("input_check", chemprop_cli.filter_invalid_smiles)
    cli_train.build_splits = timed("parse_split", cli_train.build_splits)
    cli_train.build_datasets = timed("datasets", cli_train.build_datasets)
    original_train_model = cli_train.train_model

    def train_model(*args: Any, **kwargs: Any) -> Any:
        marks["train_model"] = time.perf_counter()
        try:
            return original_train_model(*args, **kwargs)
        finally:
            marks["train_model_end"] = time.perf_counter()

    cli_train.train_model = train_model
    for forward in ("model_loss", "head_output"):  # the model and head reference forwards
        method = getattr(ChempropReference, forward)
        setattr(ChempropReference, forward, timed("reference", method))
    molpeg_plugins.engine.scoring.EMAReference.update = timed(
        "ema", molpeg_plugins.engine.scoring.EMAReference.update
    )
    molpeg_plugins.engine.pruner.Pruner.end_epoch = timed(
        "selection", molpeg_plugins.engine.pruner.Pruner.end_epoch
    )
    main_start = time.perf_counter()
    try:
        cli_main.main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    end = time.perf_counter()
    clock["startup"] = main_start - T0
    before_training = marks["train_model"] - main_start
    clock["featurise"] = before_training - clock["parse_split"] - clock["datasets"]
    clock["parse_split"] -= clock["input_check"]  # the check runs inside the data reading
    clock["model_setup"] = marks["first_epoch"] - marks["train_model"]
    fit = marks["fit_end"] - marks["first_epoch"]
    clock["train"] = fit - clock["validation"] - clock["checkpoint"]
    clock["test"] = marks["train_model_end"] - marks["fit_end"]
    clock["total"] = end - T0
    out.write_text(json.dumps(clock))


# --------------------------------------------------------------------------- parent


def command(data: Path, foundation: Path, out_dir: Path, epochs: int, extra: list[str] | None,
            ratio: float) -> list[str]:  # fmt: skip
    """The ``chemprop train`` arguments of one configuration (as ``benchmarks/run.py``)."""
    argv = [
        "--data-path", str(data), "--task-type", "classification", "--smiles-columns", "smiles",
        "--target-columns", "HIV_active", "--split-type", "scaffold_balanced",
        "--split-sizes", "0.8", "0.1", "0.1", "--epochs", str(epochs), "--metrics", "roc",
        "--tracking-metric", "roc", "--data-seed", "0", "--pytorch-seed", "0",
        "--num-workers", "0", "--output-dir", str(out_dir), "--from-foundation", str(foundation),
    ]  # fmt: skip
    if extra is not None:
        argv += ["--plugin", "molpeg", "--prune-ratio", str(ratio), *extra]
    return argv


def main() -> None:
    """Run the configurations back to back and print the phase table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ratio", type=float, default=0.6)
    parser.add_argument("--only", help="comma-separated configurations (default: all)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the configurations this many times, interleaved"
    )
    parser.add_argument(
        "--report", action="store_true", help="only rewrite the table from the CSV (no runs)"
    )
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child[1:], Path(args.child[0]))
        return

    sys.path.insert(0, str(HERE))
    import run  # benchmarks/run.py: the prepared HIV-10k subset and the foundation model

    hiv = run.Dataset(**{**run.HIV.__dict__, "name": "HIV-10k", "subsample": 10_000})
    data = run.prepare(hiv)
    rows = sum(1 for _ in data.open()) - 1
    names = (args.only.split(",") if args.only else list(CONFIGS)) * args.repeat
    if args.report:
        names = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    csv_path = RESULTS / "run_anatomy.csv"
    upgrade_header(csv_path)
    for name in names:
        with tempfile.TemporaryDirectory(prefix="molpeg-anatomy-") as tmp:
            out = Path(tmp) / "phases.json"
            argv = command(data, run.ADMET_AI, Path(tmp) / "run", args.epochs, CONFIGS[name],
                           args.ratio)  # fmt: skip
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, __file__, "--child", str(out), *argv],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - start
            phases = json.loads(out.read_text())
        phases["startup"] += wall - phases["total"]  # interpreter start before T0
        phases["total"] = wall
        row = {
            "config": name,
            "ratio": 0.0 if CONFIGS[name] is None else args.ratio,
            "epochs": args.epochs,
            "rows": rows,
            **{p: round(phases[p], 2) for p in PHASES},
            **{c: int(phases[c]) for c in COUNTS},
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "finished": datetime.now().isoformat(timespec="seconds"),
        }
        new = not csv_path.exists()
        with csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        print(f"{name}: {wall:.1f} s", flush=True)
    markdown = anatomy_markdown(csv_path, args.epochs, rows)
    from molpeg_plugins.pipeline.atomic import write_text

    write_text(RESULTS / "run_anatomy.md", markdown)
    print(markdown)


def upgrade_header(csv_path: Path) -> None:
    """Rewrite an older ``run_anatomy.csv`` with today's columns (new ones left empty)."""
    if not csv_path.exists():
        return
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames == FIELDS:
            return
        rows = list(reader)
    import io

    from molpeg_plugins.pipeline.atomic import write_text

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIELDS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(csv_path, text.getvalue())


LABELS = {
    "startup": "interpreter start and imports",
    "input_check": "molpeg's input check (`--plugin molpeg`)",
    "parse_split": "reading, parsing and splitting the CSV",
    "datasets": "building the datasets",
    "featurise": "featurisation (Chemprop's dataset cache)",
    "model_setup": "model, trainer and data-loader set-up",
    "train": "training epochs (without validation and checkpoints)",
    "reference": "· of which the MolPeg reference forward",
    "ema": "· of which the EMA update",
    "selection": "· of which scoring and selection",
    "validation": "validation (every epoch)",
    "checkpoint": "checkpoint writes",
    "test": "best-model reload and test evaluation",
    "total": "**wall time**",
}


def averaged(csv_path: Path, epochs: int) -> list[dict[str, Any]]:
    """Every configuration and ratio of ``csv_path`` at ``epochs``: mean phases over its runs."""
    import pandas as pd

    frame = pd.read_csv(csv_path)
    frame = frame[frame.epochs == epochs]
    order = {name: i for i, name in enumerate(CONFIGS)}
    groups = frame.groupby(["config", "ratio"], sort=False)
    rows = []
    for (config, ratio), group in groups:
        row = {"config": config, "ratio": float(ratio), "runs": len(group)}
        row.update({c: float(group[c].mean()) for c in [*PHASES, *COUNTS, "load_before"]})
        row["load_max"] = float(group.load_before.max())
        counted = group[group.atoms_trained > 0]  # runs that counted what they trained
        row["katoms_per_s"] = float((counted.atoms_trained / counted.train).mean() / 1e3)
        row["counted_runs"] = len(counted)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["ratio"], order[r["config"]]))


def anatomy_markdown(csv_path: Path, epochs: int, rows: int) -> str:
    """The phase table at 60% pruned and the cost by ratio, from every quiet run in the CSV."""
    import platform

    import torch

    runs = averaged(csv_path, epochs)
    main_runs = [r for r in runs if r["ratio"] in (0.0, 0.6)]
    names = [r["config"] for r in main_runs]
    lines = [
        "| phase (seconds) | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---" + "|---:" * len(names) + "|",
    ]
    for phase in PHASES:
        lines.append(
            f"| {LABELS[phase]} | " + " | ".join(f"{r[phase]:.1f}" for r in main_runs) + " |"
        )
    full = next((r for r in runs if r["config"] == "full"), None)
    if full is not None:
        for key, label in (("total", "wall time / full"), ("train", "training / full")):
            lines.append(
                f"| {label} | " + " | ".join(f"{r[key] / full[key]:.2f}" for r in main_runs) + " |"
            )
    lines.append("| quiet runs averaged | " + " | ".join(str(r["runs"]) for r in main_runs) + " |")
    by_ratio = [
        "| configuration | pruned | runs | wall s | wall / full | training s | molecules "
        "trained | atoms trained | training katoms/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        counted = r["counted_runs"] > 0
        atoms = f"{r['atoms_trained'] / 1e6:.2f} M" if counted else "—"
        molecules = f"{r['molecules_trained']:,.0f}" if counted else "—"
        speed = f"{r['katoms_per_s']:.1f}" if counted else "—"
        ratio = f"{r['total'] / full['total']:.2f}" if full is not None else "—"
        by_ratio.append(
            f"| `{r['config']}` | {r['ratio']:.0%} | {r['runs']} | {r['total']:.0f} | {ratio} | "
            f"{r['train']:.1f} | {molecules} | {atoms} | {speed} |"
        )
    loads = max(r["load_max"] for r in runs)
    return f"""### Anatomy of a whole run (Chemprop, CPU)

`chemprop train` on HIV-10k ({rows:,} molecules, scaffold-balanced 80/10/10), fine-tuned from
the ADMET-AI encoder for {epochs} epochs; pruned runs add `--plugin molpeg --prune-ratio R`
and the options of their column (`molpeg-head`: `--prune-reference head`, the default for
classification; `molpeg`: the paper's `--prune-reference model`; `molpeg-every4`: the same
with `--prune-reference-every 4`). The runs went one after another on
{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, with nothing else
running (1-minute load average at the start of each run at most {loads:.1f}; the run itself
keeps both cores busy). Each column is the mean of the quiet runs of that configuration;
repeated runs were interleaved (`--repeat`).

Commands: `python benchmarks/bench_run_anatomy.py --epochs {epochs} --ratio R [--only C]
[--repeat K]` for R = 0.4, 0.6, 0.8.

At 60% pruned:

{chr(10).join(lines)}

By pruning ratio (whole-run wall time, and the training epochs' throughput in atoms of the
molecules trained, averaged over the runs that counted them; Chemprop's message passing
costs in proportion to atoms and bonds):

{chr(10).join(by_ratio)}
"""


if __name__ == "__main__":
    main()
