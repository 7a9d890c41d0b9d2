"""A real browser on ``ns-viewer``: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by
selenium opens the viewer of a tiny CPU-trained run, starts click selection, clicks an object and checks the
status line, the highlighted pixels in a screenshot, and the export button.

Skipped when chromium, chromedriver or selenium is missing. ``CLICKGS_UPDATE_SCREENSHOT=1`` also copies the
screenshot after the click to ``docs/viewer_selection.png``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from test_viewer import trained_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's headless Chromium at /usr/bin/chromium "
                       "(apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(not CHROMEDRIVER.is_file(), reason="needs /usr/bin/chromedriver (apt-get install "
                       "chromium-driver)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value is not None and (bool(value) if isinstance(value, (bool, str, list)) else True):
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}")


def magenta_pixels(image: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels tinted toward the highlight colour (magenta): min(R, B) well above G."""
    rgb = image[..., :3].astype(np.int32)
    return (np.minimum(rgb[..., 0], rgb[..., 2]) - rgb[..., 1]) > 45


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a (2r+1) square (summed-area table)."""
    padded = np.pad(mask.astype(np.int32), radius + 1)
    table = padded.cumsum(0).cumsum(1)
    k = 2 * radius + 1
    window = table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]
    return window[: mask.shape[0], : mask.shape[1]] == k * k


def pick_object_pixel(image: np.ndarray, x_max: int, y_min: int) -> tuple:
    """(x, y) well inside a vividly coloured object of the rendered scene (objects are saturated, the ground and
    the background are grey), left of ``x_max`` (the GUI panel) and below ``y_min`` (the title bar)."""
    rgb = image[..., :3].astype(np.int32)
    saturated = (rgb.max(-1) - rgb.min(-1)) > 90
    saturated[:, x_max:] = False
    saturated[: y_min + 5] = False
    saturated[-80:, :120] = False  # the axes gizmo
    inner = erode(saturated, 8)
    ys, xs = np.nonzero(inner)
    assert len(ys) > 0, "no coloured object visible in the viewer before the click"
    centre_y, centre_x = ys.mean(), xs.mean()
    i = int(np.argmin((ys - centre_y) ** 2 + (xs - centre_x) ** 2))
    return int(xs[i]), int(ys[i])


@pytest.fixture(scope="module")
def viewer_run(tmp_path_factory, tiny_scene):
    """An ``ns-viewer`` subprocess on a trained tiny run: (url, run dir, log path)."""
    config_path = trained_run(tmp_path_factory, tiny_scene)
    port = free_port()
    log_path = tmp_path_factory.mktemp("ns_viewer") / "ns-viewer.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [str(BIN / "ns-viewer"), "--load-config", str(config_path), "--viewer.websocket-port", str(port),
         "--viewer.websocket-host", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def serving():
        if process.poll() is not None:
            raise AssertionError(f"ns-viewer exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(serving, 300, 1.0, "ns-viewer to serve its page")
        yield url, config_path.parent, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        log.close()


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed in the environment "
                                    "(pip install selenium; it drives /usr/bin/chromedriver, nothing is downloaded)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def test_click_selects_and_highlights_in_the_browser(viewer_run, browser, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    url, run_dir, log_path = viewer_run
    driver = browser

    def screenshot(name: str) -> np.ndarray:
        png = driver.get_screenshot_as_png()
        (tmp_path / name).write_bytes(png)
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

    def inputs():
        return driver.execute_script(
            "return Array.from(document.querySelectorAll('input, textarea')).map(e => e.value)")

    def status_matching(*words):
        return next((value for value in inputs() if any(word in value for word in words)), None)

    def button(label: str):
        return wait_for(lambda: driver.find_elements(By.XPATH, f"//button[normalize-space(.)='{label}']"), 120,
                        what=f"the '{label}' button")[0]

    def log_tail() -> str:
        return log_path.read_text()[-3000:]

    driver.get(url)
    button("Click to select")
    button("Hide Train Cams").click()  # camera frustums would catch clicks and clutter the picture
    # a full-resolution render of the scene (the stats line shows its size); then let it settle
    wait_for(lambda: re.search(r"Resolution: [1-9]\d*x", driver.find_element(By.TAG_NAME, "body").text), 180,
             what="a first render")
    canvas = driver.find_element(By.TAG_NAME, "canvas").rect
    panel_x = int(button("Click to select").rect["x"]) - 30
    previous = None

    def settled():
        nonlocal previous
        image = screenshot("before.png")
        region = image[int(canvas["y"]):, :panel_x]
        stable = previous is not None and np.abs(region.astype(int) - previous.astype(int)).mean() < 0.5 \
            and (region.max(-1).astype(int) - region.min(-1)).max() > 90
        previous = region
        return image if stable else None

    before = wait_for(settled, 240, 3.0, "the render to settle")
    x, y = pick_object_pixel(before, panel_x, int(canvas["y"]))

    button("Click to select").click()
    wait_for(lambda: status_matching("Click an object"), 60, what=f"click mode to start\n{log_tail()}")
    click_at(driver, x, y)
    status = wait_for(lambda: status_matching("Total selected", "failed", "No viewer client"), 120,
                      what=f"the status line after the click\n{log_tail()}")
    assert "Total selected: 0." not in status and "background" not in status and "failed" not in status, status

    # show the status line in the GUI panel (the panel scrolls; the scene does not move)
    driver.execute_script(
        "const s = Array.from(document.querySelectorAll('input, textarea')).find(e => e.value.includes(arguments[0]));"
        "if (s) { s.scrollIntoView({block: 'center'}); }", "Total selected")
    before_magenta = int(magenta_pixels(before[int(canvas["y"]):, :panel_x]).sum())

    def highlighted():
        image = screenshot("after.png")
        count = int(magenta_pixels(image[int(canvas["y"]):, :panel_x]).sum())
        return (image, count) if count > before_magenta + 300 else None

    after, after_magenta = wait_for(highlighted, 240, 3.0, f"highlighted pixels in the view\n{log_tail()}")
    region_before = before[int(canvas["y"]):, :panel_x].astype(float)
    region_after = after[int(canvas["y"]):, :panel_x].astype(float)
    assert np.abs(region_after - region_before).mean() > 0.5  # the picture changed, not just a few pixels
    # the highlight is on the clicked object (the click point itself is under the marker)
    ys, xs = np.nonzero(magenta_pixels(after) & ~magenta_pixels(before))
    assert float(np.sqrt((ys - y) ** 2 + (xs - x) ** 2).min()) < 15
    print(f"status: {status}\nmagenta pixels: {before_magenta} -> {after_magenta}; clicked at ({x}, {y})")
    if os.environ.get("CLICKGS_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "after.png", REPO / "docs" / "viewer_selection.png")

    # export from the GUI: the selection as a 3DGS .ply and a .npy in the run directory
    button("Export selection (.ply)").click()
    wait_for(lambda: status_matching("Exported", "Export failed"), 120, what=f"the export\n{log_tail()}")
    assert status_matching("Exported"), inputs()
    assert (run_dir / "clickgs_selection.ply").is_file() and (run_dir / "clickgs_selection.npy").is_file()
    selection = np.load(run_dir / "clickgs_selection.npy")
    assert selection.dtype == np.bool_ and selection.any()


def click_at(driver, x: int, y: int) -> None:
    """Click at viewport coordinates (x, y) with a W3C pointer action."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(x, y)
    actions.pointer_action.click()
    actions.perform()
