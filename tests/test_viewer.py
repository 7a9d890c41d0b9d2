"""Viewer controls of click segmentation (clickgs_ns.app.viewer, viewer_controls, viewer_state) without a browser,
on a tiny scene trained on the CPU: display modes in the model's eval render, the click handler and its modes,
marker, status line (plain words; the numbers in the terminal), loading a saved selection and named exports that
never overwrite silently."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import make_trainer_config, train

VIEW = 0  # training view used throughout


def trained_run(tmp_path_factory, tiny_scene) -> Path:
    """config.yml of a short click-gaussian run (feature stage from the scene's .ply, with GFL candidates), trained
    once per test session and shared with tests/test_viewer_browser.py through the session's base temp dir."""
    from clickgs_ns.method.gfl import GFLConfig

    out = tmp_path_factory.getbasetemp() / "clickgs_viewer_run"
    for config_path in sorted(out.glob("*/click-gaussian/test/config.yml")):
        if list((config_path.parent / "nerfstudio_models").glob("*.ckpt")):
            return config_path
    config = make_trainer_config(tiny_scene.root, out, init_ply=tiny_scene.scene_ply_path, feature_stage_steps=120,
                                 gfl=dataclasses.replace(GFLConfig(), start_step=80, update_every=40))
    return train(config)


@pytest.fixture(scope="module")
def scene(tmp_path_factory, tiny_scene):
    from clickgs_ns.segment.run import load_run

    return load_run(trained_run(tmp_path_factory, tiny_scene))


@pytest.fixture
def controls(scene):
    """The model's viewer controls with a fresh state (display modes apply to every eval render here)."""
    controls = scene.model.click_segmentation
    controls._state = None
    controls._marker = None
    controls.export_dir = None
    controls.g_selection_file.value = ""
    controls.i_export_name.value = ""
    controls.j_overwrite.value = False
    if hasattr(controls.z_viewer_control, "viewer"):
        del controls.z_viewer_control.viewer
    yield controls
    controls._state = None


def camera(scene):
    return scene.cameras[VIEW : VIEW + 1]


def render(scene):
    with torch.no_grad():
        return scene.model.get_outputs_for_camera(camera(scene))


def foreground_pixel(outputs, quantile: float = 0.5):
    """(column, row) of an opaque pixel inside one segment (its 5x5 neighbourhood is opaque and has nearly the
    same coarse feature), picked reproducibly."""
    features = torch.nn.functional.normalize(outputs["coarse_features"], dim=-1).permute(2, 0, 1)[None]  # [1,D,H,W]
    opaque = (outputs["accumulation"][..., 0] > 0.95).float()[None, None]
    neighbours = torch.nn.functional.unfold(features, 5, padding=2).reshape(features.shape[1], 25, -1)  # [D,25,HW]
    cosine = (neighbours * features.reshape(features.shape[1], 1, -1)).sum(0).min(0).values  # [HW]
    all_opaque = torch.nn.functional.unfold(opaque, 5, padding=2).min(1).values.reshape(-1)
    good = ((cosine > 0.95) & (all_opaque > 0)).reshape(opaque.shape[-2:])
    rows, columns = torch.nonzero(good, as_tuple=True)
    assert len(rows) > 0, "no pixel well inside an object"
    i = int(quantile * (len(rows) - 1))
    return int(columns[i]), int(rows[i])


def select_object(scene, controls):
    """Click an object of view VIEW through the state (add); returns the selection [N]."""
    state = controls.get_state()
    state.only_viewer_renders = False
    outputs = render(scene)
    column, row = foreground_pixel(outputs)
    height, width = outputs["rgb"].shape[:2]
    state.mode = "add"
    outcome = state.click(camera(scene), (column + 0.5) / width, (row + 0.5) / height)
    assert outcome.result is not None and outcome.result.num_selected > 0, outcome.status
    return state.selection.clone()


class ConsoleRecorder:
    """Stands in for nerfstudio's CONSOLE: keeps what the controls print to the terminal."""

    def __init__(self):
        self.lines = []

    def log(self, *values, **_):
        self.lines.append(" ".join(str(v) for v in values))

    print = log

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def console(monkeypatch):
    from clickgs_ns.app import viewer_controls

    recorder = ConsoleRecorder()
    monkeypatch.setattr(viewer_controls, "CONSOLE", recorder)
    return recorder


def selection_alpha(scene, mask):
    from clickgs_ns.segment.selection import render_selection_alpha

    params = scene.model.gauss_params
    return render_selection_alpha(params["means"], params["quats"], params["scales"], params["opacities"], mask,
                                  camera(scene), backend="torch")


class FakeViewer:
    """The parts of nerfstudio's Viewer the controls use, with a real viser server for the marker and the pointer
    callback."""

    def __init__(self, run_dir: Path, pipeline):
        import viser

        from nerfstudio.viewer_legacy.server.viewer_utils import get_free_port

        self.viser_server = viser.ViserServer(host="127.0.0.1", port=get_free_port(), verbose=False)
        self.train_lock = threading.Lock()
        self.log_filename = run_dir / "viewer_log_filename.txt"
        self.pipeline = pipeline
        self.rerenders = 0

    def _trigger_rerender(self):
        self.rerenders += 1


@pytest.fixture
def fake_viewer(scene, controls, tmp_path):
    viewer = FakeViewer(tmp_path / "run", scene.pipeline)
    controls.z_viewer_control._setup(viewer)
    yield viewer
    viewer.viser_server.stop()


def viewer_camera_source(scene, monkeypatch, controls):
    """Make ViewerControl.get_camera return training view VIEW at the asked resolution (as a browser would)."""
    base = camera(scene)
    base_height = int(base.height.reshape(-1)[0])

    def get_camera(img_height, img_width, client_id=None):
        cam = copy.deepcopy(base.to("cpu"))
        cam.rescale_output_resolution(img_height / base_height)
        return cam

    monkeypatch.setattr(controls.z_viewer_control, "get_camera", get_camera)
    return get_camera


def click_at(scene, column, row, width, height):
    """A ViewerClick through pixel (column, row) of view VIEW."""
    from nerfstudio.viewer.viewer_elements import ViewerClick

    cam = camera(scene)
    c2w = cam.camera_to_worlds[0].double()
    fx, fy, cx, cy = (float(v.reshape(-1)[0]) * (height / int(cam.height.reshape(-1)[0])) for v in
                      (cam.fx, cam.fy, cam.cx, cam.cy))
    local = torch.tensor([(column + 0.5 - cx) / fx, -(row + 0.5 - cy) / fy, -1.0], dtype=torch.float64)
    direction = torch.nn.functional.normalize(c2w[:, :3] @ local, dim=0)
    return ViewerClick(origin=tuple(c2w[:, 3].tolist()), direction=tuple(direction.tolist()),
                       screen_pos=((column + 0.5) / width, (row + 0.5) / height))


# ------------------------------------------------------------------------------------------------------- tests
def test_controls_are_found_in_order_and_cost_nothing_until_used(scene, controls):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement

    elements = parse_object(scene.pipeline, ViewerElement, "Custom Elements")
    names = [path.split("/")[-1] for path, _ in elements]
    assert names == ["a_start_clicking", "a_stop_clicking", "b_status", "c_level", "d_mode", "e_edit", "f_display",
                     "g_selection_file", "h_load_selection", "i_export_name", "j_overwrite", "k_export",
                     "l_export_inverse", "m_export_segments"]
    assert [e.name for _, e in elements] == [
        "Click to select", "Stop click selection", "Status", "Level", "Click mode", "Selection", "Display",
        "Selection file", "Load selection", "Export name", "Overwrite existing files", "Export selection (.ply)",
        "Export all but selection (.ply)", "Export all, labelled (.ply)"]
    assert controls.d_mode.value == "replace" and controls.d_mode.options == ["replace", "add", "subtract"]
    assert all("/click_segmentation/" in path for path, _ in elements)
    assert [e for _, e in parse_object(scene.pipeline, ViewerControl, "Custom Elements")] == \
        [controls.z_viewer_control]
    assert controls._state is None, "walking the controls must not create the state"
    assert not [key for key in scene.model.state_dict() if "click_segmentation" in key]
    before = render(scene)
    assert controls.render_state() is None and controls._state is None

    # a selection highlighted, but only for the viewer's render threads: other eval renders are untouched
    selection = select_object(scene, controls)
    controls.get_state().only_viewer_renders = True
    assert torch.equal(render(scene)["rgb"], before["rgb"])
    assert controls.get_state().view_size() is None

    from nerfstudio.viewer.render_state_machine import RenderStateMachine

    class RenderThread(RenderStateMachine):
        def __init__(self):
            threading.Thread.__init__(self)
            self.outputs = None

        def run(self):
            self.outputs = render(scene)

    thread = RenderThread()
    thread.start()
    thread.join()
    assert not torch.equal(thread.outputs["rgb"], before["rgb"])  # highlighted (the default display mode)
    assert bool(selection.any())


def test_display_modes_change_the_render(scene, controls):
    from clickgs_ns.app import viewer_state as V

    state = controls.get_state()
    state.only_viewer_renders = False
    state.display_mode = V.RGB
    base = render(scene)
    keys = set(base)
    selection = select_object(scene, controls)
    alpha = selection_alpha(scene, selection)
    inside, outside = alpha > 0.95, alpha < 1e-3
    assert int(inside.sum()) > 20 and int(outside.sum()) > 20
    background = base["background"]

    state.display_mode = V.SELECTION_ONLY
    only = render(scene)
    assert set(only) == keys
    torch.testing.assert_close(only["rgb"][outside], background[outside], atol=1e-5, rtol=0)
    assert (only["rgb"][inside] - background[inside]).abs().max() > 0.1
    assert float(only["accumulation"][outside].max()) < 1e-3

    state.display_mode = V.HIGHLIGHT
    highlighted = render(scene)
    torch.testing.assert_close(highlighted["rgb"][outside], base["rgb"][outside], atol=1e-5, rtol=0)
    tint = torch.tensor(V.HIGHLIGHT_COLOR)
    distance_before = (base["rgb"][inside] - tint).norm(dim=-1).mean()
    distance_after = (highlighted["rgb"][inside] - tint).norm(dim=-1).mean()
    assert distance_after < 0.6 * distance_before, (distance_before, distance_after)
    torch.testing.assert_close(highlighted["fine_features"], base["fine_features"])  # colours only

    state.display_mode = V.HIDE_SELECTION
    hidden = render(scene)
    torch.testing.assert_close(hidden["rgb"][outside], base["rgb"][outside], atol=1e-4, rtol=0)
    assert (hidden["rgb"][inside] - base["rgb"][inside]).abs().mean() > 0.02

    state.display_mode = V.SEGMENTS
    segments = render(scene)
    # the splat drawn with each Gaussian in its segment's colour, straight through the rasterizer
    labels = state.segmenter.segment_everything(state.level).labels
    colors = state.gaussian_segment_colors(state.level)
    assert len(colors.unique(dim=0)) == len(labels.unique())  # one colour per segment id (and -1)
    model, cam = scene.model, camera(scene)
    from clickgs_ns.render import get_viewmat, rasterize

    reference, ref_alpha, _ = rasterize(
        means=model.means.detach(), quats=model.quats.detach(), scales=torch.exp(model.scales.detach()),
        opacities=torch.sigmoid(model.opacities.detach()).squeeze(-1), colors=colors,
        viewmats=get_viewmat(cam.camera_to_worlds), Ks=cam.get_intrinsics_matrices(), width=int(cam.width),
        height=int(cam.height), backend="torch")
    expected = torch.clamp(reference[0] + (1 - ref_alpha[0]) * background, 0, 1)
    torch.testing.assert_close(segments["rgb"], expected, atol=1e-4, rtol=0)
    assert (segments["rgb"] - base["rgb"]).abs().mean() > 0.02

    state.display_mode = V.PCA
    pca = render(scene)
    assert set(pca) == keys | {"features_pca"}
    assert pca["features_pca"].shape == base["rgb"].shape
    assert float(pca["features_pca"].min()) >= 0 and float(pca["features_pca"].max()) <= 1
    assert (pca["rgb"] - base["rgb"]).abs().mean() > 0.02

    # nothing left to draw: every key is still there and the view is background
    state.segmenter.clear()
    state.display_mode = V.SELECTION_ONLY
    empty = render(scene)
    assert set(empty) == keys
    torch.testing.assert_close(empty["rgb"], background)
    assert empty["coarse_features"].shape[-1] == scene.model.config.coarse_dim
    # the model itself was never modified
    state.display_mode = V.RGB
    torch.testing.assert_close(render(scene)["rgb"], base["rgb"])


def test_click_handler_updates_selection_status_and_marker(scene, controls, fake_viewer, monkeypatch, console):
    state = controls.get_state()
    state.only_viewer_renders = False
    controls.set_click_enabled(True)
    assert state.click_enabled and fake_viewer.viser_server.scene._scene_pointer_cb is not None
    assert controls.b_status.value == "Click an object in the scene: a click selects the clicked object alone.", \
        controls.b_status.value
    assert "converged" not in controls.b_status.value and "converged" in console.text()
    viewer_camera_source(scene, monkeypatch, controls)

    outputs = render(scene)  # a viewer render: it is cached for clicks
    height, width = outputs["rgb"].shape[:2]
    assert state.view_size() == (height, width)
    column, row = foreground_pixel(outputs)
    rerenders = fake_viewer.rerenders
    console.lines.clear()
    controls.on_pointer_click(click_at(scene, column, row, width, height))
    count = int(state.selection.sum())
    status = controls.b_status.value
    assert status == f"Selected the object under the cursor: {count:,} Gaussians.", status
    # the numbers behind it are in the terminal, not in the status line
    terminal = console.text()
    assert status in terminal and "cached view" in terminal and "accumulation" in terminal and " ms" in terminal
    assert "candidate" in terminal or "feature similarity" in terminal, terminal
    assert count > 0 and fake_viewer.rerenders == rerenders + 1
    # the marker sits on the surface, in viser's scaled coordinates
    depth = float(outputs["depth"][row, column, 0])
    c2w = camera(scene).camera_to_worlds[0].double()
    marker = torch.tensor(np.asarray(controls._marker.position), dtype=torch.float64) / 10.0
    assert abs(float((marker - c2w[:, 3]) @ -c2w[:, 2]) - depth) < 1e-3 * max(depth, 1.0)

    # the view moved (no cached render for it): a small window is rendered instead, same answer
    state.forget_view()
    controls._on_mode(SimpleNamespace(value="subtract"))
    assert controls.b_status.value == "Click mode subtract: a click removes the clicked object from the selection."
    console.lines.clear()
    controls.on_pointer_click(click_at(scene, column, row, width, height))
    status = controls.b_status.value
    assert status == f"Removed the object under the cursor: 0 Gaussians selected ({count:,} fewer).", status
    assert "window render" in console.text() and "coarse level, subtract" in console.text()
    assert int(state.selection.sum()) == 0

    # background: nothing selected, and the status says so in words
    controls._on_edit(SimpleNamespace(value="Undo"))
    assert int(state.selection.sum()) == count and controls.b_status.value == f"Undone: {count:,} Gaussians selected."
    render(scene)
    rows, columns = torch.nonzero(outputs["accumulation"][..., 0] < 0.05, as_tuple=True)
    controls._on_mode(SimpleNamespace(value="replace"))
    controls.on_pointer_click(click_at(scene, int(columns[0]), int(rows[0]), width, height))
    assert controls.b_status.value.startswith("Nothing here: background.") and int(state.selection.sum()) == count
    assert "accumulation" in console.text().splitlines()[-1]
    assert controls._marker is not None

    # fine level works too; errors are reported, not swallowed
    controls._on_level(SimpleNamespace(value="fine"))
    controls._on_edit(SimpleNamespace(value="Clear"))
    assert int(state.selection.sum()) == 0 and "cleared" in controls.b_status.value
    render(scene)
    controls._on_mode(SimpleNamespace(value="add"))
    controls.on_pointer_click(click_at(scene, column, row, width, height))
    fine = int(state.selection.sum())
    assert controls.b_status.value == f"Added the part under the cursor: {fine:,} Gaussians selected ({fine:,} more)."
    assert fine > 0 and "fine level, add" in console.text()
    monkeypatch.setattr(state, "sample_pixel", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    controls.on_pointer_click(click_at(scene, column, row, width, height))
    assert controls.b_status.value.startswith("Click failed: RuntimeError: boom")

    controls.set_click_enabled(False)
    assert not state.click_enabled and state.view_size() is None
    assert fake_viewer.viser_server.scene._scene_pointer_cb is None


def test_click_modes_replace_add_subtract(scene, controls):
    """replace (the default) moves the selection to the clicked object; add and subtract combine."""
    state = controls.get_state()
    state.only_viewer_renders = False
    assert state.mode == "replace"
    outputs = render(scene)
    height, width = outputs["rgb"].shape[:2]

    def click(quantile):
        column, row = foreground_pixel(outputs, quantile)
        outcome = state.click(camera(scene), (column + 0.5) / width, (row + 0.5) / height)
        assert outcome.result is not None and outcome.result.num_selected > 0, outcome.status
        return outcome.result.mask.cpu(), outcome.status

    first, status = click(0.5)
    assert torch.equal(state.selection.cpu(), first)
    assert status == f"Selected the object under the cursor: {int(first.sum()):,} Gaussians."
    second, other = None, None
    for quantile in (0.05, 0.15, 0.3, 0.7, 0.85, 0.95):  # another object (a disjoint segment)
        mask, status = click(quantile)
        if not bool((mask & first).any()):
            second, other = mask, quantile
            break
    assert second is not None, "view VIEW shows a single object"
    assert torch.equal(state.selection.cpu(), second), "replace keeps only the clicked object"
    state.mode = "add"
    click(0.5)
    assert torch.equal(state.selection.cpu(), first | second)
    state.mode = "subtract"
    _, status = click(other)
    assert torch.equal(state.selection.cpu(), first)
    assert status == (f"Removed the object under the cursor: {int(first.sum()):,} Gaussians selected "
                      f"({int(second.sum()):,} fewer).")
    assert state.segmenter.undo() and torch.equal(state.selection.cpu(), first | second)


def test_status_line_is_shown_in_full(controls):
    """The status is viser markdown (wrapped, never cut off), with the text's markdown characters escaped."""
    import viser

    from nerfstudio.viewer_legacy.server.viewer_utils import get_free_port

    server = viser.ViserServer(host="127.0.0.1", port=get_free_port(), verbose=False)
    try:
        element = controls.b_status
        handle = element.gui_handle
        element.gui_handle = None
        element.install(server)
        text = "Exported 3,421 Gaussians to objects/my_chair*.ply (12 outside the crop box left out). " * 4
        element.value = text
        assert element.value == text
        content = element.gui_handle.content
        assert content.startswith("**Status:** Exported 3,421 Gaussians to objects/my\\_chair\\*.ply \\(12 ")
        assert content.count("Exported") == 4
    finally:
        element.gui_handle = handle
        server.stop()


def test_click_without_a_connected_browser(scene, controls, fake_viewer):
    from nerfstudio.viewer.viewer_elements import ViewerClick

    controls.set_click_enabled(True)
    controls.on_pointer_click(ViewerClick((0.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.5, 0.5)))
    assert "No viewer client" in controls.b_status.value


def test_export_button_writes_ply_and_selection(scene, controls, fake_viewer):
    from plyfile import PlyData

    from clickgs_ns.app.viewer_state import SELECTION_NPY, SELECTION_PLY
    from clickgs_ns.io.selection_files import load_selection
    from clickgs_ns.segment.export import sidecar_paths

    run_dir = fake_viewer.log_filename.parent
    assert controls.export() is None and "Nothing to export" in controls.b_status.value
    selection = select_object(scene, controls)
    path = controls.export()  # an empty Export name: the default name
    assert path == run_dir / SELECTION_PLY and path.is_file(), controls.b_status.value
    count = int(selection.sum())
    assert controls.b_status.value == f"Exported {count:,} Gaussians to {SELECTION_PLY} and the selection to " \
                                      f"{SELECTION_NPY}.", controls.b_status.value
    assert controls.g_selection_file.value == SELECTION_NPY  # Load selection reads what was just saved
    vertices = PlyData.read(str(path))["vertex"]
    assert len(vertices) == int(selection.sum())
    assert {"x", "y", "z", "opacity", "f_dc_0", "scale_0", "rot_0", "label"} <= set(vertices.data.dtype.names)
    assert sidecar_paths(path)["json"].is_file()
    loaded = load_selection(run_dir / SELECTION_NPY, scene.model.num_points)
    assert torch.equal(loaded, selection.cpu())
    # in the dataset's frame: the means differ from the model's (training-frame) ones by the dataparser transform
    outputs = scene.pipeline.datamanager.train_dataparser_outputs
    transform, scale = outputs.dataparser_transform.double(), float(outputs.dataparser_scale)
    means = scene.model.means.detach().double()[selection.to(scene.model.device)]
    world = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=-1)
    back = (torch.from_numpy(world).double() @ transform[:, :3].T + transform[:, 3]) * scale
    torch.testing.assert_close(back, means.cpu(), atol=1e-4, rtol=0)


def test_export_buttons_for_editing_the_scene(scene, controls, fake_viewer):
    """Everything but the selection (the object removed) and the whole splat labelled by segment."""
    from plyfile import PlyData

    from clickgs_ns.app.viewer_state import EXPORT_FILES

    run_dir = fake_viewer.log_filename.parent
    selection = select_object(scene, controls).cpu()
    count = scene.model.num_points
    inverse = controls.export("inverse")
    assert inverse == run_dir / EXPORT_FILES["inverse"], controls.b_status.value
    assert PlyData.read(str(inverse))["vertex"].count == count - int(selection.sum())
    indices = json.loads(inverse.with_suffix(".export.json").read_text())["indices"]
    assert not selection[torch.tensor(indices)].any()
    whole = controls.export("segments")
    vertices = PlyData.read(str(whole))["vertex"]
    assert vertices.count == count and vertices["label"].dtype == np.int32
    labels = controls.get_state().segmenter.segment_everything(controls.c_level.value).labels.cpu().numpy()
    np.testing.assert_array_equal(vertices["label"], labels)
    controls.get_state().segmenter.state.apply(torch.ones(count, dtype=torch.bool), "replace")
    assert controls.export("inverse") is None and "everything is selected" in controls.b_status.value


def test_exports_are_named_and_never_overwrite_silently(scene, controls, fake_viewer, console):
    """Export name names the file (relative to the run folder, .ply added); an export whose files exist writes
    nothing, proposes a free name and says how to go on; Overwrite existing files replaces them."""
    from clickgs_ns.io.selection_files import load_selection

    run_dir = fake_viewer.log_filename.parent
    selection = select_object(scene, controls).cpu()
    count = int(selection.sum())
    controls.i_export_name.value = "objects/chair"
    chair = controls.export("selection")
    assert chair == run_dir / "objects" / "chair.ply" and chair.is_file(), controls.b_status.value
    assert controls.b_status.value == f"Exported {count:,} Gaussians to objects/chair.ply and the selection to " \
                                      "objects/chair.npy."
    assert str(chair) in console.text() and "labelled by coarse segment" in console.text()
    assert torch.equal(load_selection(run_dir / "objects" / "chair.npy", scene.model.num_points), selection)
    written = {path: path.read_bytes() for path in (run_dir / "objects").iterdir()}

    # the same name again, for any button: nothing written, a free name proposed
    changed = selection ^ (torch.arange(len(selection)) == 0)  # another selection: the files must not change
    controls.get_state().segmenter.state.apply(changed, "replace")
    for kind, button in (("selection", "Export selection (.ply)"), ("inverse", "Export all but selection (.ply)")):
        controls.i_export_name.value = "objects/chair.ply"
        assert controls.export(kind) is None
        assert controls.b_status.value == (
            f"Not exported: objects/chair.ply already exists. Export name is now objects/chair_2.ply: press "
            f"'{button}' again to write it, or tick 'Overwrite existing files' to replace the existing files.")
        assert controls.i_export_name.value == "objects/chair_2.ply"
        assert {path: path.read_bytes() for path in (run_dir / "objects").iterdir()} == written
    # only the selection file of a name exists (clickgs segment --output objects/table.npy): refused too
    np.save(run_dir / "objects" / "table.npy", selection.numpy())
    controls.i_export_name.value = "objects/table"
    assert controls.export("selection") is None and "objects/table.npy already exists" in controls.b_status.value
    assert controls.i_export_name.value == "objects/table_2.ply"
    # the proposed name is written by the next press
    controls.i_export_name.value = "objects/chair_2.ply"
    assert controls.export("inverse") == run_dir / "objects" / "chair_2.ply"
    assert controls.b_status.value == f"Exported {scene.model.num_points - int(changed.sum()):,} Gaussians to " \
                                      "objects/chair_2.ply."
    # Overwrite existing files: replaced, and the status says so
    controls.j_overwrite.value = True
    controls.i_export_name.value = "objects/chair"
    assert controls.export("selection") == chair
    assert controls.b_status.value.endswith(", replacing the earlier files."), controls.b_status.value
    assert not torch.equal(load_selection(run_dir / "objects" / "chair.npy", scene.model.num_points), selection)
    # an absolute path (outside the run folder) is shown in full
    outside = fake_viewer.log_filename.parent.parent / "elsewhere" / "whole"
    controls.i_export_name.value = str(outside)
    assert controls.export("segments") == outside.with_suffix(".ply")
    assert f"to {outside.with_suffix('.ply')}." in controls.b_status.value


def test_load_selection(scene, controls, fake_viewer):
    """Load selection reads a saved selection of this run (default: the run folder's newest) and says clearly why
    it cannot read another run's or a missing file."""
    import os

    from clickgs_ns.io.selection_files import save_selection

    run_dir = fake_viewer.log_filename.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    n = scene.model.num_points
    state = controls.get_state()
    # nothing saved yet: the field stays empty, and Load says what to do
    controls.on_viewer_ready()
    assert controls.g_selection_file.value == ""
    assert controls.load() is None
    assert controls.b_status.value.startswith(f"Not loaded: No saved selection of this run in {run_dir}: export a "
                                              "selection first"), controls.b_status.value

    selection = select_object(scene, controls).cpu()
    count = int(selection.sum())
    controls.i_export_name.value = "first"
    controls.export("selection")
    other = torch.zeros(n, dtype=torch.bool)
    other[: n // 3] = True
    save_selection(run_dir / "older.npy", other)
    os.utime(run_dir / "older.npy", (1, 1))
    save_selection(run_dir / "other_run.npy", torch.ones(n + 5, dtype=torch.bool))  # newest, another run's
    os.utime(run_dir / "first.labels.npy")  # export sidecars (int labels) are not selections

    # the default: the run folder's newest selection of this run
    controls.g_selection_file.value = ""
    controls.on_viewer_ready()
    assert controls.g_selection_file.value == "first.npy"
    state.segmenter.clear()
    assert controls.load() == run_dir / "first.npy"
    assert controls.b_status.value == f"Loaded {count:,} Gaussians from first.npy (Undo brings back the previous " \
                                      "selection)."
    assert torch.equal(state.selection.cpu(), selection)
    assert state.segmenter.undo() and int(state.selection.sum()) == 0
    controls.g_selection_file.value = "older.npy"
    assert controls.load() is not None and torch.equal(state.selection.cpu(), other)

    # errors: a missing file, another run's selection; the selection is left as it was
    controls.g_selection_file.value = "missing.npy"
    assert controls.load() is None
    assert controls.b_status.value.startswith("Not loaded: there is no file missing.npy. Under Selection file, type ")
    controls.g_selection_file.value = "other_run.npy"
    assert controls.load() is None
    assert controls.b_status.value == (f"Not loaded: other_run.npy holds a selection of {n + 5} Gaussians (shape "
                                       f"[{n + 5}]); the model has {n}: it was saved for another model or checkpoint.")
    assert torch.equal(state.selection.cpu(), other)
    # an absolute path, and a relative one found in the current folder (where clickgs segment --output wrote it)
    controls.g_selection_file.value = str(run_dir / "first.npy")
    assert controls.load() == run_dir / "first.npy" and controls.g_selection_file.value == "first.npy"
    cwd = os.getcwd()
    os.chdir(run_dir.parent)
    try:
        save_selection(run_dir.parent / "here.npy", other)
        controls.g_selection_file.value = "here.npy"
        assert controls.load() == run_dir.parent / "here.npy" and torch.equal(state.selection.cpu(), other)
    finally:
        os.chdir(cwd)
