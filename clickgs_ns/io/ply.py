"""Standard 3D Gaussian splat .ply I/O (the format of the Inria 3DGS code, which every splat viewer opens).

One ``vertex`` element, binary little-endian, float32 properties in this order::

    x, y, z, nx, ny, nz,                 # centre; normals are unused and written as zeros
    f_dc_0, f_dc_1, f_dc_2,              # SH degree-0 coefficients (R, G, B)
    f_rest_0 .. f_rest_{3*(K-1)-1},      # higher SH coefficients, all red ones first, then green, then blue
    opacity,                             # opacity logit (pre-sigmoid)
    scale_0, scale_1, scale_2,           # log scales (pre-exp)
    rot_0, rot_1, rot_2, rot_3,          # quaternion w, x, y, z (not necessarily normalised)
    ...extra                             # optional per-Gaussian properties (this project: labels, features)

K = (sh_degree + 1) ** 2 is the number of SH coefficients per colour channel. In memory (as in nerfstudio's
splatfacto) the higher coefficients are ``features_rest`` [N, K-1, 3]; on disk they are ``features_rest`` transposed
to [N, 3, K-1] and flattened. The fields carry splatfacto's names for what it stores: ``scales`` are log scales,
``opacities`` logits, ``features_dc`` / ``features_rest`` SH coefficients.

A separate helper writes the plain coloured point cloud (x, y, z, red, green, blue) that nerfstudio's
dataparsers read through ``ply_file_path`` in transforms.json as splatfacto's seed points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from plyfile import PlyData, PlyElement

from clickgs_ns.io.atomic import atomic_path

#: Properties every 3DGS ply has (the f_rest_* block is optional: SH degree 0).
REQUIRED_PROPERTIES = (
    ["x", "y", "z"]
    + [f"f_dc_{i}" for i in range(3)]
    + ["opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)
_NORMAL_PROPERTIES = ("nx", "ny", "nz")


class GaussianPlyError(ValueError):
    """A file is not a readable 3D Gaussian splat ply, or arrays handed to the writer do not fit together."""


@dataclass
class GaussianPly:
    """The contents of a 3DGS ply as numpy arrays (float32 unless stated), named as splatfacto names its parameters."""

    means: np.ndarray
    """[N, 3] Gaussian centres."""
    scales: np.ndarray
    """[N, 3] log of the per-axis standard deviations (stored pre-exp, as splatfacto's ``scales``)."""
    quats: np.ndarray
    """[N, 4] rotations as quaternions w, x, y, z (as stored, not renormalised)."""
    opacities: np.ndarray
    """[N] opacity logits (pre-sigmoid, as splatfacto's ``opacities``)."""
    features_dc: np.ndarray
    """[N, 3] SH degree-0 coefficients."""
    features_rest: np.ndarray
    """[N, K-1, 3] higher SH coefficients, K = (sh_degree + 1) ** 2; [N, 0, 3] for degree 0."""
    extra: Dict[str, np.ndarray] = field(default_factory=dict)
    """Any other per-Gaussian properties [N], by name, with their stored dtype."""

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(round(math.sqrt(self.features_rest.shape[1] + 1))) - 1


def _f_rest_names(num_rest_coeffs: int) -> List[str]:
    return [f"f_rest_{i}" for i in range(3 * num_rest_coeffs)]


def _to_numpy(arr) -> np.ndarray:
    """numpy view of an array or a torch tensor (detached, on the CPU)."""
    return arr.detach().cpu().numpy() if hasattr(arr, "detach") else np.asarray(arr)


def _as_2d(name: str, arr: np.ndarray, n: int, width: int) -> np.ndarray:
    """``arr`` as [n, width]; also accepts [n, 1, width] (gsplat's sh0) and, for width 1, [n]."""
    arr = _to_numpy(arr)
    if arr.size == n * width and arr.shape[:1] == (n,) and arr.ndim <= 3:
        arr = arr.reshape(n, width)
    if arr.shape != (n, width):
        raise GaussianPlyError(f"{name} must have shape [{n}, {width}], got {list(arr.shape)}")
    return arr


def _extra_dtype(name: str, arr: np.ndarray) -> str:
    """Ply dtype for an extra property: integers (and bools) as int32, floats as float32."""
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return "i4"
    if np.issubdtype(arr.dtype, np.floating):
        return "f4"
    raise GaussianPlyError(f"extra property '{name}' has dtype {arr.dtype}; only integer and float arrays fit a ply")


def _checked_means(means: np.ndarray) -> np.ndarray:
    """``means`` as numpy, checked to be [N, 3]."""
    means = _to_numpy(means)
    if means.ndim != 2 or means.shape[1] != 3:
        raise GaussianPlyError(f"means must have shape [N, 3], got {list(means.shape)}")
    return means


def _checked_features_rest(features_rest: Optional[np.ndarray], n: int) -> np.ndarray:
    """``features_rest`` as numpy [n, K-1, 3] with K a square ([n, 0, 3] float32 zeros for None)."""
    features_rest = np.zeros((n, 0, 3), dtype=np.float32) if features_rest is None else _to_numpy(features_rest)
    if features_rest.ndim != 3 or features_rest.shape[0] != n or features_rest.shape[2] != 3:
        raise GaussianPlyError(f"features_rest must have shape [{n}, K-1, 3], got {list(features_rest.shape)}")
    num_coeffs = features_rest.shape[1] + 1
    if int(round(math.sqrt(num_coeffs))) ** 2 != num_coeffs:
        raise GaussianPlyError(f"features_rest has {num_coeffs - 1} coefficients; K = {num_coeffs} is not a square")
    return features_rest


def _standard_names(num_rest_coeffs: int) -> List[str]:
    """The standard 3DGS property names, in file order, for ``num_rest_coeffs = K-1`` higher SH coefficients."""
    standard_names = ["x", "y", "z", *_NORMAL_PROPERTIES, "f_dc_0", "f_dc_1", "f_dc_2"]
    standard_names += _f_rest_names(num_rest_coeffs)
    standard_names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return standard_names


def _vertex_dtype(standard_names: List[str], extra: Dict[str, np.ndarray], n: int) -> List[Tuple[str, str]]:
    """Structured dtype of the vertices: the standard properties as float32, then the checked ``extra`` ones."""
    dtype = [(name, "<f4") for name in standard_names]
    for name, arr in extra.items():
        if name in standard_names:
            raise GaussianPlyError(f"extra property '{name}' clashes with a standard 3DGS property")
        if arr.shape not in ((n,), (n, 1)):
            raise GaussianPlyError(f"extra property '{name}' must have shape [{n}], got {list(arr.shape)}")
        dtype.append((name, "<" + _extra_dtype(name, arr)))
    return dtype


def _standard_columns(
    means: np.ndarray,
    features_dc: np.ndarray,
    features_rest: np.ndarray,
    opacities: np.ndarray,
    scales: np.ndarray,
    quats: np.ndarray,
) -> np.ndarray:
    """The standard properties as float32 columns ``[N, 17 + 3*(K-1)]`` in file order (zero normals), from means
    [N, 3], features_dc [N, 3], features_rest [N, K-1, 3], opacities [N, 1], scales [N, 3] and quats [N, 4]."""
    n = means.shape[0]
    f_rest = features_rest.transpose(0, 2, 1).reshape(n, -1)  # [N, 3*(K-1)], all red coefficients first
    return np.concatenate(
        [means, np.zeros((n, 3)), features_dc, f_rest, opacities, scales, quats], axis=1
    ).astype(np.float32)  # [N, 17 + 3*(K-1)]


def _vertices(
    standard_names: List[str], dtype: List[Tuple[str, str]], columns: np.ndarray, extra: Dict[str, np.ndarray]
) -> np.ndarray:
    """The ``[N]`` structured vertex array: ``columns [N, len(standard_names)]``, then the ``extra`` properties."""
    n = columns.shape[0]
    vertices = np.empty(n, dtype=dtype)
    for i, name in enumerate(standard_names):
        vertices[name] = columns[:, i]
    for name, arr in extra.items():
        vertices[name] = arr.reshape(n)
    return vertices


def write_gaussian_ply(
    path: Path,
    means: np.ndarray,
    scales: np.ndarray,
    quats: np.ndarray,
    opacities: np.ndarray,
    features_dc: np.ndarray,
    features_rest: Optional[np.ndarray] = None,
    extra: Optional[Dict[str, np.ndarray]] = None,
) -> None:
    """Write Gaussians as a standard binary little-endian 3DGS ply, atomically.

    Args:
        path: output file.
        means: [N, 3] centres.
        scales: [N, 3] log scales.
        quats: [N, 4] quaternions w, x, y, z.
        opacities: [N] opacity logits.
        features_dc: [N, 3] SH degree-0 coefficients.
        features_rest: [N, K-1, 3] higher SH coefficients, or None (or [N, 0, 3]) for degree 0.
        extra: optional per-Gaussian properties [N] appended after the standard ones (ints as int32, floats as
            float32). Torch tensors are accepted everywhere (moved to CPU numpy).
    """
    means = _checked_means(means)
    n = means.shape[0]
    scales = _as_2d("scales", scales, n, 3)
    quats = _as_2d("quats", quats, n, 4)
    features_dc = _as_2d("features_dc", features_dc, n, 3)
    opacities = _as_2d("opacities", opacities, n, 1)  # [N, 1]
    features_rest = _checked_features_rest(features_rest, n)
    extra = {name: _to_numpy(arr) for name, arr in (extra or {}).items()}

    standard_names = _standard_names(features_rest.shape[1])
    dtype = _vertex_dtype(standard_names, extra, n)
    columns = _standard_columns(means, features_dc, features_rest, opacities, scales, quats)  # [N, 17 + 3*(K-1)]
    vertices = _vertices(standard_names, dtype, columns, extra)
    ply = PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<")
    with atomic_path(Path(path)) as tmp:
        ply.write(str(tmp))


def read_gaussian_ply(path: Path) -> GaussianPly:
    """Read a 3DGS ply written by this module, the Inria code, nerfstudio's exporter or any compatible tool.

    Raises GaussianPlyError naming the file when it is unreadable or lacks the 3DGS properties.
    """
    path = Path(path)
    try:
        ply = PlyData.read(str(path))
    except Exception as err:  # plyfile raises several exception types for malformed files
        raise GaussianPlyError(f"{path} is not a readable ply file ({type(err).__name__}: {err})") from err
    if "vertex" not in ply:
        names = [el.name for el in ply.elements]
        raise GaussianPlyError(f"{path} is not a 3D Gaussian splat ply: it has no 'vertex' element (elements {names})")
    data = ply["vertex"].data  # structured array [N]
    names = list(data.dtype.names or ())
    missing = [name for name in REQUIRED_PROPERTIES if name not in names]
    if missing:
        raise GaussianPlyError(
            f"{path} is not a 3D Gaussian splat ply: its vertices lack the properties {missing} "
            f"(it has {names})"
        )
    num_f_rest = sum(1 for name in names if name.startswith("f_rest_"))
    rest_names = _f_rest_names(num_f_rest // 3)
    num_coeffs = num_f_rest // 3 + 1
    square = int(round(math.sqrt(num_coeffs))) ** 2 == num_coeffs
    if num_f_rest % 3 or not square or any(name not in names for name in rest_names):
        raise GaussianPlyError(
            f"{path}: its {num_f_rest} f_rest_* properties are not 3 * ((d + 1)^2 - 1) for an SH degree d, "
            f"numbered from f_rest_0"
        )

    def stack(cols: List[str]) -> np.ndarray:
        if not cols:
            return np.zeros((len(data), 0), dtype=np.float32)
        return np.stack([np.asarray(data[c], dtype=np.float32) for c in cols], axis=1)

    n = len(data)
    features_rest = stack(rest_names).reshape(n, 3, num_coeffs - 1).transpose(0, 2, 1)  # [N, K-1, 3]
    standard = set(REQUIRED_PROPERTIES) | set(rest_names) | set(_NORMAL_PROPERTIES)
    return GaussianPly(
        means=stack(["x", "y", "z"]),
        scales=stack(["scale_0", "scale_1", "scale_2"]),
        quats=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacities=np.asarray(data["opacity"], dtype=np.float32),
        features_dc=stack(["f_dc_0", "f_dc_1", "f_dc_2"]),
        features_rest=np.ascontiguousarray(features_rest),
        extra={name: np.asarray(data[name]).copy() for name in names if name not in standard},
    )


def write_point_cloud_ply(path: Path, points: np.ndarray, colors_uint8: np.ndarray) -> None:
    """Write a coloured point cloud (x, y, z float32; red, green, blue uchar), binary little-endian, atomically.

    This is the seed point cloud that nerfstudio's dataparsers read with open3d via transforms.json's
    ``ply_file_path``.

    Args:
        points: [N, 3] positions.
        colors_uint8: [N, 3] colours 0..255.
    """
    points = np.asarray(points)
    colors = np.asarray(colors_uint8)
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape:
        raise GaussianPlyError(f"points {list(points.shape)} and colors {list(colors.shape)} must both be [N, 3]")
    if np.issubdtype(colors.dtype, np.floating) or colors.min(initial=0) < 0 or colors.max(initial=0) > 255:
        raise GaussianPlyError("colors_uint8 must be integers in 0..255")
    vertices = np.empty(
        len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    for i, name in enumerate(("x", "y", "z")):
        vertices[name] = points[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        vertices[name] = colors[:, i]
    ply = PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<")
    with atomic_path(Path(path)) as tmp:
        ply.write(str(tmp))
