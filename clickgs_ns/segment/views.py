"""The views of a loaded run and clicks on them: every camera of the train and eval splits, found by image path
as in transforms.json, with the size of its full-resolution image. Users click full-resolution pixels (those of
``DATA/images/``); a click is mapped to the camera's resolution here, and only here (a run loaded for clicks,
``load_run``, has its cameras at the photos' own size: nerfstudio does not downscale in inference mode).

A camera with lens distortion is rendered as the pinhole camera of its own intrinsics (the rasterizer has no lens
model), and a pixel of its photo is moved through the lens model into that pinhole image (``undistort_pixels``);
rendered masks go the other way (``photo_selection_mask``), on a pinhole canvas grown to hold the whole photo
(barrel distortion moves the photo's border outside the pinhole frame: ``photo_canvas``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from clickgs_ns.io.images import full_resolution_path, full_resolution_size
from clickgs_ns.render.cameras import camera_size, camera_with_intrinsics
from clickgs_ns.lens import has_distortion, undistort_pixels
from clickgs_ns.segment.selection import ClickResult, Segmenter, selection_mask

CLICK_WINDOW = 1024
"""Side of the window that a click on a photo renders around its pixel when no render of the view is remembered
(``Segmenter.pixel_sample``): a photo up to this size renders whole, exactly what it shows; a larger one (12 MP:
4032 x 3024) only the window, so that a click's memory does not grow with the photo. A Gaussian centred far
outside the window is projected with a clamped Jacobian (as gsplat does), so through such Gaussians, hundreds of
pixels away, the pixel can differ slightly from a render of the whole photo."""


def image_key(name: str) -> str:
    """A transforms.json-style image path normalised for matching ("./images/a.png" -> "images/a.png")."""
    return Path(name.replace("\\", "/")).as_posix()


@dataclass
class View:
    """One camera of the run, train or eval split."""

    key: str
    """Image path relative to the dataset root, as in transforms.json ("images/NAME.png")."""
    split: str
    """"train" or "eval"."""
    index: int
    """Index within its split's dataset (for "train": the API's ``camera_index``)."""
    camera: Any
    """nerfstudio Cameras [1] in the training frame, at the loaded dataset's resolution (the photo's own for a run
    loaded for clicks)."""
    full_size: Tuple[int, int]
    """(H, W) of the full-resolution image."""
    distortion: Optional[Tensor] = None
    """[6] nerfstudio distortion parameters of the photo, when it has lens distortion (``camera`` is then the
    pinhole camera of the same intrinsics)."""
    camera_type: int = 1
    """nerfstudio CameraType value (1: perspective)."""

    def summary(self) -> Dict[str, Any]:
        """The view as ``clickgs views --json`` lists it: image path, split, index in its split, full-resolution
        width and height."""
        height, width = self.full_size
        return {"image": self.key, "split": self.split, "index": self.index, "width": int(width),
                "height": int(height)}


def distorted_view(view: View, dataset: Any) -> View:
    """``view`` of a photo with lens distortion: its camera as the dataparser gave it (nerfstudio replaces the
    intrinsics when it undistorts the cached training images), without the distortion."""
    from copy import deepcopy

    original = deepcopy(dataset._dataparser_outputs.cameras[view.index : view.index + 1])
    original.rescale_output_resolution(scaling_factor=getattr(dataset, "scale_factor", 1.0))
    distortion = original.distortion_params.reshape(-1).clone()
    original.distortion_params = torch.zeros_like(original.distortion_params)
    return View(view.key, view.split, view.index, original, view.full_size, distortion,
                int(original.camera_type.reshape(-1)[0]))


def photo_pixels(view: View, camera: Any, height: int, width: int) -> np.ndarray:
    """Where each pixel of the photo (at ``height`` x ``width``) lands in the pinhole render of ``camera`` through
    ``view``'s lens model: [H * W, 2] (x, y; nerfstudio's pixel coordinates), row by row."""
    rows, columns = np.mgrid[0:height, 0:width] + 0.5
    return undistort_pixels(np.stack([columns.ravel(), rows.ravel()], -1), view.camera_type,
                            camera.get_intrinsics_matrices()[0].numpy(), view.distortion.numpy())


def pixels_in_image(points: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points [M, 2] (x, y) as the row [M] and column [M] of the image pixel holding each (clipped to the image)
    and whether it lies inside the image [M] bool."""
    finite = np.isfinite(points).all(axis=-1)
    points = np.where(finite[:, None], points, -1.0)
    inside = finite & (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    column = np.clip(np.floor(points[:, 0]), 0, width - 1).astype(int)
    row = np.clip(np.floor(points[:, 1]), 0, height - 1).astype(int)
    return row, column, inside


def photo_pixels_in_pinhole(view: View, camera: Any, height: int, width: int) -> Tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """``photo_pixels`` in the pinhole image of ``camera`` itself: row [H * W], column [H * W] (clipped to the
    image) and whether each lies inside it [H * W] bool (barrel distortion moves the photo's border outside)."""
    return pixels_in_image(photo_pixels(view, camera, height, width), height, width)


def grown_camera(camera: Any, left: int, top: int, right: int, bottom: int) -> Any:
    """``camera`` [1] with its image grown by that many pixels on each side: the same rays, the principal point
    moved with the image's corner."""
    height, width = camera_size(camera)
    return camera_with_intrinsics(camera, camera.fx, camera.fy, camera.cx + left, camera.cy + top,
                                  (height + top + bottom, width + left + right))


def canvas_margins(points: np.ndarray, height: int, width: int) -> Tuple[int, int, int, int]:
    """Pixels to add on each side (left, top, right, bottom) of a ``height`` x ``width`` image so that it holds
    every finite point of ``points`` [M, 2] (x, y; a point at x = -0.3 needs one column on the left)."""
    finite = points[np.isfinite(points).all(axis=-1)]
    if not len(finite):
        return 0, 0, 0, 0
    (low_x, low_y), (high_x, high_y) = np.floor(finite.min(axis=0)), np.floor(finite.max(axis=0))
    return (max(0, int(-low_x)), max(0, int(-low_y)), max(0, int(high_x) - (width - 1)),
            max(0, int(high_y) - (height - 1)))


def photo_canvas(view: View, camera: Any, height: int, width: int, max_margin: float = 0.5
                 ) -> Tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The pinhole render of ``camera`` (at ``height`` x ``width``) grown to hold every pixel of ``view``'s photo
    through its lens model: the grown camera (``grown_camera``) and each photo pixel's row [H * W] and column
    [H * W] in it and whether it lies inside [H * W] bool. A margin is at most ``max_margin`` of the image's size
    (a fisheye lens sees past any pinhole frame)."""
    points = photo_pixels(view, camera, height, width)  # [H * W, 2]
    margins = canvas_margins(points, height, width)
    left, top, right, bottom = (min(margin, int(max_margin * size))
                                for margin, size in zip(margins, (width, height, width, height)))
    row, column, inside = pixels_in_image(points + np.array([left, top]), height + top + bottom,
                                          width + left + right)
    return grown_camera(camera, left, top, right, bottom), row, column, inside


def photo_selection_mask(model: Any, selection: Tensor, view: View, camera: Any, threshold: float = 0.5
                         ) -> np.ndarray:
    """[H, W] bool: the photo pixels of ``view`` where the selected Gaussians ([N] bool) render with accumulated
    opacity above ``threshold``, seen by ``camera`` (``view.camera`` at the photo's size, H x W). A photo with lens
    distortion is rendered on a pinhole canvas that holds all its pixels (``photo_canvas``) and each photo pixel
    takes the canvas pixel it sees; without distortion this is ``selection_mask``."""
    if view.distortion is None:
        return selection_mask(model, selection, camera, threshold)
    height, width = camera_size(camera)
    canvas, row, column, inside = photo_canvas(view, camera, height, width)
    rendered = selection_mask(model, selection, canvas, threshold)
    return (rendered[row, column] & inside).reshape(height, width)


class ViewIndex:
    """Every camera of a loaded run (train and eval splits), looked up by image path as in transforms.json."""

    def __init__(self, datamanager: Any):
        self.views: Dict[str, View] = {}
        self.train_views: List[View] = []
        """The training views by ``camera_index``."""
        for split in ("train", "eval"):
            dataset = getattr(datamanager, f"{split}_dataset", None)
            if dataset is None:
                continue
            data_root = Path(getattr(dataset, "data_root", getattr(datamanager, "data_root", ".")))
            for index, filename in enumerate(dataset.image_filenames):
                full = full_resolution_path(Path(filename), data_root)
                try:
                    key = full.resolve().relative_to(data_root.resolve()).as_posix()
                except ValueError:
                    key = Path(filename).name
                camera = dataset.cameras[index : index + 1]
                try:
                    size = full_resolution_size(Path(filename), data_root)
                except (OSError, ValueError):
                    size = camera_size(camera)
                view = View(key, split, index, camera, size)
                if has_distortion(camera.distortion_params):
                    view = distorted_view(view, dataset)
                self.views.setdefault(key, view)
                if split == "train":
                    self.train_views.append(view)

    def __len__(self) -> int:
        return len(self.views)

    def get(self, image: str) -> Optional[View]:
        return self.views.get(image_key(image))

    def find(self, image: str) -> View:
        """The view of ``image``: its path as in transforms.json ("images/frame_00012.png"), or a file name
        ("frame_00012.png", or "images_2/frame_00012.png") or name without extension ("frame_00012") that no other
        view shares. A ValueError names the image and lists some known views."""
        view = self.get(image)
        if view is not None:
            return view
        name = Path(image_key(image))
        matches = ([v for key, v in self.views.items() if Path(key).name == name.name]
                   or [v for key, v in self.views.items() if Path(key).stem == name.stem])
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(v.key for v in matches[:4]) + (", ..." if len(matches) > 4 else "")
            raise ValueError(f"{image} could be {len(matches)} views ({shown}): give its path as in transforms.json")
        raise ValueError(f"{image} is not a view of the run ({self.describe()})")

    def describe(self, limit: int = 4) -> str:
        """A few of the known image paths, for error messages."""
        names = sorted(self.views)
        shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
        return f"{len(names)} views: {shown}"


def full_resolution_camera(camera: Any, full_size: Tuple[int, int]) -> Any:
    """``camera`` [1] with its intrinsics and size scaled to the full-resolution image (H, W)."""
    height, width = camera_size(camera)
    if (height, width) == tuple(full_size):
        return camera
    sx, sy = full_size[1] / width, full_size[0] / height
    return camera_with_intrinsics(camera, camera.fx * sx, camera.fy * sy, camera.cx * sx, camera.cy * sy,
                                  tuple(full_size))


def pixel_xy(value: Any) -> Tuple[float, float]:
    """A click's pixel as JSON gives it ([x, y], two finite numbers) as floats; else a ValueError that says so."""
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise ValueError(f"'xy' must be two finite numbers [x, y], got {value!r}")
    return float(value[0]), float(value[1])


def camera_pixel(x: float, y: float, full_size: Tuple[int, int], size: Tuple[int, int]) -> Tuple[float, float]:
    """The centre (x, y) of the camera-resolution pixel that holds full-resolution pixel (x, y); sizes are (H, W)."""
    (full_h, full_w), (h, w) = full_size, size
    column = min(int((math.floor(x) + 0.5) * w / full_w), w - 1)
    row = min(int((math.floor(y) + 0.5) * h / full_h), h - 1)
    return column + 0.5, row + 0.5


def check_pixel(view: View, x: float, y: float) -> None:
    """A ValueError naming the image when full-resolution pixel (x, y) lies outside ``view``'s photo."""
    height, width = view.full_size
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"Pixel ({x:g}, {y:g}) lies outside {view.key} ({width}x{height})")


def click_view(segmenter: Segmenter, view: View, x: float, y: float, level: str, mode: str = "add",
               window: int = CLICK_WINDOW) -> ClickResult:
    """Click full-resolution pixel (x, y) of ``view`` (either split) through ``segmenter``, rendering at most a
    ``window`` x ``window`` crop around it; returns the ``ClickResult``. Errors name the image when the pixel lies
    outside it."""
    check_pixel(view, x, y)
    camera, size = view.camera, camera_size(view.camera)
    column, row = camera_pixel(x, y, view.full_size, size)
    if view.distortion is not None:  # the photo's pixel, through the lens model, in the pinhole render
        column, row = undistort_pixels(np.array([[column, row]]), view.camera_type,
                                       view.camera.get_intrinsics_matrices()[0].numpy(), view.distortion.numpy())[0]
        left, top, right, bottom = canvas_margins(np.array([[column, row]]), *size)
        if not (math.isfinite(column) and math.isfinite(row)) or max(left, right) > size[1] // 2 \
                or max(top, bottom) > size[0] // 2:
            raise ValueError(f"Pixel ({x:g}, {y:g}) of {view.key} lies outside what its lens model can undistort")
        if left or top or right or bottom:  # barrel distortion: the photo's border lies outside the pinhole frame
            camera, column, row = grown_camera(camera, left, top, right, bottom), column + left, row + top
    return segmenter.click(camera, column, row, level, mode, window)  # type: ignore[arg-type]
