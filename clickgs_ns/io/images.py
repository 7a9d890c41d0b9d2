"""Image files as nerfstudio reads them: sizes, decoding, and the full-resolution file of a downscaled image.

nerfstudio may train on ``DATA/images_N/...``; masks are made on (and sized like) ``DATA/images/...``, and
clicks are given in that full-resolution image's pixels.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def image_size(path: Path) -> Tuple[int, int]:
    """(H, W) of an image file, from its header; as nerfstudio loads it (no EXIF rotation)."""
    with Image.open(path) as img:
        width, height = img.size
    return height, width


def decode_rgb(data: bytes) -> np.ndarray:
    """An image file's bytes as RGB uint8 [H, W, 3] (alpha dropped, grey expanded; no EXIF rotation)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def full_resolution_path(image_path: Path, data_root: Path) -> Path:
    """The full-resolution version of ``image_path``: nerfstudio may train on ``DATA/images_N/...``; masks are
    made on (and sized like) ``DATA/images/...``, when that file exists."""
    image_path, data_root = Path(image_path), Path(data_root)
    try:
        rel = image_path.resolve().relative_to(data_root.resolve())
    except ValueError:
        return image_path
    if len(rel.parts) > 1 and rel.parts[0].startswith("images_"):
        full = data_root / "images" / Path(*rel.parts[1:])
        if full.is_file():
            return full
    return image_path


def full_resolution_size(image_path: Path, data_root: Path) -> Tuple[int, int]:
    """(H, W) of the full-resolution version of ``image_path``."""
    return image_size(full_resolution_path(image_path, data_root))
