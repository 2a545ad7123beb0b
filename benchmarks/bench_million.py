"""A million-molecule ``molpeg prune``: time and memory of every phase of one run.

Prepares once (cached and resumable under ``benchmarks/work/million/``) a CSV of MOSES
molecules with computed regression labels, three standardised RDKit descriptors (MolLogP,
TPSA, MolWt) computed by a pool of worker processes, then runs the real command line,
``molpeg prune --backend torch``, on it in a child process. The parent samples the child's
resident memory (psutil, every 0.2 s) and reads its progress lines as they come: each
phase ends where the pipeline's own progress task for it ends (``Reading CSV: done``,
``Parsing SMILES: done``, … one ``epoch k/n`` line per epoch), so nothing inside the run
is patched.

    python benchmarks/bench_million.py --rows 250000 --label dry-run
    python benchmarks/bench_million.py                 # every MOSES training molecule
    python benchmarks/bench_million.py --rows 1000000 --random-labels  # labels not computed

One row per phase is appended to ``benchmarks/results/million.csv`` (seconds, RSS at the end
of the phase, peak RSS during it, with the command, machine, commit and load average), and
``benchmarks/results/million.md`` is rewritten from that file: the phase table of the
largest finished run with the latest label and a summary of all runs (``--report-only``).
``--code PATH`` runs the ``molpeg`` of another checkout (e.g. an older commit, for a
before/after comparison). Lines and samples
are also traced to ``benchmarks/work/million/trace_*.tsv`` as they come;
``--from-trace TRACE`` records the finished phases of a run that was stopped early.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("MOLPEG_SHARED", ROOT.parent / "shared"))
MOSES = SHARED / "data/pretrain/moses_train.csv.gz"
WORK = HERE / "work/million"
RESULTS = HERE / "results"
CSV_PATH = RESULTS / "million.csv"
MD_PATH = RESULTS / "million.md"
DESCRIPTORS = ("MolLogP", "TPSA", "MolWt")
CHUNK = 10_000  # molecules per cached part of the labels
SAMPLE_S = 0.2
GIB = 2**30
MIB = 2**20

# progress line → phase it ends; phases without their own line end at the next one
PHASE_LINES = [
    (re.compile(r"^Reading .*"), "startup"),
    (re.compile(r"^Reading CSV: done"), "reading"),
    (re.compile(r"^Parsing SMILES: done"), "validation"),
    (re.compile(r"^Splitting: done"), "split"),
    (re.compile(r"^Featurising: done"), "fingerprints"),
    (re.compile(r"^epoch (\d+)/\d+"), "epoch"),
    (re.compile(r"^Evaluating: done"), "evaluation"),
    (re.compile(r"^Writing pruned\.csv: done"), "pruned.csv"),
    (re.compile(r"^Writing scores: done"), "scores"),
    (re.compile(r"^Drawing plots: done"), "plots"),
    (re.compile(r"^Writing outputs: done"), "report"),
]
PHASE_MEANING = {
    "startup": "interpreter start, imports, option checks",
    "reading": "CSV records and their values (pandas)",
    "validation": "RDKit parsing, canonical SMILES, scaffolds, duplicates",
    "split": "random split, cross-split duplicates",
    "fingerprints": "job set-up and Morgan fingerprints (packed)",
    "evaluation": "best model on validation and test",
    "pruned.csv": "kept training rows, byte for byte",
    "scores": "scores.csv, one row per input row",
    "plots": "the four PNG plots",
    "report": "report.json and moving the result set into place",
    "exit": "interpreter shutdown",
    "stopped": "stopped here, unfinished",
}
FIELDS = [
    "run", "label", "rows", "phase", "seconds", "rss_end_mib", "peak_rss_mib",
    "load_before", "load_after", "machine", "commit", "command",
]  # fmt: skip


# --------------------------------------------------------------------------- labels


def _descriptors(smiles: list[str]) -> np.ndarray:
    """``(len(smiles), 3)`` descriptor values (``nan`` for a SMILES RDKit rejects)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import Descriptors

    RDLogger.DisableLog("rdApp.*")
    out = np.full((len(smiles), len(DESCRIPTORS)), np.nan)
    for i, smi in enumerate(smiles):
        mol = Chem.MolFromSmiles(smi)
        if mol is not None:
            out[i] = [getattr(Descriptors, name)(mol) for name in DESCRIPTORS]
    return out


def _compute_part(job: tuple[list[str], Path]) -> Path:
    smiles, path = job
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, _descriptors(smiles))
    os.replace(tmp, path)
    return path


def prepare(source: Path, rows: int | None, workers: int) -> Path:
    """The labelled CSV of the first ``rows`` molecules of ``source`` (made once, resumable).

    Descriptors are computed in parts of :data:`CHUNK` molecules of ``source``, each saved
    as it is done and shared by every size, so an interrupted preparation continues where
    it stopped and a smaller run reuses the parts of a larger one. Molecules RDKit rejects
    keep empty labels (the run skips them and says so).
    """
    smiles = pd.read_csv(source).iloc[:, 0]
    if rows is not None:
        smiles = smiles.iloc[:rows]
    n = len(smiles)
    target = WORK / f"{source.name.split('.')[0]}_{n}_descriptors.csv"
    if target.is_file():
        return target
    parts_dir = WORK / f"parts_{source.name.split('.')[0]}"
    parts_dir.mkdir(parents=True, exist_ok=True)
    values = smiles.tolist()
    jobs = [
        (values[s : s + CHUNK], parts_dir / f"part_{s // CHUNK:05d}.npy")
        for s in range(0, n, CHUNK)
    ]
    # a part is always a full chunk of the source (the last one of a smaller n too)
    full = pd.read_csv(source).iloc[:, 0] if n % CHUNK else None
    if full is not None:
        last = (n // CHUNK) * CHUNK
        jobs[-1] = (full.iloc[last : last + CHUNK].tolist(), jobs[-1][1])
    todo = [job for job in jobs if not job[1].is_file()]
    started = time.perf_counter()
    if todo:
        with Pool(workers) as pool:
            for k, _ in enumerate(pool.imap_unordered(_compute_part, todo), 1):
                print(f"labels: {k}/{len(todo)} parts", file=sys.stderr, flush=True)
    labels = np.concatenate([np.load(path) for _, path in jobs])[:n]
    mean, std = np.nanmean(labels, axis=0), np.nanstd(labels, axis=0)
    frame = pd.DataFrame((labels - mean) / np.where(std > 0, std, 1), columns=list(DESCRIPTORS))
    frame.insert(0, "smiles", values)
    tmp = target.with_suffix(".tmp")
    frame.to_csv(tmp, index=False, float_format="%.5f")
    os.replace(tmp, target)
    print(f"labels: {n} molecules in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return target


def prepare_random(source: Path, rows: int | None) -> Path:
    """The first ``rows`` molecules of ``source`` with random labels in the three columns.

    Standard-normal numbers (seed 0, drawn for the whole source, the first ``rows`` kept):
    for a time and memory run when the descriptors are not computed yet (the run's cost
    does not depend on the label values).
    """
    smiles = pd.read_csv(source).iloc[:, 0]
    labels = np.random.default_rng(0).standard_normal((len(smiles), len(DESCRIPTORS)))
    n = len(smiles) if rows is None else min(rows, len(smiles))
    target = WORK / f"moses_{n}_random_labels.csv"
    if not target.is_file():
        frame = pd.DataFrame(labels[:n], columns=list(DESCRIPTORS))
        frame.insert(0, "smiles", smiles.iloc[:n].to_numpy())
        tmp = target.with_suffix(".tmp")
        frame.to_csv(tmp, index=False, float_format="%.5f")
        os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- the run


def _rss(process: psutil.Process) -> int:
    """Resident memory of ``process`` and its children, in bytes (0 once it is gone)."""
    try:
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            total += child.memory_info().rss
    except psutil.Error:
        return 0
    return total


def run_child(
    command: list[str], env: dict[str, str], cwd: Path, trace: Path
) -> tuple[list, list, int, str]:
    """Run ``command`` in ``cwd``; return its progress lines and RSS samples, timed from the start.

    Every line and sample is also appended to ``trace`` as it comes (``L``/``S``, seconds,
    text or bytes), so a run stopped early still leaves its finished phases
    (``--from-trace``).

    Returns:
        ``(lines, samples, returncode, stderr tail)``: ``lines`` are ``(seconds, text)``,
        ``samples`` ``(seconds, rss bytes)``.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
    )
    process = psutil.Process(proc.pid)
    lines: list[tuple[float, str]] = []
    out = open(trace, "a", encoding="utf-8", buffering=1)  # noqa: SIM115  (two threads write)
    lock = threading.Lock()

    def note(kind: str, t: float, value: object) -> None:
        with lock:
            out.write(f"{kind}\t{t:.3f}\t{value}\n")

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            t = time.perf_counter() - started
            lines.append((t, line.rstrip("\n")))
            note("L", t, line.rstrip("\n"))
            print(line, end="", file=sys.stderr, flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        t, rss = time.perf_counter() - started, _rss(process)
        samples.append((t, rss))
        note("S", t, rss)
        time.sleep(SAMPLE_S)
    end = time.perf_counter() - started
    reader.join()
    lines.append((end, "<exit>"))
    note("L", end, "<exit>")
    out.close()
    tail = "\n".join(text for _, text in lines[-15:])
    return lines, samples, proc.returncode, tail


def read_trace(trace: Path) -> tuple[list, list]:
    """The progress lines and RSS samples :func:`run_child` wrote to ``trace``."""
    lines, samples = [], []
    with open(trace, encoding="utf-8") as handle:
        for row in handle:
            kind, t, value = row.rstrip("\n").split("\t", 2)
            if kind == "L":
                lines.append((float(t), value))
            elif kind == "S":
                samples.append((float(t), int(value)))
    return lines, samples


def phases(lines: list, samples: list) -> list[dict[str, Any]]:
    """One row per phase: its seconds, the RSS at its end and the peak RSS during it."""
    bounds: list[tuple[float, str]] = []
    for t, text in lines:
        if text == "<exit>":
            bounds.append((t, "exit"))
            continue
        for pattern, name in PHASE_LINES:
            found = pattern.match(text)
            if found and not (name == "startup" and bounds):
                bounds.append((t, f"epoch {found.group(1)}" if name == "epoch" else name))
                break
    alive = [(t, r) for t, r in samples if r > 0]  # 0: the process was already gone
    times = np.array([t for t, _ in alive]) if alive else np.zeros(0)
    rss = np.array([r for _, r in alive]) if alive else np.zeros(0)
    rows, previous = [], 0.0
    for t, name in bounds:
        before = times <= t
        end = float(rss[before][-1]) if before.any() else 0.0
        inside = (times > previous) & before
        peak = max(end, float(rss[inside].max())) if inside.any() else end
        rows.append(
            {
                "phase": name,
                "seconds": round(t - previous, 2),
                "rss_end_mib": round(end / MIB, 1),
                "peak_rss_mib": round(peak / MIB, 1),
            }
        )
        previous = t
    return rows


def commit_of(code: Path) -> str:
    """The commit checked out at ``code`` (with ``+dirty`` for uncommitted changes)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(code), *args], capture_output=True, text=True
        ).stdout.strip()

    dirty = "+dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def machine() -> str:
    """CPU model, cores and memory of this machine."""
    model = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / GIB
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB"


# --------------------------------------------------------------------------- the snippet


def _test_sentence(command: str) -> list[str]:
    """What the run learned, from its ``report.json`` if the output is still there."""
    words = shlex.split(command)
    if "--output" not in words:
        return []
    report = ROOT / words[words.index("--output") + 1] / "report.json"
    if not report.exists():
        return []
    test = json.loads(report.read_text())["test_metrics"]
    return [
        f"The model learned (labels standardised): test RMSE {test['rmse']:.3f}, "
        f"R² {test['r2']:.3f} on the held-out molecules.",
        "",
    ]


def markdown(frame: pd.DataFrame) -> str:
    """``million.md``: the phase table of the largest finished run with the latest label, and
    a summary of every run."""
    runs = frame.groupby("run", sort=False)
    summary = runs.agg(
        label=("label", "first"),
        rows=("rows", "first"),
        seconds=("seconds", "sum"),
        peak=("peak_rss_mib", "max"),
        load=("load_before", "first"),
        commit=("commit", "first"),
    ).reset_index()
    finished = summary[~summary.label.str.contains("stopped early")]
    finished = finished if len(finished) else summary
    latest = finished[finished.label == finished.label.iloc[-1]]
    biggest = latest.sort_values(["rows", "run"]).iloc[-1]
    rows = frame[frame.run == biggest.run]
    labels = (
        "random standard-normal numbers in the three label columns (time and memory do not "
        "depend on the label values)"
        if "random labels" in biggest.label
        else "three standardised RDKit descriptors (MolLogP, TPSA, MolWt) as regression labels"
    )
    first = rows.iloc[0]
    lines = [
        "## molpeg prune on up to a million molecules: time and memory per phase",
        "",
        f"`molpeg prune --backend torch` on {int(biggest.rows):,} MOSES molecules with {labels}, "
        "run end to end in a child process whose resident memory (RSS) is sampled every "
        f"0.2 s. Peak RSS **{biggest.peak / 1024:.2f} GiB**, total "
        f"**{biggest.seconds / 60:.1f} min** on {first.machine}, shared with other work "
        f"(1-minute load average {first.load_before:.1f} at the start, "
        f"{first.load_after:.1f} at the end): the times are those of a loaded machine.",
        "",
        *_test_sentence(first.command),
        "<!-- docs-test: skip (needs the CSV that bench_million.py prepares) -->",
        "```bash",
        first.command,
        "```",
        "",
        "| phase | what | seconds | RSS at end (MiB) | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows.itertuples():
        what = "training epoch, validation" if row.phase.startswith("epoch") else ""
        what = what or PHASE_MEANING.get(row.phase, "")
        lines.append(
            f"| {row.phase} | {what} | {row.seconds:.1f} | {row.rss_end_mib:.0f} "
            f"| {row.peak_rss_mib:.0f} |"
        )
    lines.append(f"| **total** | | **{biggest.seconds:.1f}** | | **{biggest.peak:.0f}** |")
    lines += [
        "",
        "Every run in `benchmarks/results/million.csv` (label: which code and data):",
        "",
        "| run | label | molecules | total (s) | peak RSS (MiB) | load | commit |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in summary.itertuples():
        lines.append(
            f"| {row.run} | {row.label} | {int(row.rows):,} | {row.seconds:.0f} "
            f"| {row.peak:.0f} | {row.load:.1f} | {row.commit} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=MOSES, help="MOSES SMILES (.csv.gz)")
    parser.add_argument("--rows", type=int, default=None, help="first N molecules (all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=0.6)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2, help="processes for the labels")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the run")
    parser.add_argument("--label", default="current", help="name of this run in the tables")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose molpeg runs")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument(
        "--random-labels", action="store_true", help="random labels instead of descriptors"
    )
    parser.add_argument(
        "--data", type=Path, help="a labelled CSV to run on instead of the prepared one"
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite million.md only")
    parser.add_argument(
        "--from-trace", type=Path, help="record the phases a stopped run's trace holds"
    )
    args = parser.parse_args()

    if args.report_only:
        from molpeg_plugins.pipeline.atomic import write_text

        write_text(MD_PATH, markdown(pd.read_csv(CSV_PATH)))
        return
    if args.from_trace is not None:
        common, lines, samples = read_run(args.from_trace)
        found = phases(lines, samples)
        if not any(text.startswith("Writing outputs: done") for _, text in lines):
            common["label"] += " (stopped early)"
            if found and found[-1]["phase"] == "exit":
                found[-1]["phase"] = "stopped"  # killed in the phase after the last one shown
        record(common, found)
        return
    WORK.mkdir(parents=True, exist_ok=True)
    if args.random_labels:
        data = prepare_random(args.source, args.rows)
    else:
        data = args.data or prepare(args.source, args.rows, args.workers)
    if args.prepare_only:
        return
    with open(data, encoding="utf-8") as handle:
        n = sum(1 for _ in handle) - 1
    slug = re.sub(r"[^A-Za-z0-9]+", "-", args.label).strip("-")
    out = WORK / f"out_{slug}_{n}"
    options = [
        "prune", str(data), "--backend", "torch", "--device", "cpu",
        "--target-columns", ",".join(DESCRIPTORS), "--task", "regression",
        "--epochs", str(args.epochs), "--prune-ratio", str(args.ratio),
        "--batch-size", str(args.batch_size), "--output", str(out), "--overwrite",
    ]  # fmt: skip
    code = args.code.resolve()
    threads = str(args.threads)
    env = {
        **os.environ,
        "PYTHONPATH": f"{code}:{code / 'adapters'}",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "COLUMNS": "200",
    }
    env.pop("FORCE_COLOR", None)
    shown = f"OMP_NUM_THREADS={threads} molpeg " + " ".join(
        os.path.relpath(o, ROOT) if o in (str(data), str(out)) else o for o in options
    )
    command = [sys.executable, "-c", "from molpeg_plugins.cli import main; main()", *options]
    common = {
        "run": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "label": args.label,
        "rows": n,
        "load_before": round(os.getloadavg()[0], 2),
        "load_after": math.nan,
        "machine": machine(),
        "commit": commit_of(code),
        "command": shown,
    }
    trace = WORK / f"trace_{slug}_{n}.tsv"
    trace.write_text(f"C\t0\t{json.dumps(common)}\n", encoding="utf-8")
    # in the checkout's folder: `python -c` imports from its working folder first
    lines, samples, returncode, tail = run_child(command, env, code, trace)
    if returncode != 0:
        sys.exit(f"molpeg prune failed (exit code {returncode}):\n{tail}")
    common["load_after"] = round(os.getloadavg()[0], 2)
    record(common, phases(lines, samples))


def read_run(trace: Path) -> tuple[dict[str, Any], list, list]:
    """The run's facts (``C`` line), progress lines and RSS samples in ``trace``."""
    with open(trace, encoding="utf-8") as handle:
        common = json.loads(handle.readline().split("\t", 2)[2])
    common["load_after"] = round(os.getloadavg()[0], 2)
    return (common, *read_trace(trace))


def record(common: dict[str, Any], found: list[dict[str, Any]]) -> None:
    """Append the phase rows to ``million.csv``, rewrite ``million.md`` and print them."""
    from molpeg_plugins.pipeline.atomic import write_text

    RESULTS.mkdir(parents=True, exist_ok=True)
    new = not CSV_PATH.exists()
    with open(CSV_PATH, "a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for row in found:
            writer.writerow({**common, **row})
    write_text(MD_PATH, markdown(pd.read_csv(CSV_PATH)))
    for row in found:
        print(
            f"{row['phase']:>14}  {row['seconds']:8.1f} s  end {row['rss_end_mib']:7.0f} MiB  "
            f"peak {row['peak_rss_mib']:7.0f} MiB"
        )


if __name__ == "__main__":
    main()
