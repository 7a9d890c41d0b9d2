"""A trained click-gaussian run, loaded for scripting: ``scene = clickgs_ns.segment.run.load(config_path)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import torch
from torch import Tensor

from nerfstudio.cameras.cameras import Cameras


@dataclass
class ClickScene:
    """A loaded run: its pipeline (datamanager + model) and its training cameras."""

    pipeline: "torch.nn.Module"
    config_path: Path
    step: int

    @property
    def model(self):
        return self.pipeline.model

    @property
    def cameras(self) -> Cameras:
        """Training cameras [V] in nerfstudio's training frame."""
        return self.pipeline.datamanager.train_dataset.cameras

    @property
    def image_names(self) -> list:
        return [Path(p).name for p in self.pipeline.datamanager.train_dataset.image_filenames]

    @torch.no_grad()
    def render(self, camera_index: int) -> Dict[str, Tensor]:
        """Outputs of training view ``camera_index``: rgb [H,W,3], coarse_features [H,W,12], fine_features [H,W,24],
        accumulation [H,W,1], depth [H,W,1]."""
        if not 0 <= camera_index < len(self.cameras):
            raise IndexError(f"camera_index {camera_index} is out of range: the run has {len(self.cameras)} views")
        camera = self.cameras[camera_index : camera_index + 1]
        return self.model.get_outputs_for_camera(camera)


def load(config_path: Path) -> ClickScene:
    """Load the latest checkpoint of the run whose ``config.yml`` is ``config_path`` (no masks needed)."""
    from nerfstudio.utils.eval_utils import eval_setup

    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} does not exist: give the config.yml of a click-gaussian run "
                                "(outputs/<data>/click-gaussian/<timestamp>/config.yml).")
    import os

    from clickgs_ns.method.pipeline import SELECTION_ENV

    selection = os.environ.pop(SELECTION_ENV, None)  # that variable is for ns-export, not for scripts
    try:
        _, pipeline, _, step = eval_setup(config_path, test_mode="inference")
    finally:
        if selection is not None:
            os.environ[SELECTION_ENV] = selection
    from clickgs_ns.method.model import ClickGaussianModel

    if not isinstance(pipeline.model, ClickGaussianModel):
        raise TypeError(f"{config_path} is a {type(pipeline.model).__name__} run, not a click-gaussian one.")
    pipeline.eval()
    return ClickScene(pipeline=pipeline, config_path=config_path, step=step)
