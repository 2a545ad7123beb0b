"""Sparse multitask at scale (ToxCast, MUV): the `molpeg prune` grid and the report snippet.

    python benchmarks/sparse.py --torch     # molpeg prune --backend torch, full vs 40/60%
    python benchmarks/sparse.py             # only rewrite benchmarks/results/sparse.md

The Chemprop half is the ``sparse`` tier of ``run.py``
(``python benchmarks/run.py --tier sparse --jobs 1 --threads 1``: ``chemprop train
[--plugin molpeg]``, rows in ``sparse.csv``, one row per task in ``sparse_tasks.csv``). The
``--torch`` grid runs ``molpeg prune --backend torch`` (the built-in MLP on Morgan
fingerprints, scaffold split, 10 epochs) on the same prepared CSVs: full data (soft random at
0% pruned: no pruning, no reference) against MolPeg at 40% and 60% pruned, seeds 0, 1, 2; one
row per run in ``sparse_torch.csv``, appended as each run ends (a rerun skips finished rows).
The snippet ``sparse.md`` summarises all three CSVs for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
import run  # benchmarks/run.py: datasets, prepare, measuring, appending

from molpeg_chemprop.runs import run_logged
from molpeg_plugins.errors import MolPegError
from molpeg_plugins.pipeline.atomic import write_text

RESULTS = run.RESULTS
TORCH_CSV = RESULTS / "sparse_torch.csv"
SNIPPET = RESULTS / "sparse.md"
SETS = (run.TOXCAST, run.MUV)
ARMS = [("full", 0.0), ("molpeg", 0.4), ("molpeg", 0.6)]
SEEDS = (0, 1, 2)
TORCH_EPOCHS = 10
TORCH_FIELDS = [
    "dataset", "method", "ratio", "seed", "epochs", "roc", "prc", "wall_seconds",
    "peak_rss_mb", "load_1min", "train", "kept", "device", "commit", "finished", "cpu_seconds",
]  # fmt: skip
CHEMPROP_COMMAND = "python benchmarks/run.py --tier sparse --jobs 1 --threads 1"
TORCH_COMMAND = "python benchmarks/sparse.py --torch"


def molpeg_executable() -> str:
    """The ``molpeg`` script of this interpreter's environment (falls back to PATH)."""
    beside = Path(sys.executable).with_name("molpeg")
    return str(beside) if beside.exists() else "molpeg"


def label_columns(path: Path) -> list[str]:
    """Every column of a prepared CSV but ``smiles``."""
    return [c for c in pd.read_csv(path, nrows=0).columns if c != "smiles"]


def torch_command(data_path: Path, method: str, ratio: float, seed: int, out: Path) -> list[str]:
    """The ``molpeg prune --backend torch`` command line of one grid point."""
    strategy = "soft-random" if method == "full" else method  # at 0%: plain full-data training
    return [
        molpeg_executable(), "prune", str(data_path), "--backend", "torch",
        "--target-columns", ",".join(label_columns(data_path)), "--task", "classification",
        "--split", "scaffold", "--prune-ratio", str(ratio), "--strategy", strategy,
        "--epochs", str(TORCH_EPOCHS), "--seed", str(seed), "--output", str(out),
        "--overwrite", "--quiet",
    ]  # fmt: skip


def run_torch_grid() -> None:
    """Run the missing points of the ``molpeg prune --backend torch`` grid, one at a time."""
    done = set()
    if TORCH_CSV.exists():
        frame = pd.read_csv(TORCH_CSV, dtype=str)
        done = set(zip(frame.dataset, frame.method, frame.ratio, frame.seed, strict=True))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for data in SETS:
        data_path = run.prepare(data)
        for seed in SEEDS:
            for method, ratio in ARMS:
                if (data.name, method, f"{ratio:.2f}", str(seed)) in done:
                    continue
                name = f"{data.name}-{method}-{ratio:.2f}-{seed}".replace(".", "")
                out = run.WORK / "sparse-torch" / name
                log_path = out.with_suffix(".log")
                cmd = torch_command(data_path, method, ratio, seed, out)
                load = run.LoadSampler()
                try:
                    cost = run_logged(cmd, log_path, env=env, on_poll=load)
                except MolPegError as err:
                    raise SystemExit(f"{name}: {err}") from err
                report = json.loads((out / "report.json").read_text())
                row = {
                    "dataset": data.name, "method": method, "ratio": f"{ratio:.2f}",
                    "seed": str(seed), "epochs": str(TORCH_EPOCHS),
                    "roc": f"{report['test_metrics'].get('roc_auc', float('nan')):.4f}",
                    "prc": f"{report['test_metrics'].get('prc_auc', float('nan')):.4f}",
                    "wall_seconds": f"{cost.wall_s:.1f}", "peak_rss_mb": f"{cost.peak_rss_mib:.0f}",
                    "load_1min": f"{load.mean:.2f}", "train": str(report["counts"]["train"]),
                    "kept": str(report["counts"]["kept"]), "device": run.device_name(),
                    "commit": run.git_commit(),
                    "finished": datetime.now().isoformat(timespec="seconds"),
                    "cpu_seconds": f"{cost.cpu_s:.0f}",
                }  # fmt: skip
                run.append(TORCH_CSV, [row], TORCH_FIELDS)
                print(f"{name}: roc={row['roc']} prc={row['prc']} wall={row['wall_seconds']}s")


# --------------------------------------------------------------------------- the snippet


def _mean_sd(values: pd.Series, scale: float = 100.0) -> str:
    """``mean ± sd`` (just the mean for one value) of ``values`` times ``scale``."""
    values = values.dropna() * scale
    if values.empty:
        return "—"
    if len(values) == 1:
        return f"{values.iloc[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std():.1f}"


def _arm(method: str, ratio: float) -> str:
    """The table label of an arm."""
    return "full data" if method == "full" else f"MolPeg {round(ratio * 100)}% pruned"


def label_summary(data: run.Dataset) -> str:
    """One line on the prepared set's labels: tasks, missing share, positives, unlabelled."""
    frame = pd.read_csv(run.prepare(data))
    labels = frame.drop(columns="smiles")
    present = labels.notna()
    return (
        f"{len(frame):,} molecules × {labels.shape[1]} tasks; "
        f"{100 * (1 - present.to_numpy().mean()):.1f}% of the labels missing; "
        f"{int((labels == 1).to_numpy().sum()):,} positives "
        f"({100 * (labels == 1).to_numpy().sum() / present.to_numpy().sum():.2f}% of the "
        f"labels); {int((~present.any(axis=1)).sum())} molecules with no label at all."
    )


def chemprop_table(rows: pd.DataFrame, tasks: pd.DataFrame, dataset: str) -> list[str]:
    """Accuracy (macro over tasks with both classes in test) and cost per arm of one set."""
    sub = complete_seeds(rows[rows.dataset == dataset])
    if sub.empty:
        return []
    task_rows = tasks[tasks.dataset == dataset]
    macro = (
        task_rows.groupby(["method", "ratio", "seed"])
        .agg(roc=("roc", "mean"), prc=("prc", "mean"), scored=("roc", "count"),
             tasks=("task", "count"))
        .reset_index()
    )  # fmt: skip
    full = sub[sub.method == "full"]
    base_wall = full.wall_seconds.mean() if len(full) else float("nan")
    base_fit = full.fit_seconds.mean() if len(full) else float("nan")
    lines = [
        "| arm | seeds | test ROC-AUC | test PRC-AUC | tasks scored | batches vs full | wall s | "
        "wall vs full | fit vs full | CPU s | CPU vs full | peak RSS MB | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, ratio), g in sub.groupby(["method", "ratio"], sort=False):
        epochs = int(g.epochs.iloc[0])
        batches = (1 + (epochs - 1) * (1 - float(ratio))) / epochs  # one full warm-up epoch
        m = macro[(macro.method == method) & (macro.ratio == ratio) & macro.seed.isin(g.seed)]
        scored = f"{int(m.scored.iloc[0])} of {int(m.tasks.iloc[0])}" if len(m) else "—"
        load = f"{g.load_1min.min():.1f}–{g.load_1min.max():.1f}" if "load_1min" in g else "—"
        lines.append(
            f"| {_arm(method, ratio)} | {len(g)} | {_mean_sd(m.roc)} | {_mean_sd(m.prc)} | "
            f"{scored} | {batches:.2f}× | {g.wall_seconds.mean():.0f} | "
            f"{g.wall_seconds.mean() / base_wall:.2f}× | "
            f"{g.fit_seconds.mean() / base_fit:.2f}× | {_cpu(g, full)} | "
            f"{g.peak_rss_mb.mean():.0f} | {load} |"
        )
    notes = [
        "",
        "Batches vs full: the training batches of a pruned run relative to the full run's, "
        "(1 + (E − 1)(1 − r)) / E for E epochs at ratio r with the default single full warm-up "
        "epoch. Where CPU time falls by less, the rest of the run (reading and featurising the "
        "data, validation and test passes, Chemprop's start-up) costs what it cost before.",
    ]
    pruned = sub[sub.method != "full"]
    if (
        "cpu_seconds" in sub
        and len(full)
        and (pruned.groupby("ratio").cpu_seconds.mean() > full.cpu_seconds.mean()).any()
    ):
        notes[-1] += (
            " A pruned arm here used more CPU time than the full run, which fewer batches "
            "cannot explain: with one run per arm, its CPU figures are not settled."
        )
    return [*lines, *notes, *load_caveat(sub)]


def muv_task_table(tasks: pd.DataFrame) -> list[str]:
    """MUV task by task: labelled and positive test molecules, PRC-AUC of each arm (seed 0)."""
    sub = tasks[(tasks.dataset == "MUV") & (tasks.seed == 0)]
    if sub.empty:
        return []
    arms = list(dict.fromkeys(zip(sub.method, sub.ratio, strict=True)))
    header = "| task | test labels | test positives | " + " | ".join(
        f"PRC-AUC, {_arm(m, r)}" for m, r in arms
    )
    lines = [header + " |", "|---" * (3 + len(arms)) + "|"]
    for task, g in sub.groupby("task", sort=False):
        first = g.iloc[0]
        cells = []
        for method, ratio in arms:
            hit = g[(g.method == method) & (g.ratio == ratio)]
            value = hit.prc.iloc[0] if len(hit) else np.nan
            one_class = "no positive" if first.test_positives == 0 else "no negative"
            cells.append(one_class if np.isnan(value) else f"{100 * value:.1f}")
        lines.append(
            f"| {task} | {int(first.test_labels)} | {int(first.test_positives)} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def torch_table(frame: pd.DataFrame, dataset: str) -> list[str]:
    """The ``molpeg prune --backend torch`` arms of one set: accuracy and cost."""
    sub = complete_seeds(frame[frame.dataset == dataset])
    if sub.empty:
        return []
    base = sub[sub.method == "full"].wall_seconds.mean()
    lines = [
        "| arm | seeds | test ROC-AUC | test PRC-AUC | wall s | wall vs full | CPU s | "
        "CPU vs full | peak RSS MB | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, ratio), g in sub.groupby(["method", "ratio"], sort=False):
        lines.append(
            f"| {_arm(method, ratio)} | {len(g)} | {_mean_sd(g.roc)} | {_mean_sd(g.prc)} | "
            f"{g.wall_seconds.mean():.0f} | {g.wall_seconds.mean() / base:.2f}× | "
            f"{_cpu(g, sub[sub.method == 'full'])} | "
            f"{g.peak_rss_mb.mean():.0f} | {g.load_1min.min():.1f}–{g.load_1min.max():.1f} |"
        )
    return lines + load_caveat(sub)


def complete_seeds(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the seeds every arm has finished (all runs while no seed is complete),
    so that the arms of a table average the same seeds."""
    arms = runs[["method", "ratio"]].drop_duplicates().shape[0]
    done = runs.groupby("seed").filter(
        lambda g: g[["method", "ratio"]].drop_duplicates().shape[0] == arms
    )
    return done if len(done) else runs


def _cpu(runs: pd.DataFrame, full: pd.DataFrame) -> str:
    """``CPU s | CPU vs full`` cells: mean CPU seconds of ``runs`` (those that logged it)."""
    if "cpu_seconds" not in runs or runs.cpu_seconds.isna().all():
        return "— | —"
    mean = runs.cpu_seconds.mean()
    base = full.cpu_seconds.mean() if "cpu_seconds" in full else float("nan")
    ratio = f"{mean / base:.2f}×" if base == base else "—"
    return f"{mean:.0f} | {ratio}"


def load_caveat(runs: pd.DataFrame) -> list[str]:
    """A warning under a cost table whose runs saw loads more than 20% apart."""
    low, high = runs.load_1min.min(), runs.load_1min.max()
    if not high > 1.2 * low:
        return []
    return [
        "",
        f"The machine's load differed between these runs ({low:.1f} to {high:.1f} on 2 "
        "cores), so the wall and fit time ratios above measure the load as much as the "
        "pruning: they are not speed-ups. CPU seconds (user + system time of the run's "
        "processes, where logged) hardly depend on the load.",
    ]


def _read(path: Path) -> pd.DataFrame:
    """A results CSV (empty frame if it does not exist yet)."""
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def write_snippet() -> Path:
    """Write ``benchmarks/results/sparse.md`` from the CSVs of both halves."""
    rows = _read(RESULTS / "sparse.csv")
    tasks = _read(RESULTS / "sparse_tasks.csv")
    if len(tasks):
        keys = ["dataset", "method", "ratio", "seed", "epochs", "task"]
        tasks = tasks.drop_duplicates(keys, keep="last")
    torch_rows = _read(TORCH_CSV)
    commits = sorted(
        {str(c) for f in (rows, torch_rows) if len(f) for c in f.commit.unique()}
    )  # fmt: skip
    device = rows.device.iloc[0] if len(rows) else run.device_name()
    parts = [
        "# Sparse multitask at scale: ToxCast and MUV",
        "",
        "Most labels of these sets are missing. A missing label contributes nothing to the "
        "training loss or to a molecule's score (its loss is averaged over its labelled "
        "tasks); a molecule without any label in the trained tasks scores 0, so MolPeg drops "
        "it first (see the concepts page).",
        "",
    ]
    for data in SETS:
        parts.append(f"* {data.name}: {label_summary(data)}")
    parts += [
        "",
        "## Chemprop: `chemprop train --plugin molpeg`",
        "",
        "Chemprop fine-tuned from the ADMET-AI encoder (`--from-foundation`), every "
        "non-SMILES column a task, scaffold-balanced split 80/10/10 (data seed 0, the same "
        "split for every arm), `--threads 1`, one run at a time. MolPeg with the default "
        "reference (`--prune-reference auto`, the prediction head for classification). "
        "ToxCast: 10 epochs, checkpoint chosen on validation ROC-AUC, seeds 0–2 (the seeds "
        "column counts the seeds all arms have finished). MUV: 5 epochs, checkpoint chosen on "
        "validation "
        "loss, one seed (a single run per arm: a "
        "cost measurement and a single-seed metric, not an accuracy claim).",
        "",
        "Test ROC-AUC and PRC-AUC ×100 are macro averages over the tasks with both classes "
        "among their labelled test molecules (scikit-learn `roc_auc_score` and "
        "`average_precision_score` on the test predictions, missing labels left out; mean ± "
        "sd over seeds). PRC-AUC is the meaningful metric on MUV, where a random ranking "
        "scores about the share of positives. Wall time is the whole `chemprop train` "
        "process, fit time the training loop; the ratios are to the full-data runs of the "
        "same table, on the same machine, which other jobs shared: the load column is the "
        "1-minute load average sampled during the runs (min–max over the arm's runs).",
        "",
        f"Command: `{CHEMPROP_COMMAND}` · device: {device} · commits: {', '.join(commits)}.",
        "",
    ]
    for data in SETS:
        table = chemprop_table(rows, tasks, data.name) if len(rows) else []
        if table:
            parts += [f"### {data.name}", "", *table, ""]
    per_task = muv_task_table(tasks) if len(tasks) else []
    if per_task:
        parts += [
            "### MUV task by task (seed 0)",
            "",
            'PRC-AUC ×100 per task; "no positive" ("no negative"): the task has no positive '
            "(negative) among its labelled test molecules, so it is left out of the macro "
            "average.",
            "",
            *per_task,
            "",
        ]
    if len(torch_rows):
        parts += [
            "## Built-in MLP: `molpeg prune --backend torch`",
            "",
            "The built-in torch backend (an MLP on Morgan fingerprints) on the same prepared "
            f"sets: molpeg's scaffold split 80/10/10, {TORCH_EPOCHS} epochs, one thread, "
            "seeds 0–2 (the seeds column counts the seeds all arms have finished; `--seed` "
            "also seeds the split, so each seed has its own scaffold split, shared by its three "
            "arms). Full data is soft random at "
            "0% pruned (no pruning, no reference); "
            "MolPeg uses its default head reference. Test metrics are the report's macro "
            "ROC-AUC and PRC-AUC (tasks with both classes in test) ×100, mean ± sd over "
            "seeds.",
            "",
            f"Command: `{TORCH_COMMAND}`.",
            "",
        ]
        for data in SETS:
            table = torch_table(torch_rows, data.name)
            if table:
                parts += [f"### {data.name} (torch backend)", "", *table, ""]
    write_text(SNIPPET, "\n".join(parts).rstrip() + "\n")
    return SNIPPET


def main() -> None:
    """Run the torch grid when asked, then rewrite the snippet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--torch", action="store_true", help="run the molpeg prune --backend torch grid first"
    )
    args = parser.parse_args()
    if args.torch:
        RESULTS.mkdir(parents=True, exist_ok=True)
        run_torch_grid()
    print(write_snippet())


if __name__ == "__main__":
    main()
