"""Evaluation prompts: where to click each object and part, and which views and masks to score the selection on.

``prompt_segments`` lists the segments (every object but the ground at the coarse level, the parts of the first
objects at the fine level), ``prompt_masks`` gives each its ground-truth (visible) masks and unoccluded silhouettes
in every view, ``segment_prompt`` picks a click in a training view (``train_view_indices``) and the target views,
and ``make_prompts`` turns them into a prompts file's entries and target masks (format:
``clickgs_ns.segment.evaluate``; ``writer.write_prompts`` writes them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from clickgs_ns.synth.config import PROMPT_TARGET_MASKS, SynthConfig
from clickgs_ns.synth.geometry import SynthGaussians
from clickgs_ns.synth.views import render_silhouettes


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

def prompt_masks(gaussians: SynthGaussians, camera_to_worlds: np.ndarray, gt_coarse: np.ndarray, gt_fine: np.ndarray,
                 config: SynthConfig) -> List[Tuple[str, str, np.ndarray, np.ndarray]]:
    """Every prompted segment (``prompt_segments``) with its masks, as ``make_prompts`` takes them: (level, name,
    visible [C, H, W] bool, silhouette [C, H, W] bool).

    Args:
        camera_to_worlds: [C, 4, 4]; gt_coarse, gt_fine: [C, H, W] int32 object and part ids (-1 = background).
    """
    segments = []
    for level, segment_id, name in prompt_segments(gaussians, config):
        ids, gt = (gaussians.object_id, gt_coarse) if level == "coarse" else (gaussians.part_id, gt_fine)
        silhouette = render_silhouettes(gaussians, ids == segment_id, camera_to_worlds, config)
        segments.append((level, name, gt == segment_id, silhouette))
    return segments


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


def deepest_click(visible: np.ndarray, click_views: Sequence[int],
                  config: SynthConfig) -> Optional[Tuple[int, Tuple[int, int]]]:
    """The click on a segment: the pixel deepest inside it over the ``click_views`` (ties: the first view), as
    (view, (x, y)), or None when no pixel is ``prompt_min_click_depth_px`` deep.

    Args:
        visible: [C, H, W] bool, the segment's ground-truth (visible) mask in each view.
    """
    best: Optional[Tuple[int, Tuple[int, int], float]] = None
    for view in click_views:
        xy, depth = click_pixel(visible[view])
        if depth >= config.prompt_min_click_depth_px and (best is None or depth > best[2]):
            best = (int(view), xy, depth)
    if best is None:
        return None
    return best[0], best[1]


def target_views(visible: np.ndarray, silhouette: np.ndarray, click_view: int, click_views: Sequence[int],
                 config: SynthConfig) -> List[int]:
    """The views to check a click's selection in: see ``segment_prompt``; at most ``prompt_max_targets``.

    Args:
        visible, silhouette: [C, H, W] bool, the segment's visible mask and unoccluded silhouette in each view.
        click_view: the click's view (never a target); click_views: the views a click may go in.
    """
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
    return usable[: config.prompt_max_targets]


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
    click = deepest_click(visible, click_views, config)
    if click is None:
        return None
    click_view, xy = click
    targets = target_views(visible, silhouette, click_view, click_views, config)
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

