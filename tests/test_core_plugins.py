"""The pluggy contract: hookspecs, built-ins, entry points, third-party registration."""

from __future__ import annotations

import inspect

import pytest
import torch

from molpeg_plugins import Pruner, Selection, Strategy, hookimpl, hookspecs, make_plugin_manager
from molpeg_plugins.errors import ConfigError


def test_every_hookspec_is_documented_with_when_and_return() -> None:
    specs = [f for name, f in inspect.getmembers(hookspecs) if name.startswith("molpeg_")]
    assert len(specs) >= 8
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert "Called" in doc, f"{spec.__name__} does not say when it is called"
        assert "Return" in doc, f"{spec.__name__} does not say what it returns"


def test_adapters_are_loaded_through_the_molpeg_entry_point_group() -> None:
    pm = make_plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    assert {"chemprop", "deepchem"} <= names
    assert {"molpeg", "soft-random", "infobatch", "hard-random"} <= set(pm.strategies())


class KeepFirst(Strategy):
    """A third-party strategy: always keep the lowest dataset indices."""

    name = "keep-first"
    description = "Keep the first samples (test plugin)."

    def select(self, book, num_keep, *, epoch, generator):
        return Selection(torch.arange(num_keep, device=book.device))


class ThirdPartyPlugin:
    """What an installed package would expose through its ``molpeg`` entry point."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    @hookimpl
    def molpeg_register_strategies(self):
        return [KeepFirst]

    @hookimpl
    def molpeg_epoch_end(self, pruner, epoch, stats):
        self.events.append(("end", epoch))

    @hookimpl
    def molpeg_selection_made(self, pruner, selection):
        self.events.append(("selected", selection.epoch))


def test_third_party_strategy_and_observer_plug_in() -> None:
    pm = make_plugin_manager(entry_points=False)
    plugin = ThirdPartyPlugin()
    pm.register(plugin)
    assert "keep-first" in pm.strategies()
    pruner = Pruner(10, prune_ratio=0.7, strategy="keep-first", plugin_manager=pm, shuffle=False)
    pruner.record(torch.arange(10), torch.ones(10))
    selection = pruner.end_epoch()
    assert selection.indices.tolist() == [0, 1, 2]
    assert plugin.events == [("end", 0), ("selected", 1)]


def test_duplicate_strategy_names_are_refused() -> None:
    pm = make_plugin_manager(entry_points=False)

    class Clash:
        @hookimpl
        def molpeg_register_strategies(self):
            class Other(KeepFirst):
                name = "molpeg"

            return [Other]

    pm.register(Clash())
    with pytest.raises(ConfigError, match="two plugins"):
        pm.strategies()


def test_strategy_rejects_unknown_options() -> None:
    with pytest.raises(ConfigError, match="no option 'epsilonn'"):
        Pruner(10, strategy="epsilon-greedy", strategy_options={"epsilonn": 0.2})
