"""SAM preprocessing: each training image's two-level id maps, computed once and cached on disk.

segment-anything's automatic mask generator runs on every image of a dataset; its segments (no level labels)
become two id maps by area priority (``segments_to_id_maps``): where segments overlap on a pixel, the coarse map
keeps the larger segment and the fine map the smaller one; a segment of the whole scene (``scene_segments``)
loses to every other segment in the coarse map. Each image's maps are written atomically to
``DATA/clickgs_masks/NAME.npz`` in the format of ``clickgs_ns.io.id_maps``, with these extra arrays:

- ``settings_sha1`` (str): fingerprint of everything that decides the output (``sam_settings``): the SAM model
  (checkpoint file name and size), the generator settings and the id-map version;
- ``settings_json`` (str): those settings in readable JSON, so that a mask folder says how it was made;
- ``image_sha1`` (str): sha1 of the image file's bytes;
- ``num_segments`` (int): how many segments SAM returned.

A cached file is used only when ``read_id_maps`` reads it, its settings and image hashes match, and its size is
the image's; anything else is recomputed, so a run that was killed (or sharded over several processes with
``--shard K/N``) is completed by running the same command again.

Heavy imports (torch, segment_anything) happen inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import tyro
from typing_extensions import Annotated

from clickgs_ns.io.atomic import leftover_temp_files as atomic_leftover_temp_files
from clickgs_ns.io.id_maps import (
    MASKS_DIRNAME,
    MaskFileError,
    mask_path_for_image,
    read_id_maps,
    resize_ids_nearest,
    write_id_maps,
)
from clickgs_ns.io.images import IMAGE_SUFFIXES, decode_rgb, full_resolution_path, image_size
from clickgs_ns.io.memory import keep_freed_memory

ID_MAP_VERSION = "area-priority-v2"
"""Names the conversion of segments to id maps; change it whenever ``segments_to_id_maps`` changes its output."""

SAM_CHECKPOINT_FILES = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_t": "mobile_sam.pt",
    "sam2.1_hiera_t": "sam2.1_hiera_tiny.pt",
    "sam2.1_hiera_s": "sam2.1_hiera_small.pt",
    "sam2.1_hiera_b+": "sam2.1_hiera_base_plus.pt",
    "sam2.1_hiera_l": "sam2.1_hiera_large.pt",
}
"""The official checkpoint file of each model type (vit_t: MobileSAM's TinyViT)."""

SAM_CHECKPOINTS_PAGE = "https://github.com/facebookresearch/segment-anything#model-checkpoints"
MOBILE_SAM_PAGE = "https://github.com/ChaoningZhang/MobileSAM (weights/mobile_sam.pt)"
SAM2_PAGE = "https://github.com/facebookresearch/sam2#sam-21-checkpoints"

SAM2_CONFIGS = {
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
"""SAM 2.1 models: the hydra config of Meta's ``sam2`` package for each."""
SAM2_INSTALL = ("SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'sam2>=1.1' (PyPI has only its source; "
                "without SAM2_BUILD_CUDA=0 it compiles an optional CUDA extension)")

GENERATOR_FIXED_SETTINGS = {
    "stability_score_offset": 1.0,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "output_mode": "binary_mask",
}
"""segment-anything generator settings this project does not expose; recorded in every file's settings."""



class SamCheckpointError(FileNotFoundError):
    """The SAM checkpoint file is missing (this project never downloads weights)."""


class MaskRunError(ValueError):
    """A user-facing problem with a mask run's inputs (dataset folder, shard, checkpoint)."""


class ImageDecodeError(MaskRunError):
    """An image file that cannot be read or decoded."""


class MaskCacheWarning(UserWarning):
    """A cached mask file was unusable (and is recomputed), an image had no SAM segment, or an image could not be
    decoded (and is skipped)."""


@dataclass
class SamMaskConfig:
    """How SAM masks are made. Defaults are the method's (docs/method.md, section 2)."""

    sam_checkpoint: Optional[Path] = None
    """Official checkpoint, e.g. sam_vit_h_4b8939.pth, or MobileSAM's mobile_sam.pt for vit_t (download it yourself;
    see SAM_CHECKPOINT_FILES)."""
    sam_model: Literal["vit_h", "vit_l", "vit_b", "vit_t", "sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+",
                       "sam2.1_hiera_l"] = "vit_h"
    """SAM model type; must match the checkpoint. vit_t is MobileSAM (TinyViT encoder, 5.7M parameters; the optional
    extra mobilesam), by far the fastest on a CPU; sam2.1_hiera_* are SAM 2.1 (Meta's sam2 package)."""
    points_per_side: int = 32
    """The generator prompts SAM with a points_per_side x points_per_side grid of points."""
    pred_iou_thresh: float = 0.88
    """Drop segments whose predicted IoU is not above this."""
    stability_score_thresh: float = 0.95
    """Drop segments whose stability score is below this."""
    min_mask_region_area: int = 100
    """Remove holes and islands smaller than this many pixels from each segment (0 = off; needs OpenCV)."""
    points_per_batch: int = 64
    """Points SAM decodes at once; affects speed and GPU memory only, not the masks."""
    max_image_side: int = 1024
    """SAM runs on the photo scaled down (area-averaged) so that its longer side is at most this many pixels, and
    the id maps are scaled back to the photo's full size (nearest): SAM's image encoder sees 1024 pixels whatever the
    photo's size, and a 12 MP photo at full size needs ~9 GB per batch of prompts. 0: the photo's full size (sharper
    segment edges on large photos, for much more memory and time)."""
    demote_scene_segments: bool = True
    """A segment over half the image that contains 4 or more separate segments (SAM's segment of the whole scene)
    wins only the coarse pixels no other segment covers (``SceneSegmentRule``; docs/method.md, departure 13).
    False: the paper's area priority, where it becomes every object's coarse id."""
    generator: Literal["fast", "stock"] = "fast"
    """Automatic mask generator for vit_h/l/b/t: "fast" is this project's (data/sam_fast.py: the same masks as
    segment-anything's up to float rounding, about 3x faster on a CPU), "stock" is segment-anything's own. SAM 2.1
    models always use sam2's own. Like points_per_batch and device, it does not enter the cache fingerprint."""
    device: str = "auto"
    """Torch device for SAM: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ..."""


@dataclass
class MaskRunReport:
    """What one ``compute_masks`` run did with the images of its shard."""

    images: int
    """Images in this shard."""
    computed: int = 0
    """Images SAM ran on (recomputed ones included)."""
    skipped: int = 0
    """Images whose cached masks were valid."""
    recomputed_corrupt: int = 0
    """Of ``computed``: images whose cached file was unreadable (truncated, not a mask file)."""
    recomputed_stale: int = 0
    """Of ``computed``: images whose cached file was made with other settings, for other image bytes, or another
    size."""
    empty: int = 0
    """Of ``computed``: images where SAM found no segment (all -1 maps)."""
    warnings: List[str] = field(default_factory=list)
    """Every warning the run gave, in order."""
    failed: List[Path] = field(default_factory=list)
    """Images that could not be read or decoded, in order: they were skipped and have no (new) mask file."""
    seconds: float = 0.0
    """Wall time of the run."""


@dataclass(frozen=True)
class CacheStatus:
    """The state of one image's cached mask file."""

    state: Literal["valid", "missing", "corrupt", "stale"]
    """"valid": usable as is; "missing": no file; "corrupt": unreadable; "stale": readable but not for this
    image/settings."""
    reason: str = ""
    """Why the file is not valid, naming the file."""


# ----------------------------------------------------------------------------------------------------------------
# Segments -> id maps


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


# ----------------------------------------------------------------------------------------------------------------
# SAM


def resolve_device(device: str) -> str:
    """``device`` with "auto" replaced by "cuda" when a GPU is usable, else "cpu"."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def checked_checkpoint(config: SamMaskConfig) -> Path:
    """``config.sam_checkpoint`` if it is an existing file; otherwise SamCheckpointError saying where to get one."""
    official = ", ".join(f"{model}: {name}" for model, name in SAM_CHECKPOINT_FILES.items())
    page = (MOBILE_SAM_PAGE if config.sam_model == "vit_t" else SAM2_PAGE if config.sam_model in SAM2_CONFIGS
            else SAM_CHECKPOINTS_PAGE)
    how = (
        f"This project does not download weights: download the official checkpoint yourself "
        f"from {page} ({official}; {SAM_CHECKPOINT_FILES[config.sam_model]} for "
        f"{config.sam_model}) and pass its path "
        f"with --sam-checkpoint PATH (and --sam-model if it is not vit_h)."
    )
    if config.sam_checkpoint is None:
        raise SamCheckpointError(f"No SAM checkpoint given. {how}")
    path = Path(config.sam_checkpoint).expanduser()
    if not path.is_file():
        state = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise SamCheckpointError(f"SAM checkpoint {path} {state}. {how}")
    return path


def _import_optional(module: str, model: str, extra: str, how: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MaskRunError(f"--sam-model {model} needs the optional extra {extra}: {how}. ({err})") from err


def sam_package(sam_model: str) -> Any:
    """The package that builds ``sam_model``: ``segment_anything`` (vit_h/l/b), MobileSAM's ``mobile_sam`` (vit_t,
    the extra ``mobilesam``) or Meta's ``sam2`` (sam2.1_hiera_*, the extra ``sam2``)."""
    if sam_model in SAM2_CONFIGS:
        return _import_optional("sam2.build_sam", sam_model, "sam2", SAM2_INSTALL)
    if sam_model == "vit_t":
        return _import_optional("mobile_sam", sam_model, "mobilesam",
                                "pip install -e '.[mobilesam]' (it installs mobilesam-mirror and timm)")
    import segment_anything

    return segment_anything


def load_sam(config: SamMaskConfig, checkpoint: Path) -> Any:
    """The model ``config.sam_model`` with the weights of ``checkpoint`` (on the CPU); a checkpoint of another model
    type is a MaskRunError that names both."""
    package = sam_package(config.sam_model)
    try:
        if config.sam_model in SAM2_CONFIGS:
            return package.build_sam2(SAM2_CONFIGS[config.sam_model], ckpt_path=str(checkpoint), device="cpu")
        return package.sam_model_registry[config.sam_model](checkpoint=str(checkpoint))
    except (RuntimeError, KeyError) as err:
        raise MaskRunError(
            f"SAM checkpoint {checkpoint} does not fit the model type {config.sam_model} (the official file for "
            f"{config.sam_model} is {SAM_CHECKPOINT_FILES[config.sam_model]}); set --sam-model to the "
            f"checkpoint's type. ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from err


def generator_class(sam_model: str) -> Tuple[Any, Any]:
    """(the automatic mask generator class, the model class it takes) of ``sam_model``'s package."""
    if sam_model in SAM2_CONFIGS:
        generator = _import_optional("sam2.automatic_mask_generator", sam_model, "sam2", SAM2_INSTALL)
        base = _import_optional("sam2.modeling.sam2_base", sam_model, "sam2", SAM2_INSTALL)
        return generator.SAM2AutomaticMaskGenerator, base.SAM2Base
    package = sam_package(sam_model)
    return package.SamAutomaticMaskGenerator, package.modeling.Sam


def build_sam_generator(config: SamMaskConfig, sam: Any = None) -> Any:
    """The model's automatic mask generator with ``config``'s settings, on ``config.device``: this project's fast
    one for the SAM 1 family when ``config.generator`` is "fast", else the model package's own (segment-anything's,
    MobileSAM's or SAM 2's).

    Args:
        config: the settings; ``config.sam_checkpoint`` is loaded as ``config.sam_model`` unless ``sam`` is given.
        sam: an already-built model of ``config.sam_model``'s package to use instead of loading the checkpoint (it is
            moved to ``config.device`` in place).
    """
    checkpoint = checked_checkpoint(config) if sam is None else None
    Generator, Model = generator_class(config.sam_model)
    if config.generator == "fast" and config.sam_model not in SAM2_CONFIGS:
        from clickgs_ns.data.sam_fast import FastSamMaskGenerator as Generator  # imports torch: only when used
    if sam is None:
        sam = load_sam(config, checkpoint)
    elif not isinstance(sam, Model):
        raise TypeError(f"sam must be a {Model.__module__}.{Model.__name__}, got {type(sam).__name__}")
    sam = sam.to(resolve_device(config.device)).eval()
    return Generator(
        sam,
        points_per_side=config.points_per_side,
        points_per_batch=config.points_per_batch,
        pred_iou_thresh=config.pred_iou_thresh,
        stability_score_thresh=config.stability_score_thresh,
        min_mask_region_area=config.min_mask_region_area,
        **GENERATOR_FIXED_SETTINGS,
    )


def sam_settings(config: SamMaskConfig, sam: Any = None) -> Dict[str, Any]:
    """Everything that decides a mask file's content, as plain JSON-able values.

    The model is named by its checkpoint's file name and size (not its folder, so moving the file keeps the
    cache). When ``sam`` is given without a checkpoint it is named by the sha1 of its weights instead.
    ``points_per_batch``, ``device`` and ``generator`` are left out: they change speed, not masks (beyond float
    rounding).
    """
    if config.sam_checkpoint is not None:
        checkpoint = checked_checkpoint(config)
        model: Dict[str, Any] = {
            "sam_model": config.sam_model,
            "checkpoint_name": checkpoint.name,
            "checkpoint_bytes": checkpoint.stat().st_size,
        }
    elif sam is not None:
        model = {"weights_sha1": _weights_sha1(sam)}
    else:
        checked_checkpoint(config)  # raises: no checkpoint given
        raise AssertionError("unreachable")
    rule = configured_scene_rule(config)
    return {
        "id_maps": ID_MAP_VERSION,
        "scene_segment_rule": dataclasses.asdict(rule) if rule is not None else None,
        "model": model,
        "points_per_side": config.points_per_side,
        "pred_iou_thresh": config.pred_iou_thresh,
        "stability_score_thresh": config.stability_score_thresh,
        "min_mask_region_area": config.min_mask_region_area,
        "max_image_side": config.max_image_side,
        "generator_fixed": GENERATOR_FIXED_SETTINGS,
    }


def settings_fingerprint(settings: Dict[str, Any]) -> str:
    """sha1 (hex) of ``settings`` in canonical JSON."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _weights_sha1(sam: Any) -> str:
    """sha1 of a torch module's parameters and buffers (names, dtypes, shapes and values)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(sam.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# Images and cache files


def file_sha1(path: Path) -> str:
    """sha1 (hex) of a file's bytes."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def select_shard(image_paths: Sequence[Path], data_root: Path, shard: Tuple[int, int] = (0, 1)) -> List[Path]:
    """The images of shard (K, N): the i-th image, in a stable sorted order, for every i with i % N == K.

    The order sorts (deduplicated) images by their path relative to ``data_root``, so every process of a
    sharded run agrees on it whatever order it was given the images in.
    """
    index, count = shard
    if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
        raise MaskRunError(f"shard {index}/{count} is not K/N with N >= 1 and 0 <= K < N (e.g. 0/1, or 1/4)")
    root = Path(data_root).resolve()
    keyed = {}
    for path in image_paths:
        resolved = Path(path).resolve()
        try:
            key = resolved.relative_to(root).as_posix()
        except ValueError:
            key = resolved.as_posix()
        keyed[key] = Path(path)
    ordered = [keyed[key] for key in sorted(keyed)]
    return ordered[index::count]


def parse_shard(text: str) -> Tuple[int, int]:
    """"K/N" -> (K, N), with 0 <= K < N; MaskRunError otherwise."""
    parts = text.strip().split("/")
    try:
        index, count = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        index, count = None, None
    if index is None or count is None or count < 1 or not 0 <= index < count:
        raise MaskRunError(
            f"--shard {text!r} is not K/N with 0 <= K < N: shard K of N takes every N-th image starting at the "
            f"K-th, e.g. run --shard 0/2 and --shard 1/2 in two processes (0/1, the default, is all images)."
        )
    return index, count


def read_mask_record(path: Path) -> Dict[str, Any]:
    """A mask file's id maps and recorded provenance: keys coarse, fine, and (when present) settings_sha1,
    settings_json, image_sha1 (str) and num_segments (int). Raises MaskFileError naming the file."""
    coarse, fine = read_id_maps(path)
    record: Dict[str, Any] = {"coarse": coarse, "fine": fine}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in ("settings_sha1", "settings_json", "image_sha1"):
                if key in data.files:
                    record[key] = str(data[key])
            if "num_segments" in data.files:
                record["num_segments"] = int(data["num_segments"])
    except Exception as err:  # a damaged member beyond the id maps
        raise MaskFileError(f"Mask file {path} is unreadable ({err}); it is recomputed.") from err
    return record


def mask_cache_status(
    image_path: Path, mask_path: Path, fingerprint: Optional[str], image_sha1: Optional[str] = None
) -> CacheStatus:
    """Whether ``mask_path`` holds valid masks for ``image_path``.

    Valid = readable by ``read_id_maps``, of the image's size, made from these image bytes (``image_sha1``, the
    file's sha1, computed here when not given) and, when ``fingerprint`` is given, with these settings. When
    ``fingerprint`` is None (nothing known about how masks should be made) files written by other tools, which
    record neither hash, are accepted.
    """
    mask_path = Path(mask_path)
    if not mask_path.exists():
        return CacheStatus("missing", f"{mask_path} does not exist")
    try:
        record = read_mask_record(mask_path)
    except MaskFileError as err:
        return CacheStatus("corrupt", str(err))
    if fingerprint is not None and record.get("settings_sha1") != fingerprint:
        return CacheStatus("stale", f"{mask_path} was made with other SAM settings")
    if "image_sha1" in record or fingerprint is not None:
        if image_sha1 is None:
            image_sha1 = file_sha1(image_path)
        if record.get("image_sha1") != image_sha1:
            return CacheStatus("stale", f"{mask_path} was made from other bytes of {image_path}")
    try:
        size = image_size(image_path)
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # recomputing it reports the image
        return CacheStatus("stale", f"{image_path} cannot be read as an image ({err})")
    if record["coarse"].shape != size:
        got = record["coarse"].shape
        return CacheStatus(
            "stale", f"{mask_path} is {got[1]}x{got[0]} (WxH) but {image_path} is {size[1]}x{size[0]}"
        )
    return CacheStatus("valid")


def leftover_temp_files(mask_path: Path) -> List[Path]:
    """Temporary files a killed writer of ``mask_path`` left beside it (``clickgs_ns.io.atomic.leftover_temp_files``:
    never those of a writer still at work, such as another ``clickgs masks`` on the same dataset)."""
    return atomic_leftover_temp_files(mask_path)


def missing_or_stale_masks(
    data_root: Path, image_paths: Sequence[Path], config: SamMaskConfig, sam: Any = None
) -> List[Path]:
    """The images (in ``select_shard`` order) whose cached masks are missing, unreadable or out of date.

    Cheap enough to run before every training: reads each mask file and hashes each image, runs no SAM.
    Settings are checked when ``config.sam_checkpoint`` (or ``sam``) says which model makes the masks; with
    neither, any readable file of the right size for the current image bytes counts (e.g. masks from other tools).
    A ``config.sam_checkpoint`` that does not exist raises SamCheckpointError (its size is part of the settings).
    """
    fingerprint = None
    if config.sam_checkpoint is not None or sam is not None:
        fingerprint = settings_fingerprint(sam_settings(config, sam))
    stale = []
    for image_path in select_shard(image_paths, data_root):
        status = mask_cache_status(image_path, mask_path_for_image(image_path, data_root), fingerprint)
        if status.state != "valid":
            stale.append(Path(image_path))
    return stale


# ----------------------------------------------------------------------------------------------------------------
# The run


def _progress_bar(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class ImagesPerSecondColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("? images/s" if speed is None else f"{speed:.2f} images/s", style="progress.data.speed")

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        ImagesPerSecondColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _warn(report: MaskRunReport, message: str) -> None:
    """Record ``message`` in ``report`` and warn it (MaskCacheWarning) at the line that called ``compute_masks``.

    Only for the steps that ``compute_masks`` calls directly: the stack is _warn, the step, compute_masks, caller.
    """
    report.warnings.append(message)
    warnings.warn(message, MaskCacheWarning, stacklevel=4)


def _require_images_exist(images: Sequence[Path]) -> None:
    """MaskRunError naming (up to five of) the images that are not files."""
    missing_images = [p for p in images if not Path(p).is_file()]
    if missing_images:
        shown = ", ".join(str(p) for p in missing_images[:5])
        raise MaskRunError(f"{len(missing_images)} image(s) do not exist: {shown}")


def _masks_to_compute(
    images: Sequence[Path], data_root: Path, fingerprint: str, report: MaskRunReport, bar: Any
) -> List[Tuple[Path, Path, str]]:
    """Check each image's cached mask file (removing temporary files a killed writer left) and list the images
    to compute as (image, mask file, cache state); counts valid files in ``report.skipped`` and warns about
    unreadable ones."""
    todo: List[Tuple[Path, Path, str]] = []
    check = bar.add_task("Checking cached masks", total=len(images))
    for image_path in images:
        mask_path = mask_path_for_image(image_path, data_root)
        for tmp in leftover_temp_files(mask_path):
            tmp.unlink(missing_ok=True)
        status = mask_cache_status(image_path, mask_path, fingerprint)
        if status.state == "valid":
            report.skipped += 1
        else:
            if status.state == "corrupt":
                _warn(report, f"Cached masks unusable, recomputing: {status.reason}")
            todo.append((Path(image_path), mask_path, status.state))
        bar.advance(check)
    return todo


def read_image(image_path: Path) -> Tuple[bytes, np.ndarray]:
    """An image file's bytes and its pixels, RGB uint8 [H, W, 3]; ImageDecodeError naming the file when it cannot be
    read or decoded (not an image, truncated, unreadable)."""
    from PIL import UnidentifiedImageError

    try:
        data = Path(image_path).read_bytes()
        return data, decode_rgb(data)
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # PIL's errors for damaged files
        reason = "not an image file that Pillow can read" if isinstance(err, UnidentifiedImageError) else err
        raise ImageDecodeError(f"Image {image_path} cannot be read or decoded ({reason}).") from err


def working_image(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` RGB uint8 [H, W, 3] scaled down (area-averaged) so that its longer side is at most ``max_side``
    (unchanged when it already is, or when ``max_side`` is 0)."""
    height, width = image.shape[:2]
    if max_side <= 0 or max(height, width) <= max_side:
        return image
    from PIL import Image

    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BOX))


def _sam_id_maps(
    generator: Any, image: np.ndarray, scene_rule: Optional[SceneSegmentRule], max_side: int = 0
) -> Tuple[np.ndarray, np.ndarray, Any]:
    """Run SAM on one image, RGB uint8 [H, W, 3], at most ``max_side`` pixels on its longer side
    (``working_image``): (coarse [H, W], fine [H, W] id maps at the image's size, SAM's segments)."""
    working = working_image(image, max_side)
    segments = generator.generate(working)
    coarse, fine = segments_to_id_maps(segments, image_size=working.shape[:2], scene_rule=scene_rule)
    return resize_ids_nearest(coarse, image.shape[:2]), resize_ids_nearest(fine, image.shape[:2]), segments


def _write_mask_file(
    mask_path: Path, coarse: np.ndarray, fine: np.ndarray, fingerprint: str, settings_json: str,
    image_bytes: bytes, num_segments: int,
) -> None:
    """Write one image's id maps atomically with the settings and image hashes (the module's file format)."""
    write_id_maps(
        mask_path,
        coarse,
        fine,
        settings_sha1=np.array(fingerprint),
        settings_json=np.array(settings_json),
        image_sha1=np.array(hashlib.sha1(image_bytes).hexdigest()),
        num_segments=np.array(num_segments, dtype=np.int64),
    )


def _compute_listed_masks(
    todo: Sequence[Tuple[Path, Path, str]], config: SamMaskConfig, sam: Any, fingerprint: str, settings_json: str,
    report: MaskRunReport, bar: Any,
) -> None:
    """Run SAM on each listed (image, mask file, cache state) and write its mask file; the generator is built on
    the first image only, so nothing is loaded when all files are valid. An image that cannot be decoded is skipped
    with a warning naming it and listed in ``report.failed``. Counts into ``report``."""
    generator, rule = None, configured_scene_rule(config)
    run = bar.add_task(f"SAM masks ({config.sam_model if sam is None else 'given model'})", total=len(todo))
    for image_path, mask_path, state in todo:
        try:
            data, image = read_image(image_path)
        except ImageDecodeError as err:
            report.failed.append(image_path)
            _warn(report, f"{err} Skipped: it has no masks; the other images go on.")
            bar.advance(run)
            continue
        if generator is None:
            generator = build_sam_generator(config, sam)
        coarse, fine, segments = _sam_id_maps(generator, image, rule, config.max_image_side)
        _write_mask_file(mask_path, coarse, fine, fingerprint, settings_json, data, len(segments))
        report.computed += 1
        report.recomputed_corrupt += state == "corrupt"
        report.recomputed_stale += state == "stale"
        if not segments:
            report.empty += 1
            _warn(report, f"SAM found no segment in {image_path}; its masks are all -1 (ignored by the losses).")
        bar.advance(run)


def compute_masks(
    data_root: Path,
    image_paths: Sequence[Path],
    config: SamMaskConfig,
    shard: Tuple[int, int] = (0, 1),
    sam: Any = None,
    progress: bool = True,
) -> MaskRunReport:
    """Make (or complete) the cached SAM masks of the images of one shard.

    For each image of shard ``shard`` = (K, N) (``select_shard``): keep its mask file if valid
    (``mask_cache_status``); otherwise run SAM's automatic mask generator, convert its segments with
    ``segments_to_id_maps`` and write ``DATA/clickgs_masks/NAME.npz`` atomically with the settings fingerprint
    and the image's sha1. Unreadable files are reported (a MaskCacheWarning naming the file) and recomputed;
    images with no segment get all -1 maps and a warning; images that cannot be decoded are skipped with a warning
    and listed in ``report.failed`` (the caller decides: ``Masks`` exits non-zero at the end). A killed run leaves
    only complete files (and maybe temporary ones, removed by a later run: ``leftover_temp_files``), and running
    again continues where it stopped. Runs on one dataset at the same time leave each other's temporary files alone.

    Args:
        data_root: the dataset folder holding ``images/`` (masks go to ``data_root/clickgs_masks``).
        image_paths: full-resolution image files inside ``data_root``.
        config: the SAM settings; ``config.sam_checkpoint`` is loaded only if some image needs computing.
        shard: (K, N): this process's share of the images.
        sam: an already-built segment_anything Sam to use instead of loading the checkpoint.
        progress: show a rich progress bar.
    """
    start = time.perf_counter()
    data_root = Path(data_root)
    images = select_shard(image_paths, data_root, shard)
    settings = sam_settings(config, sam)
    fingerprint = settings_fingerprint(settings)
    settings_json = json.dumps(settings, sort_keys=True)
    report = MaskRunReport(images=len(images))
    _require_images_exist(images)
    with _progress_bar(progress) as bar:
        todo = _masks_to_compute(images, data_root, fingerprint, report, bar)
        _compute_listed_masks(todo, config, sam, fingerprint, settings_json, report, bar)
    report.seconds = time.perf_counter() - start
    return report


# ----------------------------------------------------------------------------------------------------------------
# Command line


def dataset_image_paths(data: Path) -> Tuple[Path, List[Path]]:
    """(dataset folder, its full-resolution images) for a nerfstudio dataset folder or its transforms.json.

    The images are the frames of transforms.json (``file_path``; a frame under ``images_N/`` is taken from
    ``images/`` when there), or, without a transforms.json, every image file under ``DATA/images``.
    """
    data = Path(data).expanduser()
    if not data.exists():
        raise MaskRunError(f"--data {data} does not exist; give a nerfstudio dataset folder or its transforms.json.")
    if data.is_file():
        if data.suffix.lower() != ".json":
            raise MaskRunError(f"--data {data} is a file but not a transforms.json; give the dataset folder.")
        root, transforms = data.parent, data
    else:
        root, transforms = data, data / "transforms.json"
    if transforms.is_file():
        return root, _transforms_images(root, transforms)
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise MaskRunError(
            f"--data {data} has neither a transforms.json nor an images/ folder; give a nerfstudio dataset folder."
        )
    images = sorted(p for p in image_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise MaskRunError(f"{image_dir} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    return root, images


def _transforms_images(root: Path, transforms: Path) -> List[Path]:
    try:
        meta = json.loads(transforms.read_text())
        frames = meta["frames"]
        file_paths = [frame["file_path"] for frame in frames]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MaskRunError(f"{transforms} is not a nerfstudio transforms.json with frames[].file_path ({err!r}).")
    if not file_paths:
        raise MaskRunError(f"{transforms} lists no frames.")
    images = []
    for file_path in file_paths:
        path = Path(file_path)
        images.append(full_resolution_path(path if path.is_absolute() else root / path, root))
    missing = [p for p in images if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise MaskRunError(f"{len(missing)} frame image(s) of {transforms} do not exist: {shown}")
    return images


@dataclass
class Masks:
    """Compute the SAM masks of a dataset's images once, into DATA/clickgs_masks/ (skips valid cached files).

    Shard over processes or GPUs with --shard K/N; rerun the same command to complete an interrupted run.
    """

    data: Path
    """A nerfstudio dataset folder, or its transforms.json."""
    sam: Annotated[SamMaskConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=SamMaskConfig)
    """SAM model and automatic mask generator settings."""
    shard: str = "0/1"
    """K/N: compute only the images i with i % N == K (in sorted order), e.g. 0/2 and 1/2 in two processes."""

    def main(self) -> MaskRunReport:
        from rich.console import Console

        console = Console(stderr=True)
        keep_freed_memory()  # this process only makes masks: reuse freed memory (io.memory)
        try:
            shard = parse_shard(self.shard)
            data_root, images = dataset_image_paths(self.data)
            report = compute_masks(data_root, images, self.sam, shard=shard, progress=True)
        except (MaskRunError, MaskFileError, SamCheckpointError) as err:
            raise SystemExit(f"clickgs masks: {err}") from err
        except KeyboardInterrupt:
            raise SystemExit(
                "clickgs masks: interrupted. Every mask file written is complete; run the same command to continue."
            ) from None
        console.print(
            f"[bold green]Masks of {report.images} images (shard {self.shard}) in {data_root / MASKS_DIRNAME}[/]: "
            f"{report.computed} computed ({report.recomputed_corrupt} replaced unreadable files, "
            f"{report.recomputed_stale} out of date), {report.skipped} already cached, {report.empty} without any "
            f"segment, in {report.seconds:.1f} s."
        )
        if report.warnings:
            console.print(f"[yellow]{len(report.warnings)} warning(s); see above.[/]")
        if report.failed:
            raise SystemExit(failed_images_message(report.failed, "clickgs masks"))
        return report


def failed_images_message(failed: Sequence[Path], what: str) -> str:
    """The error for a run whose ``failed`` images could not be decoded: names every one and the way forward."""
    listed = "\n".join(f"  {path}" for path in failed)
    return (f"{what}: {len(failed)} image(s) could not be read or decoded, so they have no masks:\n{listed}\n"
            "Replace or repair them (or remove their frames from transforms.json), then run the same command again: "
            "the masks of the other images are done and will be kept.")
