"""Dynamic strategies on real molecules: each checks the property that defines it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _strategy_molecules import TinyNet, molecules, ranks_apart, sample_loss, single_thread, train

from molpeg_plugins import Pruner
from molpeg_plugins.engine.config import num_kept
from molpeg_plugins.engine.scorebook import ScoreBook
from molpeg_plugins.engine.scoring import ema_update_
from molpeg_plugins.engine.strategies.dynamic import UCB, EpsilonGreedy, InfoBatch
from molpeg_plugins.errors import ConfigError


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with single_thread():
        yield


def test_molpeg_keeps_the_largest_loss_discrepancy_by_dataset_index() -> None:
    data = molecules("bbbp")
    n = len(data)
    torch.manual_seed(0)
    online = TinyNet(1)
    reference = TinyNet(1)
    reference.load_state_dict(online.state_dict())
    opt = torch.optim.Adam(online.parameters(), lr=3e-3)
    pruner = Pruner(n, strategy="molpeg", prune_ratio=0.6, warmup_epochs=1, total_epochs=3)
    for _ in range(2):
        delta = torch.full((n,), float("nan"))
        pruner.start_epoch()
        order = torch.tensor(list(pruner.sampler))
        for idx in order.split(64):
            loss = sample_loss(online, data, idx)
            with torch.no_grad():
                ref = sample_loss(reference, data, idx)
            delta[idx] = (loss.detach() - ref).abs()
            opt.zero_grad()
            pruner.loss(idx, loss, ref).backward()
            opt.step()
            ema_update_(reference, online, 0.5)
        selection = pruner.end_epoch()
        # Samples not visited this epoch keep their previous score.
        score = torch.where(torch.isnan(delta), pruner.book.score, delta).numpy()
        kept = selection.indices.numpy()
        assert kept.size == pruner.num_kept
        lowest_kept, highest_dropped = ranks_apart(kept, score)
        assert lowest_kept >= highest_dropped


def test_soft_random_draws_a_fresh_subset_every_epoch() -> None:
    run = train(molecules("esol"), "soft-random", epochs=4, warmup=0, prune_ratio=0.5)
    pruner = run.pruner
    n, k = len(run.data), pruner.num_kept
    subsets = [
        set(torch.nonzero(~torch.isnan(s["predictions"][:, 0])).flatten().tolist())
        for s in run.seen
    ]
    assert all(len(s) == k for s in subsets)
    assert len({frozenset(s) for s in subsets}) == 4
    overlap = len(subsets[1] & subsets[2]) / k
    assert abs(overlap - k / n) < 0.1  # independent draws overlap by about k/N


def test_infobatch_rescales_kept_low_loss_samples_and_anneals() -> None:
    data = molecules("bbbp")
    epochs = 8
    run = train(data, "infobatch", epochs=epochs, warmup=1, prune_ratio=0.3)
    pruner = run.pruner
    # InfoBatch prunes while epoch < 0.875·E: E=8 anneals 8 − ceil(7.0) = 1 epoch.
    assert pruner.anneal_epochs == epochs - math.ceil(0.875 * epochs) == 1
    pruned = [h["num_kept"] < len(data) for h in pruner.history]
    assert pruned == [False] + [True] * 6 + [False]
    # Re-select from the final losses and check the rescaling rule.
    book = pruner.book
    loss = book.score
    low = loss < loss[torch.isfinite(loss)].mean()
    k = pruner.num_kept
    sel = pruner.strategy.select(book, k, epoch=3, generator=torch.Generator().manual_seed(0))
    drop = len(data) - k
    assert int(low.sum()) >= drop
    kept_low = low[sel.indices]
    assert sel.indices.numel() == k
    assert bool(kept_low.sum() == low.sum() - drop)  # every dropped sample is a low-loss one
    factor = 1.0 / (1.0 - drop / float(low.sum()))
    torch.testing.assert_close(
        sel.weights[kept_low], torch.full_like(sel.weights[kept_low], factor)
    )
    assert bool((sel.weights[~kept_low] == 1).all())
    # The expected gradient is kept: weighted count of the low-loss group is unchanged.
    assert float(sel.weights[kept_low].sum()) == pytest.approx(float(low.sum()))
    # Annealing: the last epoch visited everything with weight 1.
    assert bool(torch.isfinite(run.seen[-1]["predictions"]).all())
    assert bool((pruner.current.weights == 1).all())


def test_infobatch_original_budget_drops_with_probability_r_and_weights_one_over_one_minus_r():
    data = molecules("bbbp")
    run = train(data, "infobatch", epochs=2, warmup=1, prune_ratio=0.5)
    book = run.pruner.book
    strategy = InfoBatch(budget="original", prune_ratio=0.5)
    sel = strategy.select(book, 1, epoch=1, generator=torch.Generator().manual_seed(0))
    low = book.score < book.score.mean()
    kept_low = low[sel.indices]
    assert int((~low).sum()) == int((~kept_low).sum())  # high-loss samples are all kept
    assert abs(int(kept_low.sum()) / int(low.sum()) - 0.5) < 0.08
    torch.testing.assert_close(sel.weights[kept_low], torch.full_like(sel.weights[kept_low], 2.0))


def test_ucb_keeps_unseen_samples_first_then_the_upper_bound() -> None:
    data = molecules("esol")
    n = len(data)
    run = train(data, "ucb", epochs=2, warmup=0, prune_ratio=0.3)
    pruner = run.pruner
    # Epoch 0 kept 70% (all unscored, random); epoch 1 must keep every never-seen sample.
    seen0 = torch.isfinite(run.seen[0]["predictions"][:, 0])
    seen1 = torch.isfinite(run.seen[1]["predictions"][:, 0])
    assert int(seen0.sum()) == int(seen1.sum()) == num_kept(n, 0.3)
    assert bool(seen1[~seen0].all())
    # Once all are seen, the keep set is the top of mean + c·sqrt(2 ln t / n_i).
    book = pruner.book
    sel = pruner.strategy.select(book, 200, epoch=2, generator=torch.Generator().manual_seed(0))
    bound = book.loss_mean + torch.sqrt(2 * math.log(3) / book.num_updates.clamp(min=1))
    assert bool((book.num_updates > 0).all())
    lowest_kept, highest_dropped = ranks_apart(sel.indices.numpy(), bound.numpy())
    assert lowest_kept >= highest_dropped - 1e-6
    with pytest.raises(ConfigError, match="exploration"):
        UCB(exploration=-1.0)


def test_epsilon_greedy_explores_exactly_the_random_fraction() -> None:
    data = molecules("bbbp")
    run = train(
        data,
        "epsilon-greedy",
        epochs=2,
        warmup=1,
        prune_ratio=0.6,
        strategy_options={"epsilon": 0.25},
    )
    book = run.pruner.book
    k = run.pruner.num_kept
    n_random = math.floor(0.25 * k + 0.5)
    greedy_order = torch.argsort(book.loss_mean, descending=True)
    greedy = set(greedy_order[: k - n_random].tolist())
    explored_from_top = []
    for seed in range(20):
        sel = run.pruner.strategy.select(
            book, k, epoch=1, generator=torch.Generator().manual_seed(seed)
        )
        kept = set(sel.indices.tolist())
        assert len(kept) == k
        assert greedy <= kept
        explored = kept - greedy
        assert len(explored) == n_random
        rest = greedy_order[k - n_random :].tolist()
        explored_from_top.append(len(explored & set(rest[:n_random])) / n_random)
    # Uniform exploration: the explored ones are not just the next-best samples.
    assert np.mean(explored_from_top) < 0.5
    with pytest.raises(ConfigError, match="epsilon"):
        EpsilonGreedy(epsilon=1.5)


def test_dynamic_scores_land_on_dataset_indices_under_shuffled_batches() -> None:
    data = molecules("tox21")
    n = len(data)
    model = train(data, "soft-random", epochs=1, warmup=1, prune_ratio=0.0).model
    with torch.no_grad():
        truth = sample_loss(model, data, torch.arange(n))
    book = ScoreBook(n)
    for idx in torch.randperm(n, generator=torch.Generator().manual_seed(3)).split(29):
        with torch.no_grad():
            book.record(idx, sample_loss(model, data, idx))
    book.commit(0, lambda online, reference: online)
    torch.testing.assert_close(book.score, torch.nan_to_num(truth, nan=0.0))
