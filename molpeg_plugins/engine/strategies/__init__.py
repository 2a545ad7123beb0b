"""Pruning strategies: the :class:`Strategy` contract and the built-in implementations."""

from molpeg_plugins.engine.strategies.base import Selection, Strategy

__all__ = ["Selection", "Strategy"]
