"""A CPU training step alone and beside a busy process, with torch's default threads and with the project's policy.

torch's OpenMP threads wait for each other at every parallel region; when another process keeps a core busy, a
thread of ours is descheduled and the others wait for it. ``ClickGaussianTrainer`` therefore uses the cores other
processes leave free (``clickgs_ns.method.cpu_threads``). This script trains the feature stage of a synthetic scene
from its .ply (one nerfstudio ``train_iteration`` per step) and prints the median step time per condition, with
ratios against the idle machine with the default threads, all measured in one run:

  default / idle      torch's default thread count (every core), nothing else running
  default / busy      the same, beside one busy process (a Python loop)
  policy  / busy      the thread count the policy picks beside that process

Usage: python benchmarks/bench_threads.py [--steps 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from nerfstudio.engine.callbacks import TrainingCallbackLocation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_trainer_config  # noqa: E402

from clickgs_ns.method.cpu_threads import CpuThreadPolicy, usable_cores  # noqa: E402
from clickgs_ns.method.losses import FeatureLossConfig  # noqa: E402
from clickgs_ns.synth import SynthConfig, generate_scene  # noqa: E402


def step_seconds(trainer, first_step: int, steps: int, threads: int) -> float:
    """Median seconds of ``steps`` training steps (callbacks and iteration, as ``Trainer.train``) with ``threads``
    torch threads, after one warm-up."""
    torch.set_num_threads(threads)
    times = []
    trainer.pipeline.train()
    for step in range(first_step, first_step + steps + 1):
        start = time.perf_counter()
        for location in (TrainingCallbackLocation.BEFORE_TRAIN_ITERATION, None):
            if location is None:
                trainer.train_iteration(step)
                location = TrainingCallbackLocation.AFTER_TRAIN_ITERATION
            for callback in trainer.callbacks:  # as nerfstudio's Trainer.train does
                callback.run_callback_at_location(step, location=location)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def stage_trainers(tmp: Path, threads: int, **trainer_settings):
    """(stage, set-up trainer) for the RGB stage (splatfacto from the seed points) and the feature stage (from the
    scene's .ply, the preset's sampled pixels) of one synthetic scene in ``tmp``, with ``threads`` torch threads
    and ``trainer_settings`` on the trainer config."""
    scene = generate_scene(SynthConfig(), tmp / "scene")
    stages = {
        "rgb": dict(rgb_stage_steps=1000, feature_stage_steps=1),
        "features": dict(init_ply=scene.scene_ply_path, feature_stage_steps=1000),
    }
    for stage, overrides in stages.items():
        config = make_trainer_config(scene.root, tmp / stage, **overrides)
        config.cpu_threads = threads  # the benchmark sets the threads itself
        for name, value in trainer_settings.items():
            setattr(config, name, value)
        config.pipeline.model.losses = dataclasses.replace(
            config.pipeline.model.losses, num_sampled_pixels=FeatureLossConfig().num_sampled_pixels)
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        yield stage, trainer


def measure(trainer, steps: int, default_threads: int) -> list:
    """(condition, threads, median step seconds) for the three conditions of the module doc."""
    rows = [("default / idle", default_threads, step_seconds(trainer, 0, steps, default_threads))]
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        rows.append(("default / busy", default_threads, step_seconds(trainer, 100, steps, default_threads)))
        policy_threads = CpuThreadPolicy().start()
        rows.append(("policy  / busy", policy_threads, step_seconds(trainer, 200, steps, policy_threads)))
    finally:
        busy.kill()
        busy.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per condition")
    args = parser.parse_args()
    cores, default_threads = usable_cores(), torch.get_num_threads()
    print(f"# bench_threads: torch {torch.__version__}, {cores} usable cores, default {default_threads} threads")
    print(f"{'stage':<9} {'condition':<16} {'threads':>7} {'step s':>8} {'x idle':>7}")
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage, trainer in stage_trainers(Path(tmp), default_threads):
            rows = measure(trainer, args.steps, default_threads)
            for name, threads, seconds in rows:
                print(f"{stage:<9} {name:<16} {threads:>7} {seconds:>8.3f} {seconds / rows[0][2]:>7.2f}")
            summary.append(f"{stage} {rows[2][2] / rows[0][2]:.2f}x (default {rows[1][2] / rows[0][2]:.2f}x)")
    print("threads: beside a busy process, a step takes " + ", ".join(summary) + " the idle step with the policy")


if __name__ == "__main__":
    main()
