"""Chemprop's Noam learning-rate schedule, re-sized to the optimizer steps of a pruned run."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from molpeg_plugins import Pruner

log = logging.getLogger(__name__)


class NoamSchedule:
    """Chemprop's Noam-like learning-rate factor over an explicit number of steps.

    Linear warm-up from ``init_lr`` to ``max_lr`` over ``warmup_steps``, then exponential
    decay to ``final_lr`` over ``cooldown_steps``, then constant. Returns the factor relative
    to ``init_lr`` (what ``LambdaLR`` multiplies the base rate by). A callable object rather
    than a closure, so that ``LambdaLR.state_dict`` saves and restores it.
    """

    def __init__(
        self, warmup_steps: int, cooldown_steps: int, init_lr: float, max_lr: float, final_lr: float
    ) -> None:
        self.warmup_steps = int(warmup_steps)
        self.cooldown_steps = int(cooldown_steps)
        self.init_lr, self.max_lr, self.final_lr = float(init_lr), float(max_lr), float(final_lr)

    def __call__(self, step: int) -> float:
        """Learning-rate factor at optimizer step ``step``."""
        if step < self.warmup_steps:
            return 1.0 + step * (self.max_lr - self.init_lr) / self.warmup_steps / self.init_lr
        if step < self.warmup_steps + self.cooldown_steps:
            decay = (self.final_lr / self.max_lr) ** (
                (step - self.warmup_steps) / self.cooldown_steps
            )
            return self.max_lr * decay / self.init_lr
        return self.final_lr / self.init_lr


def planned_steps(
    pruner: Pruner, max_epochs: int, batch_size: int, drop_last: bool, accumulate: int
) -> list[int]:
    """Optimizer steps of each epoch of the run, on this rank, given the pruning schedule."""
    world = pruner.sampler.num_replicas
    accumulate = max(1, int(accumulate))
    steps = []
    for epoch in range(max_epochs):
        n = pruner.num_kept if pruner.is_pruned_epoch(epoch) else pruner.num_samples
        local = math.ceil(n / world)
        batches = local // batch_size if drop_last else math.ceil(local / batch_size)
        steps.append(math.ceil(batches / accumulate))
    return steps


def resize_noam(trainer: Any, pl_module: Any, steps: list[int]) -> None:
    """Give every ``LambdaLR`` of ``trainer`` a Noam schedule over the epochs' ``steps``.

    The warm-up covers the steps of the model's ``warmup_epochs``, the decay the rest; the
    current learning rate is set to the schedule's value at the scheduler's step.
    """
    warmup_epochs = int(pl_module.warmup_epochs)
    schedule = NoamSchedule(
        sum(steps[:warmup_epochs]),
        sum(steps[warmup_epochs:]),
        pl_module.init_lr,
        pl_module.max_lr,
        pl_module.final_lr,
    )
    for config in trainer.lr_scheduler_configs:
        sched = config.scheduler
        if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            sched.lr_lambdas = [schedule for _ in sched.lr_lambdas]
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
                group["lr"] = base * schedule(sched.last_epoch)
            log.info(
                "molpeg: Noam schedule re-sized to %d warm-up + %d decay steps",
                schedule.warmup_steps,
                schedule.cooldown_steps,
            )


def has_noam(trainer: Any, pl_module: Any) -> bool:
    """Whether ``pl_module`` carries Chemprop's Noam settings and the run has a fixed length."""
    needed = ("warmup_epochs", "init_lr", "max_lr", "final_lr")
    if not all(hasattr(pl_module, k) for k in needed) or not trainer.max_epochs:
        return False
    return trainer.max_epochs >= 0
