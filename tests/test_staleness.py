"""Staleness statistics of a pruned epoch's keep set (score age, coverage, turnover)."""

from __future__ import annotations

import torch

from molpeg_plugins import Pruner


def test_score_age_coverage_and_turnover_of_each_keep_set() -> None:
    pruner = Pruner(4, prune_ratio=0.5, total_epochs=4, warmup_epochs=1, shuffle=False)
    # warm-up: every molecule scored, |online − reference| = 4, 3, 2, 1
    pruner.record(torch.arange(4), torch.tensor([4.0, 3.0, 2.0, 1.0]), torch.zeros(4))
    first = pruner.end_epoch()
    assert sorted(first.indices.tolist()) == [0, 1]
    assert first.stats["score_age_mean"] == 0.0 and first.stats["score_age_max"] == 0.0
    assert first.stats["visited_since_warmup"] == 0.0
    assert first.stats["keep_turnover"] == 0.0  # both were trained on in the warm-up

    # epoch 1 trains on 0 and 1, whose scores drop to 0: 2 and 3 (scored in epoch 0) come in
    pruner.record(torch.tensor([0, 1]), torch.zeros(2), torch.zeros(2))
    second = pruner.end_epoch()
    assert sorted(second.indices.tolist()) == [2, 3]
    assert second.stats["score_age_mean"] == 1.0 and second.stats["score_age_max"] == 1.0
    assert second.stats["visited_since_warmup"] == 0.5
    assert second.stats["keep_turnover"] == 1.0
    assert {"score_age_mean", "keep_turnover"} <= set(pruner.history[-1])


def test_unpruned_epochs_carry_no_staleness_statistics() -> None:
    pruner = Pruner(10, prune_ratio=0.0, total_epochs=2)
    pruner.record(torch.arange(10), torch.rand(10), torch.rand(10))
    selection = pruner.end_epoch()
    assert "keep_turnover" not in selection.stats and "score_age_mean" not in selection.stats
