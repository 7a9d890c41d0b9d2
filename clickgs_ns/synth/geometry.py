"""Scene geometry: objects placed on a ground plane and sampled as labelled 3D Gaussians.

``build_gaussians`` draws the objects from the catalogues (``catalogues``), places them on the ground, splits the
Gaussian budget over their parts by surface area and samples flat Gaussians on the parts' primitives. Every
Gaussian carries its ground-truth ``object_id`` and ``part_id`` (part ids are global across the scene; the ground
is object 0 with the single part 0, its walls included). The scene lies in about [-1, 1]^3 with z up and the ground
at z = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from clickgs_ns.synth.catalogues import SMALL_CATALOGUE, ObjectTemplate, Primitive, catalogue_templates, primitive
from clickgs_ns.synth.config import SynthConfig


def primitive_area(prim: Primitive) -> float:
    """Surface area of a primitive (ellipsoids by Thomsen's approximation)."""
    s = prim.size
    if prim.kind in ("ellipsoid", "upper_ellipsoid"):
        p = 1.6075
        a, b, c = s
        area = 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
        return area / 2 if prim.kind == "upper_ellipsoid" else area
    if prim.kind == "disk":
        return math.pi * s[0] ** 2
    if prim.kind == "cylinder":
        return 2 * math.pi * s[0] * s[1]
    if prim.kind == "frustum":
        return math.pi * (s[0] + s[1]) * math.hypot(s[0] - s[1], s[2])
    if prim.kind == "box":
        return 2 * (s[0] * s[1] + s[1] * s[2] + s[0] * s[2])
    if prim.kind == "rect":
        return s[0] * s[1]
    raise ValueError(f"unknown primitive kind {prim.kind!r}")


def sample_primitive(prim: Primitive, n: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Random points on a primitive's surface (uniform up to the ellipsoid mapping) and outward unit normals.

    Returns: points [n, 3], normals [n, 3].
    """
    c = np.asarray(prim.center, dtype=np.float64)
    s = prim.size
    if prim.kind in ("ellipsoid", "upper_ellipsoid"):
        radii = np.asarray(s)
        dirs = rng.normal(size=(n, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        if prim.kind == "upper_ellipsoid":
            dirs[:, 2] = np.abs(dirs[:, 2])
        points = c + dirs * radii
        normals = dirs / radii
    elif prim.kind == "disk":
        r = s[0] * np.sqrt(rng.random(n))
        theta = rng.random(n) * 2 * np.pi
        points = c + np.stack([r * np.cos(theta), r * np.sin(theta), np.zeros(n)], axis=1)
        normals = np.tile([0.0, 0.0, float(np.sign(s[1]))], (n, 1))
    elif prim.kind in ("cylinder", "frustum"):
        r_bottom, r_top, height = (s[0], s[0], s[1]) if prim.kind == "cylinder" else s
        u = rng.random(n)
        if abs(r_top - r_bottom) < 1e-9:
            t = u
        else:  # density along the side proportional to the radius
            t = (np.sqrt(r_bottom**2 + u * (r_top**2 - r_bottom**2)) - r_bottom) / (r_top - r_bottom)
        radius = r_bottom + (r_top - r_bottom) * t
        theta = rng.random(n) * 2 * np.pi
        cos, sin = np.cos(theta), np.sin(theta)
        points = c + np.stack([radius * cos, radius * sin, t * height], axis=1)
        normals = np.stack([height * cos, height * sin, np.full(n, r_bottom - r_top)], axis=1)
    elif prim.kind == "box":
        ext = np.asarray(s)
        face_areas = np.array([ext[1] * ext[2], ext[0] * ext[2], ext[0] * ext[1]]).repeat(2)  # -x +x -y +y -z +z
        face = rng.choice(6, size=n, p=face_areas / face_areas.sum())
        axis, sign = face // 2, (face % 2) * 2 - 1
        local = (rng.random((n, 3)) - 0.5) * ext
        local[np.arange(n), axis] = sign * ext[axis] / 2
        points = c + local
        normals = np.zeros((n, 3))
        normals[np.arange(n), axis] = sign
    elif prim.kind == "rect":
        local = (rng.random((n, 2)) - 0.5) * np.asarray(s)
        points = c + np.concatenate([local, np.zeros((n, 1))], axis=1)
        normals = np.tile([0.0, 0.0, 1.0], (n, 1))
    else:
        raise ValueError(f"unknown primitive kind {prim.kind!r}")
    normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    return points, normals


def quats_z_to_normals(normals: np.ndarray) -> np.ndarray:
    """Quaternions (wxyz) [N, 4] of rotations taking the z axis onto each unit normal [N, 3]."""
    w = 1.0 + normals[:, 2]
    quats = np.stack([w, -normals[:, 1], normals[:, 0], np.zeros(len(normals))], axis=1)
    flipped = w < 1e-8  # normal = -z: any half turn about a horizontal axis
    quats[flipped] = [0.0, 1.0, 0.0, 0.0]
    return quats / np.linalg.norm(quats, axis=1, keepdims=True)


def split_count(total: int, weights: Sequence[float]) -> np.ndarray:
    """Split ``total`` into integer counts [K] proportional to ``weights`` (largest remainders get the rest)."""
    weights = np.asarray(weights, dtype=np.float64)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    rest = total - counts.sum()
    counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return counts


@dataclass
class SynthGaussians:
    """A labelled Gaussian scene (numpy, float32 / int32)."""

    means: np.ndarray
    """[N, 3] centres."""
    scales: np.ndarray
    """[N, 3] log standard deviations along the local axes (the third is the surface normal), as splatfacto's
    ``scales``."""
    quats: np.ndarray
    """[N, 4] wxyz."""
    opacities: np.ndarray
    """[N] opacity logits, as splatfacto's ``opacities``."""
    rgb: np.ndarray
    """[N, 3] colours in [0, 1]."""
    object_id: np.ndarray
    """[N] int32."""
    part_id: np.ndarray
    """[N] int32, global over the scene."""
    part_to_object: np.ndarray
    """[P] int32."""
    object_names: List[str]
    part_names: List[str]
    """Part names, 'object/part'."""


@dataclass(frozen=True)
class PlacedPart:
    """A part template placed in the scene: world point = scale * Rz(yaw) @ local point + offset."""

    object_index: int
    name: str
    """'object/part'."""
    color: Tuple[float, float, float]
    primitives: Tuple[Primitive, ...]
    scale: float
    yaw: float
    """Rotation about z, radians."""
    offset: Tuple[float, float, float]

    @property
    def area(self) -> float:
        return sum(primitive_area(p) for p in self.primitives) * self.scale**2


def checker_texture(rgb: np.ndarray, means: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Colours [M, 3] of ground Gaussians at ``means`` [M, 3] with a checkerboard on the floor (cells in x, y) and
    stripes on the walls (cells along the wall and in height): each cell is ``rgb`` times (1 +- contrast)."""
    cell = config.floor_checker_size
    on_floor = means[:, 2] < 1e-3
    along_wall = np.where(np.abs(means[:, 0]) > np.abs(means[:, 1]), means[:, 1], means[:, 0])
    first = np.where(on_floor, means[:, 0], along_wall)
    second = np.where(on_floor, means[:, 1], 2 * means[:, 2])
    parity = (np.floor(first / cell) + np.floor(second / cell)) % 2  # [M] 0 or 1
    factor = 1 + config.floor_checker_contrast * (2 * parity - 1)
    return np.clip(rgb * factor[:, None], 0.0, 1.0).astype(rgb.dtype)


def _place_objects(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Object centres on the ground [num_objects, 2], at least ``min_object_distance`` apart where possible."""
    min_dist = config.min_object_distance
    centres: List[np.ndarray] = []
    while len(centres) < config.num_objects:
        for _ in range(200):
            r = config.placement_radius * math.sqrt(rng.random())
            theta = rng.random() * 2 * math.pi
            candidate = np.array([r * math.cos(theta), r * math.sin(theta)])
            if all(np.linalg.norm(candidate - c) >= min_dist for c in centres):
                centres.append(candidate)
                break
        else:
            min_dist *= 0.9  # crowded: relax and keep going
    return np.array(centres).reshape(-1, 2)


def draw_templates(config: SynthConfig, rng: np.random.Generator) -> List[ObjectTemplate]:
    """The objects' templates, in object order: ``num_objects - num_small_objects`` from ``config.catalogues`` in
    a random order (repeating when there are more objects than templates), then ``num_small_objects`` from the
    small catalogue. Draws one permutation, and a second one only with small objects."""
    if not 0 <= config.num_small_objects <= config.num_objects:
        raise ValueError(f"num_small_objects must be in [0, num_objects = {config.num_objects}], "
                         f"got {config.num_small_objects}")
    catalogue = catalogue_templates(config.catalogues)
    templates = [catalogue[i] for i in rng.permutation(len(catalogue))]
    templates = [templates[i % len(templates)] for i in range(config.num_objects - config.num_small_objects)]
    if config.num_small_objects > 0:  # no draw without small objects: the scene is as before this option
        small = [SMALL_CATALOGUE[i] for i in rng.permutation(len(SMALL_CATALOGUE))]
        templates += [small[i % len(small)] for i in range(config.num_small_objects)]
    return templates


def ground_part(config: SynthConfig) -> PlacedPart:
    """The ground, object 0's single part: the square [-s, s]^2 at z = 0 and, with ``wall_height``, four thin walls
    along its edges."""
    size = 2 * config.ground_half_size
    ground: Tuple[Primitive, ...] = (primitive("rect", (0, 0, 0), size, size),)
    if config.wall_height > 0:
        h, t, s = config.wall_height, 0.02, config.ground_half_size
        ground += tuple(primitive("box", (sx * s, 0, h / 2), t, size, h) for sx in (-1, 1))
        ground += tuple(primitive("box", (0, sy * s, h / 2), size, t, h) for sy in (-1, 1))
    return PlacedPart(0, "ground/ground", tuple(config.ground_color), ground, 1.0, 0.0, (0.0, 0.0, 0.0))


def place_parts(templates: Sequence[ObjectTemplate], centres: np.ndarray, config: SynthConfig,
                rng: np.random.Generator) -> Tuple[List[str], List[PlacedPart]]:
    """Every part of the scene placed, in part-id order: the ground (with ``ground_plane``), then each object's
    parts. Each object draws its scale, then its yaw.

    Args:
        templates: the objects' templates (``draw_templates``).
        centres: [num_objects, 2] the objects' centres on the ground (``_place_objects``).

    Returns:
        object_names (repeated templates numbered: "chair", "chair_2"), parts.
    """
    object_names: List[str] = []
    parts: List[PlacedPart] = []
    if config.ground_plane:
        object_names.append("ground")
        parts.append(ground_part(config))
    seen: Dict[str, int] = {}
    for template, centre in zip(templates, centres):
        seen[template.name] = seen.get(template.name, 0) + 1
        name = template.name if seen[template.name] == 1 else f"{template.name}_{seen[template.name]}"
        object_index = len(object_names)
        object_names.append(name)
        scale = config.object_scale * (1 + config.object_scale_jitter * (2 * rng.random() - 1))
        yaw = rng.random() * 2 * math.pi
        offset = (float(centre[0]), float(centre[1]), 0.0)
        for part in template.parts:
            part_name = f"{name}/{part.name}"
            parts.append(PlacedPart(object_index, part_name, part.color, part.primitives, scale, yaw, offset))
    return object_names, parts


def gaussian_counts(part_areas: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Gaussians per part [P] (int64): the ground gets ``ground_gaussian_fraction`` of ``num_gaussians`` (all of
    them without objects), the objects' parts split the rest by surface area, every part at least
    ``min_gaussians_per_part``.

    Args:
        part_areas: [P] the parts' surface areas, the ground first (with ``ground_plane``).
    """
    counts = np.zeros(len(part_areas), dtype=np.int64)
    first_object_part = 1 if config.ground_plane else 0
    num_object_gaussians = config.num_gaussians
    if config.ground_plane:
        ground_fraction = config.ground_gaussian_fraction if len(part_areas) > 1 else 1.0
        counts[0] = max(config.min_gaussians_per_part, round(ground_fraction * config.num_gaussians))
        num_object_gaussians = max(0, config.num_gaussians - int(counts[0]))
    if len(part_areas) > first_object_part:
        counts[first_object_part:] = split_count(num_object_gaussians, part_areas[first_object_part:])
    return np.maximum(counts, config.min_gaussians_per_part)


def sample_parts(parts: Sequence[PlacedPart], counts: np.ndarray, part_areas: np.ndarray, config: SynthConfig,
                 rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Gaussians sampled on every part, part after part (each part draws its primitives' points, then its colour
    noise).

    Args:
        counts: [P] Gaussians per part (``gaussian_counts``); part_areas: [P] the parts' surface areas.

    Returns:
        {"means": [N, 3], "normals": [N, 3] unit, "sigma": [N] in-plane standard deviation, "rgb": [N, 3],
        "object": [N] object index, "part": [N] part index}, float64 / int64.
    """
    chunks: Dict[str, List[np.ndarray]] = {k: [] for k in ("means", "normals", "sigma", "rgb", "object", "part")}
    for part_index, (part, n) in enumerate(zip(parts, counts)):
        prim_counts = split_count(int(n), [primitive_area(p) for p in part.primitives])
        cos, sin = math.cos(part.yaw), math.sin(part.yaw)
        rot = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        for prim, k in zip(part.primitives, prim_counts):
            points, normals = sample_primitive(prim, int(k), rng)  # [k, 3] each, local frame
            chunks["means"].append(part.scale * points @ rot.T + np.asarray(part.offset))
            chunks["normals"].append(normals @ rot.T)
        spacing = math.sqrt(part_areas[part_index] / n)  # mean distance between neighbouring Gaussians
        chunks["sigma"].append(np.full(n, config.gaussian_size * spacing))
        jitter = config.color_jitter * rng.normal(size=(n, 3))
        chunks["rgb"].append(np.clip(np.asarray(part.color) + jitter, 0.0, 1.0))
        chunks["object"].append(np.full(n, part.object_index))
        chunks["part"].append(np.full(n, part_index))
    return {k: np.concatenate(v) for k, v in chunks.items()}


def build_gaussians(config: SynthConfig, rng: np.random.Generator) -> SynthGaussians:
    """Sample the scene's objects, parts and Gaussians.

    Draws from ``rng`` in this order: the templates (``draw_templates``), the object centres
    (``_place_objects``), each object's scale and yaw (``place_parts``), the Gaussians part by part
    (``sample_parts``).
    """
    templates = draw_templates(config, rng)
    centres = _place_objects(config, rng)
    object_names, parts = place_parts(templates, centres, config, rng)
    part_areas = np.array([part.area for part in parts])
    counts = gaussian_counts(part_areas, config)
    cat = sample_parts(parts, counts, part_areas, config, rng)
    if config.ground_plane and config.floor_checker_size > 0:
        ground_rows = cat["object"] == 0
        cat["rgb"][ground_rows] = checker_texture(cat["rgb"][ground_rows], cat["means"][ground_rows], config)
    sigma = cat["sigma"]
    scales = np.log(np.stack([sigma, sigma, config.gaussian_flatness * sigma], axis=1))
    opacity_logit = math.log(config.opacity / (1 - config.opacity))
    return SynthGaussians(
        means=cat["means"].astype(np.float32),
        scales=scales.astype(np.float32),
        quats=quats_z_to_normals(cat["normals"]).astype(np.float32),
        opacities=np.full(len(sigma), opacity_logit, dtype=np.float32),
        rgb=cat["rgb"].astype(np.float32),
        object_id=cat["object"].astype(np.int32),
        part_id=cat["part"].astype(np.int32),
        part_to_object=np.array([part.object_index for part in parts], dtype=np.int32),
        object_names=object_names,
        part_names=[part.name for part in parts],
    )
