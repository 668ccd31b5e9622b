"""A scan you can trust, on the virtual microscope: a start far from focus either finds
it or stops before any tile is written, a camera that does not see Z stops the scan, a
tile focused wrongly is flagged and refocused, and what stays suspect is reported as
``complete_with_defects``. The virtual camera's true focus is the referee."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CAMERA
from deepaf_host.autofocus import FocusContext, SearchAutofocus
from deepaf_host.autofocus.base import AutofocusResult, FocusStage
from deepaf_host.board import VirtualBoard
from deepaf_host.camera.base import Camera, FrameMode
from deepaf_host.camera.virtual import VirtualCamera
from deepaf_host.errors import ScanFocusError
from deepaf_host.optics.presets import get_objective
from deepaf_host.scan import Area, ScanConfig, ScanEvents, ScanRunner, plan_tiles
from deepaf_host.scan.manifest import MANIFEST
from deepaf_host.scan.qc import image_sharpness
from deepaf_host.scan.session import open_microscope
from deepaf_host.sim import truth_of

#: The demo area: 2 x 3 tiles, 3 of them tissue.
AREA_MM = "-30.30,-15.92,-29.75,-15.62"
#: 3 x 4 tiles on the upper edge of the tissue: 7 tissue tiles.
EDGE_MM = "-30.30,-15.90,-29.75,-15.40"
HALF_DOF = get_objective("20x").depth_of_field_um() / 2


def scan(board: VirtualBoard, out: Path, area: str = AREA_MM, config: ScanConfig | None = None,
         wrap: Any = None, events: ScanEvents | None = None) -> dict[str, Any]:
    with open_microscope(board.url, CAMERA) as (stage, camera, clock, sleep, simulated):
        h, w = camera.frame_shape("high")
        p = camera.pixel_size_um("high")
        plan = plan_tiles(Area.parse_mm(area), (w * p, h * p))
        cam = wrap(camera) if wrap else camera
        runner = ScanRunner(stage, cam, plan, out, config or ScanConfig(), clock=clock, sleep=sleep,
                            simulated_clock=simulated, events=events, truth=truth_of(camera))
        return runner.run()


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def test_a_start_150_um_off_still_focuses_every_tissue_tile(board: VirtualBoard, tmp_path: Path) -> None:
    report = scan(board, tmp_path / "s", config=ScanConfig(z_start_um=-3850.0))
    imaged = [r for r in lines(tmp_path / "s") if not r["empty"]]
    assert report["status"] == "complete" and len(imaged) == 3
    assert all(abs(r["focus_error_um"]) <= HALF_DOF for r in imaged), [r["focus_error_um"] for r in imaged]
    windows = imaged[0]["initial_focus"]["windows"]
    assert len(windows) >= 2 and not windows[0]["ok"]  # the window around -3850 um had no peak
    assert report["qc"]["ok"] == 3 and report["qc"]["suspect_tiles"] == []


def test_a_start_far_from_focus_stops_before_any_tile_is_written(board: VirtualBoard, tmp_path: Path) -> None:
    out = tmp_path / "s"
    with pytest.raises(ScanFocusError, match="no focus peak") as err:
        scan(board, out, config=ScanConfig(z_start_um=-3400.0))
    assert err.value.searched_um is not None and err.value.searched_um[0] < -3600
    assert not [p for p in out.iterdir() if p.name.startswith("tile_")]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "failed" and "ScanFocusError" in report["error"]
    assert report["parked_and_released"] is True


class ZBlind(Camera):
    """The virtual camera's frames at the stage's X/Y, but always at the true focus: a
    camera that does not see the Z motor (uncoupled, or not on the microscope)."""

    def __init__(self, camera: Camera, board: VirtualBoard) -> None:
        self.camera, self.name = camera, "z-blind"
        self.virtual: VirtualCamera = getattr(camera, "camera", camera)  # inside the camera time model
        self.pose = _FixedZ(board, self.virtual)

    def grab(self, mode: FrameMode = "low") -> np.ndarray:
        inner = self.virtual._pose  # noqa: SLF001 - swap the pose source for this frame
        self.virtual._pose = self.pose  # noqa: SLF001
        try:
            return self.camera.grab(mode)
        finally:
            self.virtual._pose = inner  # noqa: SLF001

    def frame_shape(self, mode: FrameMode = "low") -> tuple[int, int]:
        return self.camera.frame_shape(mode)

    def pixel_size_um(self, mode: FrameMode = "low") -> float:
        return self.camera.pixel_size_um(mode)


@dataclass
class _FixedZ:
    board: VirtualBoard
    camera: VirtualCamera

    def true_position_um(self) -> tuple[float, float, float]:
        x, y, _ = self.board.true_position_um()
        return x, y, self.camera.true_focus_z_um(x, y)


def test_a_camera_that_does_not_see_z_stops_the_scan(board: VirtualBoard, tmp_path: Path) -> None:
    out = tmp_path / "s"
    with pytest.raises(ScanFocusError, match="do not change with Z|did not repeat"):
        scan(board, out, wrap=lambda cam: ZBlind(cam, board))
    assert not [p for p in out.iterdir() if p.name.startswith("tile_")]
    assert json.loads((out / "report.json").read_text())["status"] == "failed"


@dataclass
class MissesOneTile:
    """A strategy that finds focus and then, on the ``nth`` call, moves ``off_um`` away
    and says it is in focus (as a confidently wrong model would)."""

    nth: int
    off_um: float = 8.0
    name: str = "misses-one"
    calls: int = 0

    def run(self, stage: FocusStage, camera: Camera, start_z_um: float, context: FocusContext | None = None) -> AutofocusResult:
        self.calls += 1
        result = SearchAutofocus().run(stage, camera, start_z_um, context)
        if result.ok and self.calls == self.nth:
            pos = stage.position()
            stage.move_to(pos.x_um, pos.y_um, result.z_um + self.off_um)
            result.z_um += self.off_um
            result.strategy = self.name
        return result


def test_a_tile_focused_wrongly_is_flagged_and_refocused(board: VirtualBoard, tmp_path: Path) -> None:
    report = scan(board, tmp_path / "s", area=EDGE_MM, config=ScanConfig(autofocus=MissesOneTile(nth=5)))
    imaged = [r for r in lines(tmp_path / "s") if not r["empty"]]
    missed = [r for r in imaged if r["autofocus"]["strategy"] == "misses-one"]
    assert len(missed) == 1
    qc = missed[0]["qc"]
    assert qc["refocused"] and missed[0]["refocus"]["ok"]
    assert abs(missed[0]["focus_error_um"]) <= HALF_DOF  # the refocus put it right
    assert qc["verdict"] == "ok", qc
    assert report["status"] == "complete" and report["qc"]["refocused"] >= 1


def test_a_tile_that_stays_suspect_makes_the_scan_complete_with_defects(board: VirtualBoard, tmp_path: Path) -> None:
    report = scan(board, tmp_path / "s", area=EDGE_MM, config=ScanConfig(autofocus=MissesOneTile(nth=5), refocus=None))
    imaged = [r for r in lines(tmp_path / "s") if not r["empty"]]
    missed = next(r for r in imaged if r["autofocus"]["strategy"] == "misses-one")
    assert abs(missed["focus_error_um"]) > HALF_DOF
    assert missed["qc"]["verdict"] == "suspect" and "fine detail" in missed["qc"]["reason"]
    assert report["status"] == "complete_with_defects"
    assert [t["tile"] for t in report["qc"]["suspect_tiles"]] == [missed["tile"]]
    # Every tile more than DoF/2 from focus is flagged; the in-focus ones pass.
    for r in imaged:
        assert (r["qc"]["verdict"] != "ok") == (abs(r["focus_error_um"]) > HALF_DOF), (r["tile"], r["qc"], r["focus_error_um"])


class Explodes(ScanEvents):
    def tile_finished(self, tile: Any, record: dict[str, Any]) -> None:
        raise RuntimeError("the progress bar broke")


def test_a_listener_that_raises_never_stops_the_scan(board: VirtualBoard, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="deepaf_host.scan.runner"):
        report = scan(board, tmp_path / "s", events=Explodes())
    assert report["status"] == "complete" and report["tiles"]["done"] == 6
    assert "the progress bar broke" in caplog.text


@dataclass
class _Pose:
    xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def true_position_um(self) -> tuple[float, float, float]:
        return self.xyz


def test_image_sharpness_falls_with_defocus() -> None:
    pose = _Pose()
    camera = VirtualCamera(pose, low_size=(640, 360), high_size=(512, 384))
    x, y = -30200.0, -15700.0
    focus = camera.true_focus_z_um(x, y)
    values = []
    for dz in (0.0, 4.0, 30.0):
        pose.xyz = (x, y, focus + dz)
        values.append(image_sharpness(camera.grab("high"), 0.7))
    assert values[1].detail < 0.5 * values[0].detail
    assert values[2].contrast < 0.1 * values[0].contrast


def test_a_finished_scan_is_stitched_into_one_slide_unless_asked_not_to(board: VirtualBoard, tmp_path: Path) -> None:
    import tifffile
    from click.testing import CliRunner
    from deepaf_host.cli import main

    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["scan", "--port", board.url, "--camera", CAMERA, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "slide.ome.tif" in result.output and "seam error vs truth" in result.output
    with tifffile.TiffFile(out / "slide.ome.tif") as tif:
        assert tif.is_ome and len(tif.series[0].levels) >= 2
    report = json.loads((out / "report.json").read_text())
    assert all("true_x_um" in r for r in lines(out) if not r["empty"]) and report["status"] == "complete"

    again = tmp_path / "t"
    result = CliRunner().invoke(main, ["scan", "--port", board.url, "--camera", CAMERA, "--out", str(again), "--no-stitch"])
    assert result.exit_code == 0, result.output
    assert not (again / "slide.ome.tif").exists()


def test_focus_error_and_tile_positions_are_scored_where_the_stage_truly_was(tmp_path: Path) -> None:
    # A stage with backlash: the camera sees the true position, so that is what the
    # focus error and the stitcher's truth must be measured at (not the commanded one).
    out = tmp_path / "s"
    with open_microscope("sim://?speed=max&play_um=20,20,4", CAMERA) as (stage, camera, clock, sleep, simulated):
        h, w = camera.frame_shape("high")
        p = camera.pixel_size_um("high")
        plan = plan_tiles(Area.parse_mm(AREA_MM), (w * p, h * p))
        report = ScanRunner(stage, camera, plan, out, ScanConfig(), clock=clock, sleep=sleep, simulated_clock=simulated, truth=truth_of(camera)).run()
    imaged = [r for r in lines(out) if not r["empty"]]
    assert report["status"] == "complete" and imaged
    offsets = [abs(r["true_x_um"] - r["x_um"]) + abs(r["true_y_um"] - r["y_um"]) for r in imaged]
    assert max(offsets) > 5.0  # the X/Y backlash shows in the truth
    assert all(abs(r["focus_error_um"]) <= HALF_DOF for r in imaged), [r["focus_error_um"] for r in imaged]


def test_registration_on_the_virtual_microscope_with_stage_errors(tmp_path: Path) -> None:
    # A GRBL leadscrew stage's errors (backlash, repeatability, skew), its backlash
    # compensated as `deepaf-host calibrate` measures it; the stitcher is scored against
    # where each tile truly was (issue 14: median <= 1 px, max <= 3 px).
    from deepaf_host.scan.bench import bench_area_mm, high_res_field_um
    from deepaf_host.wsi import StitchOptions, stitch

    out = tmp_path / "s"
    area = bench_area_mm(3, 2, high_res_field_um("20x"), 0.1, (-30.0, -20.0))
    with open_microscope("sim://?speed=max&errors=leadscrew", CAMERA) as (stage, camera, clock, sleep, simulated):
        stage.backlash_um = (20.0, 20.0, 4.0)
        h, w = camera.frame_shape("high")
        p = camera.pixel_size_um("high")
        plan = plan_tiles(Area.parse_mm(area), (w * p, h * p))
        ScanRunner(stage, camera, plan, out, ScanConfig(), clock=clock, sleep=sleep, simulated_clock=simulated, truth=truth_of(camera)).run()
    summary = stitch(out, StitchOptions(smallest_level_px=128))
    seams = summary["ground_truth"]["seam_error_px"]
    assert seams["stitched_all_pairs"]["median"] <= 1.0 and seams["stitched_all_pairs"]["max"] <= 3.0, seams
    assert seams["stage_only_all_pairs"]["max"] > 3.0  # the stage alone would show seams
    assert summary["registration"]["summary"]["accepted"] == summary["registration"]["summary"]["pairs"]


@dataclass
class StopsShort:
    """Finds focus, but the stage stops ``off_um`` short of it (a Z drive that does not
    return exactly): the result says the right z, the stage is elsewhere."""

    off_um: float = 1.5
    name: str = "stops-short"

    def run(self, stage: FocusStage, camera: Camera, start_z_um: float, context: FocusContext | None = None) -> AutofocusResult:
        result = SearchAutofocus().run(stage, camera, start_z_um, context)
        if result.ok:
            pos = stage.position()
            stage.move_to(pos.x_um, pos.y_um, result.z_um + self.off_um)
        return result


def test_a_stage_that_stops_short_of_focus_is_sent_back_onto_it(board: VirtualBoard, tmp_path: Path) -> None:
    report = scan(board, tmp_path / "s", config=ScanConfig(autofocus=StopsShort()))
    imaged = [r for r in lines(tmp_path / "s") if not r["empty"]]
    assert report["status"] == "complete"
    for r in imaged:
        assert r["confirm"]["ok"] and r["confirm"]["frames"] == 2, r["confirm"]  # the first look was off; re-approached
        assert r["confirm"]["ratios"][0] < 0.95 <= r["confirm"]["ratios"][1]
        assert abs(r["focus_error_um"]) <= HALF_DOF
    no_check = scan(board, tmp_path / "t", config=ScanConfig(autofocus=StopsShort(), confirm_retries=-1))
    off = [r for r in lines(tmp_path / "t") if not r["empty"]]
    assert no_check["status"] == "complete" and all(abs(r["focus_error_um"]) > 1.0 for r in off)  # what it prevents


def test_a_rotated_camera_is_turned_back_by_its_calibrated_rotation(board: VirtualBoard, tmp_path: Path) -> None:
    # The camera sits 1 degree off the stage's axes; the profile holds what calibrate
    # measured; the scan records it and the stitcher turns tiles and positions back.
    from click.testing import CliRunner
    from deepaf_host.cli import main
    from deepaf_host.scan.bench import bench_area_mm, high_res_field_um
    from deepaf_host.wsi import StitchOptions, stitch

    camera = "sim://20x?low=640x360&high=512x384&rotation_deg=1.0"
    profile = tmp_path / "p.toml"
    profile.write_text(f'[microscope]\nport = "{board.url}"\ncamera = "{camera}"\n[objectives.20x]\nrotation_deg = 1.0\n')
    area = bench_area_mm(3, 2, high_res_field_um("20x"), 0.1, (-30.0, -20.0))
    out = tmp_path / "s"
    result = CliRunner().invoke(main, ["scan", "--profile", str(profile), "--area", area, "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "stitch.json").read_text())
    assert summary["rotation_deg_applied"] == 1.0
    turned = summary["ground_truth"]["seam_error_px"]["stitched_all_pairs"]
    assert turned["median"] <= 1.0 and turned["max"] <= 3.0, turned
    unturned = stitch(out, StitchOptions(rotation_deg=0.0, force=True, smallest_level_px=128))
    assert unturned["ground_truth"]["seam_error_px"]["stitched_all_pairs"]["median"] > 3.0  # what it corrects
