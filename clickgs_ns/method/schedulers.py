"""nerfstudio's exponential-decay scheduler, returning Python floats.

nerfstudio 1.1.5 computes learning rates with numpy, so its checkpoints hold numpy scalars, which torch >= 2.6
refuses to load with its default ``weights_only=True`` (ns-viewer, ns-export and resuming then fail).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from nerfstudio.engine.schedulers import ExponentialDecayScheduler, ExponentialDecaySchedulerConfig


@dataclass
class FloatExponentialDecaySchedulerConfig(ExponentialDecaySchedulerConfig):
    """ExponentialDecaySchedulerConfig whose learning rates are Python floats (checkpoints load safely)."""

    _target: Type = field(default_factory=lambda: FloatExponentialDecayScheduler)


class FloatExponentialDecayScheduler(ExponentialDecayScheduler):
    """nerfstudio's schedule, its factors cast to float."""

    config: FloatExponentialDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> LRScheduler:
        numpy_factor = super().get_scheduler(optimizer, lr_init).lr_lambdas[0]  # type: ignore[attr-defined]
        return LambdaLR(optimizer, lr_lambda=lambda step: float(numpy_factor(step)))
