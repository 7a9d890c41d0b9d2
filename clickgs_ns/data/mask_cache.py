"""The on-disk cache of SAM masks: what made each mask file, whether it is still valid, and the shards of a run.

Each image's maps are written atomically to ``DATA/clickgs_masks/NAME.npz`` in the format of ``clickgs_ns.io.id_maps``,
with these extra arrays:

- ``settings_sha1`` (str): fingerprint of everything that decides the output (``sam_settings``): the SAM model
  (checkpoint file name and size), the generator settings and the id-map version;
- ``settings_json`` (str): those settings in readable JSON, so that a mask folder says how it was made;
- ``image_sha1`` (str): sha1 of the image file's bytes;
- ``num_segments`` (int): how many segments SAM returned.

A cached file is used only when ``read_id_maps`` reads it, its settings and image hashes match, and its size is
the image's; anything else is recomputed, so a run that was killed (or sharded over several processes with
``--shard K/N``, ``select_shard``) is completed by running the same command again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np

from clickgs_ns.data.mask_errors import MaskRunError
from clickgs_ns.data.sam_models import GENERATOR_FIXED_SETTINGS, checked_checkpoint
from clickgs_ns.data.scene_segments import ID_MAP_VERSION, configured_scene_rule
from clickgs_ns.io.atomic import leftover_temp_files as atomic_leftover_temp_files
from clickgs_ns.io.id_maps import MaskFileError, mask_path_for_image, read_id_maps, write_id_maps
from clickgs_ns.io.images import image_size

if TYPE_CHECKING:
    from clickgs_ns.data.sam_masks import SamMaskConfig


@dataclass(frozen=True)
class CacheStatus:
    """The state of one image's cached mask file."""

    state: Literal["valid", "missing", "corrupt", "stale"]
    """"valid": usable as is; "missing": no file; "corrupt": unreadable; "stale": readable but not for this
    image/settings."""
    reason: str = ""
    """Why the file is not valid, naming the file."""


# ----------------------------------------------------------------------------------------------------------------
# Settings fingerprints


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
# Mask files


def file_sha1(path: Path) -> str:
    """sha1 (hex) of a file's bytes."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_mask_record(
    mask_path: Path, coarse: np.ndarray, fine: np.ndarray, fingerprint: str, settings_json: str,
    image_bytes: bytes, num_segments: int,
) -> None:
    """Write one image's id maps atomically with the settings and image hashes (the module's file format; read
    back by ``read_mask_record``)."""
    write_id_maps(
        mask_path,
        coarse,
        fine,
        settings_sha1=np.array(fingerprint),
        settings_json=np.array(settings_json),
        image_sha1=np.array(hashlib.sha1(image_bytes).hexdigest()),
        num_segments=np.array(num_segments, dtype=np.int64),
    )


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
# Shards


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
