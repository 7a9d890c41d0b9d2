"""Existing splats as a starting point: standard 3DGS .ply files and splatfacto checkpoints.

nerfstudio trains in a normalised frame: ``x_ns = scale * (R x + t)`` with the dataparser's ``transform``
[3, 4] = [R | t] and ``scale``. A .ply lives in the dataset's own frame (that of transforms.json), so loading
one moves it into the training frame, and exporting moves it back (``transform_splat(..., inverse=True)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch
from torch import Tensor

from clickgs_ns.rendering import eval_sh

SplatParams = Dict[str, Tensor]
"""Splatfacto's parameters: means [N,3], scales [N,3] (log), quats [N,4] (wxyz), features_dc [N,3] (SH DC),
features_rest [N,K-1,3], opacities [N,1] (logit); optionally features [N,D]."""


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


def load_splat_ply(path: Path) -> SplatParams:
    """A standard 3DGS .ply as splatfacto parameters (in the .ply's own frame)."""
    from clickgs_ns.ply import read_gaussian_ply

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
