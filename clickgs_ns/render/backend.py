"""The renderer's single entry point, :func:`rasterize`: gsplat's CUDA kernels on CUDA tensors, the
project's torch rasterizer (``clickgs_ns.render.rasterizer``) otherwise.

:func:`rasterize` takes the same inputs as ``gsplat.rasterization`` (gsplat 1.4,
``packed=False``) and returns ``(render [C, H, W, X], alphas [C, H, W, 1], info)``.
"""

from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple

import torch
from torch import Tensor

from clickgs_ns.render.rasterizer import RasterizeMode, RenderMode, rasterize_torch

Backend = Literal["auto", "torch", "gsplat"]


def uses_gsplat(backend: Backend, means: Tensor) -> bool:
    """Whether :func:`rasterize` renders ``means`` with gsplat's CUDA kernels under ``backend``."""
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"unknown backend {backend!r}")
    return backend == "gsplat" or (backend == "auto" and means.is_cuda)


def splat_inputs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor) -> Dict[str, Tensor]:
    """The rasterizer's Gaussian inputs from a splat's stored fields, named as splatfacto (and ``SplatParams``) name
    them: means [N, 3], quats [N, 4] (wxyz), scales [N, 3] (log) and opacities [N, 1] or [N] (logit). Returns means,
    quats, ``exp(scales)`` [N, 3] and ``sigmoid(opacities)`` [N]: the keyword arguments of :func:`rasterize`."""
    return dict(means=means, quats=quats, scales=torch.exp(scales), opacities=torch.sigmoid(opacities).reshape(-1))


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,
    render_mode: RenderMode = "RGB",
    rasterize_mode: RasterizeMode = "classic",
    absgrad: bool = False,
    tile_size: int = 16,
    backend: Backend = "auto",
) -> Tuple[Tensor, Tensor, Dict[str, Any]]:
    """Render Gaussians: the single entry point of the project's renderer.

    Args:
        means: ``[N, 3]`` world-space means; quats: ``[N, 4]`` wxyz rotations (need not be normalised).
        scales: ``[N, 3]`` and opacities: ``[N]``, activated (``exp`` and ``sigmoid`` already applied).
        colors: ``[N, D]`` (or ``[C, N, D]``) post-activation features of any width D when ``sh_degree`` is None;
            ``[N, K, 3]`` (or ``[C, N, K, 3]``) SH coefficients otherwise (colour = ``max(SH(dir) + 0.5, 0)``).
        viewmats: ``[C, 4, 4]`` world-to-camera, OpenCV axes (see :func:`get_viewmat`); Ks: ``[C, 3, 3]`` intrinsics.
        width, height: image size; near_plane, far_plane: depth culling range.
        eps2d: low-pass filter added to the 2D covariance diagonal.
        sh_degree: None for plain features, else the SH degree to evaluate.
        backgrounds: ``[C, D]`` background features or None (black).
        render_mode: "RGB", "D" (accumulated depth), "ED" (expected depth = D / alpha), "RGB+D", "RGB+ED" (depth
            appended as the last channel).
        rasterize_mode: "classic" or "antialiased" (opacity times ``sqrt(det(cov2d) / det(cov2d + eps2d I))``).
        absgrad: also accumulate ``info["means2d"].absgrad`` during backward; tile_size: tile edge in pixels.
        backend: "auto" (gsplat on CUDA tensors, torch otherwise), "torch", "gsplat".

    Returns:
        ``render [C, H, W, X]``, ``alphas [C, H, W, 1]`` and ``info`` (gsplat's meta dict: ``means2d`` [C, N, 2]
        with retainable grad, ``radii`` [C, N] int32, ``width``, ``height``, ``n_cameras``, ``depths``, ``conics``,
        ``tile_size``, ...).
    """
    if uses_gsplat(backend, means):
        from gsplat.rendering import rasterization  # lazy: CUDA extension

        return rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
            sh_degree=sh_degree, packed=False, tile_size=tile_size,
            backgrounds=backgrounds, render_mode=render_mode, sparse_grad=False,
            absgrad=absgrad, rasterize_mode=rasterize_mode,
        )  # fmt: skip
    return rasterize_torch(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree,
        backgrounds=backgrounds, render_mode=render_mode, rasterize_mode=rasterize_mode,
        absgrad=absgrad, tile_size=tile_size,
    )  # fmt: skip
