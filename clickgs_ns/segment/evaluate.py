"""Click-prompt evaluation: click a view, render the selection in other views, compare with ground-truth masks.

A prompts file is a JSON list; each entry is one click at one level and the views to check it in::

    [{"level": "coarse",                                            # or "fine"
      "click": {"image": "images/frame_00007.png", "xy": [54, 47]}, # pixel of the full-resolution image
      "targets": [{"image": "images/frame_00002.png", "mask": "prompts/000_coarse_snowman_frame_00002.png"}]},
     ...]

``image`` is a file path as in the dataset's transforms.json (a view of the train OR the eval split); ``xy`` is
(x right, y down); ``mask`` is a PNG (non-zero = the object) at the image's full resolution, relative to the prompts
file. Where one click cannot select what the mask covers, ``"clicks"`` replaces ``"click"``: a list of clicks made in
order, each with an optional ``"mode"``, ``"add"`` (the default), ``"subtract"`` or ``"replace"``, as ``clickgs
segment`` takes them. Other keys (e.g. ``segment``, a name) are carried into the report. ``clickgs synth`` writes
such a file (``prompts.json``) for its scenes.

For each prompt the selection is cleared, the click is made (``clickgs_ns.segment.selection.Segmenter``), and in each
target view the selected Gaussians alone are rendered at the image's full resolution; where their accumulated
opacity exceeds ``mask_alpha_threshold`` is the predicted mask. Scores per target: IoU and boundary IoU (Cheng et
al., CVPR 2021: the IoU of the pixels of each mask within distance d of its own contour, d = 2% of the image
diagonal, at least 1 px, the image border counting as contour). A prompt's score is the mean over its targets;
mIoU / mBIoU average the prompts of a level, and of both levels ("all").

Layers: pure metric functions on arrays (``mask_iou``, ``boundary_region``, ``boundary_iou``, ``summarize``);
prompt parsing and validation (``load_prompts``, ``check_prompts``); ``evaluate_prompts`` over a loaded run, one
``run_prompt`` per prompt and one ``score_target`` per target view (its views: ``clickgs_ns.segment.views``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from clickgs_ns.io.atomic import atomic_write_text
from clickgs_ns.levels import LEVELS, check_level
from clickgs_ns.segment.selection import check_mode
from clickgs_ns.segment.views import (ViewIndex, click_view, full_resolution_camera, photo_selection_mask,
                                      pixel_xy)

# ------------------------------------------------------------------------------------------------ metrics


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|pred & gt| / |pred | gt| of two [H, W] masks (non-zero = inside); 1.0 when both are empty."""
    pred, gt = np.asarray(pred) != 0, np.asarray(gt) != 0
    if pred.shape != gt.shape:
        raise ValueError(f"Masks of different shapes: {pred.shape} and {gt.shape}")
    union = int(np.count_nonzero(pred | gt))
    return 1.0 if union == 0 else int(np.count_nonzero(pred & gt)) / union


def boundary_width(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """Boundary band width d in pixels: ``round(dilation_ratio * image diagonal)``, at least 1."""
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def boundary_region(mask: np.ndarray, width_px: int) -> np.ndarray:
    """[H, W] bool: the pixels of ``mask`` within ``width_px`` of its contour (Cheng et al.'s ``mask_to_boundary``).

    ``mask`` minus its erosion by a 3x3 square, ``width_px`` times, with the outside of the image counting as
    background (so a mask cut by the image border has a boundary there).
    """
    from scipy.ndimage import binary_erosion

    mask = np.asarray(mask) != 0
    if width_px < 1:
        raise ValueError(f"width_px must be at least 1, got {width_px}")
    if not mask.any():
        return mask
    eroded = binary_erosion(mask, structure=np.ones((3, 3), dtype=bool), iterations=int(width_px), border_value=0)
    return mask & ~eroded


def boundary_iou(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU of two [H, W] masks: IoU of their ``boundary_region`` s, d = ``boundary_width``; 1.0 when both
    masks are empty."""
    pred, gt = np.asarray(pred) != 0, np.asarray(gt) != 0
    if pred.shape != gt.shape:
        raise ValueError(f"Masks of different shapes: {pred.shape} and {gt.shape}")
    width_px = boundary_width(*gt.shape, dilation_ratio=dilation_ratio)
    return mask_iou(boundary_region(pred, width_px), boundary_region(gt, width_px))


def summarize(levels: Sequence[str], ious: Sequence[float], bious: Sequence[float]) -> Dict[str, Dict[str, Any]]:
    """Per level and over all prompts ("all"): {"num_prompts", "mIoU", "mBIoU"} (NaN means with no prompt).

    Args:
        levels, ious, bious: one entry per prompt.
    """
    summary: Dict[str, Dict[str, Any]] = {}
    for name in list(LEVELS) + ["all"]:
        chosen = [i for i, level in enumerate(levels) if name in ("all", level)]
        summary[name] = {
            "num_prompts": len(chosen),
            "mIoU": float(np.mean([ious[i] for i in chosen])) if chosen else math.nan,
            "mBIoU": float(np.mean([bious[i] for i in chosen])) if chosen else math.nan,
        }
    return summary


# ------------------------------------------------------------------------------------------------ prompts


class PromptError(ValueError):
    """A prompts file that cannot be evaluated (malformed, or naming an image or mask that is not there)."""


@dataclass
class Target:
    image: str
    """The view, as in transforms.json ("images/NAME.png")."""
    mask: Path
    """Ground-truth mask PNG (absolute, or relative to the working directory)."""


@dataclass
class Click:
    image: str
    """The clicked view, as in transforms.json."""
    xy: Tuple[float, float]
    """Clicked pixel (x right, y down) of the full-resolution image."""
    mode: str = "add"
    """"add", "subtract" or "replace" (``selection.MODES``)."""


@dataclass
class Prompt:
    index: int
    """Position in the prompts file."""
    level: str
    clicks: List[Click]
    """Made in order on a cleared selection."""
    targets: List[Target]
    extra: Dict[str, Any] = field(default_factory=dict)
    """The entry's other keys (e.g. "segment"), copied into the report."""

    @property
    def image(self) -> str:
        """The first click's view."""
        return self.clicks[0].image

    @property
    def xy(self) -> Tuple[float, float]:
        """The first click's pixel."""
        return self.clicks[0].xy


def _fail(path: Path, index: Optional[int], message: str) -> PromptError:
    where = f"{path}" if index is None else f"{path}, prompt {index}"
    return PromptError(f"{where}: {message}")


def load_prompts(path: Path) -> List[Prompt]:
    """Parse and check the format of a prompts file (module doc); mask paths are resolved against its folder and
    must exist. Errors name the file, the prompt index and the missing or malformed item."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"Prompts file {path} does not exist (``clickgs synth`` writes prompts.json into a "
                          "synthetic scene; see clickgs_ns/segment/evaluate.py for the format).")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(path, None, f"not valid JSON in UTF-8 ({err})") from err
    if not isinstance(entries, list) or not entries:
        raise _fail(path, None, "must hold a non-empty JSON list of prompts")
    prompts = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _fail(path, index, f"must be an object, got {type(entry).__name__}")
        level = entry.get("level")
        try:
            check_level(level)
        except ValueError as err:
            raise _fail(path, index, f"'level': {err}") from None
        clicks = [parse_click(path, index, click) for click in entry_clicks(path, index, entry)]
        targets = entry.get("targets")
        if not isinstance(targets, list) or not targets:
            raise _fail(path, index, "needs a non-empty 'targets' list of {\"image\": ..., \"mask\": ...}")
        parsed_targets = []
        for t, target in enumerate(targets):
            if not isinstance(target, dict) or not isinstance(target.get("image"), str) \
                    or not isinstance(target.get("mask"), str):
                raise _fail(path, index, f"target {t} must be {{\"image\": \"images/NAME.png\", \"mask\": "
                                         f"\"PATH.png\"}}, got {target!r}")
            mask = (path.parent / target["mask"])
            if not mask.is_file():
                raise _fail(path, index, f"target {t}: mask {target['mask']} not found (looked for {mask}; mask "
                                         "paths are relative to the prompts file)")
            parsed_targets.append(Target(target["image"], mask))
        extra = {key: value for key, value in entry.items() if key not in ("level", "click", "clicks", "targets")}
        prompts.append(Prompt(index, level, clicks, parsed_targets, extra))
    return prompts


def entry_clicks(path: Path, index: int, entry: Dict[str, Any]) -> List[Any]:
    """The clicks of a prompt entry: its "click", or its "clicks" list (exactly one of them)."""
    if ("click" in entry) == ("clicks" in entry):
        raise _fail(path, index, "needs 'click': {\"image\": \"images/NAME.png\", \"xy\": [x, y]} or a non-empty "
                                 "'clicks' list of such objects (with an optional \"mode\": \"add\" | \"subtract\" | "
                                 "\"replace\")")
    clicks = [entry["click"]] if "click" in entry else entry["clicks"]
    if not isinstance(clicks, list) or not clicks:
        raise _fail(path, index, "'clicks' must be a non-empty list of {\"image\": ..., \"xy\": [x, y]}")
    return clicks


def parse_click(path: Path, index: int, click: Any) -> Click:
    """One click of a prompt entry, checked."""
    if not isinstance(click, dict) or not isinstance(click.get("image"), str):
        raise _fail(path, index, "needs 'click': {\"image\": \"images/NAME.png\", \"xy\": [x, y]}")
    try:
        return Click(click["image"], pixel_xy(click.get("xy")), check_mode(click.get("mode", "add")))
    except ValueError as err:
        raise _fail(path, index, f"click {click['image']}: {err}") from None


def read_mask_png(path: Path) -> np.ndarray:
    """[H, W] bool: the non-zero pixels of a mask PNG. Colour images count a pixel non-zero in any colour channel;
    an alpha channel counts only where the colour channels are zero everywhere (a mask drawn in alpha alone);
    palette images are read by their palette index."""
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image)
        has_alpha = image.mode in ("RGBA", "LA", "PA")
    channels = array.reshape(array.shape[0], array.shape[1], -1)
    if has_alpha and channels[..., :-1].any():
        channels = channels[..., :-1]
    return channels.any(axis=-1)


def check_prompts(prompts: Sequence[Prompt], views: ViewIndex, prompts_path: Path) -> None:
    """Every clicked and target image must be a view of the run and every click inside its image; errors name the
    prompt index and the image."""
    for prompt in prompts:
        for click in prompt.clicks:
            try:
                view = views.find(click.image)
            except ValueError as err:
                raise _fail(prompts_path, prompt.index, f"clicked image: {err}") from err
            height, width = view.full_size
            if not (0 <= click.xy[0] < width and 0 <= click.xy[1] < height):
                raise _fail(prompts_path, prompt.index, f"click {list(click.xy)} lies outside {click.image} "
                                                        f"({width}x{height})")
        for t, target in enumerate(prompt.targets):
            try:
                views.find(target.image)
            except ValueError as err:
                raise _fail(prompts_path, prompt.index, f"target {t}: {err}") from err


# ------------------------------------------------------------------------------------------------ evaluation


@dataclass
class EvalConfig:
    """Settings of ``clickgs eval``."""

    boundary_dilation_ratio: float = 0.02
    """Boundary IoU band width as a fraction of the image diagonal (Cheng et al.: 0.02)."""
    mask_alpha_threshold: float = 0.5
    """A target pixel is predicted inside when the selected Gaussians' accumulated opacity exceeds this."""


def score_target(scene: Any, selection: Any, target: Target, prompts_path: Path, prompt_index: int, number: int,
                 config: EvalConfig = EvalConfig()) -> Dict[str, Any]:
    """Render ``selection`` ([N] bool) in ``target``'s view at full resolution and score it against its mask.

    Returns the target's record: image, mask, split, IoU, boundary IoU and the predicted and true pixel counts.
    Raises ``ValueError`` (naming the prompts file, the prompt and the target) where the mask's size is not the
    image's.
    """
    target_view = scene.views.find(target.image)  # there: check_prompts
    try:
        gt = read_mask_png(target.mask)
    except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for damaged or non-image files
        raise _fail(prompts_path, prompt_index, f"target {number}: mask {target.mask} cannot be read as an image "
                    f"({err}); give a PNG, non-zero where the object is.") from err
    if gt.shape != tuple(target_view.full_size):
        raise _fail(prompts_path, prompt_index,
                    f"target {number}: mask {target.mask} is {gt.shape[1]}x{gt.shape[0]} but {target.image} is "
                    f"{target_view.full_size[1]}x{target_view.full_size[0]} at full resolution")
    camera = full_resolution_camera(target_view.camera, target_view.full_size)
    pred = photo_selection_mask(scene.model, selection, target_view, camera, config.mask_alpha_threshold)
    return {"image": target.image, "mask": str(target.mask), "split": target_view.split,
            "iou": mask_iou(pred, gt), "biou": boundary_iou(pred, gt, config.boundary_dilation_ratio),
            "pred_pixels": int(pred.sum()), "gt_pixels": int(gt.sum())}


def run_prompt(scene: Any, prompt: Prompt, prompts_path: Path, config: EvalConfig = EvalConfig()) -> Dict[str, Any]:
    """Clear the selection, make ``prompt``'s clicks in order and score the result in every target view.

    Returns the prompt's record (``evaluate_prompts``' "prompts" entries): its clicks and their messages, what the
    first click selected (its candidate and message; "used_fallback" and "hit_background" when any click did),
    the per-target records (``score_target``), their mean IoU and boundary IoU, the
    selected-to-true area ratio over the targets, and the seconds it took.
    """
    start = time.perf_counter()
    segmenter = scene.segmenter
    segmenter.clear()
    results = []
    for number, click in enumerate(prompt.clicks):
        try:
            results.append(click_view(segmenter, scene.views.find(click.image), click.xy[0], click.xy[1],
                                      prompt.level, click.mode))
        except ValueError as err:  # e.g. a pixel the lens model maps outside the rendered view
            raise _fail(prompts_path, prompt.index, f"click {number}: {err}") from err
    selection = segmenter.selection.clone()
    targets = [score_target(scene, selection, target, prompts_path, prompt.index, number, config)
               for number, target in enumerate(prompt.targets)]
    first = results[0]
    return {
        "index": prompt.index, "level": prompt.level, **prompt.extra,
        "click": {"image": prompt.image, "xy": list(prompt.xy), "split": scene.views.find(prompt.image).split},
        "clicks": [{"image": c.image, "xy": list(c.xy), "mode": c.mode, "message": r.message}
                   for c, r in zip(prompt.clicks, results)],
        "num_selected": int(selection.sum()), "candidate": first.candidate,
        "used_fallback": any(r.used_fallback for r in results),
        "hit_background": any(r.hit_background for r in results), "message": first.message,
        "iou": float(np.mean([t["iou"] for t in targets])), "biou": float(np.mean([t["biou"] for t in targets])),
        "area_ratio": sum(t["pred_pixels"] for t in targets) / max(1, sum(t["gt_pixels"] for t in targets)),
        "targets": targets, "seconds": time.perf_counter() - start,
    }


def evaluate_prompts(scene: Any, prompts: Sequence[Prompt], prompts_path: Path,
                     config: EvalConfig = EvalConfig()) -> Dict[str, Any]:
    """Run every prompt on a loaded run and score it (module doc).

    Args:
        scene: ``clickgs_ns.app.api.ClickGaussianScene`` (its ``segmenter``, ``model`` and ``views``).
        prompts: from ``load_prompts``.
        prompts_path: the prompts file (named in errors).

    Returns:
        A JSON-ready report: "summary" (``summarize``), "prompts" (``run_prompt``'s record per prompt: level,
        clicks, what the click selected and its message, per-target IoU and boundary IoU, their means, seconds),
        "labels" (per level, how the labels that clicks select were made: ``Segmenter.labels_origin``) and "config".
    """
    check_prompts(prompts, scene.views, prompts_path)
    records = [run_prompt(scene, prompt, prompts_path, config) for prompt in prompts]
    segmenter = scene.segmenter
    segmenter.clear()
    levels = {level: segmenter.level_data(level) for level in LEVELS}
    return {
        "prompts_file": str(prompts_path),
        "convergence": {level: data.convergence for level, data in levels.items()},
        "convergence_summary": segmenter.convergence_summary(),
        "labels": {level: segmenter.labels_origin(level) for level in levels},
        "config": {"boundary_dilation_ratio": config.boundary_dilation_ratio,
                   "mask_alpha_threshold": config.mask_alpha_threshold},
        "summary": summarize([r["level"] for r in records], [r["iou"] for r in records],
                             [r["biou"] for r in records]),
        "prompts": records,
    }


def write_report(report: Dict[str, Any], path: Path) -> None:
    """Write an ``evaluate_prompts`` report as JSON, atomically (NaN written as null)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    atomic_write_text(Path(path), json.dumps(clean(report), indent=1))


def report_table(report: Dict[str, Any]):
    """A rich Table of a report: one row per prompt, then mIoU / mBIoU per level and over all prompts."""
    from rich.table import Table

    table = Table(title=f"Click evaluation: {report['prompts_file']}")
    for name, justify in (("#", "right"), ("level", "left"), ("segment", "left"), ("click", "left"),
                          ("selected", "right"), ("targets", "right"), ("IoU", "right"), ("BIoU", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in report["prompts"]:
        click = f"{Path(r['click']['image']).name} ({r['click']['xy'][0]:g}, {r['click']['xy'][1]:g})"
        note = " bg" if r["hit_background"] else (" fallback" if r["used_fallback"] else "")
        table.add_row(str(r["index"]), r["level"], str(r.get("segment", "")), click, f"{r['num_selected']}{note}",
                      str(len(r["targets"])), f"{100 * r['iou']:.1f}", f"{100 * r['biou']:.1f}")
    table.add_section()
    for name, s in report["summary"].items():
        if s["num_prompts"] == 0:
            continue
        table.add_row("", f"[bold]{name}[/]", f"{s['num_prompts']} prompts", "", "", "",
                      f"[bold]{100 * s['mIoU']:.1f}[/]", f"[bold]{100 * s['mBIoU']:.1f}[/]")
    if report.get("convergence_summary"):
        table.caption = report["convergence_summary"]
    return table
