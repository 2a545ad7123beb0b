"""Staleness statistics of a pruned epoch's keep set (score age, coverage, turnover)."""

from __future__ import annotations

import math

import pytest
import torch

from molpeg_plugins import Pruner
from molpeg_plugins.engine.scorebook import ScoreBook
from molpeg_plugins.errors import ConfigError
from molpeg_plugins.plugins import make_plugin_manager


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


def _outside_top_k(scores: torch.Tensor, kept: torch.Tensor, k: int) -> int:
    top = set(torch.topk(scores, k).indices.tolist())
    return sum(1 for i in kept.tolist() if i not in top)


@pytest.mark.parametrize("share,pick", [(0.2, "stalest"), (0.5, "random"), (0.25, "stalest")])
def test_exploration_takes_its_share_from_outside_the_top_k(share: float, pick: str) -> None:
    n, k = 100, 20
    pm = make_plugin_manager(entry_points=False)
    strategy = pm.create_strategy("molpeg", explore=share, explore_from=pick)
    book = ScoreBook(n)
    book.score = torch.randperm(n).float()  # distinct scores: the top-k is well defined
    choice = strategy.select(book, k, epoch=3, generator=torch.Generator().manual_seed(0))
    kept = choice.indices
    m = math.floor(share * k + 0.5)
    assert kept.numel() == k == kept.unique().numel()
    assert _outside_top_k(book.score, kept, k) == m
    assert set(torch.topk(book.score, k - m).indices.tolist()) <= set(kept.tolist())


def test_stalest_exploration_takes_the_oldest_scores_first() -> None:
    n, k = 12, 4
    strategy = make_plugin_manager(entry_points=False).create_strategy("molpeg", explore=0.5)
    book = ScoreBook(n)
    book.score = torch.arange(n, 0, -1).float()  # sample 0 has the top score
    book.last_epoch = torch.tensor([5, 5, 5, 5, 5, 5, 1, 5, 0, 5, 5, 5])
    kept = strategy.select(book, k, epoch=6, generator=torch.Generator().manual_seed(1))
    assert sorted(kept.indices.tolist()) == [0, 1, 6, 8]  # top 2, then the two oldest scores


def test_exploration_zero_is_the_plain_top_k() -> None:
    pm = make_plugin_manager(entry_points=False)
    book = ScoreBook(50)
    book.score = torch.rand(50, generator=torch.Generator().manual_seed(2))
    plain = pm.create_strategy("molpeg").select(book, 10, epoch=2, generator=_gen())
    zero = pm.create_strategy("molpeg", explore=0.0).select(book, 10, epoch=2, generator=_gen())
    assert torch.equal(plain.indices, zero.indices)
    assert set(plain.indices.tolist()) == set(torch.topk(book.score, 10).indices.tolist())


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(7)


def _shrinking_scores_run(pruner: Pruner, epochs: int) -> list[dict[str, float]]:
    """Train-loop stand-in: sample i's score is ``(1 + i/N)·½^epoch`` (decaying step size)."""
    value = 1.0 + torch.arange(pruner.num_samples) / pruner.num_samples
    stats = []
    for epoch in range(epochs):
        idx = pruner.start_epoch().indices
        pruner.record(idx, value[idx] * 0.5**epoch, torch.zeros(idx.numel()))
        stats.append(pruner.end_epoch().stats)
    return stats[:-1]  # the last selection is past the end of the run


def test_shrinking_scores_make_the_plain_top_k_drop_what_it_just_trained() -> None:
    """The staleness effect in miniature: every fresh score is smaller than any stale one, so
    the plain top-k never keeps a molecule twice; calibrated scores keep the best ones."""
    run = dict(prune_ratio=0.9, total_epochs=8, shuffle=False, seed=0)
    plain = _shrinking_scores_run(Pruner(200, **run), 8)
    assert [s["keep_turnover"] for s in plain[1:]] == [1.0] * (len(plain) - 1)
    options = {"explore": 0.25, "explore_from": "random", "calibrate": True}
    calibrated = _shrinking_scores_run(Pruner(200, strategy_options=options, **run), 8)
    # 15 of the 20 kept are the top scores on one scale, the same every epoch; only the 5
    # random explorers change (some of them may repeat)
    assert all(s["keep_turnover"] <= 0.25 for s in calibrated[1:])


def test_calibration_needs_random_explorers() -> None:
    pm = make_plugin_manager(entry_points=False)
    with pytest.raises(ConfigError, match="explore_from=random"):
        pm.create_strategy("molpeg", explore=0.2, calibrate=True)


def test_calibration_state_survives_a_resume() -> None:
    options = {"explore": 0.25, "explore_from": "random", "calibrate": True}
    run = dict(prune_ratio=0.9, total_epochs=8, shuffle=False, seed=0)
    first = Pruner(200, strategy_options=options, **run)
    _shrinking_scores_run(first, 4)
    resumed = Pruner(200, strategy_options=options, **run)
    resumed.load_state_dict(first.state_dict())
    saved, restored = first.strategy.state_dict(), resumed.strategy.state_dict()
    assert torch.equal(saved["probes"], restored["probes"])
    assert torch.equal(saved["probe_scores"], restored["probe_scores"])
    assert torch.equal(_shrinking_scores_tail(first), _shrinking_scores_tail(resumed))


def _shrinking_scores_tail(pruner: Pruner) -> torch.Tensor:
    value = 1.0 + torch.arange(pruner.num_samples) / pruner.num_samples
    idx = pruner.start_epoch().indices
    pruner.record(idx, value[idx] * 0.5**pruner.epoch, torch.zeros(idx.numel()))
    return pruner.end_epoch().indices


def test_strategy_options_from_the_command_line() -> None:
    cls = make_plugin_manager(entry_points=False).strategy_class("molpeg")
    assert cls.parse_options(["explore=0.2", "explore_from=random"]) == {
        "explore": 0.2,
        "explore_from": "random",
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        cls.parse_options(["explore"])
    with pytest.raises(ConfigError, match="no option 'epsilon'"):
        cls.parse_options(["epsilon=0.1"])
    with pytest.raises(ConfigError, match="explore='lots' must be a float"):
        cls.parse_options(["explore=lots"])
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\)"):
        cls(**cls.parse_options(["explore=1.5"]))


def test_random_explorers_measure_the_drift_and_rank_correlation_of_stale_scores() -> None:
    options = {"explore": 0.25, "explore_from": "random"}
    run = dict(prune_ratio=0.9, total_epochs=8, shuffle=False, seed=0)
    pruner = Pruner(200, strategy_options=options, **run)
    value = 1.0 + torch.arange(200) / 200
    for _ in range(7):  # every molecule's score is the same whenever it is trained
        idx = pruner.start_epoch().indices
        pruner.record(idx, value[idx], torch.zeros(idx.numel()))
        pruner.end_epoch()
    measured = [h for h in pruner.history if "explore_score_drift" in h]
    assert len(measured) == 5  # from the second pruned epoch on
    for h in measured:
        assert h["explore_score_drift"] == pytest.approx(1.0)
        assert h["explore_rank_corr"] == pytest.approx(1.0)


def test_calibration_maps_stale_scores_through_the_line_fitted_on_the_explorers() -> None:
    strategy = make_plugin_manager(entry_points=False).create_strategy(
        "molpeg", explore=0.5, explore_from="random", calibrate=True
    )
    n, k = 40, 8
    book = ScoreBook(n)
    book.score = torch.linspace(1.0, 2.0, n)
    book.last_epoch = torch.zeros(n, dtype=torch.long)
    first = strategy.select(book, k, epoch=1, generator=_gen()).indices
    # epoch 1 trains the kept set: each explorer's fresh score is 0.1 + 0.3·(its old score)
    probes = first[k // 2 :]
    book.score[probes] = 0.1 + 0.3 * book.score[probes]
    book.last_epoch[first] = 1
    book.score[first[: k // 2]] = 0.9  # the greedy half: fresh and high
    strategy.select(book, k, epoch=2, generator=_gen())
    calibrated = strategy._calibrated(book)
    stale = book.last_epoch == 0
    assert torch.allclose(calibrated[stale], 0.1 + 0.3 * book.score[stale])
    assert torch.equal(calibrated[~stale], book.score[~stale])


def test_loss_exploration_takes_the_highest_online_losses_outside_the_top_k() -> None:
    n, k = 20, 4
    strategy = make_plugin_manager(entry_points=False).create_strategy(
        "molpeg", explore=0.5, explore_from="loss"
    )
    book = ScoreBook(n)
    book.score = torch.arange(n, 0, -1).float()  # 0 and 1 have the top scores
    book.online_loss = torch.zeros(n)
    book.online_loss[[2, 13, 17]] = torch.tensor([9.0, 5.0, 7.0])  # 2 is inside the top-k
    kept = strategy.select(book, k, epoch=3, generator=_gen())
    assert sorted(kept.indices.tolist()) == [0, 1, 13, 17]


def test_a_real_run_reports_the_staleness_and_exploration_statistics(tmp_path) -> None:
    """`molpeg prune` (torch backend, bundled BBBP): report.json's pruned epochs carry them."""
    import json

    from typer.testing import CliRunner

    from molpeg_plugins.cli import app

    out = tmp_path / "run"
    args = ["prune", "--backend", "torch", "--epochs", "3", "--prune-ratio", "0.8", "-o", str(out)]
    args += ["--strategy-option", "explore=0.2", "--strategy-option", "explore_from=random"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["parameters"]["strategy_options"] == {"explore": 0.2, "explore_from": "random"}
    warmup, first, second = report["epochs"]
    assert "keep_turnover" not in warmup  # the warm-up epoch trains on everything
    for key in ("score_age_mean", "score_age_max", "visited_since_warmup", "keep_turnover"):
        assert min(first[key], second[key]) >= 0.0
    assert -1.0 <= second["explore_rank_corr"] <= 1.0 and second["explore_score_drift"] > 0
