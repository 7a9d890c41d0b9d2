"""nerfstudio's Trainer, with the run length given by click-gaussian's two stages.

A run lasts ``feature_start_step + feature_stage_steps`` steps, and a resumed run (``--load-dir``) finishes at
that same step, where nerfstudio's Trainer would train ``max_num_iterations`` more steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.engine.trainer import Trainer, TrainerConfig

from clickgs_ns.method.model import ClickGaussianModelConfig


@dataclass
class ClickGaussianTrainerConfig(TrainerConfig):
    """TrainerConfig whose run length and RGB-stage schedule follow the model's two stages."""

    _target: Type = field(default_factory=lambda: ClickGaussianTrainer)

    def __post_init__(self) -> None:
        model = self.pipeline.model
        if isinstance(model, ClickGaussianModelConfig):
            self.max_num_iterations = model.total_steps
            means_scheduler = self.optimizers.get("means", {}).get("scheduler")
            if means_scheduler is not None:
                means_scheduler.max_steps = max(model.feature_start_step, 1)


class ClickGaussianTrainer(Trainer):
    """Trainer that ends a resumed run at the planned last step."""

    config: ClickGaussianTrainerConfig

    def setup(self, test_mode="val") -> None:
        super().setup(test_mode=test_mode)
        model = self.config.pipeline.model
        if isinstance(model, ClickGaussianModelConfig):
            self.config.max_num_iterations = max(model.total_steps - self._start_step, 0)
