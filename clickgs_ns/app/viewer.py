"""Click segmentation in nerfstudio's viewer (``ns-viewer --load-config CONFIG``, or ``ns-train`` with the viewer).

``ClickViewerControls`` is a child module of ``ClickGaussianModel`` (``model.click_segmentation``) that holds
nerfstudio viewer elements; the viewer's ``parse_object`` finds them and shows them in a folder named after the
attribute path (with the click-gaussian pipeline: "Custom Elements / click_model / click_segmentation"), in the
alphabetical order of their attribute names (hence the ``a_``..``h_`` prefixes):

    Click to select / Stop click selection   start / stop the scene pointer callback
    Status                                   what the last action did, how long it took, or why nothing happened
    Level                                    coarse (objects) or fine (parts)
    Click mode                               add to / subtract from the selection
    Selection                                Undo | Clear
    Display                                  RGB, Features (PCA), Highlight selection, Selection only,
                                             Everything but the selection, Segment everything
    Export selection (.ply)                  <run dir>/clickgs_selection.ply (+ sidecars) and clickgs_selection.npy
    Export all but the selection (.ply)      <run dir>/clickgs_without_selection.ply: the object removed
    Export all, labelled by segment (.ply)   <run dir>/clickgs_segments.ply: every Gaussian, label = segment

A click also drops a marker (a small sphere, green for add, red for subtract, grey when nothing was selected) at
the clicked surface point.

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
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Type

import torch
from torch import Tensor, nn

from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerButtonGroup,
    ViewerClick,
    ViewerControl,
    ViewerDropdown,
    ViewerText,
)

from clickgs_ns.io.id_maps import LEVELS
from clickgs_ns.method.pipeline import ClickGaussianPipeline, ClickGaussianPipelineConfig
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
MARKER_COLORS = {"add": (60, 220, 90), "subtract": (235, 70, 60), "none": (170, 170, 170)}
MARKER_RADIUS = 0.02
"""Marker radius as a fraction of its distance to the camera (so it looks the same size at any depth)."""

WINDOW = 8
"""Side of the pixel window rendered when a click cannot reuse the cached view."""
WINDOW_RENDER_HEIGHT = 512
"""Resolution (height) at which the window is placed when no cached view gives one."""

SELECTION_PLY = "clickgs_selection.ply"
SELECTION_NPY = "clickgs_selection.npy"
EXPORT_FILES = {"selection": SELECTION_PLY, "inverse": "clickgs_without_selection.ply",
                "segments": "clickgs_segments.ply"}
"""The viewer's exports, in the run directory: the selection, everything but it, every Gaussian (labelled)."""


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
    seconds: float


class ClickViewerState:
    """The viewer's click-segmentation state: display mode, level, click mode, ``Segmenter`` and cached view.

    Pure Python (no GUI): the controls and the model's ``get_outputs`` hook both use it.
    """

    def __init__(self, model: Any, config: Optional[SelectionConfig] = None):
        self._model_ref = weakref.ref(model)
        self.segmenter = Segmenter(model, config)
        self.display_mode: str = DEFAULT_DISPLAY
        self.level: str = "coarse"
        self.mode: str = "add"
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
        query = sample.coarse if level == "coarse" else sample.fine
        result = self.segmenter.click_feature(query, level, mode, sample.alpha, (sample.column, sample.row))
        result.render_seconds = sample.render_seconds
        seconds = time.perf_counter() - start
        result.seconds = seconds
        status = (f"{result.message} Total selected: {self.segmenter.state.num_selected}. Took {seconds * 1000:.0f} ms "
                  f"({sample.source}; {level} level, {mode}).")
        point = surface_point(sample, ray_origin, ray_direction)
        return ClickOutcome(result, sample, point, status, seconds)


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
        """Where Export writes; None: the run directory (the folder of the viewer's log file and config.yml)."""
        self.a_start_clicking = ViewerButton("Click to select", cb_hook=lambda _: self.set_click_enabled(True))
        self.a_stop_clicking = ViewerButton("Stop click selection", cb_hook=lambda _: self.set_click_enabled(False),
                                            visible=False)
        self.b_status = ViewerText("Status", "Press 'Click to select', then click an object in the scene.",
                                   hint="What the last action did and how long it took (also in the terminal)")
        self.c_level = ViewerDropdown("Level", "coarse", list(LEVELS), cb_hook=self._on_level,
                                      hint="coarse: whole objects; fine: their parts")
        self.d_mode = ViewerDropdown("Click mode", "add", ["add", "subtract"], cb_hook=self._on_mode,
                                     hint="A click adds its segment to the selection, or removes it")
        self.e_edit = ViewerButtonGroup("Selection", "Undo", ["Undo", "Clear"], cb_hook=self._on_edit)
        self.f_display = ViewerDropdown("Display", DEFAULT_DISPLAY, list(DISPLAY_MODES), cb_hook=self._on_display,
                                        hint="How the scene is drawn (the Output type 'rgb' shows it)")
        # the selection; the scene with it removed; every Gaussian, labelled by its segment at the current level
        self.h_export = ViewerButton("Export selection (.ply)", cb_hook=lambda _: self.export("selection"))
        self.i_export_inverse = ViewerButton("Export all but the selection (.ply)",
                                             cb_hook=lambda _: self.export("inverse"))
        self.j_export_segments = ViewerButton("Export all, labelled by segment (.ply)",
                                              cb_hook=lambda _: self.export("segments"))
        self.z_viewer_control = ViewerControl()

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

    def set_status(self, text: str) -> None:
        self.b_status.value = text
        CONSOLE.log(f"click-gaussian: {text}")

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
            self.set_status(f"Click an object in the scene ({state.level} level, {state.mode}). "
                            f"{state.segmenter.convergence_summary()}")
        else:
            self.set_status(f"Click selection stopped. Selection: {state.segmenter.state.num_selected} Gaussians.")

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
        self.set_status(f"Level: {element.value}.")

    def _on_mode(self, element: ViewerDropdown) -> None:
        self.get_state().mode = element.value
        self.set_status(f"Clicks now {element.value}.")

    def _on_display(self, element: ViewerDropdown) -> None:
        state = self.get_state()
        state.display_mode = element.value
        message = f"Display: {element.value}."
        try:
            if element.value == SEGMENTS:
                message += " " + state.segmenter.segment_everything(state.level).message  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - shown to the user
            message += f" Segment everything failed: {error}"
        self.set_status(message)

    def _on_edit(self, element: ViewerButtonGroup) -> None:
        if element.value == "Clear":
            self.clear()
        else:
            self.undo()

    def clear(self) -> None:
        state = self.get_state()
        state.segmenter.clear()
        self._remove_marker()
        self.set_status("Selection cleared (Undo brings it back).")

    def undo(self) -> None:
        state = self.get_state()
        if state.segmenter.undo():
            self.set_status(f"Undone. Selection: {state.segmenter.state.num_selected} Gaussians.")
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
                status = outcome.status
                if waited > 0.05:
                    status += f" (Waited {waited * 1000:.0f} ms for the renderer.)"
            except Exception as error:  # noqa: BLE001 - shown to the user instead of a silent no-op
                CONSOLE.print(traceback.format_exc())
                status = f"Click failed: {type(error).__name__}: {error}"
            self.set_status(status)
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

    # ------------------------------------------------------------------------------------ export
    def output_dir(self) -> Path:
        """``export_dir``, else the run directory (where the viewer's log file and config.yml are)."""
        if self.export_dir is not None:
            return Path(self.export_dir)
        viewer = self.viewer
        if viewer is None or getattr(viewer, "log_filename", None) is None:
            raise RuntimeError("No run directory: the controls are not installed in a viewer (set export_dir).")
        return Path(viewer.log_filename).parent

    def export(self, kind: str = "selection") -> Optional[Path]:
        """Write, into ``output_dir()``, a 3DGS .ply in the dataset's frame (with its sidecars; every Gaussian
        labelled by its "segment everything" id at the current level) of ``kind`` (``EXPORT_FILES``): the
        selection (and the selection itself as a .npy), everything but the selection, or every Gaussian. Only what
        lies inside the viewer's crop box, if one is on. Returns the .ply path."""
        from clickgs_ns.io.selection_files import save_selection
        from clickgs_ns.segment.export import dataset_frame, export_gaussians

        start = time.perf_counter()
        try:
            state = self.get_state()
            model = self.get_model()
            selection = state.selection.detach().cpu()
            wanted = {"selection": selection, "inverse": ~selection, "segments": torch.ones_like(selection)}[kind]
            exported, note = wanted, ""
            if model.crop_box is not None:
                exported = wanted & model.crop_box.within(model.means.detach()).reshape(-1).cpu()
                note = f" ({int(wanted.sum()) - int(exported.sum())} outside the crop box left out)"
            if not bool(exported.any()):
                empty = {"selection": "the selection is empty", "inverse": "everything is selected",
                         "segments": "the splat is empty"}[kind]
                self.set_status(f"Nothing to export: {empty}" + (" inside the crop box." if note else "."))
                return None
            out_dir = self.output_dir()
            out_dir.mkdir(parents=True, exist_ok=True)
            labels = state.segmenter.segment_everything(state.level).labels.cpu()  # type: ignore[arg-type]
            transform, scale = dataset_frame(getattr(getattr(self.viewer, "pipeline", None), "datamanager", None))
            result = export_gaussians(model, exported, out_dir / EXPORT_FILES[kind], transform, scale, labels)
            if kind == "selection":
                save_selection(out_dir / SELECTION_NPY, selection)
        except Exception as error:  # noqa: BLE001 - shown to the user
            CONSOLE.print(traceback.format_exc())
            self.set_status(f"Export failed: {type(error).__name__}: {error}")
            return None
        also = f" and the selection to {out_dir / SELECTION_NPY}" if kind == "selection" else ""
        self.set_status(f"Exported {result.num_exported} Gaussians{note} to {result.path}{also}, labelled by "
                        f"{state.level} segment, in {(time.perf_counter() - start) * 1000:.0f} ms.")
        return result.path


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
