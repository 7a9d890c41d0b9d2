"""Click segmentation in nerfstudio's viewer (``ns-viewer --load-config CONFIG``, or ``ns-train`` with the viewer).

``ClickViewerControls`` is a child module of ``ClickGaussianModel`` (``model.click_segmentation``) that holds
nerfstudio viewer elements; the viewer's ``parse_object`` finds them and shows them in a folder named after the
attribute path (with the click-gaussian pipeline: "Custom Elements / click_model / click_segmentation"), in the
alphabetical order of their attribute names (hence the ``a_``..``h_`` prefixes):

    Click to select / Stop click selection   start / stop the scene pointer callback
    Status                                   what the last action did, in words, never cut off (the numbers behind
                                             it, such as candidate id, cosine, accumulation and timings, go to the
                                             terminal)
    Level                                    coarse (objects) or fine (parts)
    Click mode                               replace (default: a click selects its object alone), add, subtract
    Selection                                Undo | Clear
    Display                                  RGB, Features (PCA), Highlight selection, Selection only,
                                             Everything but the selection, Segment everything
    Selection file / Load selection          a saved selection .npy of this run (default: the run folder's newest)
    Export name                              the file the export buttons write (relative to the run folder, .ply
                                             added; empty: the button's default name, ``EXPORT_FILES``)
    Overwrite existing files                 off: an export whose files exist writes nothing and proposes a free name
    Export selection (.ply)                  <name>.ply (+ sidecars) and the selection itself as <name>.npy
    Export all but selection (.ply)          <name>.ply: the object removed
    Export all, labelled (.ply)              <name>.ply: every Gaussian, label = its segment at the current level

A click also drops a marker (a small sphere, green for replace and add, red for subtract, grey when nothing was
selected) at the clicked surface point.

State lives in ``ClickViewerState`` (display mode, ``Segmenter``, the cached view), created lazily on the first
interaction: training and scripts that never touch the viewer pay nothing, and ``get_outputs`` is unchanged
while it does not exist. Even then, only renders made by the viewer's render threads (``RenderStateMachine``)
see the display mode: evaluation and GFL renders of a running ``ns-train`` stay plain.

Display modes are applied inside the model's eval ``get_outputs`` without touching ``gauss_params``: selection
only / everything but the selection drop Gaussians (like the crop box), highlight and segment everything change
the colours handed to the rasterizer, and PCA replaces ``rgb`` by the PCA colours of the current level's features
(also returned as ``features_pca``).

Cost of a click. The pointer callback must not re-render the scene's features. While click mode is on, every
viewer render keeps references to its feature maps, accumulation and depth together with its camera (the tensors
the render produced anyway: no copy, no extra compute; the memory of one frame stays alive until the next). The callback asks the viewer for the current
camera at that render's size (``ViewerControl.get_camera(H, W)``); when it equals the cached camera (the view has
not moved since it was drawn, the usual case: one clicks what one sees) the clicked pixel's feature is a lookup.
Otherwise (the view moved and its render has not finished, or none exists yet) only a ``WINDOW`` x ``WINDOW``
window around the clicked pixel is rendered (the camera's principal point is shifted), so the cost does not grow
with the view's resolution. The click then costs one comparison over the N candidate labels (``Segmenter``).
Pointer callbacks are not run under the viewer's ``train_lock`` by nerfstudio: this one takes it (the render
thread holds it while drawing, so a click may wait for a render in flight; the wait is reported separately).
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Type

import torch
from torch import Tensor, nn

from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerButtonGroup,
    ViewerCheckbox,
    ViewerClick,
    ViewerControl,
    ViewerDropdown,
    ViewerElement,
    ViewerText,
)

from clickgs_ns.io.id_maps import LEVELS
from clickgs_ns.io.selection_files import latest_selection, load_selection, save_selection
from clickgs_ns.method.pipeline import ClickGaussianPipeline, ClickGaussianPipelineConfig
from clickgs_ns.segment.export import dataset_frame, export_gaussians, sidecar_paths
from clickgs_ns.segment.selection import ClickResult, SelectionConfig, Segmenter, camera_key, camera_size

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

VISER_SCALE = 10.0
"""nerfstudio's ``VISER_NERFSTUDIO_SCALE_RATIO``: viser scene coordinates = 10 x nerfstudio world coordinates."""

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

MARKER_NAME = "/clickgs/click_marker"
"""viser scene node of the click marker."""
MARKER_COLORS = {"replace": (60, 220, 90), "add": (60, 220, 90), "subtract": (235, 70, 60), "none": (170, 170, 170)}
MARKER_RADIUS = 0.02
"""Marker radius as a fraction of its distance to the camera (so it looks the same size at any depth)."""

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
EXPORT_BUTTONS = {"selection": "Export selection (.ply)", "inverse": "Export all but selection (.ply)",
                  "segments": "Export all, labelled (.ply)"}
"""Label of each export's button (short: a button's label does not wrap, and a longer one widened the panel past
the window)."""
OVERWRITE_LABEL = "Overwrite existing files"
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~])")
"""Characters escaped in the status line (viser shows it as markdown)."""


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


def markdown_text(text: str) -> str:
    """``text`` as markdown that shows it verbatim, on one line."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


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


def export_mask(selection: Tensor, kind: str, inside: Optional[Tensor]) -> Tuple[Tensor, int]:
    """The Gaussians [N] bool an export of ``kind`` writes (the selection, everything but it, or every Gaussian),
    limited to ``inside`` [N] bool (the crop box; None: no crop box), and how many the crop box left out."""
    wanted = {"selection": selection, "inverse": ~selection, "segments": torch.ones_like(selection)}[kind]
    if inside is None:
        return wanted, 0
    exported = wanted & inside
    return exported, int(wanted.sum()) - int(exported.sum())


@dataclass
class CachedView:
    """References to the tensors of the model's last eval render (no copies)."""

    key: Tensor
    """``selection.camera_key`` of the rendered camera."""
    height: int
    width: int
    coarse_features: Tensor
    """[H, W, coarse_dim]"""
    fine_features: Tensor
    """[H, W, feature_dim]"""
    accumulation: Tensor
    """[H, W, 1]"""
    depth: Optional[Tensor]
    """[H, W, 1] expected z-depth."""


@dataclass
class PixelSample:
    """What the view shows at one clicked pixel."""

    coarse: Tensor
    fine: Tensor
    alpha: float
    depth: float
    column: int
    row: int
    source: str
    """"cached view" or "window render"."""
    render_seconds: float
    camera: "Cameras"


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
        self.view: Optional[CachedView] = None
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
            self.view = None
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
            coarse = outputs["coarse_features"]
            self.view = CachedView(camera_key(camera), int(coarse.shape[0]), int(coarse.shape[1]), coarse,
                                   outputs["fine_features"], outputs["accumulation"], outputs.get("depth"))
        return outputs

    def empty_outputs(self, model: Any, camera: "Cameras") -> Dict[str, Any]:
        """Eval outputs (every key of a normal render) when the display mode leaves no Gaussian to draw."""
        height, width = camera_size(camera)
        background = model._get_background_color()
        outputs = model.get_empty_outputs(width, height, background)
        zeros = background.new_zeros(height, width, model.config.feature_dim)
        outputs["coarse_features"] = zeros[..., : model.config.coarse_dim]
        outputs["fine_features"] = zeros
        outputs["background"] = background.expand(height, width, 3)
        return self.finish_outputs(camera, outputs)

    # ------------------------------------------------------------------------------------ clicks
    def sample_pixel(self, camera: "Cameras", screen_x: float, screen_y: float) -> PixelSample:
        """The features, accumulation and depth at normalised screen position (x right, y down, in [0, 1]) of
        ``camera``: from the cached view when it shows this camera, else from a small window render."""
        self.sync()
        height, width = camera_size(camera)
        column = min(max(int(screen_x * width), 0), width - 1)
        row = min(max(int(screen_y * height), 0), height - 1)
        view = self.view
        if view is not None and view.height == height and view.width == width and \
                torch.equal(view.key, camera_key(camera)):
            depth = float(view.depth[row, column, 0]) if view.depth is not None else math.nan
            return PixelSample(view.coarse_features[row, column], view.fine_features[row, column],
                               float(view.accumulation[row, column, 0]), depth, column, row, "cached view", 0.0,
                               camera)
        start = time.perf_counter()
        window, x, y = window_camera(camera, column, row, WINDOW)
        model = self.model
        was_training = model.training
        model.eval()
        self._rendering_window = True
        try:
            with torch.no_grad():
                outputs = model.get_outputs(window.to(model.device))
        finally:
            self._rendering_window = False
            model.train(was_training)
        depth = outputs.get("depth")
        return PixelSample(outputs["coarse_features"][y, x], outputs["fine_features"][y, x],
                           float(outputs["accumulation"][y, x, 0]),
                           float(depth[y, x, 0]) if depth is not None else math.nan, column, row, "window render",
                           time.perf_counter() - start, camera)

    def click(self, camera: "Cameras", screen_x: float, screen_y: float,
              ray_origin: Optional[Tensor] = None, ray_direction: Optional[Tensor] = None) -> ClickOutcome:
        """Select at a normalised screen position of ``camera`` with the current level and click mode."""
        start = time.perf_counter()
        sample = self.sample_pixel(camera, screen_x, screen_y)
        level, mode = self.level, self.mode
        before = self.segmenter.state.num_selected
        query = sample.coarse if level == "coarse" else sample.fine
        result = self.segmenter.click_feature(query, level, mode, sample.alpha, (sample.column, sample.row))
        result.render_seconds = sample.render_seconds
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


def window_camera(camera: "Cameras", column: int, row: int, size: int) -> Tuple["Cameras", int, int]:
    """A ``size`` x ``size`` crop (clamped to the image) of ``camera`` [1] that contains pixel (column, row), and
    the pixel's position in it. Only the principal point and the image size change."""
    from nerfstudio.cameras.cameras import Cameras

    height, width = camera_size(camera)
    w, h = min(size, width), min(size, height)
    x0 = min(max(column - w // 2, 0), width - w)
    y0 = min(max(row - h // 2, 0), height - h)
    crop = Cameras(
        camera_to_worlds=camera.camera_to_worlds.reshape(1, 3, 4),
        fx=camera.fx.reshape(1, 1), fy=camera.fy.reshape(1, 1),
        cx=camera.cx.reshape(1, 1) - x0, cy=camera.cy.reshape(1, 1) - y0,
        width=w, height=h, camera_type=camera.camera_type.reshape(1, 1),
    )
    return crop, column - x0, row - y0


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


class ViewerStatus(ViewerElement[str]):
    """A read-only line of text shown in full (wrapped, never cut off): nerfstudio's ``ViewerText`` is a one-line
    input box that hides what does not fit. Shown as viser markdown, "**Status:** text"."""

    def __init__(self, name: str, default_value: str):
        super().__init__(name)
        self.default_value = default_value

    def _markdown(self) -> str:
        return f"**{markdown_text(self.name)}:** {markdown_text(self.default_value)}"

    def _create_gui_handle(self, viser_server: Any) -> None:
        self.gui_handle = viser_server.gui.add_markdown(self._markdown(), visible=self.visible)

    def install(self, viser_server: Any) -> None:
        self._create_gui_handle(viser_server)

    @property
    def value(self) -> str:
        """The text shown (plain, as set)."""
        return self.default_value

    @value.setter
    def value(self, text: str) -> None:
        self.default_value = text
        if self.gui_handle is not None:
            self.gui_handle.content = self._markdown()  # type: ignore[union-attr]


class ViewerActions(ViewerButtonGroup):
    """A row of buttons (nerfstudio's ``ViewerButtonGroup``) of which every press calls ``cb_hook``.

    viser calls a button group back only when its value changes, and the value starts at the first option: as a
    plain button group, a first Undo, or a second Undo in a row, did nothing. Here the value is "" between presses
    (set at install and after each press; the callback that this reset itself causes is ignored)."""

    def __init__(self, name: str, options: List[str], cb_hook: Any):
        super().__init__(name, "", options, cb_hook=cb_hook)

    def install(self, viser_server: Any) -> None:
        self._create_gui_handle(viser_server)
        assert self.gui_handle is not None
        self.gui_handle.value = ""
        self.gui_handle.on_click(lambda _: self._pressed())

    def _pressed(self) -> None:
        if self.value not in self.options:
            return  # the reset below
        try:
            self.cb_hook(self)
        finally:
            self.value = ""


class ClickViewerControl(ViewerControl):
    """nerfstudio's ``ViewerControl`` that also tells the controls when the viewer has set it up (the run folder is
    known from then on)."""

    def __init__(self, controls: "ClickViewerControls"):
        super().__init__()
        self._controls_ref = weakref.ref(controls)

    def _setup(self, viewer: Any) -> None:
        super()._setup(viewer)
        controls = self._controls_ref()
        if controls is not None:
            controls.on_viewer_ready()


class ClickViewerControls(nn.Module):
    """The viewer controls of click segmentation, as a parameter-free child module of the model (so that
    nerfstudio's ``parse_object`` finds them; it adds nothing to checkpoints). Attribute names, sorted, give the
    order in the GUI. The model is held through a weak reference (no module cycle) and the pipeline is only ever
    reached through ``viewer_control.viewer`` when it is needed (export)."""

    def __init__(self, model: Any, config: Optional[SelectionConfig] = None):
        super().__init__()
        self._model_ref = weakref.ref(model)
        self._selection_config = config
        self._state: Optional[ClickViewerState] = None
        self._marker: Any = None
        self.export_dir: Optional[Path] = None
        """Where Export writes and Load looks first; None: the run directory (the folder of the viewer's log file
        and config.yml)."""
        self.a_start_clicking = ViewerButton("Click to select", cb_hook=lambda _: self.set_click_enabled(True))
        self.a_stop_clicking = ViewerButton("Stop click selection", cb_hook=lambda _: self.set_click_enabled(False),
                                            visible=False)
        self.b_status = ViewerStatus("Status", "Press 'Click to select', then click an object in the scene.")
        self.c_level = ViewerDropdown("Level", "coarse", list(LEVELS), cb_hook=self._on_level,
                                      hint="coarse: whole objects; fine: their parts")
        self.d_mode = ViewerDropdown("Click mode", DEFAULT_CLICK_MODE, list(CLICK_MODES), cb_hook=self._on_mode,
                                     hint="replace: a click selects the clicked object alone; add: adds it to the "
                                          "selection; subtract: removes it from the selection")
        self.e_edit = ViewerActions("Selection", ["Undo", "Clear"], cb_hook=self._on_edit)
        self.f_display = ViewerDropdown("Display", DEFAULT_DISPLAY, list(DISPLAY_MODES), cb_hook=self._on_display,
                                        hint="How the scene is drawn (the Output type 'rgb' shows it)")
        self.g_selection_file = ViewerText(
            "Selection file", "", hint="A selection .npy of this run (Export selection and clickgs segment --output "
            "write them); relative paths start in the run folder. Empty: the newest one in the run folder")
        self.h_load_selection = ViewerButton("Load selection", cb_hook=lambda _: self.load())
        self.i_export_name = ViewerText(
            "Export name", "", hint="The file the export buttons write: a name or path (relative to the run "
            "folder; .ply added). Empty: clickgs_selection, clickgs_without_selection or clickgs_segments")
        self.j_overwrite = ViewerCheckbox(OVERWRITE_LABEL, False,
                                          hint="Off: an export whose files exist writes nothing and proposes a free "
                                               "name. On: it replaces them")
        # the selection; the scene with it removed; every Gaussian, labelled by its segment at the current level
        self.k_export = ViewerButton(EXPORT_BUTTONS["selection"], cb_hook=lambda _: self.export("selection"))
        self.l_export_inverse = ViewerButton(EXPORT_BUTTONS["inverse"], cb_hook=lambda _: self.export("inverse"))
        self.m_export_segments = ViewerButton(EXPORT_BUTTONS["segments"], cb_hook=lambda _: self.export("segments"))
        self.z_viewer_control = ClickViewerControl(self)

    # ------------------------------------------------------------------------------------ state
    # Methods, not properties: parse_object evaluates every property of a module it walks (a property returning
    # the model would send it round in circles, one creating the state would defeat the laziness).
    def get_model(self) -> Any:
        model = self._model_ref()
        if model is None:
            raise RuntimeError("The model of these controls no longer exists")
        return model

    def get_state(self) -> ClickViewerState:
        """The viewer state, created on first use (from the GUI's current values)."""
        if self._state is None:
            self._state = ClickViewerState(self.get_model(), self._selection_config)
            self._state.display_mode = self.f_display.value
            self._state.level = self.c_level.value
            self._state.mode = self.d_mode.value
        return self._state

    def render_state(self) -> Optional[ClickViewerState]:
        """The state for the model's ``get_outputs`` hook, or None: before the viewer has been used (no cost at
        all), and for renders that are not the viewer's (evaluation and GFL renders during ``ns-train`` run in
        other threads and must see the plain splat) unless ``state.only_viewer_renders`` is off."""
        state = self._state
        if state is None:
            return None
        if state.only_viewer_renders and not state._rendering_window and not in_viewer_render_thread():
            return None
        return state

    @property
    def viewer(self) -> Any:
        """nerfstudio's Viewer once the controls are installed, else None."""
        return getattr(self.z_viewer_control, "viewer", None)

    def set_status(self, text: str, details: Sequence[str] = ()) -> None:
        """Show ``text`` (plain words) in the Status line; print it and the ``details`` (the numbers behind it) in
        the terminal."""
        self.b_status.value = text
        CONSOLE.log(f"click-gaussian: {text}")
        for line in details:
            CONSOLE.log(f"click-gaussian:   {line}")

    def on_viewer_ready(self) -> None:
        """The viewer is set up: the Selection file field shows the run folder's newest selection of this run."""
        if self.g_selection_file.value.strip():
            return
        try:
            base = self.output_dir()
            latest = latest_selection(base, int(self.get_model().num_points))
        except Exception as error:  # noqa: BLE001 - a default only: the field stays empty
            CONSOLE.log(f"click-gaussian: no default selection file ({type(error).__name__}: {error})")
            return
        if latest is not None:
            self.g_selection_file.value = shown_path(latest, base)

    # ------------------------------------------------------------------------------------ GUI callbacks
    def set_click_enabled(self, enabled: bool) -> None:
        """Start or stop click selection (registers / removes the viewer's scene pointer callback)."""
        state = self.get_state()
        if enabled == state.click_enabled:
            return
        if self.viewer is not None:
            if enabled:
                self.z_viewer_control.register_pointer_cb("click", self.on_pointer_click,
                                                          removed_cb=self._on_pointer_removed)
            else:
                self.z_viewer_control.unregister_pointer_cb()  # calls _on_pointer_removed
        state.click_enabled = enabled
        if not enabled:
            state.view = None
        self._show_click_buttons(enabled)
        if enabled:
            self.set_status(f"Click an object in the scene: {MODE_WORDS[state.mode]}.",
                            [f"{state.level} level, {state.mode}.", state.segmenter.convergence_summary()])
        else:
            self.set_status(f"Click selection stopped: {state.segmenter.state.num_selected:,} Gaussians selected.")

    def _on_pointer_removed(self) -> None:
        """viser removed the pointer callback (Stop, or another tool took the pointer)."""
        if self._state is not None and self._state.click_enabled:
            self._state.click_enabled = False
            self._state.view = None
            self._show_click_buttons(False)
        self._remove_marker()

    def _show_click_buttons(self, enabled: bool) -> None:
        if self.a_start_clicking.gui_handle is not None:
            self.a_start_clicking.set_hidden(enabled)
        if self.a_stop_clicking.gui_handle is not None:
            self.a_stop_clicking.set_hidden(not enabled)

    def _on_level(self, element: ViewerDropdown) -> None:
        self.get_state().level = element.value
        self.set_status(f"Level: {element.value} ({'whole objects' if element.value == 'coarse' else 'their parts'}).")

    def _on_mode(self, element: ViewerDropdown) -> None:
        self.get_state().mode = element.value
        self.set_status(f"Click mode {element.value}: {MODE_WORDS[element.value]}.")

    def _on_display(self, element: ViewerDropdown) -> None:
        state = self.get_state()
        state.display_mode = element.value
        message, details = f"Display: {element.value}.", []
        try:
            if element.value == SEGMENTS:
                segmentation = state.segmenter.segment_everything(state.level)  # type: ignore[arg-type]
                message = (f"Display: {element.value} ({segmentation.num_segments:,} segments at the {state.level} "
                           "level).")
                details.append(segmentation.message)
        except Exception as error:  # noqa: BLE001 - shown to the user
            CONSOLE.print(traceback.format_exc())
            message += f" Segment everything failed: {type(error).__name__}: {error}"
        self.set_status(message, details)

    def _on_edit(self, element: ViewerButtonGroup) -> None:
        if element.value == "Clear":
            self.clear()
        elif element.value == "Undo":
            self.undo()

    def clear(self) -> None:
        state = self.get_state()
        state.segmenter.clear()
        self._remove_marker()
        self.set_status("Selection cleared (Undo brings it back).")

    def undo(self) -> None:
        state = self.get_state()
        if state.segmenter.undo():
            self.set_status(f"Undone: {state.segmenter.state.num_selected:,} Gaussians selected.")
        else:
            self.set_status("Nothing to undo.")

    # ------------------------------------------------------------------------------------ clicks
    def on_pointer_click(self, click: ViewerClick) -> None:
        """The scene pointer callback (viser's thread): select under ``train_lock``, update marker and status,
        then ask the viewer to redraw."""
        viewer = self.viewer
        lock = getattr(viewer, "train_lock", None)
        waited = time.perf_counter()
        with lock if lock is not None else contextlib.nullcontext():
            waited = time.perf_counter() - waited
            try:
                outcome = self.handle_click(click)
                status, details = outcome.status, [outcome.details] if outcome.details else []
                if waited > 0.05:
                    details.append(f"Waited {waited * 1000:.0f} ms for the renderer.")
            except Exception as error:  # noqa: BLE001 - shown to the user instead of a silent no-op
                CONSOLE.print(traceback.format_exc())
                status, details = f"Click failed: {type(error).__name__}: {error} (details in the terminal)", []
            self.set_status(status, details)
        if viewer is not None:
            viewer._trigger_rerender()

    def handle_click(self, click: ViewerClick) -> ClickOutcome:
        """Select at a viewer click (no locking, no redraw) and place the marker."""
        state = self.get_state()
        view = state.view
        height = view.height if view is not None else WINDOW_RENDER_HEIGHT
        width = view.width if view is not None else None
        camera = self.z_viewer_control.get_camera(height, width)  # type: ignore[arg-type]
        if camera is None:
            return ClickOutcome(None, None, None, "No viewer client is connected: nothing selected.", 0.0)
        screen_x, screen_y = (float(v) for v in click.screen_pos)
        outcome = state.click(camera, screen_x, screen_y, torch.tensor(click.origin, dtype=torch.float64),
                              torch.tensor(click.direction, dtype=torch.float64))
        if outcome.point is not None:
            selected = outcome.result is not None and outcome.result.num_selected > 0
            self._place_marker(outcome.point, outcome.sample, state.mode if selected else "none")
        return outcome

    def _place_marker(self, point: Tensor, sample: Optional[PixelSample], kind: str) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        distance = 1.0
        if sample is not None:
            centre = sample.camera.camera_to_worlds.reshape(3, 4)[:, 3].double().cpu()
            distance = max(float((point - centre).norm()), 1e-3)
        self._marker = viewer.viser_server.scene.add_icosphere(
            MARKER_NAME, radius=MARKER_RADIUS * distance * VISER_SCALE, color=MARKER_COLORS[kind],
            position=tuple(float(v) * VISER_SCALE for v in point),
        )

    def _remove_marker(self) -> None:
        if self._marker is not None:
            try:
                self._marker.remove()
            except Exception:  # noqa: BLE001 - already gone with the server
                pass
            self._marker = None

    # ------------------------------------------------------------------------------------ load and export
    def output_dir(self) -> Path:
        """``export_dir``, else the run directory (where the viewer's log file and config.yml are)."""
        if self.export_dir is not None:
            return Path(self.export_dir)
        viewer = self.viewer
        if viewer is None or getattr(viewer, "log_filename", None) is None:
            raise RuntimeError("No run directory: the controls are not installed in a viewer (set export_dir).")
        return Path(viewer.log_filename).parent

    def load(self) -> Optional[Path]:
        """Load selection: replace the selection by the file named in Selection file (``selection_path``: empty
        means the run folder's newest). Returns the file read, None when nothing was loaded (the status says why)."""
        try:
            base = self.output_dir()
            path = selection_path(self.g_selection_file.value, base, int(self.get_model().num_points))
        except Exception as error:  # noqa: BLE001 - shown to the user (no run folder, or no saved selection)
            self.set_status(f"Not loaded: {error}")
            return None
        shown = shown_path(path, base)
        try:
            count = self.get_state().load(path)
        except FileNotFoundError as error:
            self.set_status(f"Not loaded: there is no file {shown}. Under Selection file, type the path of a "
                            "selection saved by Export selection or clickgs segment --output (relative paths start "
                            "in the run folder).", [str(error)])
            return None
        except Exception as error:  # noqa: BLE001 - shown to the user
            CONSOLE.print(traceback.format_exc())
            self.set_status(f"Not loaded: {str(error).replace(str(path), shown)}", [f"{type(error).__name__}: {error}"])
            return None
        self.g_selection_file.value = shown
        self.set_status(f"Loaded {count:,} Gaussians from {shown} (Undo brings back the previous "
                        "selection).", [f"Loaded {path}."])
        return path

    def export(self, kind: str = "selection") -> Optional[Path]:
        """Write a 3DGS .ply in the dataset's frame (with its sidecars; every Gaussian labelled by its "segment
        everything" id at the current level) of ``kind`` (``EXPORT_FILES``): the selection (and the selection itself
        as ``<name>.npy``), everything but the selection, or every Gaussian. Only what lies inside the viewer's crop
        box, if one is on. The file is the Export name's (``export_path``); when one of its files exists and
        Overwrite existing files is off, nothing is written: the Export name becomes a free name
        (``free_export_path``) and the status says so. Returns the .ply path, None when nothing was written."""
        start = time.perf_counter()
        try:
            state = self.get_state()
            model = self.get_model()
            selection = state.selection.detach().cpu()
            inside = None if model.crop_box is None else \
                model.crop_box.within(model.means.detach()).reshape(-1).cpu()
            exported, outside = export_mask(selection, kind, inside)
            if not bool(exported.any()):
                empty = {"selection": "the selection is empty", "inverse": "everything is selected",
                         "segments": "the splat is empty"}[kind]
                where = " inside the crop box." if inside is not None else "."
                self.set_status(f"Nothing to export: {empty}{where}")
                return None
            base = self.output_dir()
            ply = export_path(self.i_export_name.value, kind, base)
            existing = [path for path in export_files(ply, kind) if path.exists()]
            if existing and not self.j_overwrite.value:
                self._refuse_overwrite(kind, ply, existing, base)
                return None
            labels = state.segmenter.segment_everything(state.level).labels.cpu()  # type: ignore[arg-type]
            transform, scale = dataset_frame(getattr(getattr(self.viewer, "pipeline", None), "datamanager", None))
            result = export_gaussians(model, exported, ply, transform, scale, labels)
            if kind == "selection":
                save_selection(selection_npy(ply), selection)
                self.g_selection_file.value = shown_path(selection_npy(ply), base)
        except Exception as error:  # noqa: BLE001 - shown to the user
            CONSOLE.print(traceback.format_exc())
            self.set_status(f"Export failed: {type(error).__name__}: {error}")
            return None
        text = f"Exported {result.num_exported:,} Gaussians to {shown_path(result.path, base)}"
        if kind == "selection":
            text += f" and the selection to {shown_path(selection_npy(ply), base)}"
        if outside:
            text += f" ({outside:,} outside the crop box left out)"
        self.set_status(text + (", replacing the earlier files." if existing else "."), [
            f"Wrote {result.path} (+ {', '.join(path.name for path in export_files(ply, kind)[1:])}), labelled by "
            f"{state.level} segment, in {(time.perf_counter() - start) * 1000:.0f} ms; "
            f"{result.num_dropped_nonfinite} non-finite Gaussians left out."])
        return result.path

    def _refuse_overwrite(self, kind: str, ply: Path, existing: List[Path], base: Path) -> None:
        """An export's files exist: write nothing, put a free name into Export name and say how to go on."""
        proposed = shown_path(free_export_path(ply, kind), base)
        self.i_export_name.value = proposed
        self.set_status(f"Not exported: {shown_path(existing[0], base)} already exists. Export name is now "
                        f"{proposed}: press '{EXPORT_BUTTONS[kind]}' again to write it, or tick '{OVERWRITE_LABEL}' "
                        "to replace the existing files.", [f"Existing: {', '.join(map(str, existing))}."])


# ------------------------------------------------------------------------------------------------ pipeline
def attach_viewer_controls(model: Any, config: Optional[SelectionConfig] = None) -> ClickViewerControls:
    """Give ``model`` the click controls: nerfstudio's viewer finds them at ``model.click_segmentation``, and
    the model's eval renders ask them for the display mode through ``model.display_hook``."""
    controls = ClickViewerControls(model, config)
    model.click_segmentation = controls
    model.display_hook = controls.render_state
    return controls


class ClickGaussianViewerPipeline(ClickGaussianPipeline):
    """The click-gaussian pipeline with the viewer's click controls on its model (the preset's pipeline)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        attach_viewer_controls(self.model)


@dataclass
class ClickGaussianViewerPipelineConfig(ClickGaussianPipelineConfig):
    """``ClickGaussianPipelineConfig`` whose pipeline carries the viewer's click controls."""

    _target: Type = field(default_factory=lambda: ClickGaussianViewerPipeline)
