"""Turn the benchmark CSVs into `docs/benchmarks.md` and its plots.

    python benchmarks/report.py

Reads ``benchmarks/results/{quick,paper}.csv`` (written by ``benchmarks/run.py``) and the
Markdown snippets other benchmarks leave in ``benchmarks/results/*.md``; writes
``docs/benchmarks.md`` and ``docs/img/benchmark_*.png``. Safe to re-run at any time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from molpeg_plugins.pipeline.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
DOC = ROOT / "docs/benchmarks.md"
IMG = ROOT / "docs/img"

# MolPeg paper, Table 1 (pretrained GIN, HIV ROC-AUC %, column = % pruned). Full data: 85.1.
PAPER_HIV = {
    "hard-random": {0.9: 77.7, 0.8: 81.1, 0.7: 81.3, 0.6: 82.4, 0.4: 84.0, 0.2: 85.0},
    "infobatch": {0.9: 82.9, 0.8: 83.5, 0.7: 84.4, 0.6: 84.9, 0.4: 85.4, 0.2: 85.2},
    "molpeg": {0.9: 83.7, 0.8: 84.8, 0.7: 85.3, 0.6: 85.5, 0.4: 86.0, 0.2: 85.6},
}
PAPER_HIV_FULL = 85.1
TIER_COMMANDS = {
    "paper": "python benchmarks/run.py --tier paper --jobs 12 --threads 1  # on a GPU machine",
    "reference": "python benchmarks/run.py --tier reference --jobs 2 --threads 1",
}
SUMMARY = "analysis.md"  # hand-written reading of the results, placed first
SNIPPETS = [
    "run_anatomy.md",
    "equal_time.md",
    "chemprop_overhead.md",
    "step_anatomy.md",
    "deepchem_fit.md",
    "engine_scaling.md",
    "source_pruning.md",
    "source_transfer.md",
    "scaling.md",
    "distributed.md",
    "million.md",
    "sparse.md",
]


def _table(frame: pd.DataFrame, dataset: str, paper: bool) -> str:
    """Methods × pruned-fraction table of mean test metric (± std over seeds).

    The best pruned method of each column is in bold; cells averaging fewer seeds than the
    rest of the table are marked with their seed count.
    """
    sub = frame[frame.dataset == dataset]
    metric = sub.metric_name.iloc[0]
    higher_is_better = metric in {"roc", "prc", "r2", "accuracy"}
    scale = 100.0 if metric in {"roc", "prc"} else 1.0
    digits = 1 if scale == 100.0 else 3
    ratios = sorted(r for r in sub.ratio.unique() if r > 0)
    full = sub[sub.method == "full"]
    pruned = sub[sub.method != "full"]
    stats = pruned.groupby(["method", "ratio"]).metric.agg(["mean", "std", "count"])
    seeds = int(stats["count"].max()) if len(stats) else 0
    best = {
        r: (stats.xs(r, level="ratio")["mean"].idxmax() if higher_is_better
            else stats.xs(r, level="ratio")["mean"].idxmin())
        for r in ratios
    }  # fmt: skip
    header = "| method | " + " | ".join(f"{int(r * 100)}% pruned" for r in ratios) + " |"
    lines = [header, "|---" * (len(ratios) + 1) + "|"]
    if len(full):
        m, sd = full.metric.mean() * scale, full.metric.std() * scale
        spread = f" ± {sd:.{digits}f}" if len(full) > 1 else ""
        lines.append(
            f"| full data (ours) | {m:.{digits}f}{spread} (all columns) "
            + "| " * (len(ratios) - 1)
            + "|"
        )
    for method in sorted(pruned.method.unique()):
        cells = []
        for r in ratios:
            if (method, r) not in stats.index:
                cells.append("—")
                continue
            row = stats.loc[(method, r)]
            cell = f"{row['mean'] * scale:.{digits}f}"
            if row["count"] > 1:
                cell += f" ± {row['std'] * scale:.{digits}f}"
            if best[r] == method:
                cell = f"**{cell}**"
            if row["count"] < seeds:
                cell += f" ({int(row['count'])} seed{'s' if row['count'] > 1 else ''})"
            cells.append(cell)
        lines.append(f"| {method} (ours) | " + " | ".join(cells) + " |")
        if paper and method in PAPER_HIV:
            ref = [f"{PAPER_HIV[method].get(r, float('nan')):.1f}" for r in ratios]
            lines.append(f"| {method} (paper, GIN) | " + " | ".join(ref) + " |")
    if paper:
        lines.append(
            f"| full data (paper, GIN) | {PAPER_HIV_FULL} " + "| " * (len(ratios) - 1) + "|"
        )
    if seeds > 1:
        lines.append(f"\nMean ± standard deviation over {seeds} seeds; bold: best pruned method.")
    return "\n".join(lines)


def _cost_table(frame: pd.DataFrame, dataset: str) -> str:
    """Mean cost per method and ratio, relative to full-data runs on the same device."""
    blocks = []
    for device, sub in frame[frame.dataset == dataset].groupby("device"):
        full = sub[sub.method == "full"]
        if not len(full):
            continue
        base_wall = full.wall_seconds.mean()
        base_fit = full.fit_seconds.mean()
        lines = [
            f"Device: {device}.",
            "",
            "| method | pruned | runs | wall s | fit s | s/epoch | fit vs full | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (method, ratio), g in sub.groupby(["method", "ratio"]):
            lines.append(
                f"| {method} | {int(ratio * 100)}% | {len(g)} | {g.wall_seconds.mean():.0f} | "
                f"{g.fit_seconds.mean():.0f} | {g.seconds_per_epoch.mean():.1f} | "
                f"{g.fit_seconds.mean() / base_fit:.2f}× | {g.peak_rss_mb.mean():.0f} |"
            )
        lines.append(f"\nFull-data wall time: {base_wall:.0f} s.")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _shared(frame: pd.DataFrame) -> bool:
    """Whether the runs shared their device with other runs (their times are not speeds)."""
    return bool(frame.device.str.contains("runs at once").any())


def _plots(frame: pd.DataFrame, tier: str) -> list[str]:
    """Per dataset: test metric against % pruned (mean ± sd over seeds) and, for runs that
    had their device to themselves, against fit time."""
    made = []
    for dataset, sub in frame.groupby("dataset"):
        metric = sub.metric_name.iloc[0]
        timed = not _shared(sub)
        fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(10 if timed else 6, 4))
        ax1 = axes[0] if timed else axes
        full = sub[sub.method == "full"]
        counts = sub.groupby(["method", "ratio"]).size()
        low, seeds = int(counts.min()), int(counts.max())
        label = {"roc": "ROC-AUC", "prc": "PRC-AUC"}.get(metric, metric.upper())
        for method, g in sub[sub.method != "full"].groupby("method"):
            stats = g.groupby("ratio").metric.agg(["mean", "std"]).fillna(0.0)
            ax1.errorbar(
                stats.index * 100, stats["mean"], yerr=stats["std"], marker="o", capsize=3,
                label=method,
            )  # fmt: skip
            if timed:
                axes[1].scatter(g.fit_seconds, g.metric, label=method)
        if len(full):
            mean, sd = full.metric.mean(), full.metric.std() if len(full) > 1 else 0.0
            ax1.axhline(mean, color="k", ls="--", label="full data")
            if sd:
                ax1.axhspan(mean - sd, mean + sd, color="k", alpha=0.08)
            if timed:
                axes[1].scatter(
                    full.fit_seconds, full.metric, color="k", marker="*", s=120, label="full data"
                )
        span = f"{low}–{seeds}" if low < seeds else str(seeds)
        spread = f"mean ± sd over {span} seeds" if seeds > 1 else "one seed"
        ax1.set(
            xlabel="% of training data pruned",
            ylabel=f"test {label}",
            title=f"{dataset}: test {label} against % pruned ({spread})",
        )
        ax1.legend(fontsize=8)
        if timed:
            axes[1].set(xlabel="fit time (s)", ylabel=f"test {label}",
                        title=f"{dataset}: test {label} against fit time")  # fmt: skip
            axes[1].legend(fontsize=8)
        fig.tight_layout()
        name = f"benchmark_{tier}_{dataset}.png"
        IMG.mkdir(parents=True, exist_ok=True)
        fig.savefig(IMG / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def _as_section(markdown: str) -> str:
    """Shift a snippet's headings so its top level is ``##`` (code fences left alone)."""
    lines, fenced, levels = markdown.splitlines(), False, []
    for line in lines:
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            levels.append(len(line) - len(line.lstrip("#")))
    shift = 2 - min(levels) if levels else 0
    out, fenced = [], False
    for line in lines:
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            line = "#" * max(1, level + shift) + line[level:]
        out.append(line)
    return "\n".join(out)


def tidy_lists(markdown: str) -> str:
    """Make Markdown lists render as lists in MkDocs (Python-Markdown).

    A list needs a blank line before its first item when it follows a paragraph, and nested
    items need four spaces of indentation per level (two are read as the same level).
    Fenced code blocks are left alone.
    """
    out: list[str] = []
    fenced = False
    item = re.compile(r"^(?P<indent> *)(?:[-*+]|\d+\.) ")
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append(line)
            continue
        found = None if fenced else item.match(line)
        if found:
            depth = len(found.group("indent")) // 2  # levels written two spaces apart
            line = " " * (4 * depth) + line.lstrip(" ")
            previous = out[-1] if out else ""
            paragraph = previous.strip() and not previous.startswith(" ")  # not a continuation
            if depth == 0 and paragraph and not item.match(previous):
                out.append("")
        out.append(line)  # continuation lines need no indent (lazy continuation)
    return "\n".join(out)


HIGH_RATIO_TIERS = ("staleness", "investigate", "reference", "equal-time")
HIGH_RATIO_METHODS = ("full", "molpeg", "molpeg+hard0.5", "infobatch", "el2n", "soft-random")


def _high_ratio_section() -> list[str]:
    """MolPeg's options at 60-90% pruned against the baselines: HIV-10k, 10 epochs, the rows
    of every CPU tier run with that set-up (`staleness`, `investigate`, `reference`,
    `equal-time`), as one table and one plot."""
    frames = [
        pd.read_csv(RESULTS / f"{tier}.csv")
        for tier in HIGH_RATIO_TIERS
        if (RESULTS / f"{tier}.csv").exists()
    ]
    if not frames or not (RESULTS / "staleness.csv").exists():
        return []
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame.dataset.isin(["HIV-10k", "Lipophilicity"]) & (frame.epochs == 10)]
    frame = frame[frame.ratio.isin([0.0, 0.6, 0.8, 0.9])]
    keep = frame.method.isin(HIGH_RATIO_METHODS) | frame.method.str.startswith("molpeg+head")
    frame = frame[keep]
    commits = ", ".join(sorted(frame.commit.astype(str).unique()))
    parts = [
        "## MolPeg at high pruning ratios (stale scores)",
        "",
        "HIV-10k and Lipophilicity, Chemprop fine-tuned from the ADMET-AI encoder for 10 epochs, "
        "CPU, 3 seeds "
        "(fewer where marked); the rows of the `staleness`, `investigate`, `reference` and "
        "`equal-time` tiers that share this set-up. `molpeg`: the paper's rule (full-model "
        "reference; the default for regression); `molpeg+head`: the head reference (the default "
        "for classification); `+explore0.2` / "
        "`+explore0.2random` / `+hard0.5`: 20% of the budget from the stalest / random, 50% "
        "from the highest-loss molecules outside the top-k; `+calibrated`: random exploration "
        "plus stale scores mapped onto the fresh scale (see the concepts page).",
        "",
        "Command: `python benchmarks/run.py --tier staleness --jobs 2 --threads 1` (and the "
        f"other tiers' commands) · commits: {commits}.",
        "",
        "### HIV-10k (test ROC-AUC ×100 at the best-validation epoch)",
        "",
        _table(frame, "HIV-10k", paper=False),
        "",
    ]
    if (frame.dataset == "Lipophilicity").any():
        parts += [
            "### Lipophilicity (test RMSE at the best-validation epoch, lower is better)",
            "",
            _table(frame, "Lipophilicity", paper=False),
            "",
        ]
    for name in _plots(frame, "high_ratio"):
        parts += [f"![{name}](img/{name})", ""]
    return parts


def write_report() -> Path:
    """Regenerate docs/benchmarks.md from everything under benchmarks/results/."""
    parts = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/`; every number below",
        "was measured by the command shown with it. Machine, device and commit are in each table's",
        "source CSV (one row per run).",
        "",
    ]
    summary = RESULTS / SUMMARY
    if summary.exists():
        parts += [_as_section(summary.read_text().strip()), ""]
    for tier in ("paper", "quick", "own", "investigate", "reference"):
        path = RESULTS / f"{tier}.csv"
        if not path.exists():
            continue
        frame = pd.read_csv(path)
        first = frame.iloc[0]
        devices = "; ".join(f"{d} ({n} runs)" for d, n in frame.device.value_counts().items())
        parts += [
            f"## MolPeg table — tier `{tier}`",
            "",
            f"Command: `{TIER_COMMANDS.get(tier, f'python benchmarks/run.py --tier {tier}')}`"
            f" · devices: {devices} · "
            f"commits: {', '.join(sorted(frame.commit.astype(str).unique()))} · "
            f"fine-tuned from `{first.foundation}` with `--from-foundation`.",
            "",
        ]
        for dataset in frame.dataset.unique():
            metric = frame[frame.dataset == dataset].metric_name.iloc[0]
            unit = "ROC-AUC ×100" if metric == "roc" else metric.upper()
            parts += [f"### {dataset} (test {unit} at the best-validation epoch)", ""]
            parts += [_table(frame, dataset, paper=dataset == "HIV"), ""]
            costs = _cost_table(frame[~frame.device.str.contains("runs at once")], dataset)
            if costs:
                parts += [
                    "Cost per run (comparable between rows only when the machine was equally "
                    "loaded; the `timing` tier below repeats the key runs on an idle machine):",
                    "",
                    costs,
                    "",
                ]
        for name in _plots(frame, tier):
            parts += [f"![{name}](img/{name})", ""]
    parts += _high_ratio_section()
    for timing in (RESULTS / "timing.csv", RESULTS / "gpu-timing.csv"):
        if not timing.exists():
            continue
        frame = pd.read_csv(timing)
        first = frame.iloc[0]
        parts += [
            f"## Cost on a quiet machine — tier `{timing.stem}`",
            "",
            "Full data, MolPeg and soft random at 60% pruned, run one after another with nothing",
            f"else on the machine. Command: `python benchmarks/run.py --tier {timing.stem}` · "
            "device: "
            f"{first.device} · commit {first.commit}.",
            "",
        ]
        for dataset in frame.dataset.unique():
            parts += [f"### {dataset}", "", _cost_table(frame, dataset), ""]
            sub = frame[frame.dataset == dataset].set_index("method")
            if {"molpeg", "soft-random"} <= set(sub.index):
                ratio = sub.loc["molpeg", "fit_seconds"] / sub.loc["soft-random", "fit_seconds"]
                parts += [f"MolPeg fit time / soft-random fit time: {ratio:.2f}×.", ""]
    pretrain = RESULTS / "pretrain.json"
    if pretrain.exists():
        info = json.loads(pretrain.read_text())
        parts += [
            "## Our own pretrained encoder",
            "",
            f"Chemprop MPNN pretrained on {info['molecules']:,} MOSES molecules to predict "
            f"{len(info['descriptors'])} standardised RDKit descriptors, {info['epochs']} epochs: "
            f"{info['train_seconds']:.0f} s training on {info['machine']}"
            + (
                f" (+{info['descriptor_seconds']:.0f} s computing descriptors)."
                if info["descriptor_seconds"] > 0
                else " (descriptor table reused from an earlier run, its time not included)."
            ),
            "",
            "Command: `python benchmarks/pretrain_descriptors.py`",
            "",
        ]
    for snippet in SNIPPETS:
        path = RESULTS / snippet
        if path.exists():
            text = path.read_text().strip()
            text = _as_section(text)
            parts += [text, ""]
    write_text(DOC, tidy_lists("\n".join(parts)).rstrip() + "\n")
    return DOC


if __name__ == "__main__":
    print(write_report())
