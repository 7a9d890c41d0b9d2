"""The click-gaussian pipeline: nerfstudio's VanillaPipeline that can start from an existing splat."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Type

from torch.cuda.amp.grad_scaler import GradScaler

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig

from clickgs_ns.datamanager import ClickGaussianDataManagerConfig
from clickgs_ns.model import ClickGaussianModel, ClickGaussianModelConfig
from clickgs_ns.splat_io import load_splat_checkpoint, load_splat_ply, transform_splat


@dataclass
class ClickGaussianPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline with click-gaussian's datamanager and model."""

    _target: Type = field(default_factory=lambda: ClickGaussianPipeline)
    datamanager: ClickGaussianDataManagerConfig = field(default_factory=ClickGaussianDataManagerConfig)
    model: ClickGaussianModelConfig = field(default_factory=ClickGaussianModelConfig)


class ClickGaussianPipeline(VanillaPipeline):
    """Builds the datamanager and model; when training (not when loaded by the viewer or an exporter), replaces
    the seed-point splat by the configured existing splat before any optimizer exists."""

    config: ClickGaussianPipelineConfig

    def __init__(
        self,
        config: ClickGaussianPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ):
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        if test_mode == "val":
            self.load_initial_splat()

    @property
    def click_model(self) -> ClickGaussianModel:
        return self.model  # type: ignore[return-value]

    def load_initial_splat(self) -> None:
        """Load ``model.init_checkpoint`` or ``model.init_ply`` (moved into the training frame), if set."""
        model_config = self.config.model
        if model_config.init_checkpoint is not None and model_config.init_ply is not None:
            raise ValueError("Give either --pipeline.model.init-checkpoint or --pipeline.model.init-ply, not both.")
        if model_config.init_checkpoint is not None:
            params = load_splat_checkpoint(model_config.init_checkpoint)
        elif model_config.init_ply is not None:
            outputs = self.datamanager.train_dataparser_outputs  # type: ignore[attr-defined]
            params = transform_splat(
                load_splat_ply(model_config.init_ply), outputs.dataparser_transform, float(outputs.dataparser_scale)
            )
        else:
            return
        self.click_model.load_gaussians(params)
