"""Feature maps as pictures: one PCA basis per scene so that colours agree across views."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class PcaBasis:
    """Projection of D-dim features onto their first three principal components, scaled to [0, 1]."""

    mean: Tensor  # [D]
    components: Tensor  # [D, 3]
    low: Tensor  # [3] 1st percentile of the projections
    high: Tensor  # [3] 99th percentile


def fit_pca_basis(features: Tensor, max_samples: int = 100_000, seed: int = 0) -> PcaBasis:
    """PCA basis of ``features`` [N, D] (L2-normalised first), from at most ``max_samples`` rows."""
    features = torch.nn.functional.normalize(features.detach().float(), dim=-1)
    if features.shape[0] > max_samples:
        generator = torch.Generator().manual_seed(seed)
        features = features[torch.randperm(features.shape[0], generator=generator)[:max_samples].to(features.device)]
    mean = features.mean(dim=0)
    _, _, v = torch.pca_lowrank(features - mean, q=min(3, features.shape[1]), center=False)
    components = v[:, :3]
    projected = (features - mean) @ components
    low = torch.quantile(projected, 0.01, dim=0)
    high = torch.quantile(projected, 0.99, dim=0)
    return PcaBasis(mean=mean, components=components, low=low, high=high)


def pca_colors(feature_map: Tensor, basis: PcaBasis, alpha: Tensor = None) -> Tensor:
    """RGB [H, W, 3] in [0, 1] of a feature map [H, W, D]; pixels with ``alpha`` [H, W, 1] < 0.5 are black."""
    normalised = torch.nn.functional.normalize(feature_map.float(), dim=-1)
    projected = (normalised - basis.mean.to(normalised)) @ basis.components.to(normalised)
    rgb = ((projected - basis.low.to(normalised)) / (basis.high - basis.low).clamp_min(1e-6).to(normalised)).clamp(0, 1)
    if alpha is not None:
        rgb = rgb * (alpha >= 0.5)
    return rgb


def png_paths(image_paths: Sequence[Path], output_dir: Path) -> List[Path]:
    """One PNG path per image below ``output_dir``: its path relative to the images' common folder, suffix .png
    ("images/cam0/0001.jpg" and "images/cam1/0001.jpg" -> "cam0/0001.png" and "cam1/0001.png": never one name
    for two images)."""
    parents = [str(Path(path).parent) for path in image_paths]
    common = Path(os.path.commonpath(parents)) if parents else Path(".")
    return [output_dir / Path(path).relative_to(common).with_suffix(".png") for path in image_paths]


def save_png(image: Tensor, path: Path) -> None:
    """Write an RGB image [H, W, 3] in [0, 1] as an 8-bit PNG, atomically."""
    from PIL import Image

    from clickgs_ns.io.atomic import atomic_path

    array = (image.detach().cpu().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def side_by_side(images: List[Tensor]) -> Tensor:
    """Images [H, W, 3] of one height, concatenated left to right."""
    return torch.cat(images, dim=1)
