"""SAM preprocessing: each training image's two-level id maps, computed once and cached on disk.

``compute_masks`` runs a SAM model's automatic mask generator (``sam_models``) on every image of a dataset (or of
one shard of it) whose cached mask file is missing or out of date; each image's segments become a coarse and a fine
id map (``scene_segments.segments_to_id_maps``), written to ``DATA/clickgs_masks/NAME.npz`` with what made them
(``mask_cache``, which also says the file format). ``SamMaskConfig`` holds the settings (the datamanager's
``sam`` and the ``clickgs masks`` command's), ``MaskRunReport`` what a run did.

Heavy imports (torch, segment_anything) happen inside the functions that need them.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Literal, Optional, Sequence, Tuple

import numpy as np

from clickgs_ns.data.mask_cache import (
    leftover_temp_files,
    mask_cache_status,
    sam_settings,
    select_shard,
    settings_fingerprint,
    write_mask_record,
)
from clickgs_ns.data.mask_errors import ImageDecodeError, MaskCacheWarning, MaskRunError
from clickgs_ns.data.sam_models import build_sam_generator
from clickgs_ns.data.scene_segments import SceneSegmentRule, configured_scene_rule, segments_to_id_maps
from clickgs_ns.io.id_maps import mask_path_for_image, resize_ids_nearest
from clickgs_ns.io.images import IMAGE_SUFFIXES, decode_rgb, full_resolution_path


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
        write_mask_record(mask_path, coarse, fine, fingerprint, settings_json, data, len(segments))
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
# Datasets


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


def failed_images_message(failed: Sequence[Path], what: str) -> str:
    """The error for a run whose ``failed`` images could not be decoded: names every one and the way forward."""
    listed = "\n".join(f"  {path}" for path in failed)
    return (f"{what}: {len(failed)} image(s) could not be read or decoded, so they have no masks:\n{listed}\n"
            "Replace or repair them (or remove their frames from transforms.json), then run the same command again: "
            "the masks of the other images are done and will be kept.")
