"""Pruning across two processes (torchrun, gloo on CPU) on 100,003 real MOSES molecules.

The parent process prepares the data once (MOSES SMILES with RDKit's MolLogP as a regression
label; bit-packed Morgan fingerprints for the plain-PyTorch path), launches
``torchrun --standalone --nproc_per_node 2`` twice per path — an uninterrupted run, then a
run restarted from the checkpoint written after epoch ``--resume-after`` — and checks what
the ranks logged:

* every rank trains on the same keep set every epoch;
* the ranks' visited indices together are the keep set, each exactly once, except the
  padding: like ``DistributedSampler``, the sampler pads an odd-sized order with its first
  index, which is then visited by both ranks, and its two records are averaged (scored once);
* every kept molecule is scored exactly once per epoch, on every rank (scores summed across
  ranks), and the score tables of the ranks are identical;
* the restarted run chooses the same keep sets and ends with the same score table.

Paths: ``torch`` (the plain-PyTorch loop of the tutorial: ``Pruner``, ``EMAReference``, the
pruner's sampler in a ``DataLoader``, a ``FingerprintMLP`` in ``DistributedDataParallel``) and
``chemprop`` (a Chemprop ``MPNN`` with ``MolPegCallback`` in a Lightning ``Trainer`` with
``strategy="ddp"``, its default ``use_distributed_sampler=True`` left on; the restart uses
Lightning's per-epoch checkpoint). Results: ``benchmarks/results/distributed.csv`` (appended)
and ``distributed.md``.

Usage (niced; on two CPU cores shared with other jobs the torch path took about 5 minutes,
the chemprop path about 15)::

    python benchmarks/bench_distributed.py --path torch
    python benchmarks/bench_distributed.py --path chemprop
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
WORK = ROOT / "benchmarks/work/distributed"
SHARED = Path(os.environ.get("MOLPEG_SHARED", "/work/shared"))
MOSES = SHARED / "data/pretrain/moses_train_250k_seed0.csv.gz"
WORLD = 2
FP_BITS = 1024
CSV_FIELDS = [
    "date",
    "commit",
    "machine",
    "path",
    "molecules",
    "epochs",
    "kind",
    "name",
    "value",
    "detail",
    "load1",
    "command",
    "launch",
]


# ---------------------------------------------------------------------------- data (parent)


def prepare_data(rows: int, fingerprints: bool) -> tuple[Path, Path | None]:
    """The first ``rows`` MOSES molecules with MolLogP labels (and packed fingerprints), cached."""
    import pandas as pd
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    from molpeg_plugins.pipeline.torch_backend import packed_morgan_fingerprints

    WORK.mkdir(parents=True, exist_ok=True)
    labels = WORK / f"moses_logp_{rows}.csv"
    packed = WORK / f"moses_morgan{FP_BITS}_{rows}.npy"
    need_fp = fingerprints and not packed.is_file()
    if labels.is_file() and not need_fp:
        return labels, packed if fingerprints else None
    smiles = pd.read_csv(MOSES)["smiles"].head(rows).tolist()
    if len(smiles) < rows:
        raise SystemExit(f"{MOSES} has only {len(smiles)} molecules, not {rows}")
    logp = np.zeros(rows, dtype=np.float32)
    for i, smi in enumerate(smiles):
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            raise SystemExit(f"RDKit cannot parse MOSES molecule {i}: {smi!r}")
        logp[i] = Descriptors.MolLogP(mol)
    bits = packed_morgan_fingerprints(smiles, bits=FP_BITS) if need_fp else None
    from molpeg_plugins.pipeline.atomic import atomic_write

    frame = pd.DataFrame({"smiles": smiles, "logp": logp})
    atomic_write(labels, lambda fh: frame.to_csv(fh, index=False), binary=False)
    if need_fp:
        atomic_write(packed, lambda fh: np.save(fh, bits), binary=True)
    return labels, packed if fingerprints else None


# ---------------------------------------------------------------------------- workers


def _epoch_log(pruner: Any, epoch: int, order: Any, visited: list, wall: float) -> dict:
    """What one rank saw of one epoch (CPU tensors)."""
    import torch

    book = pruner.book
    return {
        "epoch": epoch,
        "order": order.cpu().clone(),
        "visited": torch.cat(visited).cpu() if visited else torch.zeros(0, dtype=torch.long),
        "score": book.score.cpu().clone(),
        "online_loss": book.online_loss.cpu().clone(),
        "reference_loss": book.reference_loss.cpu().clone(),
        "num_updates": book.num_updates.cpu().clone(),
        "last_epoch": book.last_epoch.cpu().clone(),
        "wall": wall,
        "load1": os.getloadavg()[0],
    }


def torch_worker(args: argparse.Namespace) -> None:
    """The plain-PyTorch loop of the tutorial, one process of ``torchrun``."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, TensorDataset

    from molpeg_plugins import EMAReference, IndexedDataset, Pruner
    from molpeg_plugins.pipeline.atomic import torch_save
    from molpeg_plugins.pipeline.torch_backend import FingerprintMLP, unpack_bits
    from molpeg_plugins.pipeline.training import capture_rng, restore_rng

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    import pandas as pd

    y = torch.from_numpy(pd.read_csv(args.data)["logp"].to_numpy(np.float32))
    packed = torch.from_numpy(np.load(args.fingerprints))
    train_set = IndexedDataset(TensorDataset(packed, y))
    torch.manual_seed(args.seed)
    net = FingerprintMLP(packed.shape[1] * 8, 1, hidden=256, dropout=0.1)
    model = DistributedDataParallel(net)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pruner = Pruner(len(train_set), prune_ratio=args.prune_ratio, total_epochs=args.epochs)
    reference = EMAReference(net, momentum=0.5)
    loader = DataLoader(train_set, batch_size=args.batch_size, sampler=pruner.sampler)
    out = Path(args.out)
    if args.resume_from:
        shared = torch.load(Path(args.resume_from) / "shared.pt", weights_only=True)
        net.load_state_dict(shared["model"])
        optimizer.load_state_dict(shared["optimizer"])
        pruner.load_state_dict(shared["pruner"])
        reference.load_state_dict(shared["reference"])
        restore_rng(torch.load(Path(args.resume_from) / f"rng{rank}.pt", weights_only=True))
    logs = []
    for epoch in range(pruner.epoch, args.epochs):
        order, visited = pruner.current.indices.clone(), []
        start = time.perf_counter()
        model.train()
        for batch, (index, (xb, yb)) in enumerate(loader):
            x = unpack_bits(xb)
            online = (model(x).squeeze(1) - yb) ** 2
            ref = (
                (reference(x).squeeze(1) - yb) ** 2
                if pruner.reference_due(batch, reference)
                else None
            )
            loss = pruner.loss(index, online, ref)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            reference.update(net)
            visited.append(index)
        pruner.end_epoch()
        logs.append(_epoch_log(pruner, epoch, order, visited, time.perf_counter() - start))
        if epoch == args.resume_after and not args.resume_from:
            checkpoint = out / "checkpoint"
            checkpoint.mkdir(parents=True, exist_ok=True)
            if rank == 0:  # model, optimizer, pruner and reference are the same on all ranks
                torch_save(
                    checkpoint / "shared.pt",
                    {
                        "model": net.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "pruner": pruner.state_dict(),
                        "reference": reference.state_dict(),
                    },
                )
            torch_save(checkpoint / f"rng{rank}.pt", capture_rng())  # dropout masks per rank
            dist.barrier()
    torch_save(out / f"rank{rank}.pt", {"epochs": logs, "selection": pruner.current.indices})
    dist.destroy_process_group()


def chemprop_worker(args: argparse.Namespace) -> None:
    """A Chemprop MPNN with MolPegCallback in a DDP Lightning Trainer, one process of torchrun."""
    import lightning.pytorch as pl
    import pandas as pd
    import torch
    from chemprop import data, featurizers, models, nn
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.serialization import safe_globals

    from molpeg_chemprop import MolPegCallback
    from molpeg_plugins.pipeline.atomic import torch_save
    from molpeg_plugins.pipeline.checkpoints import vet_checkpoint

    torch.set_num_threads(1)
    frame = pd.read_csv(args.data)
    labels = torch.from_numpy(frame["logp"].to_numpy(np.float32))
    points = [
        data.MoleculeDatapoint.from_smi(s, [float(y)])
        for s, y in zip(frame.smiles, frame.logp, strict=True)
    ]
    train = data.MoleculeDataset(points, featurizers.SimpleMoleculeMolGraphFeaturizer())
    pl.seed_everything(args.seed, verbose=False)
    model = models.MPNN(
        nn.BondMessagePassing(d_h=64, depth=3),
        nn.MeanAggregation(),
        nn.RegressionFFN(input_dim=64, hidden_dim=64),
        warmup_epochs=1,
    )
    molpeg = MolPegCallback(prune_ratio=args.prune_ratio, warmup_epochs=1)
    out = Path(args.out)

    class Spy(pl.Callback):
        """Logs each epoch as the torch path does, from after MolPegCallback's hooks."""

        def __init__(self) -> None:
            self.logs: list[dict] = []
            self.served_pruning_sampler: list[bool] = []
            self.label_mismatches = 0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.order = molpeg.pruner.current.indices.clone()
            self.visited: list = []
            self.start = time.perf_counter()
            sampler = trainer.train_dataloader.sampler
            self.served_pruning_sampler.append(sampler is molpeg.pruner.sampler)

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, i: int) -> None:
            index = molpeg.batch_indices(batch, i).cpu()
            delivered = batch.Y.reshape(-1).float().cpu()
            self.label_mismatches += int((delivered != labels[index]).sum())
            self.visited.append(index)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            wall = time.perf_counter() - self.start
            epoch = trainer.current_epoch
            self.logs.append(_epoch_log(molpeg.pruner, epoch, self.order, self.visited, wall))

    spy = Spy()
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoint",
        filename="{epoch}",
        save_top_k=-1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=WORLD,
        strategy="ddp",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[molpeg, spy, checkpoints],
    )
    loader = data.build_dataloader(train, batch_size=args.batch_size, seed=args.seed)
    if args.resume_from:  # Lightning's own checkpoint, vetted against molpeg's allow-list
        resume = Path(args.resume_from) / f"epoch={args.resume_after}.ckpt"
        with safe_globals(vet_checkpoint(resume)):
            trainer.fit(model, loader, ckpt_path=resume, weights_only=True)
    else:
        trainer.fit(model, loader)
    torch_save(
        out / f"rank{trainer.global_rank}.pt",
        {
            "epochs": spy.logs,
            "selection": molpeg.pruner.current.indices.cpu(),
            "served_pruning_sampler": spy.served_pruning_sampler,
            "label_mismatches": spy.label_mismatches,
        },
    )


# ---------------------------------------------------------------------------- checks (parent)


def _same(a: Any, b: Any) -> bool:
    return np.array_equal(a.numpy(), b.numpy(), equal_nan=True)


def check_run(ranks: list[dict]) -> list[tuple[str, bool, str]]:
    """Checks of one run from the ranks' logs: (name, passed, detail)."""
    import torch

    results: list[tuple[str, bool, str]] = []
    epochs = [log["epoch"] for log in ranks[0]["epochs"]]
    same_keep = all(
        torch.equal(ranks[0]["epochs"][k]["order"], r["epochs"][k]["order"])
        for r in ranks[1:]
        for k in range(len(epochs))
    )
    sizes = [int(log["order"].numel()) for log in ranks[0]["epochs"]]
    results.append(
        ("identical keep sets on every rank", same_keep, f"epochs {epochs}, kept {sizes}")
    )

    once, pads, details = True, [], []
    for k in range(len(epochs)):
        order = ranks[0]["epochs"][k]["order"]
        n = order.numel()
        pad = -(-n // WORLD) * WORLD - n
        visited = torch.cat([r["epochs"][k]["visited"] for r in ranks])
        expected = torch.cat([order, order[:pad]])
        ok = torch.equal(visited.sort().values, expected.sort().values)
        shared = set(ranks[0]["epochs"][k]["visited"].tolist())
        for r in ranks[1:]:
            shared &= set(r["epochs"][k]["visited"].tolist())
        ok = ok and shared == set(order[:pad].tolist())
        once = once and ok
        pads.append(pad)
        details.append(f"{int(visited.numel())} visits for {n} kept")
    results.append(
        (
            "each kept molecule visited exactly once per epoch (padding: the order's first "
            "index visited by both ranks when the keep set is odd)",
            once,
            f"{'; '.join(details)}; padded {pads}",
        )
    )

    scored_once = True
    for r in ranks:
        before = torch.zeros_like(r["epochs"][0]["num_updates"])
        for k, log in enumerate(r["epochs"]):
            kept = torch.zeros_like(before, dtype=torch.bool)
            kept[log["order"]] = True
            delta = log["num_updates"] - before
            scored_once = scored_once and bool((delta == kept.long()).all())
            scored_once = scored_once and bool((log["last_epoch"][kept] == epochs[k]).all())
            before = log["num_updates"]
    results.append(
        (
            "every kept molecule scored once per epoch on every rank (scores summed across ranks)",
            scored_once,
            "num_updates +1 for kept molecules, +0 for the others; last_epoch = epoch",
        )
    )
    same_table = all(
        _same(ranks[0]["epochs"][k][column], r["epochs"][k][column])
        for r in ranks[1:]
        for k in range(len(epochs))
        for column in ("score", "online_loss", "reference_loss", "num_updates")
    )
    results.append(
        (
            "score table identical on all ranks after every commit",
            same_table,
            "score, losses, counts",
        )
    )
    return results


def check_resume(full: list[dict], resumed: list[dict], after: int) -> tuple[str, bool, str]:
    """The restarted run against the uninterrupted one (rank 0; ranks agree by check_run)."""
    import torch

    straight = [log for log in full[0]["epochs"] if log["epoch"] > after]
    again = resumed[0]["epochs"]
    ok = [log["epoch"] for log in straight] == [log["epoch"] for log in again]
    ok = ok and all(
        torch.equal(a["order"], b["order"])
        and all(
            _same(a[c], b[c]) for c in ("score", "online_loss", "reference_loss", "num_updates")
        )
        for a, b in zip(straight, again, strict=True)
    )
    ok = ok and torch.equal(full[0]["selection"], resumed[0]["selection"])
    epochs = [log["epoch"] for log in again]
    return (
        f"resume exact (restart after epoch {after})",
        ok,
        f"epochs {epochs}: keep sets, score tables and the next selection equal to the "
        "uninterrupted run",
    )


# ---------------------------------------------------------------------------- parent


def launch(
    args: argparse.Namespace, data: Path, fps: Path | None, out: Path, resume: Path | None
) -> str:
    """Run ``torchrun`` with the worker of ``args.path``; return the command (as run)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={WORLD}", str(Path(__file__).resolve()), "--worker",
        "--path", args.path, "--data", str(data), "--out", str(out),
        "--epochs", str(args.epochs), "--resume-after", str(args.resume_after),
        "--batch-size", str(args.batch_size), "--prune-ratio", str(args.prune_ratio),
        "--seed", str(args.seed),
    ]  # fmt: skip
    if fps is not None:
        cmd += ["--fingerprints", str(fps)]
    if resume is not None:
        cmd += ["--resume-from", str(resume)]
    if all((out / f"rank{r}.pt").is_file() for r in range(WORLD)):
        print(f"reusing {out}", flush=True)
        return " ".join(cmd)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    return " ".join(cmd)


def _load(out: Path) -> list[dict]:
    import torch

    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _git_commit() -> str:
    """The checked-out commit, ``-dirty`` when tracked code differs from it (results aside)."""
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    code = ["git", "diff", "--quiet", "HEAD", "--", ".", ":!benchmarks/results"]
    dirty = subprocess.run(code, cwd=ROOT).returncode != 0
    return (proc.stdout.strip() or "unknown") + ("-dirty" if dirty else "")


def _machine() -> str:
    import torch

    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU; Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )


def write_markdown() -> None:
    """``distributed.md`` from the latest run of each path in ``distributed.csv``."""
    import pandas as pd

    from molpeg_plugins.pipeline.atomic import write_text

    frame = pd.read_csv(RESULTS / "distributed.csv", dtype={"commit": str})
    rows = int(frame.molecules.iloc[-1])
    parts = [
        "### Across processes: two ranks with `torchrun` (gloo, CPU)\n",
        f"Data: the first {rows:,} molecules of MOSES (`moses_train_250k_seed0.csv.gz`) with "
        "RDKit's MolLogP as a regression label; MolPeg at 60% pruned (one warm-up epoch); "
        "two processes on one machine, one thread each. When the number of molecules or the "
        "keep set is odd, the sampler pads the order (checked below). Each path runs "
        "twice: uninterrupted, and restarted from the checkpoint written after epoch 1. The "
        "two-GPU variant was not run: no machine with two GPUs was available.\n",
    ]
    names = {
        "torch": "Plain PyTorch (`Pruner` + `EMAReference`, `FingerprintMLP` in "
        "`DistributedDataParallel`, batch {batch})",
        "chemprop": 'Chemprop (`MolPegCallback`, Lightning `Trainer(strategy="ddp", '
        "devices=2)`, Chemprop MPNN d_h=64 depth 3, batch {batch}; the wall time includes "
        "Chemprop's featurisation of each batch)",
    }
    for path in ("torch", "chemprop"):
        sub = frame[frame.path == path]
        if sub.empty:
            continue
        sub = sub[sub.date == sub.date.max()]
        first = sub.iloc[0]
        batch = first.launch.split("--batch-size ")[1].split()[0]
        parts.append(f"#### {names[path].format(batch=batch)}\n")
        launch = first.launch.split(" -m torch.distributed.run ")[1].split(" --path")[0]
        launch = launch.replace(str(ROOT) + "/", "")
        parts.append(
            f"Machine: {first.machine}. Commit {first.commit}, {first.date}. Command: "
            f"`{first.command}`, which runs `torchrun {launch} --path {path} …` for the "
            "uninterrupted run and again with `--resume-from` for the restart.\n"
        )
        parts.append("| check | result | detail |\n|---|---|---|")
        for row in sub[sub.kind == "check"].itertuples():
            parts.append(f"| {row.name} | {row.value} | {row.detail} |")
        timing = sub[sub.kind == "epoch_wall_s"]
        if len(timing):
            parts.append(
                "\n| epoch | molecules trained | wall time (s), slowest rank "
                "| load average (1 min) |"
            )
            parts.append("|---|---|---|---|")
            for row in timing.itertuples():
                parts.append(
                    f"| {row.name} | {row.detail} | {float(row.value):.1f} | {row.load1:.1f} |"
                )
        parts.append(
            "\nThe machine's two cores were shared with other jobs: wall times are for "
            "orientation only, not a speed measurement.\n"
        )
    write_text(RESULTS / "distributed.md", "\n".join(parts) + "\n")


def parent(args: argparse.Namespace) -> None:
    """Prepare, launch both runs, check, append the results."""
    commit = _git_commit()  # what the run starts from
    data, fps = prepare_data(args.rows, fingerprints=args.path == "torch")
    base = WORK / f"{args.path}_{args.rows}"
    full_out, resumed_out = base / "full", base / "resumed"
    command = launch(args, data, fps, full_out, None)
    launch(args, data, fps, resumed_out, full_out / "checkpoint")
    full, resumed = _load(full_out), _load(resumed_out)
    checks = [*check_run(full), check_resume(full, resumed, args.resume_after)]
    again = check_run(resumed)  # its first epoch continues a table: no "scored once" check
    checks += [
        (f"restarted run: {name}", ok, detail) for name, ok, detail in again if "scored" not in name
    ]
    if args.path == "chemprop":
        served = all(all(r["served_pruning_sampler"]) for r in full + resumed)
        checks.append(
            (
                "Lightning trained on the pruning sampler (use_distributed_sampler=True left on)",
                served,
                "trainer.train_dataloader.sampler is the pruner's sampler every epoch, every rank",
            )
        )
        mismatches = sum(r["label_mismatches"] for r in full + resumed)
        checks.append(
            (
                "delivered batches are the recorded molecules",
                mismatches == 0,
                f"{mismatches} labels differ from the recorded indices' labels",
            )
        )
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    common = {
        "date": date,
        "commit": commit,
        "machine": _machine(),
        "path": args.path,
        "molecules": args.rows,
        "epochs": args.epochs,
        "command": " ".join(["python", "benchmarks/bench_distributed.py", *sys.argv[1:]]),
        "launch": command,
    }
    load1 = float(np.mean([log["load1"] for log in full[0]["epochs"]]))
    rows = [
        {**common, "kind": "check", "name": name, "value": "PASS" if ok else "FAIL",
         "detail": detail, "load1": f"{load1:.2f}"}
        for name, ok, detail in checks
    ]  # fmt: skip
    for k, log in enumerate(full[0]["epochs"]):
        wall = max(r["epochs"][k]["wall"] for r in full)
        rows.append(
            {**common, "kind": "epoch_wall_s", "name": str(log["epoch"]), "value": f"{wall:.2f}",
             "detail": str(int(log["order"].numel())), "load1": f"{log['load1']:.2f}"}
        )  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "distributed.csv"  # appended: earlier runs stay
    new = not path.is_file()
    with path.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
    write_markdown()
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({detail})")
    if not all(ok for _, ok, _ in checks):
        raise SystemExit(1)


def main() -> None:
    """Parse the command line; run the parent, or a worker under torchrun."""
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=("torch", "chemprop"), required=True)
    parser.add_argument("--rows", type=int, default=100_003, help="MOSES molecules")
    parser.add_argument("--epochs", type=int, default=None, help="default: torch 4, chemprop 3")
    parser.add_argument("--resume-after", type=int, default=1, help="restart after this epoch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--prune-ratio", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the CSV/md go")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--fingerprints", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--resume-from", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs is None:
        args.epochs = 4 if args.path == "torch" else 3
    if not args.worker:
        RESULTS = args.results
        parent(args)
    elif args.path == "torch":
        torch_worker(args)
    else:
        chemprop_worker(args)


if __name__ == "__main__":
    main()
