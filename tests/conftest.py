"""Shared fixtures: a tiny synthetic scene and in-process click-gaussian training on the CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from clickgs_ns.synth import SynthConfig, generate_scene

TINY_SCENE = SynthConfig(num_views=12, image_width=96, image_height=72, num_gaussians=1500, num_seed_points=400)


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory):
    """A 12-view 96x72 synthetic dataset with noisy SAM-like masks (generated once per test session)."""
    return generate_scene(TINY_SCENE, tmp_path_factory.mktemp("tiny_scene"))


def make_trainer_config(data: Path, output_dir: Path, **model_overrides):
    """The click-gaussian preset set up for a short CPU run without a viewer; GFL off when the feature stage is too
    short for its start (as such runs trained before they were refused)."""
    from method_configs.click_gaussian import click_gaussian_config

    config = click_gaussian_config()
    config.pipeline.datamanager.data = Path(data)
    config.output_dir = Path(output_dir)
    config.timestamp = "test"
    config.vis = "tensorboard"
    config.machine.device_type = "cpu"
    config.steps_per_eval_image = 10**9
    config.steps_per_eval_all_images = 10**9
    config.pipeline.model.num_downscales = 0
    config.pipeline.model.losses = dataclasses.replace(config.pipeline.model.losses, num_sampled_pixels=1024)
    for name, value in model_overrides.items():
        setattr(config.pipeline.model, name, value)
    model = config.pipeline.model
    if "gfl" not in model_overrides and model.gfl.start_step >= model.feature_stage_steps - 1:
        model.gfl = dataclasses.replace(model.gfl, enabled=False)  # a stage too short for GFL: off, not refused
    config.__post_init__()  # the run length follows the stages
    config.steps_per_save = config.max_num_iterations
    return config


def train(config) -> Path:
    """Train in-process as ns-train does; returns the run's config.yml."""
    from nerfstudio.scripts.train import _set_random_seed

    _set_random_seed(config.machine.seed)  # as ns-train does: the same run every time
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return config.get_base_dir() / "config.yml"
