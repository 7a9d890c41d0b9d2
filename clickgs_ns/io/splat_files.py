"""Existing splats as a starting point: standard 3DGS .ply files and splatfacto checkpoints, read as
splatfacto parameters (``SplatParams``). Moving them into nerfstudio's training frame is
``clickgs_ns.render.transform.transform_splat``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch
from torch import Tensor

from clickgs_ns.io.ply import read_gaussian_ply

SplatParams = Dict[str, Tensor]
"""Splatfacto's parameters: means [N,3], scales [N,3] (log), quats [N,4] (wxyz), features_dc [N,3] (SH DC),
features_rest [N,K-1,3], opacities [N,1] (logit); optionally click_features [N,D] ("features" in click-gaussian
runs before 0.2)."""

SPLAT_KEYS = ("means", "scales", "quats", "features_dc", "features_rest", "opacities")
"""The keys of a splat's geometry and colour: the parameters a 3DGS .ply holds."""


def load_splat_ply(path: Path) -> SplatParams:
    """A standard 3DGS .ply as splatfacto parameters (in the .ply's own frame)."""
    ply = read_gaussian_ply(Path(path))
    tensor = lambda array: torch.as_tensor(array, dtype=torch.float32)  # noqa: E731
    return {
        "means": tensor(ply.means),
        "scales": tensor(ply.log_scales),
        "quats": tensor(ply.quats),
        "features_dc": tensor(ply.sh_dc),
        "features_rest": tensor(ply.sh_rest).reshape(len(ply.means), -1, 3),
        "opacities": tensor(ply.opacity_logits).reshape(-1, 1),
    }


def load_splat_checkpoint(path: Path) -> SplatParams:
    """The Gaussians of a splatfacto or click-gaussian checkpoint (.ckpt), in nerfstudio's training frame."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist; give the path of a step-*.ckpt file "
                                "from a splatfacto run's nerfstudio_models/ folder.")
    state = torch.load(path, map_location="cpu", weights_only=False)
    prefix = "_model.gauss_params."
    params = {key[len(prefix):]: value for key, value in state.get("pipeline", {}).items() if key.startswith(prefix)}
    if "means" not in params:
        raise ValueError(f"Checkpoint {path} holds no Gaussians ({prefix}means is missing): is it a splatfacto run?")
    return params
