"""The click-gaussian method presets: every hyperparameter of the method lives in these config objects.

Numbers follow docs/method.md (Click-Gaussian, ECCV 2024) and nerfstudio's splatfacto preset for
the RGB stage. Registered through the ``nerfstudio.method_configs`` entry point as ``click-gaussian``.
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from clickgs_ns.data.datamanager import ClickGaussianDataManagerConfig
from clickgs_ns.app.viewer import ClickGaussianViewerPipelineConfig
from clickgs_ns.method.losses import FeatureLossConfig
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
        max_num_iterations=33000,
        mixed_precision=False,
        pipeline=ClickGaussianViewerPipelineConfig(
            datamanager=ClickGaussianDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(load_3D_points=True),
                cache_images_type="uint8",
            ),
            model=ClickGaussianModelConfig(
                feature_dim=24,
                coarse_dim=12,
                feature_init_std=0.1,
                rgb_stage_steps=30000,
                feature_stage_steps=3000,
                losses=FeatureLossConfig(
                    coarse_dim=12,
                    num_sampled_pixels=10000,
                    coarse_margin=0.5,
                    fine_margin=0.75,
                    negative_weight=0.1,
                    norm3d_weight=0.2,
                    norm2d_weight=0.2,
                    spatial_weight=0.5,
                    spatial_num_gaussians=100000,
                    spatial_num_neighbours=5,
                ),
            ),
        ),
        optimizers={
            "means": {
                "optimizer": AdamOptimizerConfig(lr=1.6e-4, eps=1e-15),
                "scheduler": ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=30000),
            },
            "features_dc": _adam(0.0025),
            "features_rest": _adam(0.0025 / 20),
            "opacities": _adam(0.05),
            "scales": _adam(0.005),
            "quats": _adam(0.001),
            "features": _adam(0.01),
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
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


click_gaussian_method = MethodSpecification(
    config=click_gaussian_config(),
    description="Click-Gaussian (ECCV 2024): two-level Gaussian features for click segmentation, trained from "
    "SAM masks after a splatfacto RGB stage (or from an existing splat via --pipeline.model.init-ply).",
)
