"""A real browser on ``ns-viewer``: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by
selenium opens the viewer of a tiny CPU-trained run, starts click selection, clicks an object and checks the
status line (in words, shown in full), the highlighted pixels in a screenshot, the Click mode dropdown, a named
export (and its refusal to overwrite) and Load selection.

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
    from selenium.common.exceptions import WebDriverException
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

    def status() -> str:
        """The Status line: a markdown paragraph "Status: ..." (wrapped, never cut off)."""
        return driver.execute_script(
            "const p = Array.from(document.querySelectorAll('p')).find(e => e.innerText.startsWith('Status:'));"
            "return p ? p.innerText : '';")

    def status_matching(*words):
        text = status()
        return text if any(word in text for word in words) else None

    def await_status(*words, what: str, timeout: float = 120) -> str:
        """The status line once it holds one of ``words``; on a timeout, the error shows it and the log."""
        try:
            return wait_for(lambda: status_matching(*words), timeout, what=what)
        except AssertionError as error:
            screenshot("timeout.png")
            raise AssertionError(f"{error}; the status line: {status()!r}\n{log_tail()}") from None

    def button(label: str):
        return wait_for(lambda: driver.find_elements(By.XPATH, f"//button[normalize-space(.)='{label}']"), 120,
                        what=f"the '{label}' button")[0]

    def press(label: str) -> None:
        """Click the button ``label`` in the middle of the panel (at its edge a scrollbar would take the click)."""
        element = button(label)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.click()

    def field(label: str):
        """The input of the control labelled ``label``, in the middle of the panel."""
        element = driver.find_element(By.XPATH,
                                      f"//label[normalize-space(.)='{label}']/ancestor::div[.//input][1]//input")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        return element

    def type_into(label: str, text: str) -> None:
        from selenium.webdriver.common.keys import Keys

        element = field(label)
        element.send_keys(Keys.CONTROL, "a")
        element.send_keys(Keys.BACKSPACE)
        element.send_keys(text)
        time.sleep(1.0)  # viser sends GUI updates throttled: let the server see the value before the next press

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
    await_status("Click an object", what="click mode to start", timeout=60)
    click_at(driver, x, y)
    status_line = await_status("under the cursor", "Nothing", "failed", "No viewer client", what="the click")
    match = re.fullmatch(r"Status: Selected the object under the cursor: ([\d,]+) Gaussians\.", status_line)
    assert match, status_line
    count = int(match.group(1).replace(",", ""))
    assert "candidate" in log_tail() or "feature similarity" in log_tail()  # the details are in the terminal

    # show the click controls, status line first, at the top of the GUI panel (the panel scrolls; the scene does not)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", button("Stop click selection"))
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
    print(f"status: {status_line}\nmagenta pixels: {before_magenta} -> {after_magenta}; clicked at ({x}, {y})")
    if os.environ.get("CLICKGS_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "after.png", REPO / "docs" / "viewer_selection.png")

    # the panel fits its width: nothing of the status line (or any control) is cut off at its right edge
    overflow = driver.execute_script(
        "return Array.from(document.querySelectorAll('.mantine-ScrollArea-viewport'))"
        ".map(e => e.scrollWidth - e.clientWidth);")
    assert max(overflow) <= 1, overflow

    # Click mode: subtract, chosen in the dropdown, removes the object again
    # (a pick made while the menu still opens can be lost on a busy machine: picked again, up to 3 times)
    def shown_option():
        options = driver.find_elements(By.XPATH, "//*[@role='option' and normalize-space(.)='subtract']")
        return [option for option in options if option.is_displayed()]

    for attempt in range(3):
        try:
            if not shown_option():
                field("Click mode").click()
            wait_for(shown_option, 30, what="the Click mode options")[0].click()
            await_status("Click mode subtract", what="the Click mode change", timeout=30 if attempt < 2 else 60)
            break
        except (AssertionError, WebDriverException):
            if attempt == 2:
                raise
    click_at(driver, x, y)
    await_status("Removed", what="the subtraction")
    assert status() == f"Status: Removed the object under the cursor: 0 Gaussians selected ({count:,} fewer)."
    press("Undo")
    await_status("Undone", what="Undo", timeout=60)
    assert status() == f"Status: Undone: {count:,} Gaussians selected."

    # export from the GUI under a typed name: the selection as a 3DGS .ply and a .npy in the run directory
    type_into("Export name", "my_object")
    press("Export selection (.ply)")
    await_status("Exported", "Export failed", "Not exported", what="the export")
    assert status() == f"Status: Exported {count:,} Gaussians to my_object.ply and the selection to my_object.npy."
    assert (run_dir / "my_object.ply").is_file() and (run_dir / "my_object.npy").is_file()
    selection = np.load(run_dir / "my_object.npy")
    assert selection.dtype == np.bool_ and int(selection.sum()) == count
    # the same name again: refused, a free name proposed in the field
    written = (run_dir / "my_object.ply").stat().st_mtime_ns
    press("Export selection (.ply)")
    await_status("Not exported", what="the refusal")
    assert "my_object.ply already exists" in status() and "my_object_2.ply" in status(), status()
    wait_for(lambda: field("Export name").get_attribute("value") == "my_object_2.ply", 30, what="the proposed name")
    assert (run_dir / "my_object.ply").stat().st_mtime_ns == written

    # Load selection: the field holds the selection just saved
    assert field("Selection file").get_attribute("value") == "my_object.npy"
    press("Clear")
    await_status("cleared", what="Clear", timeout=60)
    press("Load selection")
    await_status("Loaded", "Not loaded", what="Load selection", timeout=60)
    assert status() == f"Status: Loaded {count:,} Gaussians from my_object.npy (Undo brings back the previous " \
                       "selection).", status()
    # Undo twice in a row: each press counts (back to the cleared selection, then to the one before Clear)
    press("Undo")
    await_status("Undone", what="the first Undo", timeout=60)
    assert status() == "Status: Undone: 0 Gaussians selected."
    press("Undo")
    await_status(f"Undone: {count:,}", what="the second Undo in a row", timeout=60)


def click_at(driver, x: int, y: int) -> None:
    """Click at viewport coordinates (x, y) with a W3C pointer action."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(x, y)
    actions.pointer_action.click()
    actions.perform()
