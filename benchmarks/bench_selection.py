"""Benchmark: time to select a subset of N = 40,000 molecules, per strategy.

Synthetic signals with the shapes and statistics of a real run: predictions ``(N, 1)``
(probabilities from a Beta mixture, targets Bernoulli), embeddings ``(N, 300)`` (Gaussian
blobs), Morgan-like fingerprints ``(N, 2048)`` (uint8, ~2% of the bits set, as for drug-like
molecules at radius 2), per-sample losses for the dynamic strategies.

For every registered built-in strategy it measures
  * ``observe_s``: one warm-up epoch of :meth:`Strategy.observe` calls in shuffled batches
    of 256 (only the signals the strategy declares; dynamic strategies: ``ScoreBook.record``
    + ``commit`` of the losses instead),
  * ``select_s``: one :meth:`Strategy.select` call keeping ``(1 − r)·N`` samples (best of
    ``--repeats``; one run for strategies slower than 5 s).

Usage::

    python benchmarks/bench_selection.py [--num-samples 40000] [--prune-ratio 0.6]
        [--device cpu|cuda] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from molpeg_plugins.engine.config import num_kept
from molpeg_plugins.engine.scorebook import ScoreBook
from molpeg_plugins.engine.strategies.static import herd
from molpeg_plugins.pipeline.atomic import write_text
from molpeg_plugins.plugins import make_plugin_manager

BATCH = 256


def synthetic_signals(n: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-sample signals with realistic shapes (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, 1, generator=g) < 0.3).float()
    easy = torch.distributions.Beta(torch.tensor(8.0), torch.tensor(2.0))
    p_true = easy.sample((n, 1))
    predictions = torch.where(targets > 0, p_true, 1 - p_true)
    centres = torch.randn(64, 300, generator=g) * 2.0
    embeddings = centres[torch.randint(0, 64, (n,), generator=g)] + torch.randn(n, 300, generator=g)
    features = (torch.rand(n, 2048, generator=g) < 0.02).to(torch.uint8)
    loss = torch.nn.functional.binary_cross_entropy(predictions, targets, reduction="none")
    signals = {
        "predictions": predictions,
        "targets": targets,
        "mask": torch.ones(n, 1, dtype=torch.bool),
        "embeddings": embeddings,
        "features": features,
        "loss": loss[:, 0],
        "reference_loss": loss[:, 0] * torch.rand(n, generator=g) * 2,
    }
    return {k: v.to(device) for k, v in signals.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(
    name: str,
    n: int,
    ratio: float,
    device: torch.device,
    repeats: int,
    herding_steps: int | None = None,
) -> tuple[float, float]:
    """``(observe seconds, best select seconds)`` of strategy ``name``."""
    pm = make_plugin_manager(entry_points=False)
    strategy = pm.create_strategy(name)
    strategy.bind(n, device)
    signals = synthetic_signals(n, device)
    book = ScoreBook(n, device)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1)).to(device)
    _sync(device)
    start = time.perf_counter()
    for epoch in range(2):  # two warm-up epochs (forgetting needs transitions)
        for idx in order.split(BATCH):
            if strategy.signals:
                wanted = {k: signals[k][idx] for k in strategy.signals}
                strategy.observe(epoch, idx, **wanted)
            else:
                book.record(idx, signals["loss"][idx], signals["reference_loss"][idx])
        if not strategy.signals:
            book.commit(epoch, strategy.score)
    _sync(device)
    observe_s = (time.perf_counter() - start) / 2
    k = num_kept(n, ratio)
    if name == "herding" and herding_steps and herding_steps < k:
        # Every greedy step costs the same (one N×D matrix–vector product + argmin):
        # time the first `herding_steps` steps and scale to the k steps of a selection.
        x = strategy._tables["embeddings"]
        herd(x, k, max_steps=10)  # warm-up
        _sync(device)
        start = time.perf_counter()
        herd(x, k, max_steps=herding_steps)
        _sync(device)
        return observe_s, (time.perf_counter() - start) * k / herding_steps
    best = float("inf")
    for rep in range(repeats):
        gen = torch.Generator().manual_seed(rep)
        _sync(device)
        start = time.perf_counter()
        choice = strategy.select(book, k, epoch=2, generator=gen)
        _sync(device)
        best = min(best, time.perf_counter() - start)
        assert choice.indices.numel() == k, name
        assert choice.indices.unique().numel() == k, name
        if best > 5.0:
            break
    return observe_s, best


def _machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} CPU cores"
    text += f", torch {torch.__version__} with {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def main() -> None:
    """Run the benchmark and write the CSV and Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=40_000)
    parser.add_argument("--prune-ratio", type=float, default=0.6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--herding-steps",
        type=int,
        default=None,
        help="time only this many greedy herding steps and scale to the full selection",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    registry = make_plugin_manager(entry_points=False).strategies()
    names = args.strategies or list(registry)
    k = num_kept(args.num_samples, args.prune_ratio)
    rows = []
    for name in names:
        observe_s, select_s = bench(
            name, args.num_samples, args.prune_ratio, device, args.repeats, args.herding_steps
        )
        kind = "dynamic" if registry[name].dynamic else "static"
        if name == "herding" and args.herding_steps and args.herding_steps < k:
            kind += f" (select extrapolated from {args.herding_steps} of {k} steps)"
        rows.append((name, kind, observe_s, select_s))
        print(f"{name:18s} {kind:8s} observe {observe_s:8.3f} s  select {select_s:8.3f} s")
    header = ["strategy", "kind", "observe_epoch_s", "select_s", "num_samples", "num_kept"]
    lines = [",".join(header)]
    lines += [f"{n},{kd},{o:.4f},{s:.4f},{args.num_samples},{k}" for n, kd, o, s in rows]
    suffix = f"_{args.tag}" if args.tag else ""
    write_text(args.out / f"selection_cost{suffix}.csv", "\n".join(lines) + "\n")
    command = "python " + " ".join([str(Path(sys.argv[0]).as_posix())] + [a for a in sys.argv[1:]])
    md = [
        f"# Selection cost, N = {args.num_samples:,}, keep {k:,} (r = {args.prune_ratio})",
        "",
        f"- machine: {_machine(device)}",
        f"- device: {device}",
        f"- load average (1/5/15 min) at start {load_before[0]:.1f}/{load_before[1]:.1f}/"
        f"{load_before[2]:.1f}, at end {os.getloadavg()[0]:.1f} (shared machine: "
        "other jobs ran at the same time; compare rows, not absolute seconds)",
        f"- command: `{command}`",
        "- signals: synthetic, predictions (N, 1), embeddings (N, 300), "
        "fingerprints (N, 2048) uint8 ~2% bits set",
        "- observe: one epoch of `observe()` in shuffled batches of 256 "
        "(dynamic: `ScoreBook.record` + `commit`); select: best of "
        f"{args.repeats} `select()` calls (one if slower than 5 s)",
        "",
        "| strategy | kind | observe / epoch (s) | select (s) |",
        "|---|---|---:|---:|",
    ]
    md += [f"| {n} | {kd} | {o:.3f} | {s:.3f} |" for n, kd, o, s in rows]
    write_text(args.out / f"selection_cost{suffix}.md", "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
