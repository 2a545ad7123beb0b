"""Static strategies on real molecules: each checks the property that defines it.

A tiny MLP on RDKit Morgan fingerprints is trained through the core Pruner API with a
shuffled sampler (see ``_strategy_molecules``); the warm-up epochs are the proxy training.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _strategy_molecules import (
    masked_mean,
    molecules,
    outputs,
    ranks_apart,
    sample_loss,
    single_thread,
    train,
)
from scipy.stats import spearmanr

from molpeg_plugins import Pruner
from molpeg_plugins.engine.strategies.static import (
    EL2N,
    Entropy,
    Forgetting,
    GraNd,
    Herding,
    KMeansPrototypes,
    LeastConfidence,
    Margin,
    StaticStrategy,
    cluster_quotas,
    herd,
    herd_in_blocks,
)
from molpeg_plugins.errors import ConfigError
from molpeg_plugins.hookspecs import hookimpl
from molpeg_plugins.plugins import get_plugin_manager, make_plugin_manager


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with single_thread():
        yield


STATIC = [
    "hard-random",
    "el2n",
    "grand",
    "forgetting",
    "least-confidence",
    "entropy",
    "margin",
    "herding",
    "kmeans",
]
CLASSIFICATION_ONLY = {"forgetting", "least-confidence", "entropy", "margin"}


def last_warmup(run) -> dict[str, np.ndarray]:
    """Signals of the last warm-up epoch, by dataset index (recorded by the test loop)."""
    warmup = run.pruner.config.warmup_epochs
    return {k: v.numpy() for k, v in run.seen[warmup - 1].items()}


def test_all_static_strategies_are_registered_with_their_tasks() -> None:
    registry = get_plugin_manager().strategies()
    for name in STATIC:
        cls = registry[name]
        assert cls.dynamic is False
        expected = (
            {"classification"}
            if name in CLASSIFICATION_ONLY
            else {
                "classification",
                "regression",
            }
        )
        assert set(cls.tasks) == expected, name


@pytest.mark.parametrize("name", sorted(CLASSIFICATION_ONLY))
def test_classification_only_strategies_refuse_regression(name: str) -> None:
    with pytest.raises(ConfigError, match="regression"):
        Pruner(100, strategy=name, warmup_epochs=2, task="regression")


def test_unknown_task_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown task type"):
        Pruner(100, strategy="el2n", task="ranking")


def test_probability_strategy_refuses_raw_regression_outputs_at_selection() -> None:
    data = molecules("esol")
    with pytest.raises(ConfigError, match=r"outside \[0, 1\]"):
        train(data, Entropy(), task=None)


def test_forgetting_needs_two_warmup_epochs() -> None:
    with pytest.raises(ConfigError, match="warmup_epochs >= 2"):
        Pruner(100, strategy="forgetting", warmup_epochs=1)


def test_missing_signals_fail_with_a_clear_message() -> None:
    pruner = Pruner(50, strategy="el2n", warmup_epochs=1, total_epochs=2, shuffle=False)
    pruner.record(torch.arange(50), torch.rand(50))
    with pytest.raises(RuntimeError, match=r"pruner.observe\(indices, .*predictions"):
        pruner.end_epoch()


def test_least_confidence_keeps_predictions_closest_to_one_half() -> None:
    run = train(molecules("bbbp"), "least-confidence", prune_ratio=0.6)
    p = last_warmup(run)["predictions"][:, 0]
    kept = run.kept().numpy()
    assert kept.size == run.pruner.num_kept
    lowest_kept, highest_dropped = ranks_apart(kept, -np.abs(p - 0.5))
    assert lowest_kept >= highest_dropped - 1e-6
    assert np.abs(p[kept] - 0.5).mean() < np.abs(p - 0.5).mean() / 2


def test_entropy_is_per_task_over_labelled_tasks_on_multitask_data() -> None:
    data = molecules("tox21")
    run = train(data, "entropy", prune_ratio=0.5)
    p = last_warmup(run)["predictions"].astype(np.float64)
    mask = data.mask.numpy()
    per_task = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    expected = masked_mean(per_task, mask)
    lowest_kept, highest_dropped = ranks_apart(run.kept().numpy(), expected)
    assert lowest_kept >= highest_dropped - 1e-5
    # Missing labels matter: the unmasked mean would rank differently.
    assert not np.allclose(expected, per_task.mean(axis=1))


def test_margin_keeps_smallest_per_task_margin_not_softmax_across_tasks() -> None:
    data = molecules("tox21")
    run = train(data, "margin", prune_ratio=0.5)
    p = last_warmup(run)["predictions"].astype(np.float64)
    mask = data.mask.numpy()
    expected = masked_mean(1.0 - np.abs(2 * p - 1), mask)
    kept = run.kept().numpy()
    lowest_kept, highest_dropped = ranks_apart(kept, expected)
    assert lowest_kept >= highest_dropped - 1e-5
    # A softmax across the 12 tasks would be a different (wrong) ranking.
    soft = np.exp(p) / np.exp(p).sum(axis=1, keepdims=True)
    top2 = np.sort(soft, axis=1)[:, -2:]
    wrong = np.argsort(top2[:, 1] - top2[:, 0])[: kept.size]
    assert len(set(wrong) & set(kept)) < kept.size


def test_el2n_ranks_mislabelled_molecules_high() -> None:
    clean = molecules("bbbp")
    # Mislabel molecules whose true label a clean proxy learns confidently.
    reference = train(clean, "el2n", prune_ratio=0.8, epochs=3, warmup=2, seed=1)
    clean_error = np.abs(last_warmup(reference)["predictions"][:, 0] - clean.targets[:, 0].numpy())
    rng = np.random.default_rng(0)
    flipped = rng.choice(np.argsort(clean_error)[:200], size=8, replace=False)
    targets = clean.targets.clone()
    targets[flipped] = 1.0 - targets[flipped]
    noisy = type(clean)("bbbp-noisy", clean.task, clean.features, targets)
    run = train(noisy, "el2n", prune_ratio=0.8, epochs=3, warmup=2)
    kept = set(run.kept().tolist())
    assert len(kept) == run.pruner.num_kept
    hits = sum(int(i) in kept for i in flipped)
    assert hits >= 7, f"only {hits}/8 mislabelled molecules in the top 20% of EL2N"
    # The score is exactly |p − y| for one binary task.
    seen = last_warmup(run)
    error = np.abs(seen["predictions"][:, 0] - targets[:, 0].numpy())
    lowest_kept, highest_dropped = ranks_apart(run.kept().numpy(), error)
    assert lowest_kept >= highest_dropped - 1e-6


def test_el2n_on_regression_uses_absolute_error() -> None:
    data = molecules("esol")
    run = train(data, "el2n", prune_ratio=0.5)
    error = np.abs(last_warmup(run)["predictions"][:, 0] - data.targets[:, 0].numpy())
    lowest_kept, highest_dropped = ranks_apart(run.kept().numpy(), error)
    assert lowest_kept >= highest_dropped - 1e-6


def test_grand_is_the_last_layer_gradient_norm_and_tracks_the_full_gradient_norm() -> None:
    from torch.func import functional_call, grad, vmap

    data = molecules("bbbp")
    run = train(data, "grand", prune_ratio=0.5)
    model, n = run.model, len(data)
    idx = torch.arange(n)
    grand = GraNd()
    grand.bind(n)
    with torch.no_grad():
        grand.observe(
            0, idx, targets=data.targets, mask=data.mask, **outputs(model, data, data.features)
        )
    score = grand.sample_scores().numpy()

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_of(p, x_y):
        x, y = x_y
        out, _ = functional_call(model, p, (x[None],))
        return torch.nn.functional.binary_cross_entropy_with_logits(out[0], y)

    grads = vmap(grad(loss_of), in_dims=(None, 0))(params, (data.features, data.targets))
    last = torch.sqrt(grads["head.weight"].pow(2).sum((1, 2)) + grads["head.bias"].pow(2).sum(1))
    full = torch.sqrt(sum(g.pow(2).flatten(1).sum(1) for g in grads.values()))
    np.testing.assert_allclose(score, last.numpy(), rtol=1e-4, atol=1e-6)
    rho = spearmanr(score, full.numpy()).statistic
    assert rho > 0.8, f"GraNd estimate vs full per-sample gradient norm: Spearman {rho:.3f}"
    # And the strategy run through the Pruner keeps large estimated gradient norms.
    assert sample_loss(model, data, run.kept()).mean() > sample_loss(model, data, idx).mean()


def test_forgetting_counts_a_hand_built_forget_event_on_real_labels() -> None:
    data = molecules("tox21")
    idx = torch.tensor([0, 1, 2, 3])
    y = data.targets[idx]
    labelled = data.mask[idx]
    right = torch.nan_to_num(y, nan=0.0) * 0.8 + 0.1  # correct on every task
    wrong = 1.0 - right
    strategy = Forgetting()
    strategy.bind(len(data))
    # molecule 0: right, wrong, right → 1 event on each labelled task
    # molecule 1: right every epoch → 0 events; molecule 2: never right → "never learned"
    # molecule 3: right, wrong on task 0 only → 1 event on one task
    schedule = [
        torch.stack([right[0], right[1], wrong[2], right[3]]),
        torch.stack([wrong[0], right[1], wrong[2], right[3].clone()]),
        torch.stack([right[0], right[1], wrong[2], right[3]]),
    ]
    schedule[1][3, 0] = wrong[3, 0]
    for epoch, pred in enumerate(schedule):
        strategy.observe(epoch, idx, predictions=pred, targets=y, mask=labelled)
    score = strategy.sample_scores()[idx]
    n3 = int(labelled[3].sum())
    assert bool(labelled[3, 0])
    expected = torch.tensor([1.0, 0.0, 3.0, 1.0 / n3])
    torch.testing.assert_close(score, expected)


def test_forgetting_through_the_pruner_matches_events_counted_by_hand() -> None:
    data = molecules("bbbp")
    run = train(data, "forgetting", epochs=4, warmup=3, prune_ratio=0.5, lr=2e-2)
    y = data.targets[:, 0].numpy()
    correct = np.stack([(s["predictions"][:, 0] > 0.5) == (y > 0.5) for s in run.seen[:3]])
    events = (correct[:-1] & ~correct[1:]).sum(axis=0).astype(float)
    expected = np.where(correct.any(axis=0), events, 3.0)
    assert events.sum() > 0, "the proxy never forgot anything: the test proves nothing"
    lowest_kept, highest_dropped = ranks_apart(run.kept().numpy(), expected)
    assert lowest_kept >= highest_dropped


def mean_gaps(run) -> tuple[float, list[float]]:
    """Distance of the kept embeddings' mean to the full mean, and of 50 random subsets'."""
    emb = last_warmup(run)["embeddings"]
    mu = emb.mean(axis=0)
    kept = run.kept().numpy()
    herd_gap = np.linalg.norm(emb[kept].mean(axis=0) - mu)
    rng = np.random.default_rng(0)
    random_gaps = [
        np.linalg.norm(emb[rng.choice(len(emb), kept.size, replace=False)].mean(axis=0) - mu)
        for _ in range(50)
    ]
    return herd_gap, random_gaps


def test_herding_mean_is_closer_to_the_full_mean_than_random_subsets() -> None:
    run = train(molecules("esol"), "herding", prune_ratio=0.8)
    herd_gap, random_gaps = mean_gaps(run)
    assert herd_gap < 0.2 * np.mean(random_gaps)
    assert herd_gap < min(random_gaps)


def test_herding_in_random_blocks_still_tracks_the_full_mean() -> None:
    """Above ``block_size`` every random block herds its share toward its own mean; the
    union's mean is still closer to the full mean than any random subset's (less close
    than the exact greedy's: each block herds only a few hundred samples here)."""
    data = molecules("esol")
    assert len(data) >= 3 * 200
    run = train(data, "herding", prune_ratio=0.5, strategy_options={"block_size": 200})
    assert run.kept().unique().numel() == run.pruner.num_kept
    herd_gap, random_gaps = mean_gaps(run)
    assert herd_gap < 0.4 * np.mean(random_gaps)
    assert herd_gap < min(random_gaps)


def test_herd_in_blocks_gives_each_block_its_quota_and_is_exact_below_the_block_size() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2500, 8, generator=g) * torch.linspace(0.5, 3.0, 8)
    # At most block_size rows, or block_size=0: the exact greedy over all rows.
    exact = herd(x, 700)
    for size in (0, 2500, 10_000):
        picked = herd_in_blocks(x, 700, size, torch.Generator().manual_seed(1))
        torch.testing.assert_close(picked, exact)
    picked = herd_in_blocks(x, 700, 1000, torch.Generator().manual_seed(1))
    assert picked.unique().numel() == 700
    # Three random blocks of 834/833/833 rows herd 234/233/233 rows each: the same shuffle
    # splits them, and within every block the picks are the exact greedy of that block.
    perm = torch.randperm(2500, generator=torch.Generator().manual_seed(1))
    start = 0
    for rows, quota in zip(perm.tensor_split(3), (234, 233, 233), strict=True):
        mine = picked[start : start + quota]
        torch.testing.assert_close(mine, rows[herd(x[rows], quota)])
        start += quota
    mu = x.mean(dim=0)
    gap = (x[picked].mean(dim=0) - mu).norm()
    random_gap = torch.stack(
        [(x[torch.randperm(2500, generator=g)[:700]].mean(dim=0) - mu).norm() for _ in range(50)]
    )
    assert gap < 0.2 * random_gap.mean()
    with pytest.raises(ConfigError, match="block_size"):
        Herding(block_size=-1)


def test_kmeans_respects_cluster_quotas_and_keeps_the_least_prototypical() -> None:
    data = molecules("bbbp")
    run = train(data, "kmeans", prune_ratio=0.7, strategy_options={"clusters": 12})
    strategy = run.pruner.strategy
    # The fingerprints were stored by dataset index despite the shuffled loader.
    torch.testing.assert_close(strategy._tables["points"], data.features)
    labels = strategy.clustering["labels"].numpy()
    distance = strategy.clustering["distance"].numpy()
    kept = run.kept().numpy()
    keep = np.zeros(len(data), dtype=bool)
    keep[kept] = True
    sizes = np.bincount(labels, minlength=12)
    assert (sizes > 0).sum() >= 2
    for c in range(12):
        in_c = labels == c
        share = sizes[c] * kept.size / len(data)
        assert abs(keep[in_c].sum() - share) < 1.0, c
        if keep[in_c].any() and (~keep[in_c]).any():
            assert distance[in_c & keep].min() >= distance[in_c & ~keep].max()


def test_kmeans_on_embeddings_option() -> None:
    data = molecules("esol")
    run = train(data, "kmeans", prune_ratio=0.5, strategy_options={"source": "embeddings"})
    assert run.pruner.wants("embeddings") is False  # subset fixed: nothing more to observe
    assert run.kept().numel() == run.pruner.num_kept
    with pytest.raises(ConfigError, match="source"):
        KMeansPrototypes(source="smiles")


def test_cluster_quotas_are_proportional_and_sum_to_k() -> None:
    sizes = np.array([500, 300, 150, 49, 1])
    quota = cluster_quotas(sizes, 333)
    assert quota.sum() == 333
    assert np.all(np.abs(quota - sizes * 333 / sizes.sum()) < 1)


@pytest.mark.parametrize(
    ("cls", "data_name", "signals"),
    [
        (EL2N, "tox21", ("predictions", "targets", "mask")),
        (GraNd, "esol", ("predictions", "targets", "mask", "embeddings")),
        (Forgetting, "tox21", ("predictions", "targets", "mask")),
        (LeastConfidence, "bbbp", ("predictions", "mask")),
        (Entropy, "tox21", ("predictions", "mask")),
        (Margin, "tox21", ("predictions", "mask")),
        (Herding, "esol", ("embeddings",)),
        (KMeansPrototypes, "bbbp", ("features",)),
    ],
)
def test_scores_land_on_dataset_indices_under_shuffled_batches(cls, data_name, signals) -> None:
    """Observing in shuffled batches stores exactly what observing in order stores."""
    data = molecules(data_name)
    n = len(data)
    torch.manual_seed(1)
    model = train(data, "soft-random", epochs=1, warmup=1, prune_ratio=0.0).model
    with torch.no_grad():
        everything = {
            **outputs(model, data, data.features),
            "targets": data.targets,
            "mask": data.mask,
            "features": data.features,
        }
    wanted = {k: everything[k] for k in signals}
    in_order, shuffled = cls(), cls()
    in_order.bind(n)
    shuffled.bind(n)
    for epoch in range(2):
        in_order.observe(epoch, torch.arange(n), **wanted)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        for idx in perm.split(37):
            shuffled.observe(epoch, idx, **{k: v[idx] for k, v in wanted.items()})
    for name, table in in_order._tables.items():
        torch.testing.assert_close(shuffled._tables[name], table, msg=name)
    if isinstance(in_order, (EL2N,)):
        # and the value at index i is molecule i's own error
        i = int(perm[5])
        p, y, m = wanted["predictions"][i], wanted["targets"][i], wanted["mask"][i]
        expected = ((p - torch.nan_to_num(y)) ** 2)[m].mean().sqrt()
        torch.testing.assert_close(shuffled._tables["score"][i], expected)


class KeepLargestEmbedding(StaticStrategy):
    """A third-party static strategy: keep the molecules with the largest embedding norm."""

    name = "largest-embedding"
    description = "Keep the largest embedding norms (test plugin)."
    signals = frozenset({"embeddings"})

    def observe(self, epoch, indices, **signals):
        norm = signals["embeddings"].norm(dim=1)
        self._table("score", (), fill=float("nan"), dtype=torch.float32)[indices] = norm
        self._mark_seen(indices)

    def sample_scores(self):
        return self._tables["score"]


class ThirdPartyPlugin:
    """A plugin object, as an installed package would expose through its entry point."""

    @hookimpl
    def molpeg_register_strategies(self):
        return [KeepLargestEmbedding]


def test_third_party_static_strategy_plugs_in_through_pluggy() -> None:
    pm = make_plugin_manager(entry_points=False)
    pm.register(ThirdPartyPlugin(), name="third-party")
    assert "largest-embedding" in pm.strategies()
    assert {"el2n", "kmeans", "herding"} <= set(pm.strategies())
    data = molecules("esol")
    run = train(data, pm.create_strategy("largest-embedding"), prune_ratio=0.5)
    norm = np.linalg.norm(last_warmup(run)["embeddings"], axis=1)
    lowest_kept, highest_dropped = ranks_apart(run.kept().numpy(), norm)
    assert lowest_kept >= highest_dropped - 1e-5
    # A plugin-registered name also works through the Pruner by name.
    pruner = Pruner(len(data), strategy="largest-embedding", plugin_manager=pm, warmup_epochs=1)
    assert pruner.wants("embeddings")


@pytest.mark.parametrize("name", STATIC)
def test_every_static_strategy_fixes_one_subset_after_warmup(name: str) -> None:
    data = molecules("tox21")
    run = train(data, name, epochs=4, warmup=2, prune_ratio=0.6)
    history = run.pruner.history
    assert [h["num_kept"] for h in history] == [800, 800, 320, 320]
    kept = run.kept()
    assert kept.unique().numel() == 320
    assert run.pruner.wants("predictions") is False
    state = run.pruner.strategy.state_dict()
    fresh = get_plugin_manager().create_strategy(name)
    fresh.bind(len(data))
    fresh.load_state_dict(state)
    again = [
        s.select(run.pruner.book, 320, epoch=2, generator=torch.Generator().manual_seed(5))
        for s in (run.pruner.strategy, fresh)
    ]
    torch.testing.assert_close(again[0].indices.sort().values, again[1].indices.sort().values)


@pytest.mark.parametrize("cls", [EL2N, Herding, KMeansPrototypes])
def test_samples_never_observed_are_kept_first(cls) -> None:
    data = molecules("esol")
    n, seen = len(data), 500
    model = train(data, "soft-random", epochs=1, warmup=1, prune_ratio=0.0).model
    with torch.no_grad():
        signals = {
            **outputs(model, data, data.features[:seen]),
            "targets": data.targets[:seen],
            "mask": data.mask[:seen],
            "features": data.features[:seen],
        }
    strategy = cls()
    strategy.bind(n)
    strategy.observe(0, torch.arange(seen), **{k: signals[k] for k in strategy.signals})
    sel = strategy.select(None, 150, epoch=1, generator=torch.Generator().manual_seed(0))
    kept = set(sel.indices.tolist())
    assert len(kept) == 150
    assert set(range(seen, n)) <= kept
