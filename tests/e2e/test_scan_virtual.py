"""End-to-end scans on the virtual microscope: a complete scan, a disconnect in the
middle of an autofocus that --resume completes with no tile lost or duplicated, and
clear errors with no motion for a bad port, a missing camera, an area outside the
travel and a stage that is not homed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import CAMERA
from deepaf_host.board import VirtualBoard
from deepaf_host.camera.base import Camera, FrameMode
from deepaf_host.cli import main
from deepaf_host.errors import ConnectionLost
from deepaf_host.scan import Area, ScanConfig, ScanRunner, plan_tiles
from deepaf_host.scan.manifest import MANIFEST
from deepaf_host.scan.session import ScanOptions, open_microscope, run_scan
from deepaf_host.sim import truth_of

#: 3 x 4 tiles on the upper edge of the tissue: 7 tissue tiles, 5 of glass.
AREA_MM = "-30.30,-15.90,-29.75,-15.40"
#: Serial reads into the scan at which Ctrl-C lands in the Ctrl-C test: tile 4 of 12
#: (a full scan of AREA_MM makes about 1,570; about 100 per tissue tile).
READS = 1050


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


class PullsTheCable(Camera):
    """Passes frames through; at the Nth low-res grab the serial link breaks."""

    def __init__(self, camera: Camera, port: object, after_grabs: int) -> None:
        self.camera, self.port, self.left = camera, port, after_grabs
        self.name = camera.name

    def grab(self, mode: FrameMode = "low") -> np.ndarray:
        if mode == "low":
            self.left -= 1
            if self.left == 0:
                self.port.inject_disconnect()  # type: ignore[attr-defined]
        return self.camera.grab(mode)

    def frame_shape(self, mode: FrameMode = "low") -> tuple[int, int]:
        return self.camera.frame_shape(mode)

    def pixel_size_um(self, mode: FrameMode = "low") -> float:
        return self.camera.pixel_size_um(mode)

    def true_focus_z_um(self, x_um: float, y_um: float) -> float:
        return self.camera.true_focus_z_um(x_um, y_um)  # type: ignore[attr-defined]


def test_disconnect_mid_autofocus_then_resume_completes_without_loss_or_duplicates(board: VirtualBoard, tmp_path: Path) -> None:
    out = tmp_path / "scan"
    with open_microscope(board.url, CAMERA) as (stage, camera, clock, sleep, simulated):
        h, w = camera.frame_shape("high")
        p = camera.pixel_size_um("high")
        plan = plan_tiles(Area.parse_mm(AREA_MM), (w * p, h * p))
        # Frame 50: in the autofocus of the third tissue tile (the first one takes the
        # low-res frame, the 25-plane initial focus and a 13-plane stack).
        cam = PullsTheCable(camera, stage.connection.serial, after_grabs=50)
        runner = ScanRunner(stage, cam, plan, out, ScanConfig(), clock=clock, sleep=sleep, simulated_clock=simulated, truth=truth_of(cam))
        with pytest.raises(ConnectionLost):
            runner.run()
    first = manifest(out)
    assert 2 <= len(first) < len(plan.tiles)
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and "ConnectionLost" in report["error"]
    assert report["parked_and_released"] is False  # the cable is gone: nothing could be sent

    # Reconnect (the board resets and must be homed again) and resume.
    report = run_scan(ScanOptions(port=board.url, camera=CAMERA, out_dir=out, area_mm=AREA_MM, autofocus="stack", resume=True))
    lines = manifest(out)
    assert [r["tile"] for r in lines] == list(range(len(plan.tiles)))  # none lost, none twice
    assert lines[: len(first)] == first  # finished tiles were not imaged again
    assert report["status"] == "complete" and report["tiles"]["this_run"] == len(plan.tiles) - len(first)
    assert report["parked_and_released"] is True
    images = sorted(p.name for p in out.iterdir() if p.name.startswith("tile_"))
    assert images == sorted(r["image"] for r in lines if r["image"])
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    imaged = [r for r in lines if not r["empty"]]
    assert len(imaged) == 7
    half_dof = 0.49
    assert all(abs(r["focus_error_um"]) <= half_dof for r in imaged), [r["focus_error_um"] for r in imaged]
    for r in imaged:
        assert r["autofocus"]["ok"] and r["focus_source"] == "autofocus"
        assert set(r["timings_s"]) >= {"move", "settle", "low_capture", "autofocus", "inference", "high_capture", "write"}
        img = cv2.imread(str(out / r["image"]))
        assert img is not None and img.shape[:2] == (384, 512)


def _cli(args: list[str]) -> tuple[int, str]:
    # The reduced CAMERA's low-res pixels are twice the model's: the stack autofocus.
    result = CliRunner().invoke(main, ["scan", "--autofocus", "stack", *args])
    return result.exit_code, result.output


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(2):
        writer.write(np.full((48, 64, 3), 200, np.uint8))
    writer.release()
    return path


def test_bad_port_is_a_clear_error(video: Path, tmp_path: Path) -> None:
    code, out = _cli(["--port", "/dev/ttyNOPE", "--camera", str(video), "--pixel-size-um", "0.2", "--out", str(tmp_path / "o"),
                      "--area", "-32,-22,-28,-18", "--z-start", "-4100", "--z-min", "-7500"])
    # A refusal before the scan started: exit status 2, --out not created.
    assert code == 2 and "--port: cannot open port '/dev/ttyNOPE'" in out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--camera", "/dev/video99"], "camera '/dev/video99': no such device or file"),
        (["--camera", CAMERA, "--area", "1,1,2,2"], "outside the stage travel (X -60 to 0 mm, Y -40 to 0 mm)"),
        (["--camera", CAMERA, "--area", AREA_MM, "--no-home"], "the stage is not homed"),
        (["--camera", CAMERA, "--area", AREA_MM, "--z-min", "-3000"], "-4000 um is below --z-min -3000 um"),
    ],
    ids=["missing-camera", "area-out-of-travel", "unhomed", "z-safety"],
)
def test_errors_are_clear_and_nothing_moves(board: VirtualBoard, tmp_path: Path, args: list[str], message: str) -> None:
    steps = board.motor_steps()
    code, out = _cli(["--port", board.url, "--out", str(tmp_path / "o"), *args])
    assert code == 2, out  # refused before the scan started
    assert message in " ".join(out.split()), out
    assert board.motor_steps() == steps  # not a single step
    m = tmp_path / "o" / MANIFEST
    assert not m.exists() or m.read_text() == ""


def test_a_used_folder_needs_resume(board: VirtualBoard, tmp_path: Path) -> None:
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / MANIFEST).write_text("")
    steps = board.motor_steps()
    code, out = _cli(["--port", board.url, "--camera", CAMERA, "--out", str(tmp_path / "o")])
    assert code == 2 and "--resume" in out
    assert board.motor_steps() == steps


def test_ctrl_c_while_waiting_for_a_reply_parks_and_releases(board: VirtualBoard, tmp_path: Path) -> None:
    """Ctrl-C lands while the host waits for the board's reply to a motion line."""
    out = tmp_path / "scan"
    with open_microscope(board.url, CAMERA) as (stage, camera, clock, sleep, simulated):
        h, w = camera.frame_shape("high")
        p = camera.pixel_size_um("high")
        plan = plan_tiles(Area.parse_mm(AREA_MM), (w * p, h * p))
        port = stage.connection.serial
        original_read = port.read
        calls = {"n": 0}

        def read(size: int = 1) -> bytes:
            calls["n"] += 1
            if calls["n"] == READS:  # well into the scan, mid-exchange
                raise KeyboardInterrupt
            return original_read(size)

        port.read = read  # type: ignore[method-assign]
        runner = ScanRunner(stage, camera, plan, out, ScanConfig(), clock=clock, sleep=sleep, simulated_clock=simulated, truth=truth_of(camera))
        with pytest.raises(KeyboardInterrupt):
            runner.run()
        report = json.loads((out / "report.json").read_text())
        assert report["status"] == "interrupted"
        assert report["parked_and_released"] is True
        assert calls["n"] > READS  # the cleanup talked to the board after the interrupt
        z_last = stage.position().z_um
    done = manifest(out)
    assert 2 <= len(done) < len(plan.tiles)
    # Parked: Z lifted (away from the slide) well above every tile's focus.
    assert z_last >= max(r["z_um"] for r in done) + 400.0
