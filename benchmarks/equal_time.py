"""Accuracy against wall time: pruned 10-epoch runs next to full-data runs of fewer epochs.

Reads, from ``benchmarks/results/``:

* ``equal-time.csv`` (full data for 3, 4 and 6 epochs, run one at a time on a quiet machine)
  and ``investigate.csv`` (full data for 10 epochs: its accuracy);
* ``reference.csv`` (MolPeg with each reference at 40/60/80% pruned, 10 epochs), the
  baselines' rows of ``equal-time.csv`` (40/60%) and ``staleness.csv`` (80%), whose
  accuracy is used, with the mean wall time of the same configuration over the quiet
  ``run_anatomy.csv`` runs (the accuracy grids ran two runs at a time).

Writes ``docs/img/benchmark_equal_time.png`` and ``benchmarks/results/equal_time.md`` (a
snippet of the benchmarks page). Run after the tiers and the anatomy::

    python benchmarks/equal_time.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
IMG = ROOT / "docs/img/benchmark_equal_time.png"
# reference-tier method → run-anatomy configuration with the same command line
ANATOMY = {
    "molpeg": "molpeg",
    "molpeg+head": "molpeg-head",
    "molpeg+every4": "molpeg-every4",
    "soft-random": "soft-random",
    "infobatch": "infobatch",
}


LABELS = {
    "molpeg": "MolPeg, model reference (paper)",
    "molpeg+head": "MolPeg, head reference (default)",
    "molpeg+every4": "MolPeg, model reference every 4th batch",
    "soft-random": "soft random",
    "infobatch": "InfoBatch",
}


def anatomy() -> pd.DataFrame:
    """The quiet 10-epoch run-anatomy rows, averaged per configuration and ratio (``runs``)."""
    frame = pd.read_csv(RESULTS / "run_anatomy.csv")
    frame = frame[frame.epochs == 10]
    mean = frame.groupby(["config", "ratio"]).mean(numeric_only=True)
    return mean.assign(runs=frame.groupby(["config", "ratio"]).size()).reset_index()


def full_data() -> pd.DataFrame:
    """Full-data HIV-10k runs: epochs, ROC-AUC ×100 and wall seconds.

    3, 4 and 6 epochs from the ``equal-time`` tier (run one at a time); 10 epochs: accuracy
    of the ``investigate`` tier's full-data runs, wall time of the run anatomy's ``full``.
    """
    short = pd.read_csv(RESULTS / "equal-time.csv")
    short = short[short.method == "full"]
    short = short.assign(wall=short.wall_seconds)
    short = short.assign(runs=short.groupby("epochs").wall.transform("size"))
    ten = pd.read_csv(RESULTS / "investigate.csv")
    ten = ten[(ten.method == "full") & (ten.dataset == "HIV-10k")]
    quiet = anatomy()
    full_quiet = quiet[quiet.config == "full"].iloc[0]
    ten = ten.assign(wall=float(full_quiet.total), runs=int(full_quiet.runs))
    full = pd.concat([short, ten])
    return full.assign(auc=full.metric * 100)


def pruned() -> pd.DataFrame:
    """Pruned 10-epoch runs (MolPeg's references, the baselines) with quiet wall times."""
    frame = pd.read_csv(RESULTS / "reference.csv")
    baselines = pd.read_csv(RESULTS / "equal-time.csv")
    high = pd.read_csv(RESULTS / "staleness.csv")  # the baselines at 80% pruned
    high = high[(high.dataset == "HIV-10k") & high.method.isin(["soft-random", "infobatch"])]
    frame = pd.concat([frame, baselines[baselines.method != "full"], high[high.ratio == 0.8]])
    quiet = anatomy()
    measured = {
        (m, r): quiet[(quiet.config == c) & (quiet.ratio == r)].iloc[0]
        for m, c in ANATOMY.items()
        for r in frame.ratio.unique()
        if len(quiet[(quiet.config == c) & (quiet.ratio == r)])
    }
    frame = frame.assign(auc=frame.metric * 100)
    keys = list(zip(frame.method, frame.ratio, strict=True))
    frame["wall"] = [measured[k].total if k in measured else None for k in keys]
    frame["runs"] = [measured[k].runs if k in measured else None for k in keys]
    return frame


def summary(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean ± sd ROC-AUC, mean wall time and its number of quiet runs per group."""
    return (
        frame.groupby(keys)
        .agg(
            auc=("auc", "mean"),
            sd=("auc", "std"),
            seeds=("auc", "size"),
            wall=("wall", "mean"),
            runs=("runs", "max"),
        )
        .reset_index()
    )


def main() -> None:
    """Write the table and the plot."""
    import matplotlib

    matplotlib.use("Agg")  # a script: no display
    from matplotlib.figure import Figure

    from molpeg_plugins.pipeline.atomic import write_text

    full = summary(full_data(), ["epochs"])
    runs = summary(pruned(), ["method", "ratio"])
    lines = [
        "| run | epochs | wall s (quiet) | quiet runs | ROC-AUC ×100 | seeds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in full.itertuples():
        lines.append(
            f"| full data | {row.epochs} | {row.wall:.0f} | {row.runs} | "
            f"{row.auc:.1f} ± {row.sd:.1f} | {row.seeds} |"
        )
    for row in runs.itertuples():
        wall = "—" if pd.isna(row.wall) else f"{row.wall:.0f}"
        name = f"{LABELS.get(row.method, row.method)}, {int(row.ratio * 100)}% pruned"
        spread = "" if pd.isna(row.sd) else f" ± {row.sd:.1f}"
        runs_ = "—" if pd.isna(row.runs) else f"{row.runs:.0f}"
        lines.append(f"| {name} | 10 | {wall} | {runs_} | {row.auc:.1f}{spread} | {row.seeds} |")
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.errorbar(full.wall, full.auc, yerr=full.sd, marker="o", color="black", capsize=3,
                label="full data (3, 4, 6, 10 epochs)")  # fmt: skip
    for method, group in runs.dropna(subset=["wall"]).groupby("method"):
        ax.errorbar(group.wall, group.auc, yerr=group.sd, marker="s", linestyle="none",
                    capsize=3, label=f"{LABELS.get(method, method)}, 10 epochs")  # fmt: skip
        for row in group.itertuples():
            ax.annotate(f"{int(row.ratio * 100)}%", (row.wall, row.auc), xytext=(4, 4),
                        textcoords="offset points", fontsize=8)  # fmt: skip
    ax.set_xlabel("wall time of the whole run, s (2-core CPU, quiet)")
    ax.set_ylabel("test ROC-AUC ×100 (mean ± sd, 3 seeds)")
    ax.set_title("HIV-10k, Chemprop from ADMET-AI: accuracy for the time spent")
    ax.legend(fontsize=8)
    fig.savefig(IMG, dpi=120)
    markdown = "\n".join(
        [
            "### Equal wall time (HIV-10k, CPU)",
            "",
            "Full-data runs trained for fewer epochs (Chemprop sizes its learning-rate schedule",
            "to each run's epochs) against 10-epoch pruned runs. The 3/4/6-epoch wall",
            "times are those of the runs themselves (one at a time, quiet machine); the",
            "10-epoch and pruned wall times are the means of the quiet run-anatomy measurements",
            "of the same command lines (`quiet runs` of them), their accuracies the means over",
            "the seeds of the `investigate` (full data), `reference` (MolPeg), `equal-time`",
            "(baselines at 40/60%) and `staleness` (baselines at 80%) tiers.",
            "",
            "Commands: `python benchmarks/run.py --tier equal-time --only full` (full data,",
            "3/4/6 epochs, one run at a time), `python benchmarks/run.py --tier equal-time",
            "--only soft-random,infobatch --jobs 2 --threads 1` (the baselines at 40/60%),",
            "`python benchmarks/run.py --tier staleness --jobs 2 --threads 1` (80%),",
            "`python benchmarks/run.py --tier investigate` (full data, 10 epochs),",
            "`python benchmarks/run.py --tier reference --jobs 2 --threads 1`,",
            "`python benchmarks/bench_run_anatomy.py --epochs 10 --ratio R --only C",
            "[--repeat 3]` (R = 0.4, 0.6, 0.8), then",
            "`python benchmarks/equal_time.py`.",
            "",
            *lines,
            "",
            f"![accuracy against wall time](img/{IMG.name})",
        ]
    )
    write_text(RESULTS / "equal_time.md", markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
