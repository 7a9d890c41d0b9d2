"""Real spherical harmonics, the 3DGS colour basis (degree <= 3): ``eval_sh``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

# Real spherical-harmonics constants of 3DGS (degree <= 3).
_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
_SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate real spherical harmonics (the 3DGS basis), degree 0..3.

    Args:
        degree: SH degree; the first ``(degree + 1) ** 2`` coefficients are used.
        dirs: ``[..., 3]`` view directions (normalised here).
        coeffs: ``[..., K, 3]`` coefficients, ``K >= (degree + 1) ** 2``.

    Returns:
        ``[..., 3]`` ``sum_k basis_k(dir) * coeffs_k`` (no ``+0.5`` offset, no clamp).
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in [0, 3], got {degree}")
    n_bases = (degree + 1) ** 2
    if coeffs.shape[-2] < n_bases:
        raise ValueError(f"degree {degree} needs {n_bases} coefficients, got {coeffs.shape[-2]}")
    sh = coeffs[..., :n_bases, :]
    out = _SH_C0 * sh[..., 0, :]
    if degree == 0:
        return out
    x, y, z = F.normalize(dirs, p=2.0, dim=-1).unbind(-1)
    x, y, z = x[..., None], y[..., None], z[..., None]  # broadcast over RGB
    out = out - _SH_C1 * y * sh[..., 1, :] + _SH_C1 * z * sh[..., 2, :] - _SH_C1 * x * sh[..., 3, :]
    if degree == 1:
        return out
    xx, yy, zz = x * x, y * y, z * z
    xy, yz, xz = x * y, y * z, x * z
    out = (
        out
        + _SH_C2[0] * xy * sh[..., 4, :]
        + _SH_C2[1] * yz * sh[..., 5, :]
        + _SH_C2[2] * (2.0 * zz - xx - yy) * sh[..., 6, :]
        + _SH_C2[3] * xz * sh[..., 7, :]
        + _SH_C2[4] * (xx - yy) * sh[..., 8, :]
    )
    if degree == 2:
        return out
    return (
        out
        + _SH_C3[0] * y * (3.0 * xx - yy) * sh[..., 9, :]
        + _SH_C3[1] * xy * z * sh[..., 10, :]
        + _SH_C3[2] * y * (4.0 * zz - xx - yy) * sh[..., 11, :]
        + _SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * sh[..., 12, :]
        + _SH_C3[4] * x * (4.0 * zz - xx - yy) * sh[..., 13, :]
        + _SH_C3[5] * z * (xx - yy) * sh[..., 14, :]
        + _SH_C3[6] * x * (xx - 3.0 * yy) * sh[..., 15, :]
    )

