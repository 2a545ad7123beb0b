"""Generic PyTorch implementations of the model hooks (the fallback every adapter refines)."""

from __future__ import annotations

from typing import Any

from torch import nn

from molpeg_plugins.engine.scoring import ParameterFilter, detached_copy, ema_update_
from molpeg_plugins.hookspecs import hookimpl


@hookimpl(trylast=True)
def molpeg_create_reference(model: Any) -> nn.Module | None:
    """Deep-copy any ``torch.nn.Module`` into a gradient-free, eval-mode reference."""
    if isinstance(model, nn.Module):
        return detached_copy(model)
    return None


@hookimpl(trylast=True)
def molpeg_update_reference(
    reference: nn.Module,
    online: nn.Module,
    momentum: float,
    parameter_names: ParameterFilter | None,
) -> bool | None:
    """EMA step over matching parameter names of two ``torch.nn.Module`` objects."""
    if isinstance(reference, nn.Module) and isinstance(online, nn.Module):
        ema_update_(reference, online, momentum, parameter_names)
        return True
    return None
