"""Two real gloo processes train a DDP model on real molecules with the plain-PyTorch loop.

The tutorial's loop (``Pruner``, ``EMAReference``, the pruner's sampler in a ``DataLoader``)
around a ``FingerprintMLP`` in ``DistributedDataParallel``, on 303 ESOL molecules (odd, and
so is the 60%-pruned keep set of 121: every epoch is padded). Each rank runs three epochs
straight, saving a checkpoint after epoch 1 (rank 0's shared state, each rank's RNG), then
restarts from it; the restarted epoch must equal the straight one exactly.
"""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from molpeg_plugins import EMAReference, IndexedDataset, Pruner, num_kept
from molpeg_plugins.pipeline.torch_backend import FingerprintMLP, morgan_fingerprints
from molpeg_plugins.pipeline.training import capture_rng, restore_rng

DATA = Path(__file__).parent / "data"
N, EPOCHS, WORLD, RESUME_AFTER, RATIO = 303, 3, 2, 1, 0.6
TARGET = "measured log solubility in mols per litre"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(x: torch.Tensor, y: torch.Tensor, rank: int, resume: dict | None) -> tuple[list, dict]:
    """Train from scratch (or from ``resume``); return the epochs' logs and the checkpoint."""
    train_set = IndexedDataset(TensorDataset(x, y))
    torch.manual_seed(0)
    net = FingerprintMLP(x.shape[1], 1, hidden=32, dropout=0.2)
    model = DistributedDataParallel(net)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pruner = Pruner(N, prune_ratio=RATIO, total_epochs=EPOCHS, seed=3)
    reference = EMAReference(net, momentum=0.5)
    loader = DataLoader(train_set, batch_size=32, sampler=pruner.sampler)
    if resume is not None:
        shared = torch.load(io.BytesIO(resume["shared"]), weights_only=True)
        net.load_state_dict(shared["model"])
        optimizer.load_state_dict(shared["optimizer"])
        pruner.load_state_dict(shared["pruner"])
        reference.load_state_dict(shared["reference"])
        restore_rng(resume["rng"][rank])
    logs, checkpoint = [], {}
    for epoch in range(pruner.epoch, EPOCHS):
        order, visited = pruner.current.indices.clone(), []
        for batch, (index, (xb, yb)) in enumerate(loader):
            online = (model(xb).squeeze(1) - yb) ** 2
            due = pruner.reference_due(batch, reference)
            ref = (reference(xb).squeeze(1) - yb) ** 2 if due else None
            loss = pruner.loss(index, online, ref)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            reference.update(net)
            visited.extend(index.tolist())
        pruner.end_epoch()
        book = pruner.book
        logs.append(
            {
                "order": order.tolist(),
                "visited": visited,
                "score": book.score.clone(),
                "num_updates": book.num_updates.clone(),
                "last_epoch": book.last_epoch.clone(),
                "weights": [p.detach().clone() for p in net.parameters()],
            }
        )
        if epoch == RESUME_AFTER and resume is None:
            shared = io.BytesIO()
            torch.save(
                {
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "pruner": pruner.state_dict(),
                    "reference": reference.state_dict(),
                },
                shared,
            )
            checkpoint = {"shared": shared.getvalue(), "rng": capture_rng()}
    return logs, checkpoint


def _worker(rank: int, port: int, x: torch.Tensor, y: torch.Tensor, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        straight, checkpoint = _run(x, y, rank, None)
        rngs: list = [None] * WORLD
        dist.all_gather_object(rngs, checkpoint["rng"])
        shared = [checkpoint["shared"] if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)  # every rank restarts from rank 0's file
        resumed, _ = _run(x, y, rank, {"shared": shared[0], "rng": rngs})
        torch.save({"straight": straight, "resumed": resumed}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """What each of the two ranks logged (straight run, then restarted after epoch 1)."""
    frame = pd.read_csv(DATA / "esol_600.csv").head(N)
    x = torch.from_numpy(morgan_fingerprints(list(frame.smiles), bits=1024))
    y = torch.from_numpy(frame[TARGET].to_numpy(np.float32))
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(
        _worker, args=(_free_port(), x, y, str(out)), nprocs=WORLD, start_method="spawn"
    )
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_ranks_train_on_identical_keep_sets(ranks: list[dict]) -> None:
    sizes = [len(log["order"]) for log in ranks[0]["straight"]]
    assert sizes == [N, num_kept(N, RATIO), num_kept(N, RATIO)] == [303, 121, 121]
    for first, second in zip(ranks[0]["straight"], ranks[1]["straight"], strict=True):
        assert first["order"] == second["order"]


def test_each_kept_molecule_is_visited_once_and_only_the_padding_twice(ranks: list[dict]) -> None:
    for epoch, (first, second) in enumerate(
        zip(ranks[0]["straight"], ranks[1]["straight"], strict=True)
    ):
        order = first["order"]
        assert len(first["visited"]) == len(second["visited"]) == (len(order) + 1) // 2
        # the odd order is padded with its first index, which the second rank visits last
        assert sorted(first["visited"] + second["visited"]) == sorted(order + order[:1])
        assert set(first["visited"]) & set(second["visited"]) == {order[0]}, epoch
        assert second["visited"][-1] == order[0]


def test_scores_are_summed_across_ranks_and_counted_once(ranks: list[dict]) -> None:
    for rank in ranks:
        before = torch.zeros(N, dtype=torch.long)
        for epoch, log in enumerate(rank["straight"]):
            kept = torch.zeros(N, dtype=torch.long)
            kept[log["order"]] = 1
            # the padded duplicate (recorded by both ranks) is one update, not two
            assert torch.equal(log["num_updates"] - before, kept)
            assert (log["last_epoch"][kept.bool()] == epoch).all()
            before = log["num_updates"]
    for first, second in zip(ranks[0]["straight"], ranks[1]["straight"], strict=True):
        torch.testing.assert_close(first["score"], second["score"], rtol=0, atol=0, equal_nan=True)
        for a, b in zip(first["weights"], second["weights"], strict=True):
            assert torch.equal(a, b)  # DDP kept the replicas in step
    # the first batch of each rank went unscored (the reference had not moved yet); the
    # first pruned epoch kept and scored it, so every molecule has a score by the end
    assert torch.isnan(ranks[0]["straight"][0]["score"]).any()
    assert torch.isfinite(ranks[0]["straight"][-1]["score"]).all()


def test_restart_after_epoch_one_is_exact(ranks: list[dict]) -> None:
    for rank in ranks:
        (resumed,) = rank["resumed"]
        straight = rank["straight"][RESUME_AFTER + 1]
        assert resumed["order"] == straight["order"]
        assert resumed["visited"] == straight["visited"]
        torch.testing.assert_close(resumed["score"], straight["score"], rtol=0, atol=0)
        assert torch.equal(resumed["num_updates"], straight["num_updates"])
        for a, b in zip(resumed["weights"], straight["weights"], strict=True):
            assert torch.equal(a, b)
