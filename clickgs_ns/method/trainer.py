"""nerfstudio's Trainer, with the run length given by click-gaussian's two stages and a CPU thread policy.

A run lasts ``feature_start_step + feature_stage_steps`` steps, and a resumed run (``--load-dir``) finishes at
that same step, where nerfstudio's Trainer would train ``max_num_iterations`` more steps; flags that contradict the
stages (another ``--max-num-iterations``, a GFL start the feature stage never reaches) are refused when the config is
built. On a CPU machine torch uses the cores other processes leave free (``cpu_threads.CpuThreadPolicy``), re-checked
as training runs, and the process reuses the memory it frees (``io.memory.keep_freed_memory``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Type

import tyro
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.rich_utils import CONSOLE

from clickgs_ns.io.checkpoints import save_checkpoint_atomic
from clickgs_ns.io.memory import keep_freed_memory
from clickgs_ns.method.cpu_threads import CpuThreadPolicy
from clickgs_ns.method.model import ClickGaussianModelConfig


@dataclass
class ClickGaussianTrainerConfig(TrainerConfig):
    """TrainerConfig whose run length and RGB-stage schedule follow the model's two stages."""

    _target: Type = field(default_factory=lambda: ClickGaussianTrainer)
    cpu_threads: Optional[int] = None
    """torch threads when training on the CPU. None: the cores other processes leave free, re-checked every
    ``cpu_threads_recheck_seconds`` (a busy machine otherwise makes every step many times slower)."""
    cpu_threads_recheck_seconds: float = 10.0
    """How often the free cores are measured again while training on the CPU."""
    reuse_freed_memory: bool = True
    """When training on the CPU, keep freed memory for reuse instead of returning it to the kernel
    (``io.memory.keep_freed_memory``; a feature step 2.1x faster on the development machine)."""
    run_length: tyro.conf.Suppress[Optional[int]] = None
    """The run length ``__post_init__`` last wrote into ``max_num_iterations`` (not a flag): a
    ``max_num_iterations`` other than it (or, before, than nerfstudio's default) was set by the user."""

    def __post_init__(self) -> None:
        model = self.pipeline.model
        if isinstance(model, ClickGaussianModelConfig):
            default = TrainerConfig.max_num_iterations if self.run_length is None else self.run_length
            if self.max_num_iterations not in (default, model.total_steps):
                stages = "rgb-stage-steps + feature-stage-steps" if model.feature_start_step else "feature-stage-steps"
                raise ValueError(
                    f"--max-num-iterations {self.max_num_iterations} contradicts the run length, "
                    f"{model.total_steps} steps ({stages}): leave it out and set "
                    "--pipeline.model.rgb-stage-steps and --pipeline.model.feature-stage-steps instead.")
            check_gfl_inside_feature_stage(model)
            self.max_num_iterations = self.run_length = model.total_steps
            means_scheduler = self.optimizers.get("means", {}).get("scheduler")
            if means_scheduler is not None:
                means_scheduler.max_steps = max(model.feature_start_step, 1)


def check_gfl_inside_feature_stage(model: ClickGaussianModelConfig) -> None:
    """Refuse a GFL (when on) that starts too late to run: its first update must come before the feature stage's
    last step, whose loss is the last it can change (a stage of 0 steps has no GFL to time)."""
    stage, start = model.feature_stage_steps, model.gfl.start_step
    if not model.gfl.enabled or stage == 0 or start < stage - 1:
        return
    fix = f"--pipeline.model.gfl.start-step {min(stage // 2, stage - 2)} (say), " if stage >= 2 else ""
    raise ValueError(
        f"--pipeline.model.gfl.start-step {start} is not before the last step of the feature stage "
        f"(--pipeline.model.feature-stage-steps {stage}), so GFL would never run. Give {fix}a "
        f"--pipeline.model.feature-stage-steps above {start + 1}, or --pipeline.model.gfl.enabled False.")


class ClickGaussianTrainer(Trainer):
    """Trainer that ends a resumed run at the planned last step, writes checkpoints atomically and, on a CPU, reuses
    freed memory and gives torch the free cores."""

    config: ClickGaussianTrainerConfig

    def setup(self, test_mode="val") -> None:
        if self.device == "cpu" and self.config.reuse_freed_memory:
            keep_freed_memory()
        super().setup(test_mode=test_mode)
        model = self.config.pipeline.model
        if isinstance(model, ClickGaussianModelConfig):
            self.config.max_num_iterations = max(model.total_steps - self._start_step, 0)
        if self.device == "cpu":
            self.start_cpu_thread_policy()

    def train(self) -> None:
        """nerfstudio's training loop; a resumed run with no step left only finishes labels that its end did not
        (it stopped while lifting them), and otherwise leaves its checkpoints as they are."""
        if self.config.max_num_iterations > 0 or self._start_step == 0:
            super().train()
            return
        last_step = self._start_step - 1
        model = self.pipeline.model
        if bool(getattr(model, "labels_final", True)):
            CONSOLE.log(f"The run is complete (step {last_step}): nothing to train.")
            return
        CONSOLE.log(f"The run's features are trained (step {last_step}) but its labels are not: lifting them.")
        self.pipeline.finish_labels(last_step)  # type: ignore[attr-defined]
        self.save_checkpoint(last_step)

    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint (pipeline, optimizers, schedulers, scaler), written atomically (a process stopped
        while saving leaves the previous checkpoint intact), then the older ones removed as nerfstudio does."""
        path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline  # type: ignore
        save_checkpoint_atomic({
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.optimizers.items()},
            "schedulers": {name: sched.state_dict() for name, sched in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
        }, path)
        if self.config.save_only_latest_checkpoint:
            for older in self.checkpoint_dir.glob("*.ckpt"):
                if older != path:
                    older.unlink()

    def start_cpu_thread_policy(self) -> None:
        """Choose torch's threads for the free cores and re-check them before training iterations."""
        policy = CpuThreadPolicy(self.config.cpu_threads, self.config.cpu_threads_recheck_seconds)
        threads = policy.start()
        how = "as configured" if self.config.cpu_threads is not None else "the cores other processes leave free"
        CONSOLE.log(f"Training on the CPU with {threads} torch thread(s) of {policy.num_cores} cores ({how}; "
                    "--cpu-threads N fixes the count).")

        def recheck(step: int) -> None:
            threads = policy.update()
            if threads is not None:
                CONSOLE.log(f"Step {step}: the free cores changed, now {threads} torch thread(s).")

        self.callbacks.append(TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], recheck))
