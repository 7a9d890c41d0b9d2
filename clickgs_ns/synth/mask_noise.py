"""SAM-like masks: noisy two-level id maps of one view, derived from its ground truth (``sam_like_id_maps``).

The masks stand in for SAM's automatic masks: the view's objects and parts as segments, with merges, splits,
misses, ragged boundaries and holes drawn from the view's own random generator, composed by area priority exactly
as real SAM output is (``clickgs_ns.data.scene_segments.segments_to_id_maps``). The steps, each a function of its own:
``view_segments`` (the ground truth's segments) -> ``draw_mask_noise`` (every random number but the last few) ->
``noisy_segments`` (merges, halves, part groups) -> ``compose_id_maps`` (drops, area priority) ->
``ragged_boundaries`` -> ``punch_holes`` -> ``relabel_patches``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Set, Tuple

import numpy as np

from clickgs_ns.data.scene_segments import segments_to_id_maps
from clickgs_ns.synth.config import MASK_NOISE_MODELS, SynthConfig

_SEGMENT_ID_RANGE = 100_000
"""SAM-like mask ids are distinct random integers in [0, _SEGMENT_ID_RANGE) (background patches: in
[_SEGMENT_ID_RANGE, 2 * _SEGMENT_ID_RANGE))."""
_SCENE_SEGMENT_ID = 2 * _SEGMENT_ID_RANGE
"""The id of the whole-scene segment (``SynthConfig.scene_segment_prob``), beyond all the others."""



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


# ------------------------------------------------------------------------------------------------------------------
# The steps of sam_like_id_maps
# ------------------------------------------------------------------------------------------------------------------


@dataclass
class ViewSegments:
    """The ground-truth segments of one view, before any noise (``view_segments``); masks are bool [H, W]."""

    segments: List[np.ndarray]
    """Every ground-truth segment, its index its slot: per object its own mask, then its parts' masks when it shows
    more than one part."""
    object_segments: List[np.ndarray]
    """Per visible object (the ground too, unless it becomes patches): its mask."""
    part_segments: List[np.ndarray]
    """The segments the fine level sees: each object's parts, or its own mask when it shows a single part."""
    object_ids: List[int]
    """Per object segment: its object id."""
    object_slots: List[int]
    """Per object segment: its index in ``segments``."""
    object_parts: List[List[np.ndarray]]
    """Per object segment: its part masks, [] when it shows one part."""
    background: Optional[np.ndarray]
    """The ground's pixels when it is cut into view-local patches (``SynthConfig.background_patches``), else None."""


def view_segments(gt_coarse: np.ndarray, gt_fine: np.ndarray, config: SynthConfig) -> ViewSegments:
    """Ground-truth segments: objects, and the parts of objects that show more than one.

    Args:
        gt_coarse, gt_fine: int32 [H, W] object and part ids, -1 = background.
    """
    object_segments: List[np.ndarray] = []
    part_segments: List[np.ndarray] = []  # the segments the fine level sees (an object's own if single-part)
    segments: List[np.ndarray] = []
    object_ids: List[int] = []  # per object segment: its object
    object_slots: List[int] = []  # per object segment: its index in segments
    object_parts: List[List[np.ndarray]] = []  # per object segment: its part masks, [] when it shows one part
    background = gt_coarse == 0 if (config.ground_plane and config.background_patches > 0) else None
    for obj in np.unique(gt_coarse[gt_coarse >= 0]):
        if background is not None and obj == 0:
            continue  # the ground becomes view-local patches (``background_patches``)
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
    return ViewSegments(segments, object_segments, part_segments, object_ids, object_slots, object_parts, background)


@dataclass
class MaskNoiseDraws:
    """The random numbers of one view's masks but the scene segment's, the holes' and the patch ids (drawn last),
    in the order ``draw_mask_noise`` draws them. Their count depends on the ground truth only, not on
    ``mask_noise``: every noise level shares them."""

    merge_u: float
    """Whether two touching objects merge."""
    merge_pick: float
    """Which touching pair merges."""
    split_u: np.ndarray
    """[S, 3] per part segment: event, pixel on the part, line angle (``part_halves``)."""
    drop_u: np.ndarray
    """[slots] per possible segment: whether it is missed."""
    ids: np.ndarray
    """[slots] per possible segment: its id, distinct, in [0, _SEGMENT_ID_RANGE)."""
    flip_u: np.ndarray
    """[H, W] per pixel: whether a boundary pixel is flipped."""
    unlabel_u: np.ndarray
    """[H, W] per pixel: whether a flipped pixel becomes -1."""
    offsets: np.ndarray
    """[2, H, W] int: where a flipped pixel copies from (row, column offsets)."""
    holes_u: float
    """How many holes (``_poisson_quantile``)."""
    coarse_split_u: Optional[np.ndarray]
    """"neighbours" model only, [K, 2] per object segment: event, where its ordered parts are cut in two."""
    part_order_u: Optional[List[np.ndarray]]
    """"neighbours" model only, per object segment: [parts] the order of its parts."""
    neighbour_u: Optional[np.ndarray]
    """"neighbours" model only, [K] per object segment: whether it merges with its image neighbour."""
    patches: List[np.ndarray]
    """The ground's view-local patches (``background_patches``), [] without them."""


def draw_mask_noise(view: ViewSegments, shape: Tuple[int, int], config: SynthConfig,
                    rng: np.random.Generator) -> MaskNoiseDraws:
    """Draw a view's random numbers, a fixed count given the ground truth: common to every noise level.

    Each possible segment owns one slot of ``drop_u`` and ``ids``: the ground truth's, the merge's, then two halves
    per part segment; in the "neighbours" model then two part groups per object and one neighbour merge per object.
    """
    h, w = shape
    neighbours_model = config.mask_noise_model == "neighbours"
    merge_u, merge_pick = rng.random(2)
    split_u = rng.random((len(view.part_segments), 3))  # event, pixel on the part, line angle
    extra_slots = 3 * len(view.object_segments) if neighbours_model else 0  # per object: two part groups, one merge
    max_segments = len(view.segments) + 1 + 2 * len(view.part_segments) + extra_slots
    drop_u = rng.random(max_segments)
    ids = rng.choice(_SEGMENT_ID_RANGE, size=max_segments, replace=False)
    flip_u, unlabel_u = rng.random((2, h, w))
    r = config.boundary_flip_radius_px
    offsets = rng.integers(-r, r + 1, size=(2, h, w))
    holes_u = rng.random()
    coarse_split_u = part_order_u = neighbour_u = None
    if neighbours_model:  # the second model's draws (none in the first: its masks are as without this option)
        coarse_split_u = rng.random((len(view.object_segments), 2))  # event, where the ordered parts are cut in two
        part_order_u = [rng.random(len(parts)) for parts in view.object_parts]
        neighbour_u = rng.random(len(view.object_segments))
    patches = background_patches(view.background, config.background_patches, rng) if view.background is not None else []
    return MaskNoiseDraws(merge_u, merge_pick, split_u, drop_u, ids, flip_u, unlabel_u, offsets, holes_u,
                          coarse_split_u, part_order_u, neighbour_u, patches)


def touching_merge(object_segments: Sequence[np.ndarray], merge_u: float, merge_pick: float, noise: float,
                   config: SynthConfig) -> Optional[np.ndarray]:
    """Two touching objects seen as one (an extra, larger segment), or None: the ``merge_pick``-th pair of objects
    whose masks touch (4-neighbours), when ``merge_u`` is below ``noise * object_merge_prob``."""
    if merge_u < noise * config.object_merge_prob and len(object_segments) > 1:
        grown = [_dilate(m) for m in object_segments]
        pairs = [
            (i, j) for i in range(len(object_segments)) for j in range(i + 1, len(object_segments))
            if (grown[i] & object_segments[j]).any()
        ]
        if pairs:
            i, j = pairs[min(int(merge_pick * len(pairs)), len(pairs) - 1)]
            return object_segments[i] | object_segments[j]
    return None


def split_by_line(mask: np.ndarray, pixel_u: float, angle_u: float) -> List[np.ndarray]:
    """``mask`` [H, W] (not empty) cut in two by the line through one of its pixels (the ``pixel_u``-th in raster
    order) at the angle ``angle_u * pi``: the two sides [H, W], either may be empty."""
    h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w]
    pix = np.flatnonzero(mask)
    y0, x0 = divmod(int(pix[min(int(pixel_u * len(pix)), len(pix) - 1)]), w)
    angle = angle_u * math.pi
    side = (xs - x0) * math.cos(angle) + (ys - y0) * math.sin(angle) > 0
    return [mask & side, mask & ~side]


def part_halves(part_segments: Sequence[np.ndarray], split_u: np.ndarray, noise: float, config: SynthConfig,
                first_slot: int) -> Tuple[List[np.ndarray], List[int]]:
    """Parts cut in two by a random line (the halves are finer than the part): the halves and their slots (part
    k's at ``first_slot + 2k`` and ``first_slot + 2k + 1``)."""
    segments: List[np.ndarray] = []
    slots: List[int] = []
    for part_index, (part_mask, (event_u, pixel_u, angle_u)) in enumerate(zip(part_segments, split_u)):
        if event_u < noise * config.part_split_prob:
            halves = split_by_line(part_mask, pixel_u, angle_u)
            if all(half.any() for half in halves):
                segments.extend(halves)
                slots.extend([first_slot + 2 * part_index, first_slot + 1 + 2 * part_index])
    return segments, slots


def coarse_part_groups(view: ViewSegments, draws: MaskNoiseDraws, noise: float, config: SynthConfig,
                       first_slot: int) -> Tuple[List[np.ndarray], List[int], Set[int]]:
    """"neighbours" model: coarse segments split along the parts. The object's own segment is missing (its slot
    is returned among the removed ones), two groups of its parts (in a random order, cut at a random place) are
    not; a group of one part is that part's segment already. Object k's groups get slots ``first_slot + 2k`` and
    ``first_slot + 2k + 1``.

    Returns:
        the group segments, their slots, the slots of the removed object segments.
    """
    segments: List[np.ndarray] = []
    slots: List[int] = []
    removed: Set[int] = set()
    for k, (parts, (event_u, cut_u), order_u) in enumerate(
            zip(view.object_parts, draws.coarse_split_u, draws.part_order_u)):
        if len(parts) < 2 or event_u >= noise * config.coarse_part_split_prob:
            continue
        removed.add(view.object_slots[k])
        order = np.argsort(order_u, kind="stable")
        cut = 1 + min(int(cut_u * (len(parts) - 1)), len(parts) - 2)
        for g, group in enumerate((order[:cut], order[cut:])):
            if len(group) > 1:  # a group of one part is that part's segment already
                segments.append(np.logical_or.reduce([parts[i] for i in group]))
                slots.append(first_slot + 2 * k + g)
    return segments, slots, removed


def neighbour_merges(view: ViewSegments, neighbour_u: np.ndarray, gt_coarse: np.ndarray, noise: float,
                     config: SynthConfig, first_slot: int) -> Tuple[List[np.ndarray], List[int]]:
    """"neighbours" model: merges of objects with their nearest image neighbour, touching or not (never the
    ground), each pair once; with ``neighbour_merge_bridge`` a merge also covers the ground between the two.
    Object k's merge gets slot ``first_slot + k``.

    Returns:
        the merged segments, their slots.
    """
    eligible = [not (config.ground_plane and obj == 0) for obj in view.object_ids]
    neighbour, distance = nearest_neighbours(view.object_segments, eligible, config.neighbour_merge_gap_px)
    segments: List[np.ndarray] = []
    slots: List[int] = []
    merged_pairs = set()
    for k, j in enumerate(neighbour):
        pair = (min(k, j), max(k, j)) if j is not None else None
        if pair is None or neighbour_u[k] >= noise * config.neighbour_merge_prob or pair in merged_pairs:
            continue
        merged_pairs.add(pair)
        merged = view.object_segments[k] | view.object_segments[j]
        if config.neighbour_merge_bridge and config.ground_plane:
            gap = config.neighbour_merge_gap_px
            merged |= (distance[k] <= gap) & (distance[j] <= gap) & (gt_coarse == 0)
        segments.append(merged)
        slots.append(first_slot + k)
    return segments, slots


def noisy_segments(view: ViewSegments, draws: MaskNoiseDraws, gt_coarse: np.ndarray, noise: float,
                   config: SynthConfig) -> Tuple[List[np.ndarray], List[int], Set[int]]:
    """The view's candidate segments before drops: the ground truth's, a touching merge, part halves and, in the
    "neighbours" model, part groups and neighbour merges.

    Returns:
        segments [H, W] bool, the slot of each (its entries of ``draws.drop_u`` and ``draws.ids``), the slots of the
        segments that are not there (objects split along their parts).
    """
    segments = list(view.segments)
    slots = list(range(len(segments)))
    merge_slot = len(segments)
    removed: Set[int] = set()
    merged = touching_merge(view.object_segments, draws.merge_u, draws.merge_pick, noise, config)
    if merged is not None:
        segments.append(merged)
        slots.append(merge_slot)
    halves, half_slots = part_halves(view.part_segments, draws.split_u, noise, config, merge_slot + 1)
    segments.extend(halves)
    slots.extend(half_slots)
    if config.mask_noise_model == "neighbours":
        group_slot = merge_slot + 1 + 2 * len(view.part_segments)
        neighbour_slot = group_slot + 2 * len(view.object_segments)
        groups, group_slots, removed = coarse_part_groups(view, draws, noise, config, group_slot)
        segments.extend(groups)
        slots.extend(group_slots)
        merges, merge_slots = neighbour_merges(view, draws.neighbour_u, gt_coarse, noise, config, neighbour_slot)
        segments.extend(merges)
        slots.extend(merge_slots)
    return segments, slots, removed


def compose_id_maps(segments: Sequence[np.ndarray], slots: Sequence[int], removed: Set[int], draws: MaskNoiseDraws,
                    gt_coarse: np.ndarray, noise: float, config: SynthConfig,
                    rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """The segments that are not missed (``segment_drop_prob``) nor too small (``small_segment_area_px``), the
    ground's patches (placeholder ids, drawn last: ``relabel_patches``) and maybe the whole-scene segment (the one
    draw here, only with ``scene_segment_prob``), composed by area priority into int32 [H, W] coarse and fine id
    maps, -1 = no segment."""
    min_area = noise * config.small_segment_area_px
    kept = [
        (segment, int(draws.ids[slot])) for segment, slot in zip(segments, slots)
        if slot not in removed and draws.drop_u[slot] >= noise * config.segment_drop_prob
        and segment.sum() >= min_area
    ]
    kept += [(patch, _SEGMENT_ID_RANGE + k) for k, patch in enumerate(draws.patches)]  # placeholder ids, drawn last
    if config.scene_segment_prob > 0 and rng.random() < noise * config.scene_segment_prob:
        kept.append((gt_coarse >= 0, _SCENE_SEGMENT_ID))
    coarse_index, fine_index = segments_to_id_maps([seg for seg, _ in kept], image_size=gt_coarse.shape)  # -1 or index
    kept_ids = np.array([-1] + [segment_id for _, segment_id in kept], dtype=np.int32)
    return kept_ids[coarse_index + 1], kept_ids[fine_index + 1]


def ragged_boundaries(coarse: np.ndarray, fine: np.ndarray, gt_coarse: np.ndarray, gt_fine: np.ndarray,
                      draws: MaskNoiseDraws, noise: float, config: SynthConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Ragged boundaries: a boundary pixel (of the ground truth or of the masks, [H, W] each) takes both ids of a
    nearby pixel, or none. Returns new coarse and fine maps."""
    h, w = coarse.shape
    flip = _boundary(gt_coarse, gt_fine, coarse, fine) & (draws.flip_u < noise * config.boundary_flip_prob)
    fy, fx = np.nonzero(flip)
    sy = np.clip(fy + draws.offsets[0, fy, fx], 0, h - 1)
    sx = np.clip(fx + draws.offsets[1, fy, fx], 0, w - 1)
    unlabel = draws.unlabel_u[fy, fx] < config.boundary_unlabel_fraction
    new_coarse = np.where(unlabel, -1, coarse[sy, sx])
    new_fine = np.where(unlabel, -1, fine[sy, sx])
    coarse, fine = coarse.copy(), fine.copy()
    coarse[fy, fx], fine[fy, fx] = new_coarse, new_fine
    return coarse, fine


def punch_holes(coarse: np.ndarray, fine: np.ndarray, gt_coarse: np.ndarray, holes_u: float, noise: float,
                config: SynthConfig, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Small unlabelled discs (-1 at both levels) centred on the ground-truth foreground: a Poisson number of them
    (``holes_per_view``), each drawing its centre and radius (these draws come after all the others but the patch
    ids). Returns new coarse and fine maps [H, W]."""
    h, w = gt_coarse.shape
    ys, xs = np.mgrid[0:h, 0:w]
    coarse, fine = coarse.copy(), fine.copy()
    foreground = np.flatnonzero(gt_coarse >= 0)
    num_holes = _poisson_quantile(holes_u, noise * config.holes_per_view) if len(foreground) else 0
    for centre_u, radius_u in rng.random((num_holes, 2)):
        cy, cx = divmod(int(foreground[min(int(centre_u * len(foreground)), len(foreground) - 1)]), w)
        radius = 1.0 + radius_u * max(0.0, config.hole_radius_px - 1.0)
        hole = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
        coarse[hole], fine[hole] = -1, -1
    return coarse, fine


def relabel_patches(coarse: np.ndarray, fine: np.ndarray, num_patches: int,
                    rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """The background patches' placeholder ids (``_SEGMENT_ID_RANGE + k``) replaced by random ones, distinct from
    the other segments' (drawn last, like the holes); no draw without patches. Returns new coarse and fine maps."""
    if not num_patches:
        return coarse, fine
    patch_ids = _SEGMENT_ID_RANGE + rng.choice(_SEGMENT_ID_RANGE, size=num_patches, replace=False)
    coarse, fine = coarse.copy(), fine.copy()
    for id_map in (coarse, fine):
        is_patch = (id_map >= _SEGMENT_ID_RANGE) & (id_map != _SCENE_SEGMENT_ID)
        id_map[is_patch] = patch_ids[id_map[is_patch] - _SEGMENT_ID_RANGE]
    return coarse, fine


def sam_like_id_maps(
    gt_coarse: np.ndarray, gt_fine: np.ndarray, config: SynthConfig, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """SAM-like two-level masks of one view, derived from its ground truth with ``config``'s noise.

    The view's segments are its visible objects and parts (one segment where an object shows a single part);
    noise then merges two touching objects into one extra segment, cuts parts in two by random lines, drops
    segments (missed or too small), and the segments are composed by area priority exactly as real SAM output is
    (``scene_segments.segments_to_id_maps``), so that a coarse segment is always one or several fine segments.
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
    if config.mask_noise_model not in MASK_NOISE_MODELS:
        raise ValueError(f"mask_noise_model must be one of {MASK_NOISE_MODELS}, got {config.mask_noise_model!r}")
    noise = float(np.clip(config.mask_noise, 0.0, 1.0))
    view = view_segments(gt_coarse, gt_fine, config)
    draws = draw_mask_noise(view, gt_coarse.shape, config, rng)
    segments, slots, removed = noisy_segments(view, draws, gt_coarse, noise, config)
    coarse, fine = compose_id_maps(segments, slots, removed, draws, gt_coarse, noise, config, rng)
    coarse, fine = ragged_boundaries(coarse, fine, gt_coarse, gt_fine, draws, noise, config)
    coarse, fine = punch_holes(coarse, fine, gt_coarse, draws.holes_u, noise, config, rng)
    return relabel_patches(coarse, fine, len(draws.patches), rng)
