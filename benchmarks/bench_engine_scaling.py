"""Benchmark: the engine's cost of one epoch for every strategy, N = 10⁴ … 10⁷ molecules.

Every (strategy, N) cell runs in a fresh child process and drives the public API the way a
training loop does, on synthetic signals of realistic shapes (only those the strategy
declares in :attr:`Strategy.signals`): predictions ``(N, 1)`` (probabilities from a Beta
mixture, targets Bernoulli), embeddings ``(N, 300)`` float32 (Gaussian blobs), Morgan-like
fingerprints ``(N, 2048)`` uint8 (~2% of the bits set), per-sample losses.

The timed epoch:

* dynamic strategies: a pruned epoch (the faster of the first two): iterate the
  :class:`Pruner`'s sampler, hand each batch of 256 losses (and reference losses) to
  :meth:`Pruner.loss`, then :meth:`Pruner.end_epoch` (score table, selection, next sampler order);
* static strategies: the last warm-up epoch (sampler, losses, :meth:`Pruner.observe` of the
  declared signals) and its ``end_epoch``, which makes the strategy's one selection.

Each cell records the epoch's seconds (the batch loop and ``end_epoch`` separately), its
peak resident memory, and that peak less the memory before the signals were made and less
the signals' own bytes: the engine's memory. A cell with an epoch over ``--cell-timeout``
seconds stops its strategy (larger N are not run); a cell whose signals would exceed
``--max-signal-gb`` is skipped. Rows are appended to
``benchmarks/results/engine_scaling.csv`` as each cell finishes, so an interrupted run
resumes where it stopped (``--rerun`` measures again).
The Markdown table and the log–log plot are rewritten from the CSV after every size.

A ``engine_scaling_before.csv`` next to the CSV (the same benchmark run with ``--out`` on an
earlier commit's code, renamed) adds a before/after table to the snippet.

Usage (run it in the background on a busy machine)::

    nohup nice -n 10 python benchmarks/bench_engine_scaling.py --threads 1 \\
        --sizes 1e4 1e5 1e6 1e7 > benchmarks/work/engine_scaling.log 2>&1 &
    python benchmarks/bench_engine_scaling.py --report    # table and plot from the CSV
    python benchmarks/bench_engine_scaling.py --strategies kmeans herding:block_size=0

A strategy may be given with options, ``NAME:KEY=VALUE,KEY=VALUE``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molpeg_plugins.engine.pruner import Pruner
from molpeg_plugins.pipeline.atomic import write_text
from molpeg_plugins.plugins import make_plugin_manager

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import git_commit  # benchmarks/run.py, the benchmark runner

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PLOT = ROOT / "docs" / "img" / "benchmark_engine_scaling.png"
NAME = "engine_scaling"
BATCH = 256
CHUNK = 8192  # rows generated at a time, so making the signals needs little extra memory
EMBEDDING_DIM = 300
FINGERPRINT_BITS = 2048
USABLE_SECONDS = 60.0
FIT_FROM = 100_000
FIELDS = [
    "strategy", "kind", "num_samples", "num_kept", "status", "epoch_s", "loop_s",
    "end_epoch_s", "peak_mb", "signals_mb", "engine_mb", "load_1min", "threads",
    "prune_ratio", "machine", "commit", "command",
]  # fmt: skip
SIGNAL_BYTES_PER_SAMPLE = {
    "predictions": 4,
    "targets": 4,
    "mask": 1,
    "embeddings": 4 * EMBEDDING_DIM,
    "features": FINGERPRINT_BITS,
}
LOSS_BYTES_PER_SAMPLE = 8  # online and reference loss, float32


# --------------------------------------------------------------------------- one cell


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"herding:block_size=0"`` → ``("herding", {"block_size": 0})`` (options typed)."""
    name, _, rest = spec.partition(":")
    cls = make_plugin_manager(entry_points=False).strategy_class(name)
    return name, cls.parse_options([p for p in rest.split(",") if p])


def synthetic_signals(n: int, wanted: frozenset[str], seed: int = 0) -> dict[str, torch.Tensor]:
    """The losses plus the ``wanted`` signals of ``n`` molecules (see the module docstring).

    Generated ``CHUNK`` rows at a time, so the temporaries stay small next to the result.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the Beta sampler draws from the global generator
    out: dict[str, torch.Tensor] = {
        "loss": torch.empty(n),
        "reference_loss": torch.empty(n),
    }
    if {"predictions", "targets"} & wanted:
        out.update(predictions=torch.empty(n, 1), targets=torch.empty(n, 1))
    if "mask" in wanted:
        out["mask"] = torch.ones(n, 1, dtype=torch.bool)
    if "embeddings" in wanted:
        out["embeddings"] = torch.empty(n, EMBEDDING_DIM)
        centres = torch.randn(64, EMBEDDING_DIM, generator=g) * 2.0
    if "features" in wanted:
        out["features"] = torch.zeros(n, FINGERPRINT_BITS, dtype=torch.uint8)
    easy = torch.distributions.Beta(torch.tensor(8.0), torch.tensor(2.0))
    bits_on = round(0.02 * FINGERPRINT_BITS)
    for start in range(0, n, CHUNK):
        rows = slice(start, min(n, start + CHUNK))
        m = rows.stop - rows.start
        targets = (torch.rand(m, 1, generator=g) < 0.3).float()
        p_true = easy.sample((m, 1)).clamp(1e-4, 1 - 1e-4)
        predictions = torch.where(targets > 0, p_true, 1 - p_true)
        loss = torch.nn.functional.binary_cross_entropy(predictions, targets, reduction="none")
        out["loss"][rows] = loss[:, 0]
        out["reference_loss"][rows] = loss[:, 0] * torch.rand(m, generator=g) * 2
        if "predictions" in out:
            out["predictions"][rows], out["targets"][rows] = predictions, targets
        if "embeddings" in out:
            blob = torch.randint(0, 64, (m,), generator=g)
            out["embeddings"][rows] = centres[blob] + torch.randn(m, EMBEDDING_DIM, generator=g)
        if "features" in out:
            on = torch.randint(0, FINGERPRINT_BITS, (m, bits_on), generator=g)
            out["features"][rows].scatter_(1, on, 1)
    return out


def signal_gb(n: int, wanted: frozenset[str]) -> float:
    """Bytes (in GB) of the signals :func:`synthetic_signals` makes for ``n`` molecules."""
    per_sample = LOSS_BYTES_PER_SAMPLE + sum(SIGNAL_BYTES_PER_SAMPLE[s] for s in wanted)
    if {"predictions", "targets"} & wanted:  # both are made together
        per_sample += sum(SIGNAL_BYTES_PER_SAMPLE[s] for s in {"predictions", "targets"} - wanted)
    return n * per_sample / 1e9


def _status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MiB, from ``/proc``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # not Linux


def _reset_peak() -> None:
    """Make the peak resident memory start from now (Linux ``clear_refs``; else no-op)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _epoch(pruner: Pruner, signals: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Run one epoch of the loop; ``(seconds of the batch loop, seconds of end_epoch)``."""
    start = time.perf_counter()
    order = torch.tensor(list(pruner.sampler))
    reference = signals["reference_loss"] if pruner.strategy.needs_reference else None
    for idx in order.split(BATCH):
        wanted = {k: signals[k][idx] for k in pruner.strategy.signals if pruner.wants(k)}
        if wanted:
            pruner.observe(idx, **wanted)
        pruner.loss(idx, signals["loss"][idx], None if reference is None else reference[idx])
    middle = time.perf_counter()
    pruner.end_epoch()
    return middle - start, time.perf_counter() - middle


def run_cell(spec: str, n: int, ratio: float, timeout: float) -> dict[str, Any]:
    """Measure one cell in this process (see the module docstring); a result row."""
    name, options = parse_spec(spec)
    pm = make_plugin_manager(entry_points=False)
    strategy = pm.create_strategy(name, **options)
    _reset_peak()
    before_mb = _status_mb("VmRSS")
    signals = synthetic_signals(n, strategy.signals)
    signals_mb = sum(t.numel() * t.element_size() for t in signals.values()) / 2**20
    warmup = max(1, strategy.min_warmup_epochs)
    pruner = Pruner(
        n,
        strategy=strategy,
        prune_ratio=ratio,
        warmup_epochs=warmup,
        total_epochs=warmup + 3,
        anneal_epochs=0,
        plugin_manager=pm,
    )
    # static: the last warm-up epoch (selection at its end); dynamic: the better of the
    # first two pruned epochs
    timed = [warmup - 1] if not strategy.dynamic else [warmup, warmup + 1]
    row: dict[str, Any] = {"num_kept": pruner.num_kept, "signals_mb": round(signals_mb, 1)}

    def over_limit(*_: Any) -> None:
        raise TimeoutError

    def limited_epoch() -> tuple[float, float]:
        signal.alarm(max(1, math.ceil(timeout)))  # the limit is per epoch
        result = _epoch(pruner, signals)
        signal.alarm(0)
        return result

    signal.signal(signal.SIGALRM, over_limit)
    try:
        times = [limited_epoch() for _ in range(timed[-1] + 1)]
        times = [times[e] for e in timed]
    except TimeoutError:
        return {**row, "status": f"over {timeout:.0f} s"}
    peak = _status_mb("VmHWM")
    loop_s, end_s = min(times, key=sum)
    return {
        **row,
        "status": "ok",
        "epoch_s": round(loop_s + end_s, 4),
        "loop_s": round(loop_s, 4),
        "end_epoch_s": round(end_s, 4),
        "peak_mb": round(peak, 1),
        "engine_mb": round(peak - before_mb - signals_mb, 1),
    }


# --------------------------------------------------------------------------- the grid


def machine() -> str:
    """The machine in words: OS, CPU, cores, torch and its thread count."""
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}"
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of the results CSV (none if it does not exist)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite the results CSV atomically with ``rows``."""
    lines = [",".join(FIELDS)]
    for row in rows:
        cells = [str(row.get(k, "")) for k in FIELDS]
        lines.append(",".join(f'"{c}"' if ("," in c or '"' in c) else c for c in cells))
    write_text(path, "\n".join(lines) + "\n")


def latest(rows: list[dict[str, str]]) -> dict[tuple[str, int], dict[str, str]]:
    """The last row of every (strategy, N) cell."""
    return {(r["strategy"], int(r["num_samples"])): r for r in rows}


def measure(args: argparse.Namespace, spec: str, n: int) -> dict[str, Any]:
    """Run one cell in a fresh child process; its row (``status`` says if it failed)."""
    cmd = [
        sys.executable, __file__, "--cell", spec, str(n),
        "--prune-ratio", str(args.prune_ratio), "--cell-timeout", str(args.cell_timeout),
        "--threads", str(args.threads),
    ]  # fmt: skip
    try:  # generating the signals is not timed by the child: allow for it here
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.cell_timeout * 5)
    except subprocess.TimeoutExpired:
        return {"status": f"over {args.cell_timeout * 5:.0f} s with signal generation"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"status": f"failed: {last[:120]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_grid(args: argparse.Namespace, path: Path) -> None:
    """Measure every missing cell, smallest N first (every strategy at one N, then the next)."""
    rows = read_rows(path)
    done = latest(rows)
    pm = make_plugin_manager(entry_points=False)
    specs = args.strategies or list(pm.strategies())
    command = shlex.join(["python", "benchmarks/bench_engine_scaling.py", *sys.argv[1:]])
    strategies = {}
    for spec in specs:
        name, options = parse_spec(spec)
        strategies[spec] = pm.create_strategy(name, **options)
    stopped_at: dict[str, int] = {}  # strategy → the N at which it went over the limit
    for n in sorted(args.sizes):
        for spec, strategy in strategies.items():
            previous = done.get((spec, n))
            if previous and not args.rerun:
                failed = not previous["status"].startswith(("ok", "skipped", "not run"))
                if failed:
                    stopped_at.setdefault(spec, n)
                print(f"{spec:24s} N={n:>10,}  {previous['status']} (already measured)")
                continue
            need = signal_gb(n, strategy.signals)
            row: dict[str, Any]
            if spec in stopped_at:
                row = {"status": f"not run (over the limit at N={stopped_at[spec]:,})"}
            elif need > args.max_signal_gb:
                row = {"status": f"skipped: signals need {need:.1f} GB"}
            else:
                row = measure(args, spec, n)
                if row["status"] != "ok":
                    stopped_at[spec] = n
            row.update(
                strategy=spec, kind="dynamic" if strategy.dynamic else "static", num_samples=n,
                load_1min=f"{os.getloadavg()[0]:.1f}", threads=args.threads,
                prune_ratio=args.prune_ratio, machine=machine(), commit=git_commit(),
                command=command,
            )  # fmt: skip
            print(f"{spec:24s} N={n:>10,}  {row['status']:10s} {row.get('epoch_s', '')}")
            rows.append(row)
            write_rows(path, rows)
            sys.stdout.flush()
        write_report(path, args.out)


# --------------------------------------------------------------------------- report


def slope(ns: list[int], values: list[float]) -> float:
    """Log–log slope of ``values`` against ``ns`` (least squares; nan below two points)."""
    points = [(n, v) for n, v in zip(ns, values, strict=True) if v > 0]
    if len(points) < 2:
        return float("nan")
    x, y = np.log10([p[0] for p in points]), np.log10([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def _power(n: int) -> str:
    """``10⁶`` for powers of ten, ``300,000`` otherwise."""
    exponent = math.log10(n)
    if exponent.is_integer():
        return "10" + str(int(exponent)).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{n:,}"


def summarise(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Per strategy: seconds and engine MB by N, both slopes, the largest usable N."""
    cells = latest(rows)
    out = []
    for spec in dict.fromkeys(r["strategy"] for r in rows):
        mine = sorted((n, r) for (s, n), r in cells.items() if s == spec)
        ok = [(n, r) for n, r in mine if r["status"] == "ok"]
        fit = [(n, r) for n, r in ok if n >= FIT_FROM]
        if len(fit) < 2:  # too few large sizes ran: fit all it ran, and say so
            fit = ok
        usable = [n for n, r in ok if float(r["epoch_s"]) <= USABLE_SECONDS]
        largest = _power(max(usable)) if usable else "none measured"
        beyond = [(n, r) for n, r in mine if not usable or n > max(usable)]
        if beyond:  # why not the next size up
            n, r = beyond[0]
            why = f"{float(r['epoch_s']):.0f} s" if r["status"] == "ok" else r["status"]
            largest += f" ({_power(n)}: {why})"
        out.append(
            {
                "strategy": spec,
                "kind": mine[0][1]["kind"],
                "cells": dict(mine),
                "time_slope": slope([n for n, _ in fit], [float(r["epoch_s"]) for _, r in fit]),
                "memory_slope": slope([n for n, _ in fit], [float(r["engine_mb"]) for _, r in fit]),
                "largest_usable": largest,
                "fitted_over": f"{_power(fit[0][0])}–{_power(fit[-1][0])}" if fit else "",
            }
        )
    return out


def _cell(row: dict[str, str] | None, key: str, digits: int) -> str:
    if row is None:
        return ""
    if row["status"] == "ok":
        return f"{float(row[key]):.{digits}f}"
    if row["status"].startswith("skipped"):
        return "skipped"
    return "—" if row["status"].startswith("not run") else "> limit"


def markdown(summary: list[dict[str, Any]], rows: list[dict[str, str]]) -> str:
    """The snippet for the benchmarks page: the table, how it was measured, the plot."""
    sizes = sorted({int(r["num_samples"]) for r in rows})
    loads = [float(r["load_1min"]) for r in rows if r["status"] == "ok"]
    ratio = rows[0]["prune_ratio"]
    head = " | ".join(f"s @ {_power(n)}" for n in sizes)
    mem = " | ".join(f"MB @ {_power(n)}" for n in sizes)
    lines = [
        "### Engine cost per epoch against the number of molecules",
        "",
        "One epoch of the engine alone, through the public API, for every built-in strategy: "
        "no model, synthetic per-sample losses and signals of realistic shapes (predictions, "
        "embeddings (N, 300) float32, fingerprints (N, 2048) uint8), batches of 256, "
        f"pruning ratio {ratio}. Dynamic strategies: a pruned epoch, the faster of the first "
        "two (sampler, "
        "`Pruner.loss` per batch, `end_epoch` with its selection). Static strategies: the "
        "last warm-up epoch (sampler, losses, `Pruner.observe` of the signals they declare) "
        "and the `end_epoch` that makes their one selection. Every cell is a fresh process. "
        "Engine MB is the cell's peak resident memory less the memory before the signals "
        "were made and less the signals' own bytes. Slopes are least-squares fits of "
        f"log10(seconds) and log10(engine MB) against log10(N) over N ≥ {FIT_FROM:,} (over "
        "the sizes shown in brackets where fewer than two of those ran). "
        f"**Largest usable N**: the largest N measured whose epoch took ≤ {USABLE_SECONDS:.0f} s "
        "on one thread of this machine.",
        "",
        f"| strategy | kind | {head} | {mem} | time slope | memory slope | largest usable N |",
        "|---|---|" + "---:|" * (2 * len(sizes) + 2) + "---|",
    ]
    for s in summary:
        times = " | ".join(_cell(s["cells"].get(n), "epoch_s", 2) for n in sizes)
        mbs = " | ".join(_cell(s["cells"].get(n), "engine_mb", 0) for n in sizes)
        over = "" if s["fitted_over"].startswith(_power(FIT_FROM)) else f" ({s['fitted_over']})"
        lines.append(
            f"| {s['strategy']} | {s['kind']} | {times} | {mbs} | {s['time_slope']:.2f}{over} | "
            f"{s['memory_slope']:.2f}{over} | {s['largest_usable']} |"
        )
    commands = sorted({r["command"] for r in rows})
    lines += [
        "",
        "Cells: `> limit` over the per-cell time limit (larger N then not run: `—`); "
        "`skipped`: the synthetic signals alone would exceed the memory allowed (the CSV "
        "says how much). They are made up front for the whole epoch; in training a model "
        "computes predictions and embeddings batch by batch, so a skipped cell is a limit "
        "of this benchmark, except for the strategies that keep a signal per molecule "
        "(herding: the embeddings, kmeans: the fingerprints; see their engine MB). "
        "`herding:block_size=0` is the exact greedy herding, as before the change to "
        "random blocks.",
        "",
        f"- machine: {rows[0]['machine']}, {rows[0]['threads']} torch thread(s)",
        f"- load average (1 min) while the cells ran: {min(loads, default=0):.1f}–"
        f"{max(loads, default=0):.1f}: a shared, busy machine; read slopes and ratios, "
        "not absolute seconds",
        f"- commits: {', '.join(sorted({r['commit'] for r in rows}))}",
        "- commands: " + "; ".join(f"`{c}`" for c in commands),
        "- raw rows: `benchmarks/results/engine_scaling.csv`",
        "",
        f"![engine time and memory against N]({'img/' + PLOT.name})",
    ]
    return "\n".join(lines) + "\n"


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    """Time and engine memory against N, log–log, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    colours = plt.get_cmap("tab20")
    for i, s in enumerate(summary):
        ok = [(n, r) for n, r in s["cells"].items() if r["status"] == "ok"]
        style = "-" if s["kind"] == "dynamic" else "--"
        for ax, key, fitted in (
            (axes[0], "epoch_s", s["time_slope"]),
            (axes[1], "engine_mb", s["memory_slope"]),
        ):
            points = [(n, float(r[key])) for n, r in ok if float(r[key]) > 0]
            if points:
                label = f"{s['strategy']} ({fitted:.2f})"
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker="o", color=colours(i), label=label)
    axes[0].axhline(USABLE_SECONDS, color="grey", lw=0.8, ls=":")
    axes[0].set(ylabel="seconds per epoch (engine alone)", title="time (log–log slope)")
    axes[1].set(ylabel="engine MB (peak RSS less signals)", title="memory (log–log slope)")
    for ax in axes:
        ax.set(xscale="log", yscale="log", xlabel="molecules N")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def before_after(rows: list[dict[str, str]], before: list[dict[str, str]]) -> list[str]:
    """Table of the strategies measured on an earlier commit: seconds then and now."""
    now, then = latest(rows), latest(before)
    sizes = sorted({n for _, n in then})
    lines = [
        "",
        "Strategies changed to scale, measured the same way on the commit before the change "
        f"({', '.join(sorted({r['commit'] for r in before}))}; `{before[0]['command']}`, "
        "one thread, same machine), against now (seconds per epoch):",
        "",
        "| strategy | "
        + " | ".join(f"before @ {_power(n)} | now @ {_power(n)}" for n in sizes)
        + " |",
        "|---|" + "---:|" * (2 * len(sizes)),
    ]
    for spec in dict.fromkeys(s for s, _ in then):
        pairs = [(then.get((spec, n)), now.get((spec, n))) for n in sizes]
        cells = [f"{_cell(a, 'epoch_s', 2)} | {_cell(b, 'epoch_s', 2)}" for a, b in pairs]
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return lines


def write_report(path: Path, out: Path) -> None:
    """Rewrite the Markdown snippet and the plot from the CSV (and the ``_before`` CSV)."""
    rows = read_rows(path)
    if not rows:
        return
    summary = summarise(rows)
    text = markdown(summary, rows)
    before = read_rows(out / f"{NAME}_before.csv")
    if before:
        text += "\n".join(before_after(rows, before)) + "\n"
    write_text(out / f"{NAME}.md", text)
    plot(summary, PLOT if out.resolve() == RESULTS.resolve() else out / PLOT.name)


def main() -> None:
    """Measure the grid (or one ``--cell``), then write the CSV, the table and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6, 1e7])
    parser.add_argument("--strategies", nargs="*", default=None, help="NAME[:KEY=VALUE,…]")
    parser.add_argument("--prune-ratio", type=float, default=0.6)
    parser.add_argument("--cell-timeout", type=float, default=120.0, help="seconds per cell")
    parser.add_argument("--max-signal-gb", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--rerun", action="store_true", help="measure cells already in the CSV")
    parser.add_argument("--report", action="store_true", help="only rewrite table and plot")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--cell", nargs=2, metavar=("STRATEGY", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes]
    torch.set_num_threads(args.threads)
    path = args.out / f"{NAME}.csv"
    if args.cell:
        spec, n = args.cell
        print(json.dumps(run_cell(spec, int(n), args.prune_ratio, args.cell_timeout)))
    elif args.report:
        write_report(path, args.out)
    else:
        run_grid(args, path)


if __name__ == "__main__":
    main()
