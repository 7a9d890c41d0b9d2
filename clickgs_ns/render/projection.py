"""Projection of 3D Gaussians to the image plane, as gsplat's kernels do it (``project_gaussians``).

Quaternions are wxyz; view matrices world-to-camera with OpenCV axes (``get_viewmat``). Shapes: ``[C, N, 3]``
(C cameras, N Gaussians).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices from quaternions.

    Args:
        quats: ``[..., 4]`` quaternions in wxyz order; normalised here.

    Returns:
        ``[..., 3, 3]`` rotation matrices.
    """
    w, x, y, z = F.normalize(quats, p=2.0, dim=-1).unbind(-1)
    rows = [
        1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
        2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
        2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """3D covariances ``R S S^T R^T``.

    Args:
        quats: ``[N, 4]`` wxyz quaternions (need not be normalised).
        scales: ``[N, 3]`` standard deviations along the local axes (activated).

    Returns:
        ``[N, 3, 3]`` covariance matrices.
    """
    M = quat_to_rotmat(quats) * scales[..., None, :]  # [N, 3, 3] = R diag(s)
    return M @ M.transpose(-1, -2)


def get_viewmat(camera_to_worlds: Tensor) -> Tensor:
    """World-to-camera matrices (OpenCV) from nerfstudio camera-to-world poses.

    nerfstudio poses use the OpenGL convention (x right, y up, z backward). The
    camera's y and z axes are flipped to get OpenCV (x right, y down, z forward)
    and the rigid transform is inverted analytically, as splatfacto's
    ``get_viewmat`` does.

    Args:
        camera_to_worlds: ``[C, 3, 4]`` (or ``[C, 4, 4]``) camera-to-world poses.

    Returns:
        ``[C, 4, 4]`` world-to-camera matrices.
    """
    R = camera_to_worlds[:, :3, :3]  # [C, 3, 3]
    t = camera_to_worlds[:, :3, 3:4]  # [C, 3, 1]
    flip = torch.tensor([1.0, -1.0, -1.0], device=R.device, dtype=R.dtype)
    R = R * flip  # flips columns 1 and 2: the camera's y and z axes
    R_inv = R.transpose(1, 2)  # [C, 3, 3]
    t_inv = -torch.bmm(R_inv, t)  # [C, 3, 1]
    bottom = torch.zeros_like(camera_to_worlds[:, :1, :4])  # [C, 1, 4]
    bottom[:, 0, 3] = 1.0
    return torch.cat([torch.cat([R_inv, t_inv], dim=2), bottom], dim=1)


def world_to_cam(means: Tensor, covars: Tensor, viewmats: Tensor) -> Tuple[Tensor, Tensor]:
    """Transform Gaussians into every camera frame.

    Args:
        means: ``[N, 3]`` world-space means.
        covars: ``[N, 3, 3]`` world-space covariances.
        viewmats: ``[C, 4, 4]`` world-to-camera matrices.

    Returns:
        ``means_c [C, N, 3]`` and ``covars_c [C, N, 3, 3]``.
    """
    R = viewmats[:, :3, :3]  # [C, 3, 3]
    t = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)
    return means_c, covars_c


def persp_proj(
    means_c: Tensor, covars_c: Tensor, Ks: Tensor, width: int, height: int
) -> Tuple[Tensor, Tensor]:
    """Pinhole projection of camera-space Gaussians (EWA, first order).

    As in gsplat, ``x/z`` and ``y/z`` are clamped to the frustum widened by 30% of
    ``tan(fov/2)`` on each side before building the Jacobian (the mean itself is
    projected without clamping).

    Args:
        means_c: ``[C, N, 3]`` camera-space means; ``z`` must be non-zero.
        covars_c: ``[C, N, 3, 3]`` camera-space covariances.
        Ks: ``[C, 3, 3]`` intrinsics.
        width, height: image size in pixels.

    Returns:
        ``means2d [C, N, 2]`` pixel coordinates and ``covars2d [C, N, 2, 2]``.
    """
    x, y, z = means_c.unbind(-1)  # [C, N]
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]  # [C, 1]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / z
    tx = z * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = z * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zero = torch.zeros_like(z)
    J = torch.stack(
        [fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], dim=-1
    ).reshape(z.shape + (2, 3))  # [C, N, 2, 3]
    covars2d = J @ covars_c @ J.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)  # [C, N, 2]
    return means2d, covars2d


def _project_in_depth_range(
    means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
    near_plane: float, far_plane: float,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Project N Gaussians to C cameras, those outside ``[near_plane, far_plane]`` at a safe depth of 1.

    Returns:
        ``means2d [C, N, 2]``, ``cov2d [C, N, 2, 2]`` (no ``eps2d`` yet), ``depths [C, N]`` (the true camera-space
        depths) and ``in_depth [C, N]`` bool.
    """
    covars = quat_scale_to_covar(quats, scales)  # [N, 3, 3]
    means_c, covars_c = world_to_cam(means, covars, viewmats)  # [C, N, 3], [C, N, 3, 3]
    depths = means_c[..., 2]  # [C, N]
    in_depth = (depths >= near_plane) & (depths <= far_plane)
    # keep culled entries finite so that they cannot poison gradients with NaNs
    safe_z = torch.where(in_depth, depths, torch.ones_like(depths))
    means_c = torch.cat([means_c[..., :2], safe_z[..., None]], dim=-1)
    means2d, cov2d = persp_proj(means_c, covars_c, Ks, width, height)
    return means2d, cov2d, depths, in_depth


def _blurred_cov2d(cov2d: Tensor, eps2d: float) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The symmetrised upper triangle of ``cov2d [C, N, 2, 2]`` with ``eps2d * I`` added.

    Returns:
        ``a, b, c [C, N]`` (entries of ``cov2d + eps2d I``), ``det_orig [C, N]`` (``det(cov2d)``) and
        ``det [C, N]`` (``det(cov2d + eps2d I)``).
    """
    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det_orig = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b  # [C, N]
    return a, b, c, det_orig, det


def _conics(a: Tensor, b: Tensor, c: Tensor, det: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Inverse of the 2D covariances ``[[a, b], [b, c]]`` with determinant ``det`` (all ``[C, N]``).

    Returns:
        ``conics [C, N, 3]`` (upper triangle of the inverse; meaningless where ``det <= 0``), ``ok_det [C, N]``
        (``det > 0``) and ``safe_det [C, N]`` (``det``, 1 where not ``ok_det``).
    """
    ok_det = det > 0
    safe_det = torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([c / safe_det, -b / safe_det, a / safe_det], dim=-1)  # [C, N, 3]
    return conics, ok_det, safe_det


def _compensations(det_orig: Tensor, safe_det: Tensor) -> Tensor:
    """Antialiasing opacity factors ``[C, N]``: ``sqrt(det(cov2d) / det(cov2d + eps2d I))``, 0 where not positive."""
    ratio = det_orig / safe_det
    pos = ratio > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, ratio, torch.ones_like(ratio))), torch.zeros_like(ratio))


@torch.no_grad()
def _radii(
    a: Tensor, c: Tensor, det: Tensor, means2d: Tensor, visible: Tensor, width: int, height: int, radius_clip: float
) -> Tensor:
    """``radii [C, N]`` int32: ``ceil(3 * sqrt(largest eigenvalue))`` of the 2D covariances with diagonal ``a, c``
    and determinant ``det`` (all ``[C, N]``); 0 where not ``visible [C, N]``, where the radius is ``<= radius_clip``
    and where the radius box around ``means2d [C, N, 2]`` is entirely off the image."""
    half_tr = 0.5 * (a + c)
    v1 = half_tr + torch.sqrt(torch.clamp(half_tr * half_tr - det, min=0.01))
    radius = torch.ceil(3.0 * torch.sqrt(v1.clamp(min=0.0)))  # [C, N]
    mx, my = means2d[..., 0], means2d[..., 1]
    visible = (
        visible
        & (radius > radius_clip)
        & (mx + radius > 0)
        & (mx - radius < width)
        & (my + radius > 0)
        & (my - radius < height)
    )
    return torch.where(visible, radius, torch.zeros_like(radius)).to(torch.int32)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Project 3D Gaussians to every camera (gsplat ``fully_fused_projection``, unpacked).

    ``cov2d`` gets ``eps2d * I`` added, ``conic = inverse(cov2d)`` and the radius is
    ``ceil(3 * sqrt(largest eigenvalue))``. A Gaussian is culled (radius 0) when
    its depth is outside ``[near_plane, far_plane]``, ``det(cov2d) <= 0``, the radius
    is ``<= radius_clip`` or its ``radius`` box is entirely off the image. Values of
    culled entries are finite but meaningless.

    Args:
        means: ``[N, 3]``; quats: ``[N, 4]`` wxyz; scales: ``[N, 3]`` (activated).
        viewmats: ``[C, 4, 4]`` world-to-camera (OpenCV); Ks: ``[C, 3, 3]``.

    Returns:
        ``radii [C, N]`` int32, ``means2d [C, N, 2]``, ``depths [C, N]``,
        ``conics [C, N, 3]`` (upper triangle a, b, c of the inverse 2D covariance),
        ``compensations [C, N]`` (``sqrt(det(cov2d) / det(cov2d + eps2d I))``) or None.
    """
    means2d, cov2d, depths, in_depth = _project_in_depth_range(
        means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane
    )
    a, b, c, det_orig, det = _blurred_cov2d(cov2d, eps2d)
    conics, ok_det, safe_det = _conics(a, b, c, det)
    compensations = _compensations(det_orig, safe_det) if calc_compensations else None
    radii = _radii(a, c, det, means2d, in_depth & ok_det, width, height, radius_clip)
    return radii, means2d, depths, conics, compensations
