"""Benchmark: ``molpeg prune-source`` (feature mapping) on the full MOSES training set.

Runs the real CLI as a child process on the 1,584,663-molecule MOSES training set against a
MoleculeNet target and records wall time, CPU seconds and the peak resident memory of the
largest waited-for child process (``ru_maxrss``; each fingerprint worker is a separate,
smaller process). Results are appended, one JSON line per run, to
``benchmarks/results/source_moses.jsonl`` as soon as each finishes.

Usage (takes several minutes; run it in the background)::

    nohup python benchmarks/bench_source_moses.py --target BBBP --workers 2 &
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOLPEG_SHARED", ROOT.parent / "shared")) / "data"
TARGETS = {
    "BBBP": SHARED / "moleculenet" / "BBBP.csv",
    "HIV": SHARED / "moleculenet" / "HIV.csv",
}


def main() -> None:
    """Run one prune-source job and append its numbers to the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SHARED / "pretrain" / "moses_train.csv.gz")
    parser.add_argument("--target", choices=sorted(TARGETS), default="BBBP")
    parser.add_argument("--keep", type=float, default=0.4)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--features", default="morgan")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("/tmp/molpeg_bench_source_moses"))
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "results" / "source_moses.jsonl"
    )
    args = parser.parse_args()
    cmd = [
        sys.executable, "-c", "from molpeg_plugins.cli import main; main()",
        "prune-source", str(args.source),
        "--target", str(TARGETS[args.target]), "--method", "feature-mapping",
        "--keep", str(args.keep), "--groups", str(args.groups), "--features", args.features,
        "--workers", str(args.workers), "--output", str(args.output),
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mib = usage.ru_maxrss / 1024
    row: dict[str, object] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "command": "molpeg " + " ".join(cmd[3:]),
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_mib_children": round(peak_mib, 1),
        "cpu_s_children": round(usage.ru_utime + usage.ru_stime, 1),
    }
    report = args.output / "report.json"
    if proc.returncode == 0 and report.is_file():
        rep = json.loads(report.read_text())
        row.update(
            num_source=rep["num_source"],
            num_kept=rep["num_kept"],
            in_process_wall_s=rep["wall_seconds"],
            in_process_peak_rss_mib=rep["peak_rss_mib"],
            groups_hit=rep["details"]["groups_hit"],
            target_in_kept_groups=rep["details"]["target_molecules_in_kept_groups"],
            target_valid=rep["details"]["target_valid"],
        )
    else:
        row["stderr_tail"] = proc.stderr[-2000:]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
