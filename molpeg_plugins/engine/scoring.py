"""The MolPeg score: EMA reference bookkeeping and per-sample losses.

Only torch is imported here; frameworks reach this module through their adapters.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from molpeg_plugins.plugins import MolPegPluginManager

ParameterFilter = Callable[[str], bool]


def masked_sample_loss(unreduced: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce a ``(batch, tasks)`` loss to one value per sample over its labelled tasks.

    ``mask`` is ``True`` (or 1) where a label exists. Missing labels contribute nothing,
    whatever value the loss has there (even ``nan``); a sample with no label gets ``nan``.
    A 1-D input is returned as a float tensor unchanged (already per sample).
    """
    if unreduced.ndim == 1:
        return unreduced.float()
    loss = unreduced.reshape(unreduced.shape[0], -1).float()
    if mask is None:
        mask = torch.isfinite(loss)
    mask = mask.reshape(loss.shape).bool()
    total = torch.where(mask, loss, torch.zeros_like(loss)).sum(dim=1)
    count = mask.sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


def discrepancy(online_loss: torch.Tensor, reference_loss: torch.Tensor) -> torch.Tensor:
    """MolPeg's per-sample score ``|ℓ_online − ℓ_reference|``."""
    return (online_loss - reference_loss).abs()


def parameter_filter(spec: str | ParameterFilter | None) -> ParameterFilter | None:
    """Turn a parameter selection into a predicate on parameter names.

    ``None`` or ``"all"`` selects every parameter; a string is a regular expression searched
    in each name (``"^message_passing"`` = Chemprop's encoder); a callable is used as is.
    """
    if spec is None or spec == "all":
        return None
    if callable(spec):
        return spec
    pattern = re.compile(spec)
    return lambda name: pattern.search(name) is not None


@torch.no_grad()
def ema_update_(
    reference: nn.Module,
    online: nn.Module,
    momentum: float,
    parameter_names: ParameterFilter | None = None,
) -> None:
    """In place: ``ξ ← β·ξ + (1−β)·θ`` on the selected parameters of ``reference``.

    Parameters not selected by ``parameter_names`` and all buffers (e.g. batch-norm
    statistics) are copied from ``online``. Uses fused foreach kernels, no host syncs.
    """
    ema_ref, ema_src, copy_ref, copy_src = [], [], [], []
    online_params = dict(online.named_parameters())
    for name, ref_param in reference.named_parameters():
        src = online_params[name].detach()
        if parameter_names is None or parameter_names(name):
            ema_ref.append(ref_param)
            ema_src.append(src)
        else:
            copy_ref.append(ref_param)
            copy_src.append(src)
    if ema_ref:
        torch._foreach_lerp_(ema_ref, ema_src, 1.0 - float(momentum))
    if copy_ref:
        torch._foreach_copy_(copy_ref, copy_src)
    online_buffers = dict(online.named_buffers())
    for name, buffer in reference.named_buffers():
        buffer.copy_(online_buffers[name])


def detached_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that requires no gradients, in eval mode."""
    reference = copy.deepcopy(model)
    reference.requires_grad_(False)
    return reference.eval()


class EMAReference:
    """The reference model ξ: a gradient-free exponential moving average of the online model.

    It starts as a copy of the online model at the time of construction (the pretrained
    weights) and moves towards it after every optimizer step with :meth:`update`. The
    reference always runs in eval mode (no dropout noise in the score; pass
    ``train_mode=True`` to reproduce the public code's dropout-on reference).

    Copying and updating go through the ``molpeg_create_reference`` and
    ``molpeg_update_reference`` hooks, so an adapter can specialise them.

    Args:
        model: the online model, in its pretrained state.
        momentum: β in ``ξ ← β·ξ + (1−β)·θ`` (0 = copy, 1 = frozen).
        parameters: which parameters are averaged (see :func:`parameter_filter`); the others
            follow the online model exactly.
        train_mode: run the reference forward in train mode (dropout on).
        plugin_manager: the plugin manager to dispatch through (required here;
            :class:`molpeg_plugins.EMAReference` defaults it to the process-wide manager).
    """

    def __init__(
        self,
        model: nn.Module,
        momentum: float = 0.5,
        *,
        parameters: str | ParameterFilter | None = None,
        train_mode: bool = False,
        plugin_manager: MolPegPluginManager,
    ) -> None:
        self.pm = plugin_manager
        self.momentum = float(momentum)
        self.parameter_names = parameter_filter(parameters)
        self.train_mode = train_mode
        self.module: nn.Module = self.pm.hook.molpeg_create_reference(model=model)
        self.module.train(train_mode)
        self.num_updates = 0

    def update(self, online: nn.Module) -> None:
        """Move the reference one EMA step towards ``online`` (call after each optimizer step)."""
        self.pm.hook.molpeg_update_reference(
            reference=self.module,
            online=online,
            momentum=self.momentum,
            parameter_names=self.parameter_names,
        )
        self.num_updates += 1

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the reference forward pass under ``torch.no_grad()``."""
        self.module.train(self.train_mode)
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """Weights and counters of the reference, for checkpoints."""
        return {
            "module": self.module.state_dict(),
            "momentum": self.momentum,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state["module"])
        self.momentum = float(state["momentum"])
        self.num_updates = int(state["num_updates"])
