"""The live page in a real headless Chromium (Debian's ``chromium``, driven by
Playwright with that executable: no browser download): the preview runs at >= 10 fps,
a jog changes the readout, autofocus completes, a scan runs to the end with progress,
the viewer shows the slide's tiles, a second browser is read-only. Screenshots go to
the test's tmp_path (printed)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deepaf_host.serve.app import SERVER

from .servelive import AREA_MM, TISSUE_UM, Live

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: The issue's bar for the live view on the virtual camera.
MIN_FPS = 10.0


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; make system-deps does it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _frames(page: object) -> int:
    return int(page.evaluate("window.deepaf.frames"))  # type: ignore[attr-defined]


def test_live_page_preview_jog_autofocus_scan_viewer(browser: object, live_fast: Live, tmp_path: Path) -> None:
    live = live_fast
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.goto(live.url + "/")
    page.wait_for_function("window.deepaf.frames > 2", timeout=15000)
    # the preview rate, over 3 s of wall time (the page counts decoded frames)
    t0, n0 = page.evaluate("[performance.now(), window.deepaf.frames]")
    page.wait_for_timeout(3000)
    t1, n1 = page.evaluate("[performance.now(), window.deepaf.frames]")
    fps = (n1 - n0) / ((t1 - t0) / 1000)
    print(f"preview: {fps:.1f} fps in the browser")
    assert fps >= MIN_FPS
    page.screenshot(path=str(shots / "1-preview.png"))
    with page.expect_download() as saved:
        page.click("#snapshot")
    frame = saved.value.path()
    assert Path(frame).read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG

    # control is taken automatically by the first browser; home, then jog by key and button
    page.wait_for_selector("#role:text('you control')")
    page.click("#home")
    page.wait_for_function("document.getElementById('pos-z').textContent === '-1000.0'")
    page.select_option("#xy-step", "500")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.getElementById('pos-x').textContent === '-1500.0'")
    page.click("[data-jog='y-']")
    page.wait_for_function("document.getElementById('pos-y').textContent === '-1500.0'")
    steps = live.board.motor_steps()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # -500, then 0: the top of the travel is 0 ...
    page.wait_for_function("document.getElementById('pos-x').textContent === '-500.0'")
    assert live.board.motor_steps() != steps

    # a second browser: sees the same readout and frames, cannot move anything
    viewer = browser.new_page()  # type: ignore[attr-defined]
    viewer.goto(live.url + "/")
    viewer.wait_for_selector("#role:text('read-only')")
    viewer.wait_for_function("window.deepaf.frames > 0", timeout=15000)
    assert viewer.evaluate("document.body.classList.contains('readonly')")
    before = live.board.motor_steps()
    viewer.keyboard.press("ArrowLeft")
    viewer.wait_for_timeout(500)
    assert live.board.motor_steps() == before
    viewer.screenshot(path=str(shots / "2-read-only-viewer.png"))
    viewer.close()

    # go to tissue near focus, autofocus
    for axis in "xyz":
        page.fill(f"#go-{axis}", str(TISSUE_UM[f"{axis}_um"]))
    page.click("#go")
    page.wait_for_function(f"document.getElementById('pos-z').textContent === '{TISSUE_UM['z_um']:.1f}'")
    page.select_option("#af-strategy", "search")
    page.click("#af")
    page.wait_for_selector("#af-result:text('search: ok')", timeout=30000)
    page.screenshot(path=str(shots / "3-autofocus.png"))

    # a scan, to the end, with progress; then the viewer shows the stitched slide
    page.fill("#scan-name", "slide1")
    page.fill("#scan-area", AREA_MM)
    page.click("#scan-start")
    page.wait_for_selector("#scan-status:text('running')", timeout=20000)
    page.wait_for_function(
        "(() => { const s = window.deepaf.state.scan; return s && !s.active && s.status !== 'stitching'; })()", timeout=45000)
    scan = page.evaluate("window.deepaf.state.scan")
    assert scan["status"].startswith("complete"), scan
    assert scan["done"] == scan["plan"]["tiles"] == len(scan["tiles"]) >= 4
    assert page.evaluate("document.getElementById('scan-progress').value") == scan["plan"]["tiles"]
    # the readout after the scan: where the scan parked the stage (not 0, 0, 0: the board
    # was not reset by a reopened port), and the board is not locked
    true_um = live.board.true_position_um()
    page.wait_for_function(f"['x', 'y', 'z'].every((a, i) => Math.abs(Number(document.getElementById('pos-' + a).textContent)"
                           f" - {list(true_um)}[i]) <= 0.06)")
    assert -30300 < true_um[0] < -29850 and "locked" not in _text(page, "#board-state")
    page.screenshot(path=str(shots / "4-scan-done.png"))
    page.click("#slides a:text('slide1')")
    _viewer_shows_the_slide(page, live, "slide1")
    page.screenshot(path=str(shots / "5-viewer.png"), full_page=True)
    page.close()


#: Standard deviation of the viewer canvas' gray levels: tissue, not an empty canvas.
MIN_CANVAS_STD = 8.0
#: The viewer canvas' pixels (OpenSeadragon's canvas drawer; same-origin tiles).
CANVAS_STATS = """(() => {
  const c = window.deepaf.osd.drawer.canvas, g = c.getContext("2d");
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0, sum = 0, sq = 0;
  for (let i = 0; i < d.length; i += 4) { const v = (d[i] + d[i + 1] + d[i + 2]) / 3; n++; sum += v; sq += v * v; }
  const mean = sum / n;
  return {mean, std: Math.sqrt(Math.max(0, sq / n - mean * mean)), width: c.width, height: c.height};
})()"""


def _viewer_shows_the_slide(page: object, live: Live, name: str) -> None:
    """OpenSeadragon draws the slide's tiles: whole, then at full resolution."""
    import tifffile

    with tifffile.TiffFile(live.app[SERVER].config.out_root / name / "slide.ome.tif") as tif:
        n_levels = len(tif.series[0].levels)
        width, height = tif.series[0].levels[0].keyframe.imagewidth, tif.series[0].levels[0].keyframe.imagelength
    fully_loaded = "(() => { const i = window.deepaf.osd && window.deepaf.osd.world.getItemAt(0); return !!i && i.getFullyLoaded(); })()"
    page.wait_for_function(f"window.deepaf.viewer.name === {name!r} && window.deepaf.viewer.loaded > 0 && {fully_loaded}",  # type: ignore[attr-defined]
                           timeout=15000)
    assert page.evaluate("document.getElementById('slide-level').textContent") == f"{width} x {height} px, {n_levels} levels"  # type: ignore[attr-defined]
    stats = page.evaluate(CANVAS_STATS)  # type: ignore[attr-defined]
    assert stats["std"] > MIN_CANVAS_STD, stats
    # one slide pixel per screen pixel: the full-resolution tiles (OpenSeadragon's top level)
    max_level = page.evaluate("window.deepaf.osd.world.getItemAt(0).source.maxLevel")  # type: ignore[attr-defined]
    page.evaluate("window.deepaf.osd.viewport.zoomTo(window.deepaf.osd.viewport.imageToViewportZoom(1), null, true)")  # type: ignore[attr-defined]
    page.wait_for_function(f"window.deepaf.viewer.levels.includes({max_level}) && {fully_loaded}", timeout=15000)  # type: ignore[attr-defined]
    info = page.evaluate("window.deepaf.viewer")  # type: ignore[attr-defined]
    assert info["failed"] == 0, info
    assert page.evaluate(CANVAS_STATS)["std"] > MIN_CANVAS_STD  # type: ignore[attr-defined]
    print(f"viewer: {width} x {height} px slide, {n_levels} levels, {info['loaded']} tiles drawn")
    if (live.app[SERVER].config.out_root / name / "focus_map.png").is_file():
        page.wait_for_function("document.getElementById('slide-focusmap').naturalWidth > 0")  # type: ignore[attr-defined]


def _write_slide(folder: Path, image: np.ndarray, tile_px: int = 256) -> None:
    """``image`` as a scan folder's pyramidal OME-TIFF, written as ``stitch`` writes one."""
    from deepaf_host.wsi.ometiff import SlideMetadata, write_pyramid
    from deepaf_host.wsi.pyramid import PyramidBuilder, tile_grid

    folder.mkdir()
    shape = image.shape[:2]
    background = (243, 242, 246)
    pyramid = PyramidBuilder(shape, tile_px, tile_px, background, directory=folder)
    rows, cols = tile_grid(shape, tile_px)

    def level0() -> Iterator[np.ndarray]:
        for r in range(rows):
            for c in range(cols):
                tile = np.empty((tile_px, tile_px, 3), np.uint8)
                tile[:] = background
                part = image[r * tile_px:(r + 1) * tile_px, c * tile_px:(c + 1) * tile_px]
                tile[:part.shape[0], :part.shape[1]] = part
                pyramid.push(tile)
                yield tile

    def levels() -> Iterator[tuple[tuple[int, int], Iterator[np.ndarray]]]:
        yield shape, level0()
        for k in range(1, len(pyramid.shapes)):
            yield pyramid.shapes[k], pyramid.level_tiles(k)

    write_pyramid(folder / "slide.ome.tif", levels(), len(pyramid.shapes), SlideMetadata(0.5), tile_px=tile_px)
    pyramid.close()
    (folder / "report.json").write_text('{"status": "complete"}')


#: Patch of the canvas at 1:1 compared with the slide (mean absolute difference, 0-255,
#: at the best of a few pixels' shift): two JPEG encodings and the drawing's resampling.
MAX_PATCH_MAD = 12.0


def test_viewer_deep_zooms_a_pyramid_to_the_slides_own_pixels(browser: object, live: Live, tmp_path: Path) -> None:
    """A slide of 5 levels (2300 x 1500 px, 256 px tiles, edge tiles cropped): the viewer
    starts on a lower level and, at one slide pixel per screen pixel, draws level 0's
    pixels where they belong."""
    from deepaf_host.wsi.synthetic import specimen_texture

    shots = tmp_path / "screenshots"
    shots.mkdir()
    image = np.tile(specimen_texture(512, seed=3), (3, 5, 1))[:1500, :2300]
    _write_slide(live.app[SERVER].config.out_root / "big", image)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.goto(live.url + "/")
    page.click("#slides a:text('big')")
    _viewer_shows_the_slide(page, live, "big")
    info = page.evaluate("window.deepaf.viewer")
    max_level = page.evaluate("window.deepaf.osd.world.getItemAt(0).source.maxLevel")
    assert min(info["levels"]) < max_level - 1, info  # the whole slide came from a lower level first
    page.screenshot(path=str(shots / "viewer-1-to-1.png"), full_page=True)
    patch = np.array(page.evaluate("""(() => {
      const c = window.deepaf.osd.drawer.canvas, g = c.getContext("2d");
      const d = g.getImageData(Math.round(c.width / 2) - 24, Math.round(c.height / 2) - 24, 48, 48).data;
      return Array.from(d);
    })()"""), dtype=np.float32).reshape(48, 48, 4)[..., :3]
    cy, cx = image.shape[0] // 2, image.shape[1] // 2
    mads = {}
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            ref = image[cy - 24 + dy:cy + 24 + dy, cx - 24 + dx:cx + 24 + dx].astype(np.float32)
            mads[dy, dx] = float(np.abs(patch - ref).mean())
    best = min(mads, key=mads.__getitem__)
    print(f"viewer at 1:1: patch MAD {mads[best]:.1f} at shift {best}, {max(mads.values()):.1f} at the worst shift")
    assert mads[best] < MAX_PATCH_MAD < max(mads.values())
    page.close()


def test_page_off_loopback_works_with_the_printed_token_only(browser: object, live_token: Live) -> None:
    live = live_token
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{live.url}/?token={live.token}")
    page.wait_for_function("window.deepaf.frames > 2", timeout=15000)
    page.wait_for_selector("#role:text('you control')")
    page.click("#home")
    page.wait_for_function("document.getElementById('pos-z').textContent === '-1000.0'")
    page.close()

    stranger = browser.new_page()  # type: ignore[attr-defined]
    stranger.goto(live.url + "/")
    stranger.wait_for_selector("#conn:text('token needed')")
    steps = live.board.motor_steps()
    stranger.keyboard.press("ArrowLeft")
    stranger.click("#home", force=True)
    stranger.wait_for_timeout(1000)
    assert stranger.evaluate("window.deepaf.frames") == 0
    assert live.board.motor_steps() == steps
    stranger.close()


def _text(page: object, selector: str) -> str:
    return str(page.evaluate(f"document.querySelector({selector!r}).textContent"))  # type: ignore[attr-defined]


def test_stop_homing_and_autofocus_then_a_lost_board_and_reconnect(browser: object, live_slow: Live, tmp_path: Path) -> None:
    live = live_slow
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots: {shots}")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.goto(live.url + "/")
    page.wait_for_selector("#role:text('you control')")
    page.wait_for_function("window.deepaf.frames > 2", timeout=15000)

    # Stop motion during a homing: it ends at once, the board is locked and still
    page.click("#home")
    page.wait_for_selector("#board-state:text('homing running')")
    page.wait_for_timeout(300)
    page.click("#halt")
    page.wait_for_selector("#message:text('homing stopped')", timeout=10000)
    page.wait_for_selector("#board-state:text('locked: home or unlock')")
    assert live.board.state() == "Alarm"
    steps = live.board.motor_steps()
    page.wait_for_timeout(300)
    assert live.board.motor_steps() == steps
    page.screenshot(path=str(shots / "1-homing-stopped.png"))

    # Stop motion during an autofocus: its result says so, the board stays unlocked
    page.click("#home")
    page.wait_for_function("window.deepaf.state.busy === null && document.getElementById('board-state').textContent === 'Idle'"
                           " && document.getElementById('pos-z').textContent === '-1000.0'", timeout=20000)
    for axis in "xyz":
        page.fill(f"#go-{axis}", str(TISSUE_UM[f"{axis}_um"]))
    page.click("#go")
    page.wait_for_function(f"document.getElementById('pos-z').textContent === '{TISSUE_UM['z_um']:.1f}'", timeout=20000)
    page.select_option("#af-strategy", "search")
    seq0 = live.microscope.latest().seq  # type: ignore[union-attr]
    page.click("#af")
    deadline = time.monotonic() + 20
    while not (live.app[SERVER].busy == "autofocus" and live.microscope.latest().seq >= seq0 + 2):  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the autofocus did not start"
        time.sleep(0.01)
    page.click("#halt")
    page.wait_for_selector("#af-result:text('failed (stopped from the page)')", timeout=10000)
    page.wait_for_selector("#board-state:text('Idle')")
    assert "locked" not in _text(page, "#board-state")
    page.screenshot(path=str(shots / "2-autofocus-stopped.png"))

    # the board goes away (unplugged): the page says so, the live view stops
    live.microscope.stage.connection.serial.inject_disconnect()
    page.wait_for_selector("#conn:text('disconnected')", timeout=10000)
    page.wait_for_selector("#board-state:text('board lost')")
    assert "ConnectionLost" in _text(page, "#board-state")
    page.wait_for_selector("#pos-z:text-is('–')")  # no stale position
    # the stream only repeats its last frame once a second (a keep-alive)
    page.wait_for_function("parseFloat(document.getElementById('fps').textContent) <= 1.0", timeout=5000)
    steps = live.board.motor_steps()
    page.keyboard.press("ArrowLeft")  # a jog now is refused, nothing moves
    page.wait_for_selector("#message:text('not connected')")
    assert live.board.motor_steps() == steps
    page.screenshot(path=str(shots / "3-board-lost.png"))

    # Reconnect: connected again, a fresh readout, frames again (opening the port reset
    # the board, as an Uno's DTR reset does: it is locked until homed)
    page.click("#reconnect")
    page.wait_for_selector("#conn:text-is('connected')", timeout=15000)
    page.wait_for_selector("#board-state:text('locked: home or unlock')")
    frames = page.evaluate("window.deepaf.frames")
    page.wait_for_function(f"window.deepaf.frames > {frames + 2}", timeout=15000)
    page.screenshot(path=str(shots / "4-reconnected.png"))
    page.close()
