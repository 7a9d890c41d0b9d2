"""The click-gaussian preset, registered through the ``nerfstudio.method_configs`` entry point as
``click-gaussian``: the composition root that wires the layers of ``clickgs_ns`` into nerfstudio (the pipeline
with the viewer's click controls).

It states only what differs from the config classes' defaults, which hold every number of the method
(docs/method.md): the trainer's schedule, the seed points, and splatfacto's optimizers for the RGB stage.
"""

from __future__ import annotations

from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from clickgs_ns.app.viewer import ClickGaussianViewerPipelineConfig
from clickgs_ns.data.datamanager import ClickGaussianDataManagerConfig
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
