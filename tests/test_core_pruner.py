"""Unit tests of the framework-free engine: rounding, selection, scores, weights, state."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from molpeg_plugins import (
    ConfigError,
    EMAReference,
    IndexedDataset,
    PruneConfig,
    Pruner,
    SamplerError,
    masked_sample_loss,
    num_kept,
)


def fixed_losses(n: int, epoch: int = 0) -> torch.Tensor:
    """A loss per dataset index that differs for every index (and epoch)."""
    return torch.linspace(0.0, 1.0, n) * (epoch + 1) + 0.01 * torch.arange(n) % 0.37


def run_epoch(pruner: Pruner, online: torch.Tensor, reference: torch.Tensor, bs: int = 7) -> list:
    """Visit the pruner's sampler in batches and record the given per-index losses."""
    seen = []
    loader = DataLoader(torch.arange(pruner.num_samples), batch_size=bs, sampler=pruner.sampler)
    for idx in loader:
        pruner.record(idx, online[idx], reference[idx])
        seen.extend(idx.tolist())
    return seen


@pytest.mark.parametrize(
    ("n", "r", "expected"),
    [(100, 0.6, 40), (5, 0.5, 2), (10, 0.25, 7), (103, 0.6, 41), (7, 0.0, 7), (3, 0.99, 1)],
)
def test_keep_count_rounds_removed_half_up(n: int, r: float, expected: int) -> None:
    assert num_kept(n, r) == expected == max(1, n - math.floor(r * n + 0.5))
    pruner = Pruner(n, prune_ratio=r, warmup_epochs=0, strategy="soft-random")
    assert pruner.current.indices.numel() == expected
    assert len(pruner.sampler) == expected


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_out_of_range_ratio_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="prune_ratio"):
        PruneConfig(prune_ratio=bad)


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"Did you mean 'molpeg'.*soft-random"):
        Pruner(10, strategy="molpegg")


def test_scores_land_on_dataset_index_under_shuffled_loader() -> None:
    """A shuffled DataLoader (not the pruner's sampler) still files losses by dataset index."""
    n = 57
    truth = fixed_losses(n)
    reference = torch.zeros(n)
    features = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    dataset = IndexedDataset(TensorDataset(features))
    pruner = Pruner(n, prune_ratio=0.5)
    loader = DataLoader(
        dataset, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3)
    )
    for idx, (x,) in loader:
        # The loss is computed from the *sample content*, never from its batch position.
        online = truth[x.squeeze(1).long()]
        pruner.record(idx, online, reference[idx])
    pruner.end_epoch()
    torch.testing.assert_close(pruner.book.online_loss, truth)
    torch.testing.assert_close(pruner.book.score, truth.abs())


def test_molpeg_keeps_largest_discrepancy_after_warmup() -> None:
    n = 40
    online, reference = torch.rand(n, generator=torch.Generator().manual_seed(0)), torch.zeros(n)
    reference[::2] = online[::2] - 0.001  # even indices: tiny |Δ|
    pruner = Pruner(n, prune_ratio=0.5, warmup_epochs=1, total_epochs=3)
    assert pruner.current.indices.numel() == n  # warm-up: everything
    run_epoch(pruner, online, reference)
    selection = pruner.end_epoch()
    assert selection.pruned
    assert sorted(selection.indices.tolist()) == list(range(1, n, 2))


def test_only_kept_samples_are_rescored() -> None:
    n = 20
    pruner = Pruner(n, prune_ratio=0.5, warmup_epochs=1)
    run_epoch(pruner, fixed_losses(n), torch.zeros(n))
    pruner.end_epoch()
    before = pruner.book.score.clone()
    kept = pruner.current.indices
    seen = run_epoch(pruner, fixed_losses(n, 1), torch.zeros(n))
    assert sorted(seen) == sorted(kept.tolist())
    pruner.end_epoch()
    dropped = torch.ones(n, dtype=torch.bool)
    dropped[kept] = False
    assert torch.equal(pruner.book.score[dropped], before[dropped])
    assert not torch.equal(pruner.book.score[kept], before[kept])
    assert pruner.book.last_epoch[kept].eq(1).all() and pruner.book.last_epoch[dropped].eq(0).all()


@pytest.mark.parametrize("wrong", ["training set", "wrapped sampler"])
def test_a_distributed_sampler_instead_of_the_pruning_sampler_is_refused(wrong: str) -> None:
    """A loader that does not draw from ``pruner.sampler`` trains on samples the pruner did
    not select; the first pruned epoch ends with a SamplerError naming the first of them."""
    from torch.utils.data import DistributedSampler

    n = 20
    pruner = Pruner(n, prune_ratio=0.5, warmup_epochs=1, num_replicas=2, rank=0)
    run_epoch(pruner, fixed_losses(n), torch.zeros(n))  # warm-up: every sample, fine
    pruner.end_epoch()
    kept = set(pruner.current.indices.tolist())
    source = torch.arange(n) if wrong == "training set" else pruner.sampler
    sampler = DistributedSampler(source, num_replicas=2, rank=0, shuffle=False)
    trained = list(sampler)
    for i in trained:
        pruner.record(torch.tensor([i]), torch.tensor([0.5]), torch.tensor([0.4]))
    stray = sorted(set(trained) - kept)
    assert stray  # the shards are not the selection
    with pytest.raises(SamplerError, match=rf"{len(stray)} of the .* index {stray[0]}\b"):
        pruner.end_epoch()


def test_the_pruning_sampler_under_any_shard_passes_the_selection_check() -> None:
    for rank in (0, 1, 2):
        pruner = Pruner(23, prune_ratio=0.6, warmup_epochs=1, num_replicas=3, rank=rank)
        for epoch in range(3):
            run_epoch(pruner, fixed_losses(23, epoch), torch.zeros(23))
            pruner.end_epoch()
        assert pruner.epoch == 3


def test_warmup_and_anneal_epochs_use_all_samples() -> None:
    n, epochs = 30, 6
    pruner = Pruner(n, prune_ratio=0.6, warmup_epochs=2, anneal_epochs=1, total_epochs=epochs)
    sizes = []
    for epoch in range(epochs):
        sizes.append(len(run_epoch(pruner, fixed_losses(n, epoch), torch.zeros(n))))
        pruner.end_epoch()
    assert sizes == [30, 30, 12, 12, 12, 30]


def test_same_seed_same_keep_sets_and_other_seed_differs() -> None:
    def keep_sets(seed: int) -> list[list[int]]:
        pruner = Pruner(50, prune_ratio=0.6, strategy="soft-random", seed=seed, total_epochs=4)
        out = []
        for epoch in range(4):
            out.append(run_epoch(pruner, fixed_losses(50, epoch), torch.zeros(50)))
            pruner.end_epoch()
        return out

    assert keep_sets(1) == keep_sets(1)
    assert keep_sets(1) != keep_sets(2)


@pytest.mark.parametrize(
    "strategy", ["molpeg", "soft-random", "infobatch", "ucb", "epsilon-greedy"]
)
def test_state_dict_round_trip_resumes_exactly(strategy: str) -> None:
    n, epochs = 45, 6

    def losses(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return fixed_losses(n, epoch), fixed_losses(n, epoch).flip(0) * 0.5

    straight = Pruner(n, prune_ratio=0.6, strategy=strategy, total_epochs=epochs, seed=4)
    resumed = Pruner(n, prune_ratio=0.6, strategy=strategy, total_epochs=epochs, seed=4)
    for epoch in range(epochs):
        if epoch == 3:  # "crash" and resume from the epoch-boundary state
            state = straight.state_dict()
            resumed = Pruner(n, prune_ratio=0.6, strategy=strategy, total_epochs=epochs, seed=4)
            resumed.load_state_dict(state)
        seen = run_epoch(straight, *losses(epoch))
        straight.end_epoch()
        if epoch >= 3:
            assert run_epoch(resumed, *losses(epoch)) == seen
            resumed.end_epoch()
    assert torch.equal(straight.current.indices, resumed.current.indices)
    torch.testing.assert_close(straight.book.score, resumed.book.score, equal_nan=True)


def test_resume_refuses_different_options() -> None:
    state = Pruner(10, prune_ratio=0.5).state_dict()
    with pytest.raises(ConfigError, match="prune_ratio"):
        Pruner(10, prune_ratio=0.4).load_state_dict(state)


def test_rescale_weights_kept_samples_by_inverse_keep_fraction() -> None:
    n = 20
    pruner = Pruner(n, prune_ratio=0.75, warmup_epochs=1, rescale=True)
    assert pruner.weights(torch.arange(n)).eq(1).all()
    run_epoch(pruner, fixed_losses(n), torch.zeros(n))
    pruner.end_epoch()
    kept = pruner.current.indices
    torch.testing.assert_close(pruner.weights(kept), torch.full((kept.numel(),), n / 5))
    online = torch.ones(kept.numel(), requires_grad=True)
    loss = pruner.loss(kept, online, torch.zeros(kept.numel()))
    assert loss.item() == pytest.approx(n / 5)


def test_masked_tasks_do_not_contribute() -> None:
    unreduced = torch.tensor([[1.0, 100.0, 3.0], [float("nan"), 2.0, 4.0], [5.0, 6.0, 7.0]])
    mask = torch.tensor([[1, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=torch.bool)
    per_sample = masked_sample_loss(unreduced, mask)
    torch.testing.assert_close(per_sample[:2], torch.tensor([2.0, 3.0]))
    assert math.isnan(per_sample[2].item())
    # A molecule without labels teaches nothing: it is scored 0 (pruned first), not "unscored".
    pruner = Pruner(3, prune_ratio=0.5)
    pruner.record(torch.arange(3), per_sample, torch.zeros(3))
    pruner.end_epoch()
    assert pruner.book.score.tolist() == [2.0, 3.0, 0.0]


def test_loss_ignores_unlabelled_samples_and_keeps_gradient() -> None:
    pruner = Pruner(3, prune_ratio=0.0)
    online = torch.tensor([2.0, float("nan"), 4.0], requires_grad=True)
    loss = pruner.loss(torch.arange(3), online, torch.zeros(3))
    loss.backward()
    assert loss.item() == pytest.approx(3.0)
    assert online.grad.tolist()[0] == pytest.approx(0.5) and online.grad.tolist()[1] == 0.0


def test_ema_update_matches_hand_computation() -> None:
    torch.manual_seed(0)
    online = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    reference = EMAReference(online, momentum=0.25)
    xi0 = {k: v.clone() for k, v in reference.module.state_dict().items()}
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online.train()(torch.randn(8, 3))  # moves the batch-norm running statistics
    reference.update(online)
    theta = online.state_dict()
    for name, value in reference.module.state_dict().items():
        if name in dict(online.named_parameters()):
            expected = 0.25 * xi0[name] + 0.75 * theta[name]
        else:  # buffers follow the online model
            expected = theta[name]
        torch.testing.assert_close(value, expected)
    assert not any(p.requires_grad for p in reference.module.parameters())


def test_ema_parameter_subset_copies_the_rest() -> None:
    online = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    reference = EMAReference(online, momentum=0.5, parameters=r"^0\.")
    before = {k: v.clone() for k, v in reference.module.state_dict().items()}
    with torch.no_grad():
        for p in online.parameters():
            p.mul_(3.0)
    reference.update(online)
    state = reference.module.state_dict()
    torch.testing.assert_close(state["0.weight"], 0.5 * before["0.weight"] + 0.5 * online[0].weight)
    torch.testing.assert_close(state["1.weight"], online[1].weight.detach())


def test_reference_runs_in_eval_mode_without_grad() -> None:
    online = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.9))
    reference = EMAReference(online)
    x = torch.ones(2, 4)
    out = reference(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, reference(x))  # no dropout noise


def test_infobatch_is_built_with_the_run_prune_ratio_unless_given_one() -> None:
    """The pruner passes its ratio as InfoBatch's ``prune_ratio`` option at construction."""
    from molpeg_plugins.engine.strategies.dynamic import InfoBatch

    options = {"budget": "original"}
    pruner = Pruner(
        50, PruneConfig(prune_ratio=0.3, strategy_options=options), strategy="infobatch"
    )
    assert pruner.strategy.settings == {"budget": "original", "prune_ratio": 0.3}
    assert options == {"budget": "original"}  # the config's options are not changed
    given = {"budget": "original", "prune_ratio": 0.5}
    pruner = Pruner(50, PruneConfig(prune_ratio=0.3, strategy_options=given), strategy="infobatch")
    assert pruner.strategy.settings["prune_ratio"] == 0.5
    built = InfoBatch(budget="original", prune_ratio=0.2)
    assert Pruner(50, prune_ratio=0.3, strategy=built).strategy.settings["prune_ratio"] == 0.2
    assert "prune_ratio" not in Pruner(50, prune_ratio=0.3, strategy="molpeg").strategy.settings


@pytest.mark.parametrize(
    ("replicas", "drop_last"), [(None, False), (3, False), (3, True), (4, False)]
)
def test_sampler_indices_are_what_iterating_yields(replicas, drop_last):
    """``indices()``, the array a batching loop slices, is the sampler's order for each rank."""
    from molpeg_plugins.engine.sampler import PruningSampler

    order = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    for rank in range(replicas or 1):
        sampler = PruningSampler(
            order, num_replicas=replicas, rank=None if replicas is None else rank,
            drop_last=drop_last,
        )  # fmt: skip
        assert sampler.indices().dtype == torch.int64
        assert sampler.indices().tolist() == list(sampler)
        assert len(sampler.indices()) == len(sampler)
