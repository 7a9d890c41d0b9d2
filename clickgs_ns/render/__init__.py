"""Layer 2, rendering: projection, SH, the CPU rasterizer, the backend entry point ``rasterize`` and what it is
given (``splat_inputs``; cameras and the lens model: ``cameras``, ``lens``).

Imports only ``clickgs_ns.io`` and ``clickgs_ns.levels``. The names most callers need are re-exported here.
"""

from clickgs_ns.render.backend import Backend, rasterize, splat_inputs, uses_gsplat
from clickgs_ns.render.projection import get_viewmat, project_gaussians, quat_scale_to_covar, quat_to_rotmat
from clickgs_ns.render.rasterizer import (
    ALPHA_MAX,
    ALPHA_THRESHOLD,
    TRANSMITTANCE_EPS,
    RasterizeMode,
    RenderMode,
    rasterize_label_weights,
    rasterize_to_pixels,
    rasterize_torch,
    tile_ranges,
)
from clickgs_ns.render.sh import eval_sh
from clickgs_ns.render.transform import transform_splat

__all__ = [
    "ALPHA_MAX", "ALPHA_THRESHOLD", "TRANSMITTANCE_EPS", "Backend", "RasterizeMode", "RenderMode", "eval_sh",
    "get_viewmat", "project_gaussians", "quat_scale_to_covar", "quat_to_rotmat", "rasterize", "rasterize_label_weights",
    "rasterize_to_pixels", "rasterize_torch", "splat_inputs", "tile_ranges", "transform_splat", "uses_gsplat",
]
