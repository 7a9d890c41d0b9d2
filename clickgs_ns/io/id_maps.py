"""The on-disk mask format shared by every part of the project and by outside tools.

For each training image ``images/NAME.EXT`` of a dataset, the file ``clickgs_masks/NAME.npz`` in the dataset
folder holds two int32 arrays, ``coarse`` and ``fine``, of the image's full resolution [H, W]: the segment id
covering each pixel, -1 where no segment covers it. Ids are local to the image (the same id in two images says
nothing). Sub-folders of ``images/`` are mirrored under ``clickgs_masks/``.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Tuple

import numpy as np

from clickgs_ns.io.atomic import atomic_path
from clickgs_ns.levels import LEVELS

MASKS_DIRNAME = "clickgs_masks"

DAMAGED_FILE_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
"""What numpy raises reading a damaged .npz: a truncated or garbled archive (BadZipFile, EOFError, OSError), a bad
array header (ValueError), a damaged compressed member (zlib.error: its deflate stream does not decode)."""


class MaskFileError(ValueError):
    """A mask file is missing, unreadable, or does not fit its image."""


def mask_path_for_image(image_path: Path, data_root: Path) -> Path:
    """Path of the mask file for ``image_path``, an image inside ``data_root``.

    ``DATA/images/sub/NAME.EXT`` (or ``DATA/images_2/sub/NAME.EXT``) maps to ``DATA/clickgs_masks/sub/NAME.npz``.
    """
    image_path, data_root = Path(image_path), Path(data_root)
    try:
        rel = image_path.resolve().relative_to(data_root.resolve())
    except ValueError as err:
        raise MaskFileError(
            f"Image {image_path} is not inside the dataset folder {data_root}; clickgs masks live in "
            f"{data_root / MASKS_DIRNAME} and are found from the image's path relative to the dataset."
        ) from err
    parts = rel.parts[1:] if len(rel.parts) > 1 else rel.parts
    return data_root / MASKS_DIRNAME / Path(*parts).with_suffix(".npz")


def write_id_maps(path: Path, coarse: np.ndarray, fine: np.ndarray, **extra: np.ndarray) -> None:
    """Write one image's coarse and fine id maps [H, W] (int32, -1 = no segment) atomically."""
    coarse, fine = np.asarray(coarse), np.asarray(fine)
    if coarse.shape != fine.shape or coarse.ndim != 2:
        raise ValueError(f"coarse {coarse.shape} and fine {fine.shape} must be [H, W] maps of one size")
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, coarse=coarse.astype(np.int32), fine=fine.astype(np.int32), **extra)


def read_id_maps(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Read and check one mask file; returns (coarse, fine), each int32 [H, W].

    Raises MaskFileError naming the file when it is missing, unreadable (``DAMAGED_FILE_ERRORS``) or malformed.
    """
    path = Path(path)
    if not path.exists():
        raise MaskFileError(
            f"Mask file {path} is missing. Compute the masks with `clickgs masks --data DATA --sam-checkpoint "
            f"PATH`, give `--pipeline.datamanager.sam.sam-checkpoint PATH` to ns-train, or write them yourself in the "
            f"format of clickgs_ns/io/id_maps.py (int32 arrays 'coarse' and 'fine', -1 = no segment)."
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in LEVELS if k not in data.files]
            if missing:
                raise MaskFileError(f"Mask file {path} lacks the array(s) {missing}; it holds {data.files}.")
            coarse, fine = data["coarse"], data["fine"]
    except DAMAGED_FILE_ERRORS as err:
        if isinstance(err, MaskFileError):
            raise
        raise MaskFileError(
            f"Mask file {path} is unreadable ({err}): it is damaged. Compute it again: "
            "`clickgs masks` (and ns-train with a SAM checkpoint) recompute damaged files."
        ) from err
    for name, arr in (("coarse", coarse), ("fine", fine)):
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise MaskFileError(f"Mask file {path}: '{name}' must be an integer [H, W] map, got {arr.dtype} {arr.shape}.")
    if coarse.shape != fine.shape:
        raise MaskFileError(f"Mask file {path}: 'coarse' {coarse.shape} and 'fine' {fine.shape} differ in size.")
    return coarse.astype(np.int32, copy=False), fine.astype(np.int32, copy=False)


def resize_ids_nearest(ids: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an id map [H, W] to ``size`` = (h, w); ids are never blended.

    Output pixel (i, j) takes the input pixel under its centre: row floor((i + 0.5) * H / h).
    """
    height, width = ids.shape
    out_h, out_w = size
    if (out_h, out_w) == (height, width):
        return ids
    rows = np.minimum(((np.arange(out_h) + 0.5) * height / out_h).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * width / out_w).astype(np.int64), width - 1)
    return ids[rows[:, None], cols[None, :]]


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """``ids`` in the smallest signed integer type that holds them (int8, int16 or int32)."""
    low, high = (int(ids.min()), int(ids.max())) if ids.size else (0, 0)
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return ids.astype(dtype, copy=False)
    raise ValueError(f"Segment ids up to {high} do not fit int32")


def renumber_ids(ids: np.ndarray) -> np.ndarray:
    """Ids of one image renumbered 0..S-1 in increasing order (-1 stays -1): same segments, smallest values.

    Ids are local to an image, so this changes no segment; it lets ``compact_ids`` pick int8 or int16.
    """
    values, inverse = np.unique(ids, return_inverse=True)
    offset = 1 if values.size and values[0] == -1 else 0
    return (inverse.reshape(ids.shape) - offset).astype(np.int32)
