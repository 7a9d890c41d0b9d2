"""The click-segmentation controls in nerfstudio's viewer: a thin GUI over ``viewer_state.ClickViewerState``.

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

The state (``ClickViewerState``) is created lazily on the first interaction: training and scripts that never touch
the viewer pay nothing, and ``get_outputs`` is unchanged while it does not exist. Even then, only renders made by
the viewer's render threads (``RenderStateMachine``) see the display mode: evaluation and GFL renders of a running
``ns-train`` stay plain. Pointer callbacks are not run under the viewer's ``train_lock`` by nerfstudio: this one
takes it (the render thread holds it while drawing, so a click may wait for a render in flight; the wait is
reported separately).
"""

from __future__ import annotations

import contextlib
import re
import time
import traceback
import weakref
from pathlib import Path
from typing import Any, List, Optional, Sequence

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

from clickgs_ns.app.viewer_state import (
    CLICK_MODES,
    DEFAULT_CLICK_MODE,
    DEFAULT_DISPLAY,
    DISPLAY_MODES,
    MODE_WORDS,
    SEGMENTS,
    WINDOW_RENDER_HEIGHT,
    ClickOutcome,
    ClickViewerState,
    export_files,
    export_path,
    free_export_path,
    in_viewer_render_thread,
    selection_npy,
    selection_path,
    shown_path,
)
from clickgs_ns.io.selection_files import latest_selection, save_selection
from clickgs_ns.levels import LEVELS
from clickgs_ns.segment.export import NothingToExport, dataset_frame, export_gaussians, exported_gaussians
from clickgs_ns.segment.selection import PixelSample, SelectionConfig

VISER_SCALE = 10.0
"""nerfstudio's ``VISER_NERFSTUDIO_SCALE_RATIO``: viser scene coordinates = 10 x nerfstudio world coordinates."""

MARKER_NAME = "/clickgs/click_marker"
"""viser scene node of the click marker."""
MARKER_COLORS = {"replace": (60, 220, 90), "add": (60, 220, 90), "subtract": (235, 70, 60), "none": (170, 170, 170)}
MARKER_RADIUS = 0.02
"""Marker radius as a fraction of its distance to the camera (so it looks the same size at any depth)."""

EXPORT_BUTTONS = {"selection": "Export selection (.ply)", "inverse": "Export all but selection (.ply)",
                  "segments": "Export all, labelled (.ply)"}
"""Label of each export's button (short: a button's label does not wrap, and a longer one widened the panel past
the window)."""
OVERWRITE_LABEL = "Overwrite existing files"
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~])")
"""Characters escaped in the status line (viser shows it as markdown)."""


def markdown_text(text: str) -> str:
    """``text`` as markdown that shows it verbatim, on one line."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


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
            state.forget_view()
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
            self._state.forget_view()
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
        height, width = state.view_size() or (WINDOW_RENDER_HEIGHT, None)
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
            try:
                exported, outside = exported_gaussians(selection, kind, inside)
            except NothingToExport as nothing:
                self.set_status(str(nothing))
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
