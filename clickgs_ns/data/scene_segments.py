"""How SAM's segments become a coarse and a fine id map (``segments_to_id_maps``).

segment-anything's automatic mask generator returns overlapping segments with no level labels. They become two id
maps by area priority: where segments overlap on a pixel, the coarse map keeps the larger segment and the fine map
the smaller one; a segment of the whole scene (``scene_segments``, by a ``SceneSegmentRule``) loses to every other
segment in the coarse map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:
    from clickgs_ns.data.sam_masks import SamMaskConfig

ID_MAP_VERSION = "area-priority-v2"
"""Names the conversion of segments to id maps; change it whenever ``segments_to_id_maps`` changes its output."""


@dataclass(frozen=True)
class SceneSegmentRule:
    """When a segment is a group of objects (the scene) rather than one object: it covers more than
    ``min_image_share`` of the image and contains at least ``min_contained`` segments that are not inside one
    another, each with at least ``containment`` of its pixels inside it. SAM's automatic generator often returns
    such a segment (everything but the sky or the wall); kept as the largest segment it would be every object's
    coarse id. On the real photos of tests/test_sam_real.py the largest segments (a cat filling 75% of the photo,
    a cup, a person) contain at most 5 such segments and only the cat covers more than half the image; the
    whole-room segments of the capture check (docs/method.md, section 2) cover 64-74% and contain 6-8."""

    min_image_share: float = 0.5
    min_contained: int = 4
    containment: float = 0.9


def configured_scene_rule(config: SamMaskConfig) -> Optional[SceneSegmentRule]:
    """The rule ``config`` demotes scene segments by, or None for the paper's area priority."""
    return SceneSegmentRule() if config.demote_scene_segments else None


def scene_segments(
    masks: Sequence[np.ndarray], areas: np.ndarray, windows: Sequence[Tuple[slice, slice]],
    rule: SceneSegmentRule = SceneSegmentRule(),
) -> np.ndarray:
    """bool [S]: which segments are groups of objects by ``rule``.

    Candidates (segments over ``rule.min_image_share`` of the image, rarely more than two) are taken from the
    smallest, and a scene segment already found neither counts as a contained segment nor hides the segments inside
    it: a whole-image segment around a scene segment is a scene segment too.

    Args:
        masks: S bool [H, W] segments.
        areas: int [S] their pixel counts.
        windows: per segment a (rows, cols) window holding all of it (as ``_masks_areas_windows`` gives them).

    Cost: per candidate, one masked count per smaller segment whose window meets the candidate's, over that
    segment's window, and as many again among the segments it contains.
    """
    num_pixels = masks[0].size if len(masks) else 0
    groups = np.zeros(len(masks), dtype=bool)
    known: Dict[Tuple[int, int], bool] = {}

    def inside(j: int, outer: int) -> bool:
        """At least ``rule.containment`` of segment j's pixels are in the larger segment ``outer``."""
        if j == outer or not 0 < areas[j] < areas[outer] or not _windows_meet(windows[j], windows[outer]):
            return False
        if (j, outer) not in known:
            overlap = np.count_nonzero(masks[outer][windows[j]] & masks[j][windows[j]])
            known[j, outer] = overlap >= rule.containment * areas[j]
        return known[j, outer]

    candidates = np.flatnonzero(areas > rule.min_image_share * num_pixels)
    for i in candidates[np.argsort(areas[candidates], kind="stable")]:
        contained = [j for j in range(len(masks)) if not groups[j] and inside(j, i)]
        outermost = [j for j in contained if not any(inside(j, k) for k in contained)]
        groups[i] = len(outermost) >= rule.min_contained
    return groups


def _windows_meet(a: Tuple[slice, slice], b: Tuple[slice, slice]) -> bool:
    """Whether two (rows, cols) windows overlap; an open slice (the whole image) meets everything."""
    for first, second in zip(a, b):
        if first.stop is not None and second.start is not None and first.stop <= second.start:
            return False
        if second.stop is not None and first.start is not None and second.stop <= first.start:
            return False
    return True


def segments_to_id_maps(
    segments: Union[np.ndarray, Sequence[Any]], image_size: Optional[Tuple[int, int]] = None,
    scene_rule: Optional[SceneSegmentRule] = SceneSegmentRule(),
) -> Tuple[np.ndarray, np.ndarray]:
    """Two-level id maps from overlapping segments, by area priority.

    Args:
        segments: bool [S, H, W], or a sequence of S segments, each a bool [H, W] array or a SAM record (a dict
            with "segmentation" bool [H, W] and optionally "area", its pixel count, and "bbox", its XYWH box with
            inclusive corners, as SamAutomaticMaskGenerator returns them with output_mode="binary_mask").
        image_size: (H, W); needed only when there are no segments (S = 0) in a sequence.
        scene_rule: which segments are the whole scene (``scene_segments``); None treats none so (the paper).

    Returns:
        (coarse, fine), int32 [H, W] each. A pixel's id is the index s (0..S-1) in ``segments`` of the segment
        that wins it: in ``coarse`` the largest-area segment covering the pixel, except that a scene segment wins
        only pixels no other segment covers; in ``fine`` the smallest; -1 where no segment covers it. Ties in area
        go to the lower index at both levels. So a segment keeps the same id in both maps, and ids need not be
        contiguous (a segment can be hidden at one level, or both).

    Cost: per level, one masked write per segment, over the segment's box when a record's "bbox" and "area"
    agree with its mask, else over the image; no [S, H, W] temporary is made.
    """
    masks, areas, windows = _masks_areas_windows(segments)
    if image_size is None and isinstance(segments, np.ndarray) and segments.ndim == 3:
        image_size = segments.shape[1:]
    if not masks:
        if image_size is None:
            raise ValueError("segments_to_id_maps: no segments and no image_size to size the (all -1) maps")
        height, width = image_size
        empty = np.full((height, width), -1, dtype=np.int32)
        return empty, empty.copy()
    height, width = masks[0].shape
    if image_size is not None and tuple(image_size) != (height, width):
        raise ValueError(f"segments are {height}x{width} (HxW) but image_size is {tuple(image_size)}")
    index = np.arange(len(masks))
    # Paint in order; the last writer wins. Coarse: scene segments, then area ascending, so larger segments
    # overwrite smaller ones; fine: area descending. Equal areas: higher index first, so the lower index is
    # painted last and wins.
    groups = np.zeros(len(masks), dtype=bool)
    if scene_rule is not None:
        groups = scene_segments(masks, areas, windows, scene_rule)
    coarse_order = np.lexsort((-index, areas, ~groups))  # scene segments first: every other segment wins
    fine_order = np.lexsort((-index, -areas))
    paint_dtype = np.int8 if len(masks) <= 128 else np.int16 if len(masks) <= 2**15 else np.int32
    levels = []
    for order in (coarse_order, fine_order):
        ids = np.full((height, width), -1, dtype=paint_dtype)
        for s in order:
            if areas[s] > 0:
                window = windows[s]
                np.copyto(ids[window], s, where=masks[s][window], casting="unsafe")
        levels.append(ids.astype(np.int32))
    return levels[0], levels[1]


def _masks_areas_windows(
    segments: Union[np.ndarray, Sequence[Any]]
) -> Tuple[List[np.ndarray], np.ndarray, List[Tuple[slice, slice]]]:
    """The segments as bool [H, W] arrays (views where possible), their areas int64 [S], and per segment the
    (rows, cols) window holding all of it: the record's bbox when its pixel count there equals the record's
    area, else the whole image."""
    everywhere = (slice(None), slice(None))
    if isinstance(segments, np.ndarray):
        if segments.ndim != 3:
            raise ValueError(f"segments must be a bool [S, H, W] array, got shape {segments.shape}")
        masks = [m if m.dtype == bool else m.astype(bool) for m in segments]
        areas = [np.count_nonzero(m) for m in masks]
        return masks, np.array(areas, dtype=np.int64).reshape(-1), [everywhere] * len(masks)
    masks, areas, windows = [], [], []
    for k, seg in enumerate(segments):
        area, bbox = None, None
        if isinstance(seg, dict):
            if "segmentation" not in seg:
                raise ValueError(f"segment record {k} has no 'segmentation' (keys: {sorted(seg)})")
            area, bbox, seg = seg.get("area"), seg.get("bbox"), seg["segmentation"]
        if not isinstance(seg, np.ndarray):
            raise TypeError(
                f"segment {k} is a {type(seg).__name__}, not a bool [H, W] array; run SAM's generator with "
                "output_mode='binary_mask'"
            )
        mask = seg if seg.dtype == bool else seg.astype(bool)
        window = everywhere
        if area is not None and bbox is not None and mask.ndim == 2:
            x0, y0, w, h = (int(round(v)) for v in bbox)
            box = (slice(max(y0, 0), max(y0 + h + 1, 0)), slice(max(x0, 0), max(x0 + w + 1, 0)))
            if np.count_nonzero(mask[box]) == int(area):
                window = box
        masks.append(mask)
        windows.append(window)
        areas.append(np.count_nonzero(mask) if window is everywhere else int(area))
    shapes = {m.shape for m in masks}
    if len(shapes) > 1 or any(len(s) != 2 for s in shapes):
        raise ValueError(f"segments must all be [H, W] masks of one size, got shapes {sorted(shapes)}")
    return masks, np.array(areas, dtype=np.int64).reshape(-1), windows
