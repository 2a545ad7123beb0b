"""The plugin manager: built-in plugins plus every installed ``molpeg`` entry point.

molpeg follows pytest's model: whoever runs molpeg (the command line, a test, a user's
script) makes a manager with :func:`make_plugin_manager` and hands it to what it builds; the
engine calls hooks on the manager it was given and never looks one up. The one default is
:func:`get_plugin_manager`, the process-wide manager used when a Python-API user gives none
(see ``docs/architecture.md``). This module imports no engine or application module at
import time (built-ins are registered by name), so any module may depend on it without a
cycle.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import TYPE_CHECKING, Any

import pluggy

from molpeg_plugins import hookspecs
from molpeg_plugins.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from molpeg_plugins.engine.strategies.base import Strategy
    from molpeg_plugins.pipeline.backend import Backend

log = logging.getLogger(__name__)

BUILTIN_PLUGINS = (
    "molpeg_plugins.engine.torch_hooks",
    "molpeg_plugins.engine.strategies.dynamic",
    "molpeg_plugins.engine.strategies.static",
    "molpeg_plugins.pipeline.torch_backend",
)


class MolPegPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` with registries of strategies and backends."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)

    def strategies(self) -> dict[str, type[Strategy]]:
        """Registered strategies by name (built-ins and plugins)."""
        registry: dict[str, type[Strategy]] = {}
        for group in self.hook.molpeg_register_strategies():
            for cls in group:
                if cls.name in registry and registry[cls.name] is not cls:
                    raise ConfigError(f"two plugins register a strategy named {cls.name!r}")
                registry[cls.name] = cls
        return dict(sorted(registry.items()))

    def backends(self) -> dict[str, Backend]:
        """Registered backends by name."""
        registry: dict[str, Backend] = {}
        for group in self.hook.molpeg_register_backends():
            for backend in group:
                if backend.name in registry:
                    raise ConfigError(f"two plugins register a backend named {backend.name!r}")
                registry[backend.name] = backend
        return dict(sorted(registry.items()))

    def strategy_class(self, name: str) -> type[Strategy]:
        """The strategy class registered as ``name`` (:class:`UnknownNameError` if none)."""
        registry = self.strategies()
        if name not in registry:
            raise UnknownNameError("strategy", name, registry)
        return registry[name]

    def create_strategy(self, name: str, **options: Any) -> Strategy:
        """Instantiate the strategy registered as ``name`` with ``options``."""
        return self.strategy_class(name)(**options)

    def backend(self, name: str) -> Backend:
        """The backend registered as ``name`` (:class:`UnknownNameError` if none)."""
        registry = self.backends()
        if name not in registry:
            raise UnknownNameError("backend", name, registry)
        return registry[name]


def make_plugin_manager(*, entry_points: bool = True) -> MolPegPluginManager:
    """A new plugin manager with the built-ins and (by default) installed entry points."""
    pm = MolPegPluginManager()
    for module in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module), name=module)
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
    return pm


@functools.cache
def get_plugin_manager() -> MolPegPluginManager:
    """The process-wide default plugin manager (built-ins and entry points; made on first use).

    The single place a default is resolved. Only the Python API surface falls back to it
    when given no manager (:mod:`molpeg_plugins.api`, the ``checkpoints`` and ``source``
    functions, the adapters' ``MolPegCallback`` and ``MolPegDeepChem``), and the command line
    uses it for ``molpeg strategies``/``backends`` and the plugins' commands; the engine is
    always handed its manager.
    """
    return make_plugin_manager()
