"""Moving a splat between frames: positions, orientations, sizes and SH colours (``transform_splat``).

nerfstudio trains in a normalised frame: ``x_ns = scale * (R x + t)`` with the dataparser's ``transform``
[3, 4] = [R | t] and ``scale``. A .ply lives in the dataset's own frame (that of transforms.json), so loading
one moves it into the training frame, and exporting moves it back (``transform_splat(..., inverse=True)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from clickgs_ns.io.splat_files import SplatParams
from clickgs_ns.render.sh import eval_sh


def rotmat_to_quat(rotation: Tensor) -> Tensor:
    """Unit quaternion (wxyz) [4] of a rotation matrix [3, 3]."""
    m = rotation.double()
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    candidates = torch.stack([
        torch.stack([1 + trace, m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]]),
        torch.stack([m[2, 1] - m[1, 2], 1 + m[0, 0] - m[1, 1] - m[2, 2], m[0, 1] + m[1, 0], m[0, 2] + m[2, 0]]),
        torch.stack([m[0, 2] - m[2, 0], m[0, 1] + m[1, 0], 1 - m[0, 0] + m[1, 1] - m[2, 2], m[1, 2] + m[2, 1]]),
        torch.stack([m[1, 0] - m[0, 1], m[0, 2] + m[2, 0], m[1, 2] + m[2, 1], 1 - m[0, 0] - m[1, 1] + m[2, 2]]),
    ])  # each row is 4 q_k * q for the k with the largest diagonal term
    k = int(torch.argmax(torch.stack([1 + trace, 1 + m[0, 0] - m[1, 1] - m[2, 2],
                                      1 - m[0, 0] + m[1, 1] - m[2, 2], 1 - m[0, 0] - m[1, 1] + m[2, 2]])))
    quat = candidates[k] / candidates[k].norm()
    return (quat if quat[0] >= 0 else -quat).to(rotation.dtype)


def quat_multiply(left: Tensor, right: Tensor) -> Tensor:
    """Hamilton product of quaternions (wxyz) [..., 4]."""
    w1, x1, y1, z1 = left.unbind(-1)
    w2, x2, y2, z2 = right.unbind(-1)
    return torch.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], dim=-1)


def sh_rotation_matrix(degree: int, rotation: Tensor, num_dirs: int = 64) -> Tensor:
    """[K, K] map M with ``coeffs_rotated = M @ coeffs`` for SH colours of ``degree`` under ``rotation`` [3, 3].

    A rotated splat must look, along a rotated direction R d, as the original looked along d:
    sum_k c'_k Y_k(R d) = sum_k c_k Y_k(d). Each SH band is closed under rotation, so M solves this exactly;
    it is found by least squares over random directions.
    """
    num_bases = (degree + 1) ** 2
    generator = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(num_dirs, 3, generator=generator, dtype=torch.float64), dim=-1)
    identity = torch.eye(num_bases, dtype=torch.float64)[None, :, :, None].expand(num_dirs, -1, -1, 3)
    rotated_dirs = dirs @ rotation.double().T
    basis = eval_sh(degree, dirs[:, None, :].expand(-1, num_bases, -1), identity)[..., 0]  # [S, K]
    basis_rotated = eval_sh(degree, rotated_dirs[:, None, :].expand(-1, num_bases, -1), identity)[..., 0]
    # basis_rotated @ M^T = basis  ->  M^T = lstsq(basis_rotated, basis)
    return torch.linalg.lstsq(basis_rotated, basis).solution.T.to(rotation.dtype)


def transform_splat(params: SplatParams, transform: Tensor, scale: float, inverse: bool = False) -> SplatParams:
    """Move a splat by ``x' = scale * (R x + t)`` (or back, with ``inverse``); ``transform`` is [3, 4] = [R | t].

    Positions, orientations, sizes and view-dependent colour (SH bands above 0) all follow.
    """
    transform = transform.to(params["means"])
    rotation, translation = transform[:, :3], transform[:, 3]
    if inverse:  # x = R^T (x' / s - t)
        means = (params["means"] / scale) @ rotation - rotation.T @ translation
        rotation, scale = rotation.T, 1.0 / scale
    else:
        means = scale * (params["means"] @ rotation.T + translation)
    out = dict(params)
    out["means"] = means
    out["quats"] = quat_multiply(rotmat_to_quat(rotation).to(means)[None], params["quats"])
    out["scales"] = params["scales"] + torch.log(torch.tensor(scale, dtype=means.dtype))
    rest = params["features_rest"]
    if rest.shape[1] > 0:
        degree = int(round((rest.shape[1] + 1) ** 0.5)) - 1
        sh_map = sh_rotation_matrix(degree, rotation).to(rest)  # [K, K]
        coeffs = torch.cat([params["features_dc"][:, None], rest], dim=1)  # [N, K, 3]
        out["features_rest"] = torch.einsum("jk,nkc->njc", sh_map, coeffs)[:, 1:]
    return out

