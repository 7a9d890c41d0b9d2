"""The viewer's click segmentation without its GUI: display mode, level, click mode and the ``Segmenter`` that
every click goes through (``ClickViewerState``), what the model's eval render asks of it (the ``DisplayHook`` of
``clickgs_ns.method.model``), a click's status line in words, and the names of the files the viewer's exports
write. The controls (``viewer_controls``) are a thin GUI over it.

Display modes are applied inside the model's eval ``get_outputs`` without touching ``gauss_params``: selection
only / everything but the selection drop Gaussians (like the crop box), highlight and segment everything change
the colours handed to the rasterizer, and PCA replaces ``rgb`` by the PCA colours of the current level's features
(also returned as ``features_pca``).

Cost of a click. The pointer callback must not re-render the scene's features. While click mode is on, every
viewer render hands references to its feature maps, accumulation and depth, with its camera, to the
``Segmenter`` (``remember_render``: the tensors the render produced anyway; no copy, no extra compute; the memory
of one frame stays alive until the next). The controls ask the viewer for the current camera at that render's size
(``ViewerControl.get_camera(H, W)``); when it equals the remembered camera (the view has not moved since it was
drawn, the usual case: one clicks what one sees) the clicked pixel's feature is a lookup. Otherwise (the view
moved and its render has not finished, or none exists yet) only a ``WINDOW`` x ``WINDOW`` window around the
clicked pixel is rendered (``Segmenter.pixel_sample``), so the cost does not grow with the view's resolution (its
features agree with the whole view's to a few thousandths: the projection clamps the Jacobian of Gaussians far
outside the image it renders, as gsplat does). The click then costs one comparison over the N candidate labels.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from clickgs_ns.io.selection_files import latest_selection, load_selection
from clickgs_ns.levels import LEVELS
from clickgs_ns.render.cameras import camera_size
from clickgs_ns.segment.export import sidecar_paths
from clickgs_ns.segment.selection import ClickResult, PixelSample, SelectionConfig, Segmenter

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

RGB = "RGB"
PCA = "Features (PCA)"
HIGHLIGHT = "Highlight selection"
SELECTION_ONLY = "Selection only"
HIDE_SELECTION = "Everything but the selection"
SEGMENTS = "Segment everything"
DISPLAY_MODES = (RGB, PCA, HIGHLIGHT, SELECTION_ONLY, HIDE_SELECTION, SEGMENTS)
"""Options of the Display dropdown."""
DEFAULT_DISPLAY = HIGHLIGHT
"""Highlight by default: with nothing selected it is plain RGB, and a click shows at once."""

HIGHLIGHT_COLOR = (1.0, 0.0, 1.0)
"""Tint of selected Gaussians (magenta: rare in real scenes)."""
HIGHLIGHT_STRENGTH = 0.6
"""Selected colour = (1 - s) * colour + s * HIGHLIGHT_COLOR."""
UNLABELLED_COLOR = (0.3, 0.3, 0.3)
"""Segment everything: colour of Gaussians that fit no segment."""

WINDOW = 8
"""Side of the pixel window rendered when a click cannot reuse the cached view."""
WINDOW_RENDER_HEIGHT = 512
"""Resolution (height) at which the window is placed when no cached view gives one."""

CLICK_MODES = ("replace", "add", "subtract")
"""Options of the Click mode dropdown (``Segmenter`` modes)."""
DEFAULT_CLICK_MODE = "replace"
"""A click selects its object alone: clicking another object moves the selection there."""
MODE_WORDS = {"replace": "a click selects the clicked object alone",
              "add": "a click adds the clicked object to the selection",
              "subtract": "a click removes the clicked object from the selection"}
"""What each click mode does, in the status line."""

SELECTION_PLY = "clickgs_selection.ply"
SELECTION_NPY = "clickgs_selection.npy"
EXPORT_FILES = {"selection": SELECTION_PLY, "inverse": "clickgs_without_selection.ply",
                "segments": "clickgs_segments.ply"}
"""Default names of the viewer's exports (an empty Export name), in the run directory: the selection, everything
but it, every Gaussian (labelled)."""

def segment_palette(num_segments: int, device: Any = "cpu") -> Tensor:
    """Distinct colours [num_segments, 3] in [0, 1]: golden-ratio hues, alternating brightness."""
    ids = torch.arange(num_segments, device=device, dtype=torch.float32)
    hue = torch.remainder(ids * 0.618033988749895, 1.0)
    value = 0.95 - 0.25 * torch.remainder(ids, 2)
    saturation = torch.full_like(hue, 0.75)
    # HSV -> RGB
    k = torch.remainder(torch.stack([hue * 6 + 5, hue * 6 + 3, hue * 6 + 1], dim=-1), 6.0)
    rgb = value[:, None] - value[:, None] * saturation[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0.0, 1.0)
    return rgb


# ------------------------------------------------------------------------------------------------ status in words
def click_status(result: ClickResult, mode: str, before: int, after: int, untrained: bool = False) -> str:
    """The status line of a click, in plain words (the numbers behind it go to the terminal: ``click_details``).

    Args:
        result: what the click selected (``Segmenter.click_feature``).
        mode: the click mode it was made with.
        before, after: Gaussians selected before and after the click.
        untrained: the level's features have not converged (``SelectionConfig.min_convergence``).
    """
    thing = "part" if result.level == "fine" else "object"
    if result.hit_background:
        return f"Nothing here: background. The selection is unchanged ({after:,} Gaussians)."
    if result.num_selected == 0:
        text = f"Nothing selected: no {thing} matches this spot. The selection is unchanged ({after:,} Gaussians)."
    elif mode == "replace":
        text = f"Selected the {thing} under the cursor: {after:,} Gaussians."
    elif mode == "add":
        text = f"Added the {thing} under the cursor: {after:,} Gaussians selected ({after - before:,} more)."
    else:
        text = f"Removed the {thing} under the cursor: {after:,} Gaussians selected ({before - after:,} fewer)."
    if result.used_fallback and result.num_selected > 0:
        text += " No trained object matches this spot well: similar-looking Gaussians were picked."
    if untrained:
        text += " The features look untrained: train the feature stage longer."
    return text


def click_details(result: ClickResult, sample: "PixelSample", mode: str, total: int) -> str:
    """The technical account of a click for the terminal: candidate, cosine, pixel, accumulation, timings."""
    return (f"{result.message} Total selected: {total}. Pixel ({sample.column}, {sample.row}), accumulation "
            f"{sample.alpha:.2f}; {result.level} level, {mode}; took {result.seconds * 1000:.0f} ms ({sample.source}, "
            f"render {sample.render_seconds * 1000:.0f} ms).")


# ------------------------------------------------------------------------------------------------ file names
def user_path(text: str, base: Path) -> Path:
    """A path typed into the viewer: ``~`` expanded; a relative one lies in ``base`` (the run folder)."""
    path = Path(text.strip()).expanduser()
    return path if path.is_absolute() else Path(base) / path


def shown_path(path: Path, base: Path) -> str:
    """``path`` as the viewer shows it: relative to ``base`` (the run folder) when inside it, else in full."""
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return str(path)


def export_path(name: str, kind: str, base: Path) -> Path:
    """The .ply that an export of ``kind`` writes for the Export name ``name`` (``user_path``; ``.ply`` added, or put
    in place of ``.npy``); an empty name gives the kind's default name (``EXPORT_FILES``) in ``base``."""
    path = user_path(name.strip() or EXPORT_FILES[kind], base)
    if path.suffix.lower() in (".ply", ".npy"):
        return path.with_suffix(".ply")
    return path.with_name(path.name + ".ply")


def selection_npy(ply: Path) -> Path:
    """The selection file an export of the selection writes beside its .ply: ``<stem>.npy``."""
    return Path(ply).with_suffix(".npy")


def export_files(ply: Path, kind: str) -> List[Path]:
    """Every file an export of ``kind`` to ``ply`` writes: the .ply, its sidecars and, for the selection, the
    selection itself (``selection_npy``)."""
    files = [Path(ply), *sidecar_paths(ply).values()]
    if kind == "selection":
        files.append(selection_npy(ply))
    return files


def free_export_path(ply: Path, kind: str) -> Path:
    """``ply`` with the first numeric suffix (``_2``, ``_3``, ..., counting on from one the name already ends with)
    for which none of ``export_files`` exists."""
    ply = Path(ply)
    match = re.fullmatch(r"(.*)_(\d+)", ply.stem)
    stem, number, width = (match.group(1), int(match.group(2)) + 1, len(match.group(2))) if match else \
        (ply.stem, 2, 1)
    while True:
        candidate = ply.with_name(f"{stem}_{number:0{width}d}.ply")
        if not any(path.exists() for path in export_files(candidate, kind)):
            return candidate
        number += 1


def selection_path(text: str, base: Path, num_gaussians: Optional[int] = None) -> Path:
    """The selection file that Load selection reads for the Selection file field's ``text``: an empty field means
    the newest selection of this run saved in ``base`` (``latest_selection``); a relative path is looked up in
    ``base``, then in the current folder (where ``clickgs segment --output`` may have written it)."""
    if not text.strip():
        latest = latest_selection(base, num_gaussians)
        if latest is None:
            raise FileNotFoundError(f"No saved selection of this run in {base}: export a selection first, or type "
                                    "the path of a selection .npy under Selection file.")
        return latest
    path = user_path(text, base)
    here = Path(text.strip()).expanduser()
    if not path.exists() and not here.is_absolute() and here.exists():
        return here.resolve()
    return path


@dataclass
class ClickOutcome:
    """One viewer click: what the selection did, where the marker goes, and the status line."""

    result: Optional[ClickResult]
    """None when no click could be made (no viewer client)."""
    sample: Optional[PixelSample]
    point: Optional[Tensor]
    """[3] clicked surface point in nerfstudio world coordinates (None without a sample)."""
    status: str
    """The status line: what happened, in words (``click_status``)."""
    seconds: float
    details: str = ""
    """The numbers behind it, for the terminal (``click_details``)."""


class ClickViewerState:
    """The viewer's click-segmentation state: display mode, level, click mode, ``Segmenter`` and cached view.

    Pure Python (no GUI): the controls and the model's ``get_outputs`` hook both use it.
    """

    def __init__(self, model: Any, config: Optional[SelectionConfig] = None):
        self._model_ref = weakref.ref(model)
        self.segmenter = Segmenter(model, config)
        self.display_mode: str = DEFAULT_DISPLAY
        self.level: str = "coarse"
        self.mode: str = DEFAULT_CLICK_MODE
        self.click_enabled = False
        self._synced_step: Optional[int] = getattr(model, "step", None)
        self._pca: Dict[str, Any] = {}
        self._segment_colors: Dict[str, Tensor] = {}
        self._rendering_window = False
        self.only_viewer_renders = True
        """Apply the display mode and cache views only in renders of nerfstudio's viewer threads (and this
        state's own window renders); False applies them to every eval render (scripts, tests)."""

    @property
    def model(self) -> Any:
        model = self._model_ref()
        if model is None:
            raise RuntimeError("The model of this viewer state no longer exists")
        return model

    @property
    def selection(self) -> Tensor:
        """[N] bool current selection (synchronised with the model first)."""
        self.sync()
        return self.segmenter.selection

    def sync(self) -> None:
        """Drop the caches derived from the Gaussians when the model moved on (a training step, a new count)."""
        model = self.model
        step = getattr(model, "step", None)
        if step != self._synced_step or self.segmenter.num_gaussians != self.segmenter.state.num_gaussians:
            self.segmenter.refresh()
            self._pca.clear()
            self._segment_colors.clear()
            self._synced_step = step

    # ------------------------------------------------------------------------------------ render hook
    def filter_params(self, params: Dict[str, Tensor], crop_ids: Optional[Tensor]
                      ) -> Tuple[Dict[str, Tensor], Optional[Tensor]]:
        """Drop Gaussians for "Selection only" / "Everything but the selection".

        Args:
            params: per-Gaussian tensors, already reduced to ``crop_ids`` when that is given.
            crop_ids: [N] bool crop-box mask of the model's Gaussians, or None.
        Returns:
            the kept params and ``rows`` [M] long, the model index of each kept row (None: all N rows, in order).
        """
        self.sync()
        rows = None if crop_ids is None else torch.nonzero(crop_ids.reshape(-1)).squeeze(-1)
        if self.display_mode not in (SELECTION_ONLY, HIDE_SELECTION):
            return params, rows
        selection = self.segmenter.selection.to(params["means"].device)
        keep = selection if self.display_mode == SELECTION_ONLY else ~selection
        keep_rows = keep if rows is None else keep[rows]
        params = {name: value[keep_rows] for name, value in params.items()}
        rows = torch.nonzero(keep).squeeze(-1) if rows is None else rows[keep_rows]
        return params, rows

    def recolor(self, colors: Tensor, rows: Optional[Tensor]) -> Tensor:
        """Per-Gaussian RGB [M, 3] for "Highlight selection" (tint) and "Segment everything" (palette)."""
        if self.display_mode == HIGHLIGHT:
            selected = self.segmenter.selection.to(colors.device)
            if rows is not None:
                selected = selected[rows.to(colors.device)]
            if not bool(selected.any()):
                return colors
            tint = colors.new_tensor(HIGHLIGHT_COLOR)
            tinted = (1 - HIGHLIGHT_STRENGTH) * colors + HIGHLIGHT_STRENGTH * tint
            return torch.where(selected[:, None], tinted, colors)
        if self.display_mode == SEGMENTS:
            palette = self.gaussian_segment_colors(self.level).to(colors)
            return palette if rows is None else palette[rows.to(colors.device)]
        return colors

    def gaussian_segment_colors(self, level: str) -> Tensor:
        """[N, 3] colour of each Gaussian's "segment everything" id at ``level`` (cached)."""
        if level not in self._segment_colors:
            segmentation = self.segmenter.segment_everything(level)  # type: ignore[arg-type]
            labels = segmentation.labels
            num_ids = max(segmentation.num_segments, int(labels.max()) + 1 if labels.numel() else 0, 1)
            palette = segment_palette(num_ids, labels.device)
            colors = palette[labels.clamp(min=0)]
            colors[labels < 0] = colors.new_tensor(UNLABELLED_COLOR)
            self._segment_colors[level] = colors
        return self._segment_colors[level]

    def pca_basis(self, level: str):
        """``feature_maps.PcaBasis`` of the Gaussians' features at ``level`` (cached)."""
        if level not in self._pca:
            from clickgs_ns.segment.feature_maps import fit_pca_basis

            self._pca[level] = fit_pca_basis(self.segmenter.level_data(level).features)
        return self._pca[level]

    def finish_outputs(self, camera: "Cameras", outputs: Dict[str, Any]) -> Dict[str, Any]:
        """PCA display and the click cache, on the eval outputs of ``camera``."""
        if self.display_mode == PCA:
            from clickgs_ns.segment.feature_maps import pca_colors

            features = outputs[f"{self.level}_features"]
            alpha = outputs["accumulation"]
            pca = pca_colors(features, self.pca_basis(self.level))
            background = outputs["background"]
            outputs["features_pca"] = pca
            outputs["rgb"] = torch.clamp(pca * alpha + (1 - alpha) * background.expand_as(pca), 0.0, 1.0)
        if self.click_enabled and not self._rendering_window:
            self.segmenter.remember_render(camera, outputs)  # references only: clicks at this view read them
        return outputs

    def empty_outputs(self, model: Any, camera: "Cameras") -> Dict[str, Any]:
        """Eval outputs (every key of a normal render) when the display mode leaves no Gaussian to draw."""
        height, width = camera_size(camera)
        background = model._get_background_color()
        outputs = model.get_empty_outputs(width, height, background)
        zeros = background.new_zeros(height, width, model.config.feature_dim)
        for level in LEVELS:
            outputs[f"{level}_features"] = model.level_features(zeros, level)
        outputs["background"] = background.expand(height, width, 3)
        return self.finish_outputs(camera, outputs)

    # ------------------------------------------------------------------------------------ clicks
    def view_size(self) -> Optional[Tuple[int, int]]:
        """(H, W) of the last viewer render, which a click at the same camera reads instead of rendering; None when
        there is none (``Segmenter.remember_render``)."""
        return self.segmenter.remembered_size()

    def forget_view(self) -> None:
        """Stop reading clicks from the last viewer render (click selection stopped)."""
        self.segmenter.forget_render()

    @contextlib.contextmanager
    def window_render(self) -> Iterator[None]:
        """The model in eval mode, with the display mode applied, for a click's own render; that render is not
        remembered as the view."""
        model = self.model
        was_training = model.training
        model.eval()
        self._rendering_window = True
        try:
            yield
        finally:
            self._rendering_window = False
            model.train(was_training)

    def sample_pixel(self, camera: "Cameras", screen_x: float, screen_y: float) -> PixelSample:
        """The features, accumulation and depth at normalised screen position (x right, y down, in [0, 1]) of
        ``camera``: from the last viewer render when it shows this camera, else from a ``WINDOW`` x ``WINDOW``
        render around the pixel (``Segmenter.pixel_sample``)."""
        self.sync()
        height, width = camera_size(camera)
        column = min(max(int(screen_x * width), 0), width - 1)
        row = min(max(int(screen_y * height), 0), height - 1)
        with self.window_render():
            return self.segmenter.pixel_sample(camera, column, row, window=WINDOW)

    def click(self, camera: "Cameras", screen_x: float, screen_y: float,
              ray_origin: Optional[Tensor] = None, ray_direction: Optional[Tensor] = None) -> ClickOutcome:
        """Select at a normalised screen position of ``camera`` with the current level and click mode
        (``Segmenter.click_sample``: a weak feature selects what renders under the pixel)."""
        start = time.perf_counter()
        sample = self.sample_pixel(camera, screen_x, screen_y)
        level, mode = self.level, self.mode
        before = self.segmenter.state.num_selected
        result = self.segmenter.click_sample(sample, level, mode)  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        result.seconds = seconds
        after = self.segmenter.state.num_selected
        untrained = not result.hit_background and \
            self.segmenter.level_data(level).convergence < self.segmenter.config.min_convergence
        status = click_status(result, mode, before, after, untrained)
        point = surface_point(sample, ray_origin, ray_direction)
        return ClickOutcome(result, sample, point, status, seconds, click_details(result, sample, mode, after))

    def load(self, path: Path) -> int:
        """Replace the selection by the one saved in ``path`` (``load_selection``: a selection of another run's
        Gaussian count is refused); undoable. Returns the number of Gaussians selected."""
        self.sync()
        mask = load_selection(path, self.segmenter.num_gaussians)
        self.segmenter.state.apply(mask, "replace")
        return self.segmenter.state.num_selected


def in_viewer_render_thread() -> bool:
    """Whether this thread is one of nerfstudio's viewer render threads (``RenderStateMachine``)."""
    from nerfstudio.viewer.render_state_machine import RenderStateMachine

    return isinstance(threading.current_thread(), RenderStateMachine)


def surface_point(sample: PixelSample, ray_origin: Optional[Tensor], ray_direction: Optional[Tensor]
                  ) -> Optional[Tensor]:
    """The clicked 3D point [3] (nerfstudio world): along the click ray at the pixel's rendered z-depth.

    Without a ray, the ray through the pixel centre of ``sample.camera`` is used."""
    if not math.isfinite(sample.depth):
        return None
    c2w = sample.camera.camera_to_worlds.reshape(3, 4).detach().double().cpu()
    forward = -c2w[:, 2]  # nerfstudio cameras look down -z
    if ray_origin is None or ray_direction is None:
        fx, fy = float(sample.camera.fx.reshape(-1)[0]), float(sample.camera.fy.reshape(-1)[0])
        cx, cy = float(sample.camera.cx.reshape(-1)[0]), float(sample.camera.cy.reshape(-1)[0])
        local = torch.tensor([(sample.column + 0.5 - cx) / fx, -(sample.row + 0.5 - cy) / fy, -1.0],
                             dtype=torch.float64)
        ray_origin, ray_direction = c2w[:, 3], c2w[:, :3] @ local
    origin = torch.as_tensor(ray_origin, dtype=torch.float64).reshape(3)
    direction = torch.as_tensor(ray_direction, dtype=torch.float64).reshape(3)
    along = float(direction @ forward)
    if along <= 1e-8:
        return None
    return origin + direction * (sample.depth / along)
