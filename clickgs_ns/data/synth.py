"""Procedural scenes with ground truth, for tests, the demo and benchmarks.

``generate_scene(SynthConfig(), OUT)`` builds a few objects on a ground plane out of 3D Gaussians, each object made
of 2-3 parts with clearly different colours and shapes (snowman = body + head, mushroom = stem + cap, ...), so
that the object (coarse) and part (fine) segmentations differ. Every Gaussian carries its ground-truth
``object_id`` and ``part_id`` (part ids are global across the scene; the ground is object 0 with the single part
0). The scene lies in about [-1, 1]^3 with z up and the ground at z = 0.

Scene families (``FAMILY_PRESETS``, ``family_config``): "tabletop" (``SynthConfig()``, the demo's), "room" (the
accuracy benchmark's first scenes), "garden" (a second catalogue of objects with thin legs, poles and stems, small
objects, a second mask-noise model whose coarse segments split along parts and merge with image neighbours) and
"clutter" (both catalogues, many objects, small ones among them). ``test_set_configs("dev" | "test")`` are the fixed
scenes to choose defaults on and to report on, with disjoint seeds.

It renders the Gaussians from a ring of cameras and writes a nerfstudio dataset to OUT::

    transforms.json            OPENCV intrinsics, camera-to-world poses (OpenGL), ply_file_path: sparse_pc.ply
    images/frame_00000.png     8-bit RGB renders on a plain background
    sparse_pc.ply              seed points for splatfacto (Gaussian centres with their colours)
    scene.ply                  the Gaussians as a standard 3DGS ply, extra int properties object_id, part_id
    scene_labels.npz           int32 object_id [N], part_id [N], part_to_object [P]; object_names, part_names
    gt/frame_00000.npz         ground-truth int32 maps coarse (object id) and fine (part id) [H, W], -1 = background
    clickgs_masks/frame_00000.npz  SAM-like masks derived from the ground truth (see ``sam_like_id_maps``)
    prompts.json               click prompts with ground-truth target masks for ``clickgs eval`` (``make_prompts``)
    prompts/*.png              the prompts' target masks (255 = the segment)
    scene.json                 metadata: the config, names, counts

Everything is deterministic given ``SynthConfig.seed`` (numpy Generators spawned from one SeedSequence; the
rendering itself uses no randomness).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from clickgs_ns.data.sam_masks import segments_to_id_maps
from clickgs_ns.io.atomic import atomic_path, atomic_write_text
from clickgs_ns.io.id_maps import mask_path_for_image, write_id_maps
from clickgs_ns.io.ply import write_gaussian_ply, write_point_cloud_ply
from clickgs_ns.render import get_viewmat, rasterize

SH_C0 = 0.28209479177387814
"""Degree-0 SH basis constant: rgb = 0.5 + SH_C0 * sh_dc."""

_SEGMENT_ID_RANGE = 100_000
"""SAM-like mask ids are distinct random integers in [0, _SEGMENT_ID_RANGE) (background patches: in
[_SEGMENT_ID_RANGE, 2 * _SEGMENT_ID_RANGE))."""
_SCENE_SEGMENT_ID = 2 * _SEGMENT_ID_RANGE
"""The id of the whole-scene segment (``SynthConfig.scene_segment_prob``), beyond all the others."""

GROUND_COLOR = (0.50, 0.50, 0.45)
"""The ground's colour unless ``SynthConfig.ground_color`` says otherwise."""
MASK_NOISE_MODELS = ("touching", "neighbours")
"""``SynthConfig.mask_noise_model``: see ``sam_like_id_maps``."""
PROMPT_TARGET_MASKS = ("visible", "silhouette")
"""``SynthConfig.prompt_target_mask``: see ``segment_prompt``."""


@dataclass
class SynthConfig:
    """Everything that shapes a synthetic scene, its views and its masks."""

    seed: int = 0
    """Seed of every random choice (geometry, seed points, mask noise)."""

    # ---- scene ----
    num_objects: int = 4
    """Objects standing on the ground (the ground itself not counted), drawn without repeats from the catalogue
    (snowman, mushroom, table, lamp, tree, chair, gift); more than 7 repeat templates."""
    catalogues: Tuple[str, ...] = ("household",)
    """Names of the catalogues (``CATALOGUES``) the objects other than the small ones are drawn from, pooled in
    this order: "household" (the 7 above), "outdoor" (bench, streetlight, signpost, flower, parasol, stool, fence:
    thin legs, poles, stems, posts and rails)."""
    num_small_objects: int = 0
    """Of the ``num_objects``, this many (the last ones) come from the "small" catalogue (ball, cup, can, pawn,
    cube, apple: about 0.1 across, under 1% of a 160x120 view from the family's cameras); 0 draws no extra
    random number, so the scene is as without this option."""
    ground_plane: bool = True
    """Add the ground plane, object 0 with a single part."""
    ground_half_size: float = 1.0
    """The ground is the square [-s, s]^2 at z = 0."""
    wall_height: float = 0.0
    """Height of four thin walls along the ground's edges (part of the ground object); 0 = no walls."""
    floor_checker_size: float = 0.0
    """Side of the checkerboard cells textured onto the ground (and stripes onto the walls); 0 = plain ground."""
    floor_checker_contrast: float = 0.45
    """Checkerboard cells are the ground colour times (1 +- this)."""
    placement_radius: float = 0.55
    """Object centres are drawn in the disk of this radius around the origin."""
    min_object_distance: float = 0.6
    """Minimum distance between object centres (relaxed automatically if the objects do not fit)."""
    object_scale: float = 1.4
    """Size multiplier of every object's template (templates are about 0.3-0.45 wide and 0.3-0.6 tall)."""
    object_scale_jitter: float = 0.15
    """Each object's size is multiplied by a uniform factor in [1 - j, 1 + j]."""
    ground_color: Tuple[float, float, float] = GROUND_COLOR
    """The ground's colour (RGB in [0, 1]), before the checkerboard."""

    # ---- Gaussians ----
    num_gaussians: int = 4000
    """Total number of Gaussians (approximately: each part gets at least ``min_gaussians_per_part``)."""
    ground_gaussian_fraction: float = 0.25
    """Share of the Gaussians that cover the ground (all of them without objects); the rest is split over the
    objects' parts by surface area."""
    min_gaussians_per_part: int = 40
    """Lower bound on the Gaussians of one part."""
    gaussian_size: float = 0.9
    """In-plane standard deviation of a Gaussian, relative to the mean spacing of its part's Gaussians."""
    gaussian_flatness: float = 0.3
    """Standard deviation along the surface normal, relative to the in-plane one (flat discs on the surface)."""
    opacity: float = 0.9
    """Opacity of every Gaussian."""
    color_jitter: float = 0.03
    """Per-Gaussian, per-channel colour noise (std, in [0, 1] units) around the part's colour."""
    num_seed_points: int = 800
    """Points in sparse_pc.ply, sampled from the Gaussian centres."""

    # ---- cameras and images ----
    num_views: int = 24
    """Number of views, spread evenly over the elevation rings."""
    elevations_deg: Tuple[float, ...] = (20.0, 45.0)
    """Elevation of each horizontal camera ring, in degrees above the ground."""
    camera_distance: float = 2.8
    """Distance of every camera from the look-at point."""
    look_at_height: float = 0.2
    """All cameras look at (0, 0, look_at_height)."""
    fov_x_deg: float = 50.0
    """Horizontal field of view in degrees (square pixels, principal point at the image centre)."""
    image_width: int = 160
    """Image width in pixels."""
    image_height: int = 120
    """Image height in pixels."""
    background: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Plain background colour (RGB in [0, 1]) of the rendered images."""
    gt_alpha_threshold: float = 0.5
    """Ground-truth maps are -1 where the rendered opacity is at most this."""
    render_batch_views: int = 8
    """Views per rasterizer call (speed versus memory)."""

    # ---- SAM-like masks ----
    mask_noise: float = 0.3
    """Scales every mask-noise probability below: 0 gives clean masks (the ground truth with random ids);
    1 uses the probabilities as given (heavily inconsistent across views)."""
    object_merge_prob: float = 0.5
    """Per view: probability that two objects touching in the image get one coarse segment."""
    part_split_prob: float = 0.3
    """Per view and part: probability that the part is cut in two by a random line at the fine level."""
    segment_drop_prob: float = 0.15
    """Per view and segment (object, part, merged or split): probability that the segment is missed. A missed
    object shows its parts at the coarse level; a missed part shows its object at the fine level."""
    boundary_flip_prob: float = 0.5
    """Per boundary pixel: probability that it takes the ids of a nearby pixel, or none (ragged boundaries)."""
    boundary_unlabel_fraction: float = 0.3
    """Share of the flipped boundary pixels that become -1 rather than copying a neighbour."""
    boundary_flip_radius_px: int = 2
    """A flipped boundary pixel copies a pixel at most this far away (per axis)."""
    holes_per_view: float = 3.0
    """Expected number of small unlabelled discs (-1 at both levels) per view."""
    hole_radius_px: float = 4.0
    """Largest radius of an unlabelled disc (each radius is uniform in [1, hole_radius_px])."""
    scene_segment_prob: float = 0.0
    """Per view (times mask_noise, like the others): probability of one more segment covering everything but the
    background (ground and every object), as SAM's automatic generator often returns (``sam_masks.SceneSegmentRule``).
    0 (the default, and the benchmark's) draws no extra random number, so the masks are as without this option;
    above 0 the extra draw also moves the later random holes and patch ids."""
    small_segment_area_px: int = 60
    """Segments smaller than mask_noise * this many pixels are left out (SAM misses small regions)."""
    background_patches: int = 0
    """When > 0, the ground (floor and walls) is not one segment but is cut, in every view independently, into
    this many coarse patches and twice as many fine ones (image-space Voronoi cells around random pixels), so
    its segment ids are inconsistent across views, as SAM's are on floors and walls."""
    mask_noise_model: str = "touching"
    """"touching": the noise above only (merges join two objects whose masks touch). "neighbours": in addition,
    per view, coarse segments that split along the parts (``coarse_part_split_prob``) and merges of an object
    with its nearest neighbour in the image although their masks do not touch (``neighbour_merge_prob``); these
    draw their own random numbers, so the two models give different masks for one seed."""
    coarse_part_split_prob: float = 0.3
    """"neighbours" model, per view and object of several visible parts: probability that the object has no
    coarse segment of its own but one per group of its parts (two groups, each one part or more: SAM's coarse
    level then shows parts)."""
    neighbour_merge_prob: float = 0.3
    """"neighbours" model, per view and object (not the ground): probability that it is merged into one coarse
    segment with the nearest other object within ``neighbour_merge_gap_px`` in the image."""
    neighbour_merge_gap_px: float = 8.0
    """"neighbours" model: two objects are image neighbours when their masks come this close (pixels)."""
    neighbour_merge_bridge: bool = True
    """"neighbours" model: a merged segment also covers the ground between the two objects (ground pixels within
    ``neighbour_merge_gap_px`` of both), as SAM's masks of two nearby objects often do. Composed by area priority,
    those pixels keep a larger ground segment at the coarse level and show the merged one at the fine level."""

    # ---- evaluation prompts (prompts.json) ----
    prompt_fine_objects: int = 3
    """Objects (with more than one part, in object order) whose parts get fine-level prompts; every object but
    the ground gets a coarse-level prompt."""
    prompt_max_targets: int = 3
    """Target views per prompt, at most."""
    prompt_min_targets: int = 2
    """A segment with fewer usable target views gets no prompt."""
    prompt_min_target_area: float = 0.005
    """A target view must show at least this fraction of the image's pixels of the segment."""
    prompt_min_visible_fraction: float = 0.8
    """A target view must show at least this share of the segment's unoccluded silhouette (the selection's mask
    is rendered without the other Gaussians, the ground-truth mask shows only what is visible)."""
    prompt_min_click_depth_px: float = 2.0
    """The click pixel lies at least this far (Euclidean, pixels) from the segment's edge."""
    prompt_train_fraction: float = 0.9
    """Clicks go in training views: nerfstudio's default split (``train_split_fraction``, by frame order)."""
    prompt_eval_targets: bool = False
    """Target views are held-out (eval split) views only; otherwise any view but the click's."""
    prompt_target_mask: str = "visible"
    """A target's mask: "visible", the segment's ground-truth (visible) pixels; or "silhouette", its unoccluded
    silhouette, which is what the selection rendered alone shows, so that a part mostly hidden by another (a
    chair's legs under its seat) can be scored with a low ``prompt_min_visible_fraction`` without penalising a
    correct selection for the pixels hidden in that view."""


ROOM_PRESET: Dict[str, object] = dict(
    num_objects=7, ground_half_size=1.3, wall_height=0.3, floor_checker_size=0.22, placement_radius=0.8,
    min_object_distance=0.5, object_scale=1.3, num_gaussians=40000, ground_gaussian_fraction=0.55,
    num_seed_points=8000, num_views=40, elevations_deg=(18.0, 32.0, 50.0), camera_distance=2.6, fov_x_deg=55.0,
    mask_noise=1.0, background_patches=6, prompt_fine_objects=7, prompt_max_targets=4, prompt_min_targets=1,
    prompt_eval_targets=True,
)
"""The "room" scene family (``SynthConfig.room()``, ``clickgs synth --preset room``): a checkerboard floor with
striped walls, seven objects with parts (thin legs and poles among them) close enough to occlude each other, 40
views on three rings, heavily noisy SAM-like masks whose floor and wall segments change from view to view, and
prompts scored on held-out views only. The accuracy benchmark's scenes."""


def room_config(**overrides: object) -> SynthConfig:
    """A ``SynthConfig`` of the room family (``ROOM_PRESET``), with ``overrides`` on top."""
    return SynthConfig(**{**ROOM_PRESET, **overrides})  # type: ignore[arg-type]


PROMPT_EVERY_PART: Dict[str, object] = dict(
    prompt_fine_objects=1000, prompt_min_visible_fraction=0.1, prompt_target_mask="silhouette",
    prompt_min_target_area=0.001, prompt_min_targets=1, prompt_max_targets=4, prompt_eval_targets=True,
)
"""Prompts on every object and every part a user can see and click (a pixel ``prompt_min_click_depth_px`` inside
it in a training view), thin and small ones included: a target view needs only 10% of the segment's silhouette
visible and 0.1% of the image, and its mask is the silhouette (``SynthConfig.prompt_target_mask``). Targets are
held-out views. Part of the garden and clutter families, and of every scene of ``test_set_configs``."""

GARDEN_PRESET: Dict[str, object] = dict(
    catalogues=("outdoor",), num_objects=8, num_small_objects=2, ground_half_size=1.3, ground_color=(0.40, 0.52, 0.33),
    floor_checker_size=0.35, floor_checker_contrast=0.2, placement_radius=0.85, min_object_distance=0.45,
    object_scale=1.3, num_gaussians=20000, ground_gaussian_fraction=0.45, num_seed_points=4000, num_views=40,
    elevations_deg=(15.0, 30.0, 50.0), camera_distance=2.6, fov_x_deg=55.0, mask_noise=1.0, background_patches=6,
    mask_noise_model="neighbours", **PROMPT_EVERY_PART,
)
"""The "garden" family: objects from the "outdoor" catalogue (benches, streetlights, signposts, flowers, parasols,
stools, fences: thin legs, poles, stems, posts, rails and seats) and two from the "small" one on a green ground
with a faint large checkerboard and no walls, 40 views on three rings, the "neighbours" mask-noise model (coarse
segments split along parts, merges with image neighbours) at noise 1.0 with view-local ground patches, and
prompts on every visible part (``PROMPT_EVERY_PART``)."""

CLUTTER_PRESET: Dict[str, object] = dict(
    catalogues=("household", "outdoor"), num_objects=12, num_small_objects=4, ground_half_size=1.3, wall_height=0.3,
    floor_checker_size=0.18, placement_radius=0.9, min_object_distance=0.35, object_scale=1.1,
    num_gaussians=24000, ground_gaussian_fraction=0.4, num_seed_points=5000, num_views=40,
    elevations_deg=(18.0, 32.0, 50.0), camera_distance=2.6, fov_x_deg=55.0, mask_noise=1.0, background_patches=6,
    mask_noise_model="neighbours", **PROMPT_EVERY_PART,
)
"""The "clutter" family: a room (checkerboard floor, striped walls) crowded with objects from both catalogues at a
smaller scale and four small ones, so that objects touch and hide each other in the image, 40 views, the
"neighbours" mask-noise model at noise 1.0 with view-local floor patches, and prompts on every visible part."""

FAMILY_PRESETS: Dict[str, Dict[str, object]] = {
    "tabletop": {}, "room": ROOM_PRESET, "garden": GARDEN_PRESET, "clutter": CLUTTER_PRESET,
}
"""Scene families by name (``family_config``, ``clickgs synth --preset``): "tabletop" is ``SynthConfig()``."""


def family_config(family: str, **overrides: object) -> SynthConfig:
    """A ``SynthConfig`` of the named family (``FAMILY_PRESETS``), with ``overrides`` on top."""
    if family not in FAMILY_PRESETS:
        raise ValueError(f"unknown scene family {family!r}; known: {', '.join(FAMILY_PRESETS)}")
    return SynthConfig(**{**FAMILY_PRESETS[family], **overrides})  # type: ignore[arg-type]


TEST_SET_SCENES: Dict[str, Tuple[Tuple[str, int, int, str], ...]] = {
    "dev": (
        ("room", 4, 1, "neighbours"), ("garden", 6, 2, "touching"), ("clutter", 9, 3, "neighbours"),
        ("room", 12, 0, "touching"), ("garden", 15, 4, "neighbours"), ("clutter", 3, 1, "touching"),
    ),
    "test": (
        ("room", 3, 1, "touching"), ("garden", 5, 1, "neighbours"), ("clutter", 7, 2, "touching"),
        ("room", 10, 2, "neighbours"), ("garden", 11, 3, "touching"), ("clutter", 15, 4, "neighbours"),
    ),
}
"""The scenes of each split as (family, objects, of which small, mask-noise model); ``test_set_configs``."""
TEST_SET_SEEDS: Dict[str, int] = {"dev": 1000, "test": 2000}
"""Scene i of a split has seed ``TEST_SET_SEEDS[split] + i``: disjoint between the splits, and from seeds 0 and 1
(the room scenes the defaults were first tuned on)."""


def scaled_to_objects(config: SynthConfig, num_objects: int) -> Dict[str, int]:
    """``num_gaussians`` and ``num_seed_points`` for ``config``'s family with ``num_objects`` objects instead of its
    own count: the ground keeps its Gaussians, the objects' share grows or shrinks in proportion."""
    ground = config.ground_gaussian_fraction if config.ground_plane else 0.0
    factor = ground + (1.0 - ground) * num_objects / max(1, config.num_objects)
    return {"num_gaussians": int(round(config.num_gaussians * factor)),
            "num_seed_points": int(round(config.num_seed_points * factor))}


def test_set_configs(split: str, **overrides: object) -> List[Tuple[str, SynthConfig]]:
    """The fixed scenes of a split, as (name, config): "dev" to choose defaults on, "test" to report.

    Each split mixes the room, garden and clutter families, 3 to 15 objects (small ones among them) and both
    mask-noise models (``TEST_SET_SCENES``); every scene prompts every visible part (``PROMPT_EVERY_PART``) and
    has a seed of its own (``TEST_SET_SEEDS``). The Gaussians scale with the object count
    (``scaled_to_objects``). ``overrides`` go on top of every scene (tests: smaller images, fewer views). Names
    ("garden06_touching_s1001") have no dot, as nerfstudio names runs by the data folder's stem.
    """
    if split not in TEST_SET_SCENES:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(TEST_SET_SCENES)}")
    scenes = []
    for index, (family, num_objects, num_small, noise_model) in enumerate(TEST_SET_SCENES[split]):
        seed = TEST_SET_SEEDS[split] + index
        base = family_config(family, **PROMPT_EVERY_PART)
        config = dataclasses.replace(
            base, seed=seed, num_objects=num_objects, num_small_objects=num_small, mask_noise_model=noise_model,
            **scaled_to_objects(base, num_objects),
        )
        scenes.append((f"{family}{num_objects:02d}_{noise_model}_s{seed}", dataclasses.replace(config, **overrides)))
    return scenes


test_set_configs.__test__ = False  # type: ignore[attr-defined]  # not a pytest test where a test imports it


@dataclass
class SynthScene:
    """What ``generate_scene`` wrote."""

    root: Path
    """The dataset folder."""
    transforms_path: Path
    scene_ply_path: Path
    labels_path: Path
    sparse_pc_path: Path
    metadata_path: Path
    image_paths: List[Path]
    gt_paths: List[Path]
    mask_paths: List[Path]
    num_gaussians: int
    num_objects: int
    """Objects including the ground."""
    num_parts: int
    object_names: List[str]
    part_names: List[str]
    prompts_path: Path
    """prompts.json: click prompts with ground-truth target masks (format: ``clickgs_ns.segment.evaluate``)."""
    num_prompts: int = 0


# ------------------------------------------------------------------------------------------------------------------
# Geometry: primitives, parts, objects
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Primitive:
    """A surface in an object's local frame (z up, the object stands on z = 0)."""

    kind: str
    """ellipsoid | upper_ellipsoid | disk | cylinder | frustum | box | rect."""
    center: Tuple[float, float, float]
    """Centre (ellipsoid, disk, box, rect) or centre of the base (cylinder, frustum)."""
    size: Tuple[float, ...]
    """ellipsoid: radii (3); disk: (radius, +1 facing up or -1 down); cylinder: (radius, height), side only;
    frustum: (bottom radius, top radius, height), side only; box: full extents (3); rect: extents (x, y), up."""


@dataclass(frozen=True)
class PartTemplate:
    name: str
    color: Tuple[float, float, float]
    primitives: Tuple[Primitive, ...]


@dataclass(frozen=True)
class ObjectTemplate:
    name: str
    parts: Tuple[PartTemplate, ...]


def _p(kind: str, center: Sequence[float], *size: float) -> Primitive:
    return Primitive(kind, tuple(float(c) for c in center), tuple(float(s) for s in size))  # type: ignore[arg-type]


OBJECT_CATALOGUE: Tuple[ObjectTemplate, ...] = (
    ObjectTemplate("snowman", (
        PartTemplate("body", (0.72, 0.80, 0.97), (_p("ellipsoid", (0, 0, 0.15), 0.15, 0.15, 0.15),)),
        PartTemplate("head", (0.97, 0.50, 0.08), (_p("ellipsoid", (0, 0, 0.37), 0.095, 0.095, 0.095),)),
    )),
    ObjectTemplate("mushroom", (
        PartTemplate("stem", (0.93, 0.86, 0.64), (_p("cylinder", (0, 0, 0), 0.05, 0.2),)),
        PartTemplate("cap", (0.85, 0.10, 0.10), (
            _p("upper_ellipsoid", (0, 0, 0.18), 0.19, 0.19, 0.12), _p("disk", (0, 0, 0.18), 0.19, -1))),
    )),
    ObjectTemplate("table", (
        PartTemplate("top", (0.62, 0.37, 0.16), (_p("box", (0, 0, 0.29), 0.44, 0.30, 0.04),)),
        PartTemplate("legs", (0.14, 0.14, 0.17), tuple(
            _p("cylinder", (sx * 0.19, sy * 0.12, 0), 0.024, 0.27) for sx in (-1, 1) for sy in (-1, 1))),
    )),
    ObjectTemplate("lamp", (
        PartTemplate("base", (0.10, 0.20, 0.62), (
            _p("cylinder", (0, 0, 0), 0.12, 0.03), _p("disk", (0, 0, 0.03), 0.12, 1))),
        PartTemplate("pole", (0.62, 0.62, 0.66), (_p("cylinder", (0, 0, 0.03), 0.025, 0.29),)),
        PartTemplate("shade", (0.98, 0.86, 0.16), (
            _p("frustum", (0, 0, 0.30), 0.15, 0.07, 0.15), _p("disk", (0, 0, 0.45), 0.07, 1))),
    )),
    ObjectTemplate("tree", (
        PartTemplate("trunk", (0.36, 0.20, 0.08), (_p("cylinder", (0, 0, 0), 0.045, 0.17),)),
        PartTemplate("crown", (0.10, 0.55, 0.20), (
            _p("frustum", (0, 0, 0.15), 0.19, 0.0, 0.45), _p("disk", (0, 0, 0.15), 0.19, -1))),
    )),
    ObjectTemplate("chair", (
        PartTemplate("seat", (0.20, 0.45, 0.30), (_p("box", (0, 0, 0.2), 0.26, 0.26, 0.035),)),
        PartTemplate("legs", (0.85, 0.85, 0.80), tuple(
            _p("cylinder", (sx * 0.11, sy * 0.11, 0), 0.014, 0.185) for sx in (-1, 1) for sy in (-1, 1))),
        PartTemplate("back", (0.95, 0.55, 0.35), (
            _p("box", (0, -0.12, 0.33), 0.26, 0.025, 0.12),
            *(_p("cylinder", (sx * 0.11, -0.12, 0.215), 0.012, 0.06) for sx in (-1, 1)))),
    )),
    ObjectTemplate("gift", (
        PartTemplate("box", (0.75, 0.15, 0.72), (_p("box", (0, 0, 0.10), 0.28, 0.28, 0.20),)),
        PartTemplate("lid", (0.15, 0.76, 0.82), (_p("box", (0, 0, 0.225), 0.31, 0.31, 0.05),)),
    )),
)
"""Object templates; parts differ in colour and shape (the "household" catalogue)."""

OUTDOOR_CATALOGUE: Tuple[ObjectTemplate, ...] = (
    ObjectTemplate("bench", (
        PartTemplate("seat", (0.60, 0.32, 0.12), (_p("box", (0, 0, 0.17), 0.44, 0.16, 0.03),)),
        PartTemplate("legs", (0.18, 0.18, 0.20), tuple(
            _p("cylinder", (sx * 0.18, sy * 0.055, 0), 0.022, 0.155) for sx in (-1, 1) for sy in (-1, 1))),
        PartTemplate("back", (0.95, 0.75, 0.45), (_p("box", (0, -0.075, 0.29), 0.44, 0.025, 0.10),)),
    )),
    ObjectTemplate("streetlight", (
        PartTemplate("base", (0.55, 0.25, 0.55), (
            _p("cylinder", (0, 0, 0), 0.07, 0.04), _p("disk", (0, 0, 0.04), 0.07, 1))),
        PartTemplate("pole", (0.40, 0.42, 0.45), (_p("cylinder", (0, 0, 0.04), 0.022, 0.44),)),
        PartTemplate("lantern", (1.00, 0.95, 0.60), (_p("ellipsoid", (0, 0, 0.54), 0.07, 0.07, 0.08),)),
    )),
    ObjectTemplate("signpost", (
        PartTemplate("post", (0.55, 0.55, 0.58), (_p("cylinder", (0, 0, 0), 0.022, 0.40),)),
        PartTemplate("sign", (0.10, 0.45, 0.85), (_p("box", (0, 0, 0.45), 0.30, 0.02, 0.18),)),
    )),
    ObjectTemplate("flower", (
        PartTemplate("pot", (0.78, 0.42, 0.25), (
            _p("frustum", (0, 0, 0), 0.08, 0.10, 0.11), _p("disk", (0, 0, 0.11), 0.10, 1))),
        PartTemplate("stem", (0.25, 0.60, 0.15), (_p("cylinder", (0, 0, 0.11), 0.022, 0.24),)),
        PartTemplate("bloom", (0.95, 0.30, 0.60), (_p("ellipsoid", (0, 0, 0.38), 0.085, 0.085, 0.05),)),
        PartTemplate("leaves", (0.55, 0.85, 0.25), (
            _p("ellipsoid", (0.065, 0, 0.22), 0.06, 0.02, 0.012),
            _p("ellipsoid", (-0.065, 0, 0.27), 0.06, 0.02, 0.012))),
    )),
    ObjectTemplate("parasol", (
        PartTemplate("base", (0.35, 0.25, 0.20), (
            _p("cylinder", (0, 0, 0), 0.09, 0.03), _p("disk", (0, 0, 0.03), 0.09, 1))),
        PartTemplate("pole", (0.92, 0.92, 0.85), (_p("cylinder", (0, 0, 0.03), 0.02, 0.40),)),
        PartTemplate("canopy", (0.15, 0.70, 0.65), (
            _p("frustum", (0, 0, 0.38), 0.26, 0.02, 0.10), _p("disk", (0, 0, 0.38), 0.26, -1))),
    )),
    ObjectTemplate("stool", (
        PartTemplate("seat", (0.55, 0.15, 0.45), (
            _p("cylinder", (0, 0, 0.25), 0.13, 0.035), _p("disk", (0, 0, 0.285), 0.13, 1),
            _p("disk", (0, 0, 0.25), 0.13, -1))),
        PartTemplate("legs", (0.75, 0.75, 0.70), tuple(
            _p("cylinder", (0.09 * math.cos(a), 0.09 * math.sin(a), 0), 0.02, 0.25)
            for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3))),
    )),
    ObjectTemplate("fence", (
        PartTemplate("posts", (0.45, 0.30, 0.15), tuple(
            _p("box", (x, 0, 0.15), 0.04, 0.04, 0.30) for x in (-0.22, 0.0, 0.22))),
        PartTemplate("rails", (0.90, 0.88, 0.75), tuple(
            _p("box", (0, 0.03, z), 0.52, 0.02, 0.04) for z in (0.10, 0.23))),
    )),
)
"""The "outdoor" catalogue: objects with thin parts (legs, poles, stems, posts, rails: a few pixels wide at 160x120)
and flat seats and signs."""

SMALL_CATALOGUE: Tuple[ObjectTemplate, ...] = (
    ObjectTemplate("ball", (
        PartTemplate("ball", (0.95, 0.80, 0.10), (_p("ellipsoid", (0, 0, 0.05), 0.05, 0.05, 0.05),)),)),
    ObjectTemplate("cup", (
        PartTemplate("body", (0.30, 0.55, 0.90), (
            _p("cylinder", (0, 0, 0), 0.04, 0.08), _p("disk", (0, 0, 0.075), 0.04, 1))),
        PartTemplate("handle", (0.90, 0.55, 0.15), (_p("box", (0.05, 0, 0.045), 0.02, 0.015, 0.05),)),
    )),
    ObjectTemplate("can", (
        PartTemplate("body", (0.85, 0.10, 0.20), (_p("cylinder", (0, 0, 0), 0.035, 0.10),)),
        PartTemplate("lid", (0.70, 0.70, 0.74), (_p("disk", (0, 0, 0.10), 0.035, 1),)),
    )),
    ObjectTemplate("pawn", (
        PartTemplate("body", (0.20, 0.20, 0.60), (
            _p("frustum", (0, 0, 0), 0.045, 0.018, 0.08), _p("disk", (0, 0, 0), 0.045, -1))),
        PartTemplate("head", (0.95, 0.65, 0.20), (_p("ellipsoid", (0, 0, 0.10), 0.03, 0.03, 0.03),)),
    )),
    ObjectTemplate("cube", (PartTemplate("cube", (0.40, 0.75, 0.95), (_p("box", (0, 0, 0.045), 0.09, 0.09, 0.09),)),)),
    ObjectTemplate("apple", (
        PartTemplate("fruit", (0.80, 0.15, 0.10), (_p("ellipsoid", (0, 0, 0.045), 0.05, 0.05, 0.045),)),
        PartTemplate("stem", (0.35, 0.22, 0.08), (_p("cylinder", (0, 0, 0.085), 0.006, 0.025),)),
    )),
)
"""The "small" catalogue (``SynthConfig.num_small_objects``): objects about 0.1 across."""

CATALOGUES: Dict[str, Tuple[ObjectTemplate, ...]] = {
    "household": OBJECT_CATALOGUE, "outdoor": OUTDOOR_CATALOGUE, "small": SMALL_CATALOGUE,
}
"""Object catalogues by name (``SynthConfig.catalogues``)."""


def catalogue_templates(names: Sequence[str]) -> Tuple[ObjectTemplate, ...]:
    """The templates of the named catalogues (``CATALOGUES``), pooled in order."""
    unknown = [name for name in names if name not in CATALOGUES]
    if unknown or not names:
        raise ValueError(f"unknown or no object catalogues {list(names)}; known: {', '.join(CATALOGUES)}")
    return tuple(template for name in names for template in CATALOGUES[name])

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
    log_scales: np.ndarray
    """[N, 3] log standard deviations along the local axes (the third is the surface normal)."""
    quats: np.ndarray
    """[N, 4] wxyz."""
    opacity_logits: np.ndarray
    """[N]."""
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


def build_gaussians(config: SynthConfig, rng: np.random.Generator) -> SynthGaussians:
    """Sample the scene's objects, parts and Gaussians."""
    if not 0 <= config.num_small_objects <= config.num_objects:
        raise ValueError(f"num_small_objects must be in [0, num_objects = {config.num_objects}], "
                         f"got {config.num_small_objects}")
    catalogue = catalogue_templates(config.catalogues)
    templates = [catalogue[i] for i in rng.permutation(len(catalogue))]
    templates = [templates[i % len(templates)] for i in range(config.num_objects - config.num_small_objects)]
    if config.num_small_objects > 0:  # no draw without small objects: the scene is as before this option
        small = [SMALL_CATALOGUE[i] for i in rng.permutation(len(SMALL_CATALOGUE))]
        templates += [small[i % len(small)] for i in range(config.num_small_objects)]
    centres = _place_objects(config, rng)

    object_names: List[str] = []
    parts: List[PlacedPart] = []
    if config.ground_plane:
        object_names.append("ground")
        size = 2 * config.ground_half_size
        ground: Tuple[Primitive, ...] = (_p("rect", (0, 0, 0), size, size),)
        if config.wall_height > 0:
            h, t, s = config.wall_height, 0.02, config.ground_half_size
            ground += tuple(_p("box", (sx * s, 0, h / 2), t, size, h) for sx in (-1, 1))
            ground += tuple(_p("box", (0, sy * s, h / 2), size, t, h) for sy in (-1, 1))
        parts.append(PlacedPart(0, "ground/ground", tuple(config.ground_color), ground, 1.0, 0.0, (0.0, 0.0, 0.0)))
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

    part_areas = np.array([part.area for part in parts])
    counts = np.zeros(len(parts), dtype=np.int64)
    first_object_part = 1 if config.ground_plane else 0
    num_object_gaussians = config.num_gaussians
    if config.ground_plane:
        ground_fraction = config.ground_gaussian_fraction if len(parts) > 1 else 1.0
        counts[0] = max(config.min_gaussians_per_part, round(ground_fraction * config.num_gaussians))
        num_object_gaussians = max(0, config.num_gaussians - int(counts[0]))
    if len(parts) > first_object_part:
        counts[first_object_part:] = split_count(num_object_gaussians, part_areas[first_object_part:])
    counts = np.maximum(counts, config.min_gaussians_per_part)

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

    cat = {k: np.concatenate(v) for k, v in chunks.items()}
    if config.ground_plane and config.floor_checker_size > 0:
        ground_rows = cat["object"] == 0
        cat["rgb"][ground_rows] = checker_texture(cat["rgb"][ground_rows], cat["means"][ground_rows], config)
    sigma = cat["sigma"]
    log_scales = np.log(np.stack([sigma, sigma, config.gaussian_flatness * sigma], axis=1))
    opacity_logit = math.log(config.opacity / (1 - config.opacity))
    return SynthGaussians(
        means=cat["means"].astype(np.float32),
        log_scales=log_scales.astype(np.float32),
        quats=quats_z_to_normals(cat["normals"]).astype(np.float32),
        opacity_logits=np.full(len(sigma), opacity_logit, dtype=np.float32),
        rgb=cat["rgb"].astype(np.float32),
        object_id=cat["object"].astype(np.int32),
        part_id=cat["part"].astype(np.int32),
        part_to_object=np.array([part.object_index for part in parts], dtype=np.int32),
        object_names=object_names,
        part_names=[part.name for part in parts],
    )


# ------------------------------------------------------------------------------------------------------------------
# Cameras and rendering
# ------------------------------------------------------------------------------------------------------------------


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
    means = torch.from_numpy(gaussians.means)
    quats = torch.from_numpy(gaussians.quats)
    scales = torch.from_numpy(gaussians.log_scales).exp()
    opacities = torch.sigmoid(torch.from_numpy(gaussians.opacity_logits))
    viewmats = get_viewmat(torch.from_numpy(camera_to_worlds[:, :3, :4]).float())  # [C, 4, 4] OpenCV w2c
    fx, fy, cx, cy = intrinsics(config)
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    background = torch.cat([torch.tensor(config.background, dtype=torch.float32), torch.zeros(num_parts)])

    images, gt_coarse, gt_fine = [], [], []
    batch = max(1, config.render_batch_views)
    for start in range(0, len(viewmats), batch):
        views = viewmats[start : start + batch]
        c = len(views)
        render, alphas, _ = rasterize(
            means, quats, scales, opacities, colors, views, K.expand(c, 3, 3), config.image_width,
            config.image_height, backgrounds=background.expand(c, -1),
        )  # [c, H, W, 3 + P], [c, H, W, 1]
        rgb = (render[..., :3].clamp(0, 1) * 255).round().to(torch.uint8)
        part = render[..., 3:].argmax(dim=-1).numpy().astype(np.int32)  # [c, H, W]
        covered = alphas[..., 0].numpy() > config.gt_alpha_threshold
        images.append(rgb.numpy())
        gt_fine.append(np.where(covered, part, -1))
        gt_coarse.append(np.where(covered, gaussians.part_to_object[part], -1))
    return np.concatenate(images), np.concatenate(gt_coarse).astype(np.int32), np.concatenate(gt_fine).astype(np.int32)


# ------------------------------------------------------------------------------------------------------------------
# SAM-like masks
# ------------------------------------------------------------------------------------------------------------------


def _dilate(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary dilation of [H, W] by one pixel."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _boundary(*maps: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels whose id differs from a 4-neighbour's in any of the maps."""
    edge = np.zeros(maps[0].shape, dtype=bool)
    for m in maps:
        dy = m[1:] != m[:-1]
        dx = m[:, 1:] != m[:, :-1]
        edge[1:] |= dy
        edge[:-1] |= dy
        edge[:, 1:] |= dx
        edge[:, :-1] |= dx
    return edge


def _poisson_quantile(u: float, mean: float) -> int:
    """Smallest k with P(Poisson(mean) <= k) > u: a Poisson draw from one uniform, monotone in ``mean``."""
    k, pmf = 0, math.exp(-mean)
    cdf = pmf
    while cdf <= u and k < 10_000:
        k += 1
        pmf *= mean / k
        cdf += pmf
    return k


def voronoi_patches(region: np.ndarray, num_patches: int, rng: np.random.Generator) -> List[np.ndarray]:
    """``region`` [H, W] bool cut into at most ``num_patches`` non-empty cells: each pixel goes to the nearest of
    ``num_patches`` random pixels of the region (image-space Voronoi cells)."""
    pixels = np.flatnonzero(region)
    if len(pixels) == 0 or num_patches <= 0:
        return []
    seeds = np.stack(np.divmod(rng.choice(pixels, size=num_patches), region.shape[1]), axis=1)  # [K, 2] (row, col)
    rows, cols = np.divmod(pixels, region.shape[1])
    distance = (rows[:, None] - seeds[None, :, 0]) ** 2 + (cols[:, None] - seeds[None, :, 1]) ** 2  # [M, K]
    nearest = np.argmin(distance, axis=1)
    patches = []
    for k in range(num_patches):
        patch = np.zeros(region.shape, dtype=bool)
        patch.reshape(-1)[pixels[nearest == k]] = True
        if patch.any():
            patches.append(patch)
    return patches


def background_patches(background: np.ndarray, num_coarse: int, rng: np.random.Generator) -> List[np.ndarray]:
    """SAM-like segments of a view's background [H, W] bool: ``num_coarse`` large patches and ``2 * num_coarse``
    small ones, drawn anew in every view (so their ids agree across no two views). Composed by area priority,
    the coarse map shows the large patches and the fine map the small ones."""
    return voronoi_patches(background, num_coarse, rng) + voronoi_patches(background, 2 * num_coarse, rng)


def nearest_neighbours(masks: Sequence[np.ndarray], eligible: Sequence[bool],
                       gap_px: float) -> Tuple[List[Optional[int]], List[np.ndarray]]:
    """Image neighbours among segments: for each mask, the nearest other eligible one that comes within ``gap_px``.

    Args:
        masks: K bool [H, W] masks (objects of one view).
        eligible: [K] which masks take part (the others get None and are no one's neighbour).
        gap_px: largest distance (Euclidean, pixels, between the closest pixels) of two neighbours; touching masks
            are 1 apart.

    Returns:
        neighbour: per mask, the index of its neighbour or None (ties: the lower index); distance: per mask its
        float [H, W] distance map (pixels to the nearest pixel of the mask; 0 on it).
    """
    from scipy.ndimage import distance_transform_edt

    distance = [distance_transform_edt(~mask) for mask in masks]
    neighbour: List[Optional[int]] = []
    for k, mask in enumerate(masks):
        best: Optional[Tuple[float, int]] = None
        if eligible[k] and mask.any():
            for j, other in enumerate(masks):
                if j != k and eligible[j] and other.any():
                    gap = float(distance[k][other].min())
                    if gap <= gap_px and (best is None or gap < best[0]):
                        best = (gap, j)
        neighbour.append(None if best is None else best[1])
    return neighbour, distance


def sam_like_id_maps(
    gt_coarse: np.ndarray, gt_fine: np.ndarray, config: SynthConfig, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """SAM-like two-level masks of one view, derived from its ground truth with ``config``'s noise.

    The view's segments are its visible objects and parts (one segment where an object shows a single part);
    noise then merges two touching objects into one extra segment, cuts parts in two by random lines, drops
    segments (missed or too small), and the segments are composed by area priority exactly as real SAM output is
    (``sam_masks.segments_to_id_maps``), so that a coarse segment is always one or several fine segments.
    Finally boundary pixels are randomly given a nearby pixel's ids (both levels together) or none, and small
    discs are unlabelled. With ``config.background_patches`` the ground is cut into view-local patches
    (``background_patches``) instead of being one segment. Ids are distinct random non-negative ints, local to the
    view. With ``config.mask_noise == 0`` the result is the ground truth with
    ids relabelled.

    The "neighbours" model (``config.mask_noise_model``) adds two events, each with its own draws: an object's
    coarse segment split along its parts (it is missing, and each of two groups of its parts is a segment:
    ``coarse_part_split_prob``), and an object merged with its nearest image neighbour (``nearest_neighbours``)
    into one more segment although their masks need not touch (``neighbour_merge_prob``, ``neighbour_merge_gap_px``;
    with ``neighbour_merge_bridge`` also the ground between them); the ground itself is never merged. A bridge is
    the one place where a fine segment need not lie inside one coarse segment: on the ground it bridges, the
    merged segment is the fine one and the ground's the coarse one, as area priority makes of real SAM masks.

    The random numbers drawn do not depend on ``mask_noise`` (each event happens when its uniform draw is below
    ``mask_noise`` times its probability), so with one ``rng`` state a higher noise gives a superset of the events.

    Args:
        gt_coarse, gt_fine: int32 [H, W] object and part ids, -1 = background.

    Returns:
        coarse, fine: int32 [H, W], -1 = no segment.
    """
    h, w = gt_coarse.shape
    if config.mask_noise_model not in MASK_NOISE_MODELS:
        raise ValueError(f"mask_noise_model must be one of {MASK_NOISE_MODELS}, got {config.mask_noise_model!r}")
    neighbours_model = config.mask_noise_model == "neighbours"
    noise = float(np.clip(config.mask_noise, 0.0, 1.0))
    ys, xs = np.mgrid[0:h, 0:w]

    # Ground-truth segments: objects, and the parts of objects that show more than one.
    object_segments: List[np.ndarray] = []
    part_segments: List[np.ndarray] = []  # the segments the fine level sees (an object's own if single-part)
    segments: List[np.ndarray] = []
    object_ids: List[int] = []  # per object segment: its object
    object_slots: List[int] = []  # per object segment: its index in segments
    object_parts: List[List[np.ndarray]] = []  # per object segment: its part masks, [] when it shows one part
    background = gt_coarse == 0 if (config.ground_plane and config.background_patches > 0) else None
    for obj in np.unique(gt_coarse[gt_coarse >= 0]):
        if background is not None and obj == 0:
            continue  # the ground becomes view-local patches (below)
        obj_mask = gt_coarse == obj
        object_ids.append(int(obj))
        object_slots.append(len(segments))
        object_segments.append(obj_mask)
        segments.append(obj_mask)
        part_masks = [obj_mask & (gt_fine == p) for p in np.unique(gt_fine[obj_mask & (gt_fine >= 0)])]
        if len(part_masks) == 1 and np.array_equal(part_masks[0], obj_mask):
            part_segments.append(obj_mask)  # one segment serves both levels
            object_parts.append([])
        else:
            part_segments.extend(part_masks)
            segments.extend(part_masks)
            object_parts.append(part_masks)
    # Random numbers, a fixed count given the ground truth: common to every noise level.
    merge_u, merge_pick = rng.random(2)
    split_u = rng.random((len(part_segments), 3))  # event, pixel on the part, line angle
    extra_slots = 3 * len(object_segments) if neighbours_model else 0  # per object: two part groups, one merge
    max_segments = len(segments) + 1 + 2 * len(part_segments) + extra_slots
    drop_u = rng.random(max_segments)
    ids = rng.choice(_SEGMENT_ID_RANGE, size=max_segments, replace=False)
    flip_u, unlabel_u = rng.random((2, h, w))
    r = config.boundary_flip_radius_px
    offsets = rng.integers(-r, r + 1, size=(2, h, w))
    holes_u = rng.random()
    if neighbours_model:  # the second model's draws (none in the first: its masks are as without this option)
        coarse_split_u = rng.random((len(object_segments), 2))  # event, where the ordered parts are cut in two
        part_order_u = [rng.random(len(parts)) for parts in object_parts]
        neighbour_u = rng.random(len(object_segments))
    patches = background_patches(background, config.background_patches, rng) if background is not None else []
    # Each possible segment owns one slot of drop_u and ids: the ground truth's, the merge's, then two halves per
    # part segment; in the "neighbours" model then two part groups per object and one neighbour merge per object.
    slots = list(range(len(segments)))
    merge_slot = len(segments)
    removed = set()  # slots of segments that are not there (objects split along their parts)

    # Two touching objects seen as one (an extra, larger segment).
    if merge_u < noise * config.object_merge_prob and len(object_segments) > 1:
        grown = [_dilate(m) for m in object_segments]
        pairs = [
            (i, j) for i in range(len(object_segments)) for j in range(i + 1, len(object_segments))
            if (grown[i] & object_segments[j]).any()
        ]
        if pairs:
            i, j = pairs[min(int(merge_pick * len(pairs)), len(pairs) - 1)]
            segments.append(object_segments[i] | object_segments[j])
            slots.append(merge_slot)

    # Parts cut in two by a random line (the halves are finer than the part).
    for part_index, (part_mask, (event_u, pixel_u, angle_u)) in enumerate(zip(part_segments, split_u)):
        if event_u < noise * config.part_split_prob:
            pix = np.flatnonzero(part_mask)
            y0, x0 = divmod(int(pix[min(int(pixel_u * len(pix)), len(pix) - 1)]), w)
            angle = angle_u * math.pi
            side = (xs - x0) * math.cos(angle) + (ys - y0) * math.sin(angle) > 0
            halves = [part_mask & side, part_mask & ~side]
            if all(half.any() for half in halves):
                segments.extend(halves)
                slots.extend([merge_slot + 1 + 2 * part_index, merge_slot + 2 + 2 * part_index])

    if neighbours_model:
        group_slot = merge_slot + 1 + 2 * len(part_segments)
        neighbour_slot = group_slot + 2 * len(object_segments)
        # Coarse segments split along the parts: the object's own segment is missing, two groups of parts are not.
        for k, (parts, (event_u, cut_u), order_u) in enumerate(zip(object_parts, coarse_split_u, part_order_u)):
            if len(parts) < 2 or event_u >= noise * config.coarse_part_split_prob:
                continue
            removed.add(object_slots[k])
            order = np.argsort(order_u, kind="stable")
            cut = 1 + min(int(cut_u * (len(parts) - 1)), len(parts) - 2)
            for g, group in enumerate((order[:cut], order[cut:])):
                if len(group) > 1:  # a group of one part is that part's segment already
                    segments.append(np.logical_or.reduce([parts[i] for i in group]))
                    slots.append(group_slot + 2 * k + g)
        # Merges with the nearest image neighbour, touching or not (never the ground).
        eligible = [not (config.ground_plane and obj == 0) for obj in object_ids]
        neighbour, distance = nearest_neighbours(object_segments, eligible, config.neighbour_merge_gap_px)
        merged_pairs = set()
        for k, j in enumerate(neighbour):
            pair = (min(k, j), max(k, j)) if j is not None else None
            if pair is None or neighbour_u[k] >= noise * config.neighbour_merge_prob or pair in merged_pairs:
                continue
            merged_pairs.add(pair)
            merged = object_segments[k] | object_segments[j]
            if config.neighbour_merge_bridge and config.ground_plane:
                gap = config.neighbour_merge_gap_px
                merged |= (distance[k] <= gap) & (distance[j] <= gap) & (gt_coarse == 0)
            segments.append(merged)
            slots.append(neighbour_slot + k)

    # Missed segments and small ones.
    min_area = noise * config.small_segment_area_px
    kept = [
        (segment, int(ids[slot])) for segment, slot in zip(segments, slots)
        if slot not in removed and drop_u[slot] >= noise * config.segment_drop_prob and segment.sum() >= min_area
    ]
    kept += [(patch, _SEGMENT_ID_RANGE + k) for k, patch in enumerate(patches)]  # placeholder ids, drawn last
    if config.scene_segment_prob > 0 and rng.random() < noise * config.scene_segment_prob:
        kept.append((gt_coarse >= 0, _SCENE_SEGMENT_ID))
    coarse_index, fine_index = segments_to_id_maps([seg for seg, _ in kept], image_size=(h, w))  # -1 or index
    kept_ids = np.array([-1] + [segment_id for _, segment_id in kept], dtype=np.int32)
    coarse, fine = kept_ids[coarse_index + 1], kept_ids[fine_index + 1]

    # Ragged boundaries: a boundary pixel takes both ids of a nearby pixel, or none.
    flip = _boundary(gt_coarse, gt_fine, coarse, fine) & (flip_u < noise * config.boundary_flip_prob)
    fy, fx = np.nonzero(flip)
    sy = np.clip(fy + offsets[0, fy, fx], 0, h - 1)
    sx = np.clip(fx + offsets[1, fy, fx], 0, w - 1)
    unlabel = unlabel_u[fy, fx] < config.boundary_unlabel_fraction
    new_coarse = np.where(unlabel, -1, coarse[sy, sx])
    new_fine = np.where(unlabel, -1, fine[sy, sx])
    coarse[fy, fx], fine[fy, fx] = new_coarse, new_fine

    # Small unlabelled regions, centred on the ground-truth foreground (these draws come last).
    foreground = np.flatnonzero(gt_coarse >= 0)
    num_holes = _poisson_quantile(holes_u, noise * config.holes_per_view) if len(foreground) else 0
    for centre_u, radius_u in rng.random((num_holes, 2)):
        cy, cx = divmod(int(foreground[min(int(centre_u * len(foreground)), len(foreground) - 1)]), w)
        radius = 1.0 + radius_u * max(0.0, config.hole_radius_px - 1.0)
        hole = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
        coarse[hole], fine[hole] = -1, -1
    if patches:  # background patch ids: random, distinct from the other segments' (drawn last, like the holes)
        patch_ids = _SEGMENT_ID_RANGE + rng.choice(_SEGMENT_ID_RANGE, size=len(patches), replace=False)
        for id_map in (coarse, fine):
            is_patch = (id_map >= _SEGMENT_ID_RANGE) & (id_map != _SCENE_SEGMENT_ID)
            id_map[is_patch] = patch_ids[id_map[is_patch] - _SEGMENT_ID_RANGE]
    return coarse, fine


def prompt_segments(gaussians: SynthGaussians, config: SynthConfig) -> List[Tuple[str, int, str]]:
    """The segments that get a prompt, as (level, id, name): every object but the ground at the coarse level, then
    the parts of the first ``prompt_fine_objects`` objects that have more than one part at the fine level."""
    first_object = 1 if config.ground_plane else 0
    num_objects = len(gaussians.object_names)
    segments = [("coarse", obj, gaussians.object_names[obj]) for obj in range(first_object, num_objects)]
    fine_objects = 0
    for obj in range(first_object, num_objects):
        parts = np.flatnonzero(gaussians.part_to_object == obj)
        if len(parts) < 2:
            continue
        if fine_objects >= config.prompt_fine_objects:
            break
        fine_objects += 1
        segments.extend(("fine", int(part), gaussians.part_names[part]) for part in parts)
    return segments


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
    means = torch.from_numpy(gaussians.means)[index]
    quats = torch.from_numpy(gaussians.quats)[index]
    scales = torch.from_numpy(gaussians.log_scales)[index].exp()
    opacities = torch.sigmoid(torch.from_numpy(gaussians.opacity_logits)[index])
    viewmats = get_viewmat(torch.from_numpy(camera_to_worlds[:, :3, :4]).float())
    fx, fy, cx, cy = intrinsics(config)
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)
    out = np.zeros((len(viewmats), config.image_height, config.image_width), dtype=bool)
    if len(index) == 0:
        return out
    batch = max(1, config.render_batch_views)
    for start in range(0, len(viewmats), batch):
        views = viewmats[start : start + batch]
        _, alphas, _ = rasterize(means, quats, scales, opacities, torch.ones(len(index), 1), views,
                                 K.expand(len(views), 3, 3), config.image_width, config.image_height)
        out[start : start + len(views)] = alphas[..., 0].numpy() > config.gt_alpha_threshold
    return out


def click_pixel(mask: np.ndarray) -> Tuple[Tuple[int, int], float]:
    """The pixel of ``mask`` [H, W] (bool) farthest from its edge (the image border counts as edge), as (x, y),
    and that Euclidean distance in pixels (0 for an empty mask). Ties go to the first pixel in raster order."""
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    flat = int(np.argmax(depth))
    row, column = divmod(flat, mask.shape[1])
    return (column, row), float(depth.ravel()[flat])


def target_mask_kind(config: SynthConfig) -> str:
    """``config.prompt_target_mask``, checked."""
    if config.prompt_target_mask not in PROMPT_TARGET_MASKS:
        raise ValueError(f"prompt_target_mask must be one of {PROMPT_TARGET_MASKS}, got {config.prompt_target_mask!r}")
    return config.prompt_target_mask


def segment_prompt(visible: np.ndarray, silhouette: np.ndarray, click_views: Sequence[int],
                   config: SynthConfig) -> Optional[Tuple[int, Tuple[int, int], List[int]]]:
    """Where to click one segment and in which views to check the result.

    The click goes to the pixel deepest inside the segment over the ``click_views`` (ties: the first view); the
    targets are the other views whose target mask (``prompt_target_mask``: the visible pixels, or the silhouette)
    covers at least ``prompt_min_target_area`` of the image and that show at least ``prompt_min_visible_fraction``
    of the segment's silhouette and at least one pixel of it, most visible pixels first (ties: view order), at
    most ``prompt_max_targets`` of them.

    Args:
        visible: [C, H, W] bool, the segment's ground-truth (visible) mask in each view.
        silhouette: [C, H, W] bool, its unoccluded silhouette in each view.
        click_views: indices of the views a click may go in.

    Returns:
        (click view, (x, y), target views), or None when no click pixel is ``prompt_min_click_depth_px`` deep or
        fewer than ``prompt_min_targets`` views qualify as targets.
    """
    best: Optional[Tuple[int, Tuple[int, int], float]] = None
    for view in click_views:
        xy, depth = click_pixel(visible[view])
        if depth >= config.prompt_min_click_depth_px and (best is None or depth > best[2]):
            best = (int(view), xy, depth)
    if best is None:
        return None
    click_view, xy, _ = best
    pixels = visible.reshape(len(visible), -1).sum(axis=1)  # [C]
    silhouette_pixels = np.maximum(silhouette.reshape(len(silhouette), -1).sum(axis=1), 1)
    target_pixels = silhouette_pixels if target_mask_kind(config) == "silhouette" else pixels
    min_pixels = config.prompt_min_target_area * visible.shape[1] * visible.shape[2]
    usable = [
        view for view in range(len(visible))
        if view != click_view and target_pixels[view] >= max(min_pixels, 1) and pixels[view] >= 1
        and not (config.prompt_eval_targets and view in click_views)
        and pixels[view] >= config.prompt_min_visible_fraction * silhouette_pixels[view]
    ]
    usable.sort(key=lambda view: (-int(pixels[view]), view))
    targets = usable[: config.prompt_max_targets]
    if len(targets) < max(1, config.prompt_min_targets):
        return None
    return click_view, xy, targets


def make_prompts(segments: Sequence[Tuple[str, str, np.ndarray, np.ndarray]], image_files: Sequence[str],
                 click_views: Sequence[int], config: SynthConfig,
                 mask_dir: str = "prompts") -> Tuple[List[Dict], Dict[str, np.ndarray]]:
    """A prompts file's entries (format: ``clickgs_ns.segment.evaluate``) and their target masks.

    Args:
        segments: (level, name, visible [C, H, W] bool, silhouette [C, H, W] bool) per segment.
        image_files: each view's image as in transforms.json ("images/frame_00000.png").
        click_views: views a click may go in (the training split).
        mask_dir: folder of the target masks, relative to the prompts file.

    Returns:
        prompts: JSON-ready list of {"level", "segment", "click": {"image", "xy"}, "targets": [{"image", "mask"}]};
        masks: {mask path relative to the prompts file: uint8 [H, W], 255 on the segment (its visible pixels, or
        its silhouette: ``config.prompt_target_mask``)}.
    """
    use_silhouette = target_mask_kind(config) == "silhouette"
    prompts: List[Dict] = []
    masks: Dict[str, np.ndarray] = {}
    for level, name, visible, silhouette in segments:
        found = segment_prompt(visible, silhouette, click_views, config)
        if found is None:
            continue
        click_view, (x, y), targets = found
        slug = "".join(c if c.isalnum() or c in "_-" else "-" for c in name)
        entry_targets = []
        for view in targets:
            path = f"{mask_dir}/{len(prompts):03d}_{level}_{slug}_{Path(image_files[view]).stem}.png"
            masks[path] = (silhouette if use_silhouette else visible)[view].astype(np.uint8) * 255
            entry_targets.append({"image": image_files[view], "mask": path})
        prompts.append({"level": level, "segment": name,
                        "click": {"image": image_files[click_view], "xy": [int(x), int(y)]},
                        "targets": entry_targets})
    return prompts, masks


def train_view_indices(num_views: int, train_fraction: float) -> List[int]:
    """The views of nerfstudio's default train split (``train_split_fraction``, evenly spaced by frame order)."""
    from nerfstudio.data.utils.dataparsers_utils import get_train_eval_split_fraction

    return [int(i) for i in get_train_eval_split_fraction(list(range(num_views)), train_fraction)[0]]


def write_prompts(gaussians: SynthGaussians, camera_to_worlds: np.ndarray, gt_coarse: np.ndarray,
                  gt_fine: np.ndarray, image_files: Sequence[str], config: SynthConfig, out_dir: Path) -> Tuple[Path, int]:
    """Write ``prompts.json`` and ``prompts/*.png`` into ``out_dir`` from the ground truth; returns the path of
    prompts.json and the number of prompts.

    Args:
        camera_to_worlds: [C, 4, 4]; gt_coarse, gt_fine: [C, H, W] int32 object and part ids (-1 = background).
    """
    segments = []
    for level, segment_id, name in prompt_segments(gaussians, config):
        ids, gt = (gaussians.object_id, gt_coarse) if level == "coarse" else (gaussians.part_id, gt_fine)
        silhouette = render_silhouettes(gaussians, ids == segment_id, camera_to_worlds, config)
        segments.append((level, name, gt == segment_id, silhouette))
    click_views = train_view_indices(len(image_files), config.prompt_train_fraction)
    prompts, masks = make_prompts(segments, image_files, click_views, config)
    for path, mask in masks.items():
        _save_png(out_dir / path, mask)
    prompts_path = out_dir / "prompts.json"
    atomic_write_text(prompts_path, json.dumps(prompts, indent=1))
    return prompts_path, len(prompts)


# ------------------------------------------------------------------------------------------------------------------
# The dataset
# ------------------------------------------------------------------------------------------------------------------


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")


def generate_scene(config: SynthConfig, out_dir: Path) -> SynthScene:
    """Build, render and write a synthetic scene as a nerfstudio dataset in ``out_dir`` (see the module doc).

    Files of an earlier scene in ``out_dir`` are overwritten; frames beyond this config's ``num_views`` are not
    removed (use a fresh folder).
    """
    out_dir = Path(out_dir)
    geometry_seq, seed_points_seq, masks_seq = np.random.SeedSequence(config.seed).spawn(3)
    gaussians = build_gaussians(config, np.random.default_rng(geometry_seq))
    n = len(gaussians.means)

    sh_dc = (gaussians.rgb - 0.5) / SH_C0
    scene_ply_path = out_dir / "scene.ply"
    write_gaussian_ply(
        scene_ply_path, gaussians.means, gaussians.log_scales, gaussians.quats, gaussians.opacity_logits, sh_dc,
        None, extra={"object_id": gaussians.object_id, "part_id": gaussians.part_id},
    )
    labels_path = out_dir / "scene_labels.npz"
    _save_npz(
        labels_path, object_id=gaussians.object_id, part_id=gaussians.part_id,
        part_to_object=gaussians.part_to_object, object_names=np.array(gaussians.object_names),
        part_names=np.array(gaussians.part_names),
    )

    seed_rng = np.random.default_rng(seed_points_seq)
    seed_index = np.sort(seed_rng.choice(n, size=min(config.num_seed_points, n), replace=False))
    sparse_pc_path = out_dir / "sparse_pc.ply"
    write_point_cloud_ply(
        sparse_pc_path, gaussians.means[seed_index], (gaussians.rgb[seed_index] * 255).round().astype(np.uint8)
    )

    camera_to_worlds = ring_camera_to_worlds(config)
    images, gt_coarse, gt_fine = render_views(gaussians, camera_to_worlds, config)

    image_paths, gt_paths, mask_paths, frames = [], [], [], []
    view_rngs = [np.random.default_rng(s) for s in masks_seq.spawn(len(camera_to_worlds))]
    for index, (image, coarse, fine, view_rng) in enumerate(zip(images, gt_coarse, gt_fine, view_rngs)):
        name = f"frame_{index:05d}"
        image_path = out_dir / "images" / f"{name}.png"
        _save_png(image_path, image)
        gt_path = out_dir / "gt" / f"{name}.npz"
        _save_npz(gt_path, coarse=coarse, fine=fine)
        mask_path = mask_path_for_image(image_path, out_dir)
        write_id_maps(mask_path, *sam_like_id_maps(coarse, fine, config, view_rng))
        image_paths.append(image_path)
        gt_paths.append(gt_path)
        mask_paths.append(mask_path)
        frames.append({
            "file_path": f"images/{name}.png",
            "transform_matrix": [[round(float(v), 8) for v in row] for row in camera_to_worlds[index]],
        })

    fx, fy, cx, cy = intrinsics(config)
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": config.image_width, "h": config.image_height,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "ply_file_path": "sparse_pc.ply",
        "frames": frames,
    }
    transforms_path = out_dir / "transforms.json"
    atomic_write_text(transforms_path, json.dumps(transforms, indent=2))

    prompts_path, num_prompts = write_prompts(gaussians, camera_to_worlds, gt_coarse, gt_fine,
                                              [frame["file_path"] for frame in frames], config, out_dir)

    metadata = {
        "generator": "clickgs_ns.data.synth",
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "object_names": gaussians.object_names,
        "part_names": gaussians.part_names,
        "part_to_object": gaussians.part_to_object.tolist(),
        "num_gaussians": n,
        "num_objects": len(gaussians.object_names),
        "num_parts": len(gaussians.part_names),
        "num_views": len(camera_to_worlds),
        "num_seed_points": int(len(seed_index)),
        "num_prompts": num_prompts,
        "gaussians_per_part": np.bincount(gaussians.part_id, minlength=len(gaussians.part_names)).tolist(),
    }
    metadata_path = out_dir / "scene.json"
    atomic_write_text(metadata_path, json.dumps(metadata, indent=2))

    return SynthScene(
        root=out_dir, transforms_path=transforms_path, scene_ply_path=scene_ply_path, labels_path=labels_path,
        sparse_pc_path=sparse_pc_path, metadata_path=metadata_path, image_paths=image_paths, gt_paths=gt_paths,
        mask_paths=mask_paths, num_gaussians=n, num_objects=len(gaussians.object_names),
        num_parts=len(gaussians.part_names), object_names=list(gaussians.object_names),
        part_names=list(gaussians.part_names), prompts_path=prompts_path, num_prompts=num_prompts,
    )
