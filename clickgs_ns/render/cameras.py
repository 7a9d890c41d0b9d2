"""nerfstudio cameras as the renderer sees them: a camera's image size, the same camera with other intrinsics (a
crop, a single pixel), a key that says when two cameras render the same image, and the rasterizer's view inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Tuple

import torch
from torch import Tensor

from clickgs_ns.render.projection import get_viewmat

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras


def camera_size(camera: "Cameras") -> Tuple[int, int]:
    """(H, W) in pixels of a nerfstudio camera [1] (or the first of several)."""
    return int(camera.height.reshape(-1)[0]), int(camera.width.reshape(-1)[0])


def camera_with_intrinsics(camera: Any, fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor, size: Tuple[int, int]
                           ) -> Any:
    """``camera`` [1] (its pose, lens and type) with these intrinsics [1, 1] and image size (H, W)."""
    from nerfstudio.cameras.cameras import Cameras

    return Cameras(camera_to_worlds=camera.camera_to_worlds, fx=fx, fy=fy, cx=cx, cy=cy,
                   width=torch.full_like(camera.width, size[1]), height=torch.full_like(camera.height, size[0]),
                   distortion_params=camera.distortion_params, camera_type=camera.camera_type)


def pixel_camera(camera: "Cameras", column: int, row: int) -> "Cameras":
    """A 1 x 1 camera that sees exactly pixel (``column``, ``row``) of ``camera`` [1]: the same rays."""
    return camera_with_intrinsics(camera, camera.fx, camera.fy, camera.cx - column, camera.cy - row, (1, 1))


def camera_key(camera: "Cameras") -> Tensor:
    """A flat float64 CPU tensor that is equal for two cameras exactly when they render the same image."""
    parts = [camera.camera_to_worlds, camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
             camera.camera_type]
    if camera.distortion_params is not None:
        parts.append(camera.distortion_params)
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in parts])

def crop_camera(camera: "Cameras", column: int, row: int, size: int) -> Tuple["Cameras", int, int]:
    """A ``size`` x ``size`` crop (clamped to the image) of ``camera`` [1] that contains pixel (``column``, ``row``),
    and the pixel's position in the crop. Only the principal point and the image size change."""
    height, width = camera_size(camera)
    crop_width, crop_height = min(size, width), min(size, height)
    left = min(max(column - crop_width // 2, 0), width - crop_width)
    top = min(max(row - crop_height // 2, 0), height - crop_height)
    crop = camera_with_intrinsics(camera, camera.fx, camera.fy, camera.cx - left, camera.cy - top,
                                  (crop_height, crop_width))
    return crop, column - left, row - top


def view_inputs(cameras: "Cameras", device: Any = None) -> Dict[str, Any]:
    """The rasterizer's view inputs for C cameras of one size: viewmats [C, 4, 4], Ks [C, 3, 3], width, height
    (on ``device``, default the cameras')."""
    height, width = camera_size(cameras)
    if len(cameras.width.unique()) != 1 or len(cameras.height.unique()) != 1:
        raise ValueError("rendering several cameras at once needs cameras of one size; group them by size first")
    cameras = cameras.to(device) if device is not None else cameras
    return dict(viewmats=get_viewmat(cameras.camera_to_worlds.reshape(-1, 3, 4)), Ks=cameras.get_intrinsics_matrices()
                .reshape(-1, 3, 3), width=width, height=height)
