"""Headless Python API: click, segment everything and export by script.

    import clickgs_ns
    scene = clickgs_ns.load("outputs/data/click-gaussian/2024-01-01_000000/config.yml")
    result = scene.click(camera_index=0, x=420, y=310, level="coarse")   # pixels of the full-resolution image
    print(result.message)
    scene.click(0, 100, 80, mode="subtract")                             # a negative click
    scene.click(image="frame_00012.png", x=420, y=310)                   # by photo name (train or eval view)
    scene.export("object.ply")                                           # + object.labels.npy, object.export.json
    scene.export("rest.ply", invert=True)                                # everything but the selection
    labels = scene.segment_everything("fine")                            # [N] instance ids, -1 = none

Everything goes through ``clickgs_ns.segment.selection.Segmenter``, the same core as the viewer and the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

from torch import Tensor

from clickgs_ns.io.selection_files import load_selection, save_selection
from clickgs_ns.levels import Level
from clickgs_ns.segment.export import (
    ExportResult,
    NothingToExport,
    dataset_frame,
    export_gaussians,
    export_segments,
    exported_gaussians,
)
from clickgs_ns.segment.run import LoadedRun, load_run
from clickgs_ns.segment.selection import ClickResult, Mode, Segmentation, SelectionConfig, Segmenter
from clickgs_ns.segment.views import View, ViewIndex, click_view


class ClickGaussianScene:
    """A loaded click-gaussian run with a selection. ``run`` is a ``clickgs_ns.segment.run.LoadedRun`` (or any
    object with ``.model``, ``.cameras`` and ``.datamanager``)."""

    def __init__(self, run: LoadedRun, config: Optional[SelectionConfig] = None):
        self.run = run
        self.segmenter = Segmenter(run.model, config)
        self._views: Optional[ViewIndex] = None

    # ------------------------------------------------------------------------------------------ views
    @property
    def model(self):
        return self.run.model

    @property
    def num_gaussians(self) -> int:
        return self.segmenter.num_gaussians

    @property
    def num_views(self) -> int:
        return len(self.run.cameras)

    @property
    def views(self) -> ViewIndex:
        """Every view of the run (train and eval splits) by image path, with its full-resolution size."""
        if self._views is None:
            self._views = ViewIndex(self.run.datamanager)
        return self._views

    def train_view(self, camera_index: int) -> View:
        """Training view ``camera_index``."""
        if not 0 <= camera_index < self.num_views:
            raise IndexError(f"camera_index {camera_index} is out of range: the run has {self.num_views} views")
        return self.views.train_views[camera_index]

    def view(self, image: Union[str, Path, int]) -> View:
        """The view of a photo, by name (``ViewIndex.find``: "frame_00012.png" or "images/frame_00012.png", train
        or eval view; a ValueError lists some names), or training view ``image`` when it is an integer."""
        if isinstance(image, (str, Path)):
            return self.views.find(str(image))
        return self.train_view(int(image))

    def camera(self, camera_index: int):
        """Training camera ``camera_index`` as nerfstudio Cameras [1]."""
        return self.train_view(camera_index).camera

    def full_resolution_size(self, camera_index: int):
        """(H, W) of the full-resolution image of view ``camera_index`` (the camera's own size when that image
        cannot be found, e.g. a dataset without ``images/``)."""
        return self.train_view(camera_index).full_size

    # ------------------------------------------------------------------------------------------ selection
    def click(self, camera_index: Union[int, str, Path, None] = None, x: Optional[float] = None,
              y: Optional[float] = None, level: Level = "coarse", mode: Mode = "add", *,
              image: Union[str, Path, None] = None) -> ClickResult:
        """Click pixel (x right, y down) of a FULL-resolution photo: training view ``camera_index``, or the view of
        ``image`` ("frame_00012.png" or "images/frame_00012.png", train or eval view; a name given as
        ``camera_index`` works too; see ``view``).

        The pixel's centre is mapped to the camera's (training) resolution. ``mode``: "add", "subtract" (a
        negative click) or "replace". ``result.pixel`` is the pixel in the camera's resolution.
        """
        if (camera_index is None) == (image is None):
            raise TypeError("click() takes the view as camera_index (a training view's index) or image (a photo "
                            f"name), exactly one of them; got camera_index={camera_index!r}, image={image!r}")
        if x is None or y is None:
            raise TypeError(f"click() needs the pixel: x and y of the full-resolution image (got x={x!r}, y={y!r})")
        view = self.view(image if image is not None else camera_index)  # type: ignore[arg-type]
        return click_view(self.segmenter, view, x, y, level, mode)

    def segment_everything(self, level: Level = "coarse") -> Tensor:
        """[N] long whole-scene instance ids at ``level`` (-1 = none); ``segmentation(level)`` says how."""
        return self.segmentation(level).labels

    def segmentation(self, level: Level = "coarse") -> Segmentation:
        """``segment_everything`` with its message (whether the candidate-free fallback was used)."""
        return self.segmenter.segment_everything(level)

    @property
    def selection(self) -> Tensor:
        """[N] bool: the current selection (a copy)."""
        return self.segmenter.selection.clone()

    def select(self, mask: Tensor, mode: Mode = "replace") -> Tensor:
        """Combine a [N] bool mask with the selection (undoable); returns the new selection."""
        return self.segmenter.state.apply(mask.to(self.segmenter.selection.device), mode).clone()

    def clear(self) -> None:
        self.segmenter.clear()

    def undo(self) -> bool:
        """Go back one step; False when there is nothing to undo."""
        return self.segmenter.undo()

    def refresh(self) -> None:
        """Drop the cached features, labels and render (after changing the model)."""
        self.segmenter.refresh()

    def save_selection(self, path: Path) -> Path:
        """Save the selection as a [N] bool .npy (atomically); as ``numpy.save`` does, ``.npy`` is added to a path
        without it. Returns the path written."""
        path = Path(path)
        if path.suffix != ".npy":
            path = path.with_name(path.name + ".npy")
        save_selection(path, self.segmenter.selection)
        return path

    def load_selection(self, path: Path, mode: Mode = "replace") -> Tensor:
        """Read a selection .npy (bool mask or indices) and apply it; an error when it fits another model."""
        return self.select(load_selection(path, self.num_gaussians), mode)

    # ------------------------------------------------------------------------------------------ export
    def export(self, path: Path, selection: Optional[Tensor] = None, labels: Optional[Tensor] = None,
               level: Level = "coarse", include_features: bool = False, invert: bool = False) -> ExportResult:
        """Write the selection (default: the current one) as a 3DGS .ply in the dataset's frame; with ``invert``,
        everything but the selection (the scene with the object removed).

        Each Gaussian's ``label`` is its "segment everything" id at ``level`` unless ``labels`` [N] is given.
        ``path`` without a suffix gets ".ply" (as ``save_selection`` adds ".npy"); another suffix is refused.
        """
        path = Path(path)
        if not path.suffix:
            path = path.with_name(path.name + ".ply")
        if path.suffix != ".ply":
            raise ValueError(f"{path}: a splat is exported as a .ply file (e.g. object.ply)")
        selection = self.segmenter.selection if selection is None else selection
        try:
            exported, _ = exported_gaussians(selection.cpu(), "inverse" if invert else "selection")
        except NothingToExport as error:
            if invert:
                raise
            raise ValueError(f"{error} Click first, or pass selection= (a [N] bool mask).") from error
        transform, scale = dataset_frame(self.run.datamanager)
        labels = self.segment_everything(level) if labels is None else labels
        return export_gaussians(self.model, exported, path, transform, scale, labels.cpu(), include_features)

    def export_segments(self, out_dir: Path, level: Level = "coarse", labels: Optional[Tensor] = None,
                        min_gaussians: int = 1) -> List[ExportResult]:
        """One .ply per "segment everything" id at ``level`` (or per id of ``labels`` [N]) into ``out_dir``."""
        transform, scale = dataset_frame(self.run.datamanager)
        labels = self.segment_everything(level) if labels is None else labels
        return export_segments(self.model, labels.cpu(), out_dir, transform, scale, min_gaussians)


def load(config_path: Path, config: Optional[SelectionConfig] = None) -> ClickGaussianScene:
    """Load the latest checkpoint of a click-gaussian run (its ``config.yml``) for clicking and export."""
    return ClickGaussianScene(load_run(config_path), config)
