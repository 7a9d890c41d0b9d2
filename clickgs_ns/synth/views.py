"""Cameras and rendering: a ring of cameras around the scene, its images, ground-truth maps and silhouettes.

The views are rendered with the project's rasterizer (``clickgs_ns.render``) without any randomness: images on a
plain background, per-pixel object (coarse) and part (fine) ids where the rendered opacity is high enough, and
the unoccluded silhouette of any set of Gaussians (the prompts' targets).
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch

from clickgs_ns.render import get_viewmat, rasterize, splat_inputs
from clickgs_ns.synth.config import SynthConfig
from clickgs_ns.synth.geometry import SynthGaussians, split_count


def ring_camera_to_worlds(config: SynthConfig) -> np.ndarray:
    """Camera-to-world poses [C, 4, 4] in nerfstudio's OpenGL convention (x right, y up, looking along -z).

    The views are split evenly over the elevation rings (the first rings get the remainder); each ring is offset
    by half an azimuth step from the previous one.
    """
    rings = list(config.elevations_deg) or [0.0]
    per_ring = split_count(config.num_views, [1.0] * len(rings))
    target = np.array([0.0, 0.0, config.look_at_height])
    poses = []
    for ring_index, (elevation, count) in enumerate(zip(rings, per_ring)):
        for k in range(int(count)):
            azimuth = 2 * math.pi * (k + 0.5 * ring_index) / count
            el = math.radians(elevation)
            position = target + config.camera_distance * np.array(
                [math.cos(el) * math.cos(azimuth), math.cos(el) * math.sin(azimuth), math.sin(el)]
            )
            back = (position - target) / np.linalg.norm(position - target)  # camera +z points away from the target
            right = np.cross([0.0, 0.0, 1.0], back)
            right /= np.linalg.norm(right)
            up = np.cross(back, right)
            pose = np.eye(4)
            pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, back, position
            poses.append(pose)
    return np.array(poses)


def intrinsics(config: SynthConfig) -> Tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels: square pixels, principal point at the image centre."""
    fx = 0.5 * config.image_width / math.tan(math.radians(config.fov_x_deg) / 2)
    return fx, fx, config.image_width / 2, config.image_height / 2

def intrinsics_matrix(config: SynthConfig) -> torch.Tensor:
    """The pinhole matrix K [3, 3] (float32) of ``intrinsics``."""
    fx, fy, cx, cy = intrinsics(config)
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


@torch.no_grad()
def render_views(
    gaussians: SynthGaussians, camera_to_worlds: np.ndarray, config: SynthConfig
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render images and ground-truth maps.

    Args:
        camera_to_worlds: [C, 4, 4] (OpenGL convention).

    Returns:
        images [C, H, W, 3] uint8 on the config's background; gt_coarse, gt_fine [C, H, W] int32 (object and part
        ids, -1 where the rendered opacity is at most ``gt_alpha_threshold``).
    """
    num_parts = len(gaussians.part_names)
    one_hot = np.eye(num_parts, dtype=np.float32)[gaussians.part_id]  # [N, P]
    colors = torch.from_numpy(np.concatenate([gaussians.rgb, one_hot], axis=1))  # [N, 3 + P]
    splat = splat_inputs(*(torch.from_numpy(a) for a in (gaussians.means, gaussians.quats, gaussians.scales,
                                                           gaussians.opacities)))
    viewmats = get_viewmat(torch.from_numpy(camera_to_worlds[:, :3, :4]).float())  # [C, 4, 4] OpenCV w2c
    K = intrinsics_matrix(config)
    background = torch.cat([torch.tensor(config.background, dtype=torch.float32), torch.zeros(num_parts)])

    images, gt_coarse, gt_fine = [], [], []
    batch = max(1, config.render_batch_views)
    for start in range(0, len(viewmats), batch):
        views = viewmats[start : start + batch]
        c = len(views)
        render, alphas, _ = rasterize(
            **splat, colors=colors, viewmats=views, Ks=K.expand(c, 3, 3), width=config.image_width,
            height=config.image_height, backgrounds=background.expand(c, -1),
        )  # [c, H, W, 3 + P], [c, H, W, 1]
        rgb = (render[..., :3].clamp(0, 1) * 255).round().to(torch.uint8)
        part = render[..., 3:].argmax(dim=-1).numpy().astype(np.int32)  # [c, H, W]
        covered = alphas[..., 0].numpy() > config.gt_alpha_threshold
        images.append(rgb.numpy())
        gt_fine.append(np.where(covered, part, -1))
        gt_coarse.append(np.where(covered, gaussians.part_to_object[part], -1))
    return np.concatenate(images), np.concatenate(gt_coarse).astype(np.int32), np.concatenate(gt_fine).astype(np.int32)


@torch.no_grad()
def render_silhouettes(gaussians: SynthGaussians, members: np.ndarray, camera_to_worlds: np.ndarray,
                       config: SynthConfig) -> np.ndarray:
    """Unoccluded silhouette of a set of Gaussians: [C, H, W] bool, where they alone (no other Gaussian in front)
    accumulate opacity above ``gt_alpha_threshold``.

    Args:
        members: [N] bool, the Gaussians of one segment.
        camera_to_worlds: [C, 4, 4] (OpenGL convention).
    """
    index = torch.from_numpy(np.flatnonzero(members))
    splat = splat_inputs(*(torch.from_numpy(a)[index] for a in (gaussians.means, gaussians.quats, gaussians.scales,
                                                                  gaussians.opacities)))
    viewmats = get_viewmat(torch.from_numpy(camera_to_worlds[:, :3, :4]).float())
    K = intrinsics_matrix(config)
    out = np.zeros((len(viewmats), config.image_height, config.image_width), dtype=bool)
    if len(index) == 0:
        return out
    batch = max(1, config.render_batch_views)
    for start in range(0, len(viewmats), batch):
        views = viewmats[start : start + batch]
        _, alphas, _ = rasterize(**splat, colors=torch.ones(len(index), 1), viewmats=views,
                                 Ks=K.expand(len(views), 3, 3), width=config.image_width, height=config.image_height)
        out[start : start + len(views)] = alphas[..., 0].numpy() > config.gt_alpha_threshold
    return out
