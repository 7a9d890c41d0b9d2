"""What shapes a synthetic scene: ``SynthConfig``, the scene families and the fixed test sets.

Scene families (``FAMILY_PRESETS``, ``family_config``): "tabletop" (``SynthConfig()``, the demo's), "room" (the
accuracy benchmark's first scenes), "garden" (a second catalogue of objects with thin legs, poles and stems, small
objects, a second mask-noise model whose coarse segments split along parts and merge with image neighbours) and
"clutter" (both catalogues, many objects, small ones among them). ``test_set_configs("dev" | "test")`` are the fixed
scenes to choose defaults on and to report on, with disjoint seeds.

Plain Python only (no numpy, no torch): the command line imports this module to build its options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Tuple

GROUND_COLOR = (0.50, 0.50, 0.45)
"""The ground's colour unless ``SynthConfig.ground_color`` says otherwise."""
MASK_NOISE_MODELS = ("touching", "neighbours")
"""``SynthConfig.mask_noise_model``: see ``mask_noise.sam_like_id_maps``."""
PROMPT_TARGET_MASKS = ("visible", "silhouette")
"""``SynthConfig.prompt_target_mask``: see ``prompts.segment_prompt``."""


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
    """Names of the catalogues (``catalogues.CATALOGUES``) the objects other than the small ones are drawn from,
    pooled in this order: "household" (the 7 above), "outdoor" (bench, streetlight, signpost, flower, parasol,
    stool, fence: thin legs, poles, stems, posts and rails)."""
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
    background (ground and every object), as SAM's automatic generator often returns (``scene_segments.SceneSegmentRule``).
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
"""The "room" scene family (``room_config``, ``clickgs synth --preset room``): a checkerboard floor with
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
