"""Two real CPU processes (gloo): identical keep sets, every kept index visited exactly once."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from molpeg_plugins import Pruner

N, EPOCHS, WORLD = 64, 4, 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(epoch)
    return torch.rand(N, generator=g), torch.rand(N, generator=g)


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        pruner = Pruner(N, prune_ratio=0.5, total_epochs=EPOCHS, seed=7)
        loader = DataLoader(torch.arange(N), batch_size=5, sampler=pruner.sampler)
        log = []
        for epoch in range(EPOCHS):
            online, reference = _losses(epoch)
            visited = []
            for idx in loader:  # each rank records only the samples of its own shard
                pruner.record(idx, online[idx], reference[idx])
                visited.extend(idx.tolist())
            log.append({"kept": pruner.current.indices.tolist(), "visited": visited})
            pruner.end_epoch()
        log.append({"scores": pruner.book.score.tolist()})
        out[rank] = log
    finally:
        dist.destroy_process_group()


def test_two_ranks_share_keep_sets_and_split_them_exactly() -> None:
    manager = mp.Manager()
    out = manager.dict()
    mp.start_processes(_worker, args=(_free_port(), out), nprocs=WORLD, start_method="spawn")
    rank0, rank1 = out[0], out[1]
    for epoch in range(EPOCHS):
        kept0, kept1 = rank0[epoch]["kept"], rank1[epoch]["kept"]
        assert kept0 == kept1, f"epoch {epoch}: ranks chose different keep sets"
        v0, v1 = rank0[epoch]["visited"], rank1[epoch]["visited"]
        assert not set(v0) & set(v1), f"epoch {epoch}: a sample was visited by both ranks"
        assert sorted(v0 + v1) == sorted(kept0), f"epoch {epoch}: not every kept sample once"
    assert len(rank0[1]["kept"]) == N // 2  # epoch 1 is pruned (epoch 0 is warm-up)
    # Scores were gathered across ranks: both tables are complete and identical.
    assert rank0[-1]["scores"] == rank1[-1]["scores"]
    online, reference = _losses(0)
    expected = (online - reference).abs()
    never_rescored = [
        i for i in range(N) if all(i not in rank0[e]["kept"] for e in range(1, EPOCHS))
    ]
    for i in never_rescored:
        assert abs(rank0[-1]["scores"][i] - expected[i].item()) < 1e-6
