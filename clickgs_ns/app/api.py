"""Headless Python API: click, segment everything and export by script.

    import clickgs_ns
    scene = clickgs_ns.load("outputs/data/click-gaussian/2024-01-01_000000/config.yml")
    result = scene.click(camera_index=0, x=420, y=310, level="coarse")   # pixels of the full-resolution image
    print(result.message)
    scene.click(0, 100, 80, mode="subtract")                             # a negative click
    scene.export("object.ply")                                           # + object.labels.npy, object.export.json
    labels = scene.segment_everything("fine")                            # [N] instance ids, -1 = none

Everything goes through ``clickgs_ns.segment.selection.Segmenter``, the same core as the viewer and the CLI.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from clickgs_ns.io.id_maps import Level
from clickgs_ns.io.selection_files import load_selection, save_selection
from clickgs_ns.segment.export import ExportResult, export_gaussians, export_segments
from clickgs_ns.segment.selection import (
    ClickResult,
    Mode,
    Segmentation,
    SelectionConfig,
    Segmenter,
    render_selection_alpha,
)


class ClickGaussianScene:
    """A loaded click-gaussian run with a selection. ``scene`` is a ``clickgs_ns.segment.run.ClickScene`` (or any
    object with ``.model``, ``.cameras`` and ``.pipeline.datamanager``)."""

    def __init__(self, scene: Any, config: Optional[SelectionConfig] = None):
        self.scene = scene
        self.segmenter = Segmenter(scene.model, config)
        self._full_sizes: Dict[int, Tuple[int, int]] = {}

    # ------------------------------------------------------------------------------------------ views
    @property
    def model(self) -> Any:
        return self.scene.model

    @property
    def num_gaussians(self) -> int:
        return self.segmenter.num_gaussians

    @property
    def num_views(self) -> int:
        return len(self.scene.cameras)

    def camera(self, camera_index: int):
        """Training camera ``camera_index`` as nerfstudio Cameras [1]."""
        if not 0 <= camera_index < self.num_views:
            raise IndexError(f"camera_index {camera_index} is out of range: the run has {self.num_views} views")
        return self.scene.cameras[camera_index : camera_index + 1]

    def full_resolution_size(self, camera_index: int) -> Tuple[int, int]:
        """(H, W) of the full-resolution image of view ``camera_index`` (the camera's own size when that image
        cannot be found, e.g. a dataset without ``images/``)."""
        if camera_index not in self._full_sizes:
            camera = self.camera(camera_index)
            size = (int(camera.height.reshape(-1)[0]), int(camera.width.reshape(-1)[0]))
            dataset = getattr(self.scene.pipeline.datamanager, "train_dataset", None)
            data_root = getattr(dataset, "data_root", None)
            if data_root is not None:
                from clickgs_ns.io.images import full_resolution_size

                try:
                    size = full_resolution_size(dataset.image_filenames[camera_index], data_root)
                except (OSError, ValueError):
                    pass
            self._full_sizes[camera_index] = size
        return self._full_sizes[camera_index]

    # ------------------------------------------------------------------------------------------ selection
    def click(self, camera_index: int, x: float, y: float, level: Level = "coarse", mode: Mode = "add") -> ClickResult:
        """Click pixel (x right, y down) of the FULL-resolution training image ``camera_index``.

        The pixel's centre is mapped to the camera's (training) resolution. ``mode``: "add", "subtract" (a
        negative click) or "replace". ``result.pixel`` is the pixel in the camera's resolution.
        """
        camera = self.camera(camera_index)
        full_height, full_width = self.full_resolution_size(camera_index)
        if not (0 <= x < full_width and 0 <= y < full_height):
            raise ValueError(f"Pixel ({x}, {y}) lies outside view {camera_index}'s {full_width}x{full_height} image")
        width, height = int(camera.width.reshape(-1)[0]), int(camera.height.reshape(-1)[0])
        column = min(int((math.floor(x) + 0.5) * width / full_width), width - 1)
        row = min(int((math.floor(y) + 0.5) * height / full_height), height - 1)
        return self.segmenter.click(camera, column + 0.5, row + 0.5, level, mode)

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

    def save_selection(self, path: Path) -> None:
        save_selection(path, self.segmenter.selection)

    def load_selection(self, path: Path, mode: Mode = "replace") -> Tensor:
        """Read a selection .npy (bool mask or indices) and apply it; an error when it fits another model."""
        return self.select(load_selection(path, self.num_gaussians), mode)

    # ------------------------------------------------------------------------------------------ export
    def _dataparser(self) -> Tuple[Optional[Tensor], float]:
        outputs = getattr(self.scene.pipeline.datamanager, "train_dataparser_outputs", None)
        if outputs is None:
            return None, 1.0
        return outputs.dataparser_transform, float(outputs.dataparser_scale)

    def _labels_for_export(self, labels: Optional[Tensor], level: str) -> Tensor:
        return self.segment_everything(level) if labels is None else labels

    def export(self, path: Path, selection: Optional[Tensor] = None, labels: Optional[Tensor] = None,
               level: Level = "coarse", include_features: bool = False) -> ExportResult:
        """Write the selection (default: the current one) as a 3DGS .ply in the dataset's frame.

        Each Gaussian's ``label`` is its "segment everything" id at ``level`` unless ``labels`` [N] is given.
        """
        selection = self.segmenter.selection if selection is None else selection
        if not bool(selection.any()):
            raise ValueError("Nothing is selected: click first, or pass selection= (a [N] bool mask).")
        transform, scale = self._dataparser()
        return export_gaussians(self.model, selection.cpu(), path, transform, scale,
                                self._labels_for_export(labels, level).cpu(), include_features)

    def export_segments(self, out_dir: Path, level: Level = "coarse", labels: Optional[Tensor] = None,
                        min_gaussians: int = 1) -> List[ExportResult]:
        """One .ply per "segment everything" id at ``level`` (or per id of ``labels`` [N]) into ``out_dir``."""
        transform, scale = self._dataparser()
        return export_segments(self.model, self._labels_for_export(labels, level).cpu(), out_dir, transform, scale,
                               min_gaussians)

    def render_selection_mask(self, camera_index: int, selection: Optional[Tensor] = None,
                              full_resolution: bool = False) -> Tensor:
        """[H, W] bool: where the selected Gaussians alone accumulate opacity above ``mask_alpha_threshold``.

        At the camera's (training) resolution, or resized (nearest) to the full-resolution image.
        """
        selection = self.segmenter.selection if selection is None else selection
        params = self.model.gauss_params
        model_config = self.model.config
        alpha = render_selection_alpha(
            params["means"], params["quats"], params["scales"], params["opacities"], selection,
            self.camera(camera_index), backend=getattr(model_config, "render_backend", "auto"),
            rasterize_mode=getattr(model_config, "rasterize_mode", "classic"),
        )
        mask = alpha > self.segmenter.config.mask_alpha_threshold
        if full_resolution and tuple(mask.shape) != self.full_resolution_size(camera_index):
            mask = torch.nn.functional.interpolate(mask[None, None].float(), size=self.full_resolution_size(
                camera_index), mode="nearest")[0, 0] > 0.5
        return mask


def load(config_path: Path, config: Optional[SelectionConfig] = None) -> ClickGaussianScene:
    """Load the latest checkpoint of a click-gaussian run (its ``config.yml``) for clicking and export."""
    from clickgs_ns.segment.run import load as load_scene

    return ClickGaussianScene(load_scene(config_path), config)
