"""The click-gaussian presets, registered through the ``nerfstudio.method_configs`` entry point as
``click-gaussian`` and ``click-gaussian-cpu``: the composition root that wires the layers of ``clickgs_ns`` into
nerfstudio (the pipeline with the viewer's click controls).

``click-gaussian`` states only what differs from the config classes' defaults, which hold every number of the method
(docs/method.md): the trainer's schedule, the seed points, and splatfacto's optimizers for the RGB stage.
``click-gaussian-cpu`` states only what differs from ``click-gaussian`` (as splatfacto-big beside splatfacto).
"""

from __future__ import annotations

import dataclasses

from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from clickgs_ns.app.viewer import ClickGaussianViewerPipelineConfig
from clickgs_ns.data.datamanager import ClickGaussianDataManagerConfig
from clickgs_ns.method.gfl import GFLConfig
from clickgs_ns.method.model import ClickGaussianModelConfig
from clickgs_ns.method.schedulers import FloatExponentialDecaySchedulerConfig as ExponentialDecaySchedulerConfig
from clickgs_ns.method.trainer import ClickGaussianTrainerConfig


def _adam(lr: float) -> dict:
    return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": None}


def click_gaussian_config() -> ClickGaussianTrainerConfig:
    """The full method: splatfacto's RGB stage (30k steps), then 3k feature steps."""
    return ClickGaussianTrainerConfig(
        method_name="click-gaussian",
        steps_per_eval_image=100,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=1000,
        # the run length (max_num_iterations) and the means' decay follow the model's two stages (trainer.py)
        pipeline=ClickGaussianViewerPipelineConfig(
            datamanager=ClickGaussianDataManagerConfig(dataparser=NerfstudioDataParserConfig(load_3D_points=True)),
            model=ClickGaussianModelConfig(),  # every default of the method is the config classes' own
        ),
        optimizers={
            "means": {
                "optimizer": AdamOptimizerConfig(lr=1.6e-4, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1.6e-6),
            },
            "features_dc": _adam(0.0025),
            "features_rest": _adam(0.0025 / 20),
            "opacities": _adam(0.05),
            "scales": _adam(0.005),
            "quats": _adam(0.001),
            "click_features": _adam(0.01),
            "camera_opt": {
                "optimizer": AdamOptimizerConfig(lr=1e-4, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(
                    lr_final=5e-7, max_steps=30000, warmup_steps=1000, lr_pre_warmup=0
                ),
            },
            "bilateral_grid": {
                "optimizer": AdamOptimizerConfig(lr=2e-3, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(
                    lr_final=1e-4, max_steps=30000, warmup_steps=1000, lr_pre_warmup=0
                ),
            },
        },
        vis="viewer",
    )


click_gaussian_method = MethodSpecification(
    config=click_gaussian_config(),
    description="Click-Gaussian (ECCV 2024): two-level Gaussian features for click segmentation, trained from "
    "SAM masks after a splatfacto RGB stage (or from an existing splat via --pipeline.model.init-ply).",
)


CPU_RGB_STAGE_STEPS = 1000
CPU_FEATURE_STAGE_STEPS = 400


def gfl_inside_feature_stage(feature_stage_steps: int) -> GFLConfig:
    """GFL timed by the feature stage's length (3 steps or more): from its middle, re-clustered every quarter of it."""
    return GFLConfig(start_step=feature_stage_steps // 2, update_every=max(feature_stage_steps // 4, 1))


def click_gaussian_cpu_config() -> ClickGaussianTrainerConfig:
    """click-gaussian for a machine without a GPU: the README's CPU schedule (benchmarks/capture_check.py), 1,000 RGB
    and 400 feature steps on the CPU, no warm-up at lower resolutions (num_downscales 0), 2,048 sampled pixels per
    feature step, GFL inside the feature stage, fewer evaluations and saves, and no viewer (``--vis viewer``)."""
    base = click_gaussian_config()
    model = base.pipeline.model
    return dataclasses.replace(
        base,
        method_name="click-gaussian-cpu",  # nerfstudio registers a plugin's presets by method name
        machine=dataclasses.replace(base.machine, device_type="cpu"),
        vis="tensorboard",
        steps_per_eval_image=500,
        steps_per_eval_all_images=100000,
        steps_per_save=500,
        pipeline=dataclasses.replace(base.pipeline, model=dataclasses.replace(
            model,
            rgb_stage_steps=CPU_RGB_STAGE_STEPS,
            feature_stage_steps=CPU_FEATURE_STAGE_STEPS,
            num_downscales=0,
            losses=dataclasses.replace(model.losses, num_sampled_pixels=2048),
            gfl=gfl_inside_feature_stage(CPU_FEATURE_STAGE_STEPS),
        )),
    )  # dataclasses.replace runs __post_init__: the run length is 1,400 steps


click_gaussian_cpu_method = MethodSpecification(
    config=click_gaussian_cpu_config(),
    description="Click-Gaussian on a machine without a GPU: the README's CPU schedule (1,000 RGB + 400 feature "
    "steps on the CPU, GFL inside the feature stage, no viewer).",
)
