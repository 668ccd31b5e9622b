"""The scan runner's bookkeeping on the fake microscope: manifest, resume, cleanup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deepaf_host.errors import ConfigError
from deepaf_host.scan import (
    Area,
    Manifest,
    ScanConfig,
    ScanEvents,
    ScanRunner,
    plan_tiles,
)
from deepaf_host.scan.manifest import MANIFEST
from fakescope import FakeCamera, FakeStage

FOCUS = -4002.0


def make(tmp_path: Path, blank_x_above: float = -29700.0) -> tuple[FakeStage, FakeCamera, ScanRunner]:
    stage = FakeStage()
    cam = FakeCamera(stage, FOCUS, blank_where=lambda x, y: x > blank_x_above)
    plan = plan_tiles(Area(-30400, -20200, -29600, -19800), (256 * 0.5 * 2, 256 * 0.5 * 2))
    cfg = ScanConfig(z_start_um=-4000.0, settle_s=0.1, image_format="png")
    return stage, cam, ScanRunner(stage, cam, plan, tmp_path, cfg, clock=stage.clock, sleep=stage.sleep, simulated_clock=True,
                                    truth=cam)


class Recorder(ScanEvents):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def scan_started(self, plan, done):  # type: ignore[no-untyped-def]
        self.calls.append(f"started:{done}")

    def tile_resumed(self, tile, record):  # type: ignore[no-untyped-def]
        self.calls.append(f"resumed:{tile.index}")

    def tile_started(self, tile):  # type: ignore[no-untyped-def]
        self.calls.append(f"tile:{tile.index}")

    def tile_finished(self, tile, record):  # type: ignore[no-untyped-def]
        self.calls.append(f"done:{tile.index}")

    def scan_finished(self, report):  # type: ignore[no-untyped-def]
        self.calls.append(f"finished:{report['status']}")


def read_manifest(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / MANIFEST).read_text().splitlines()]


def test_a_scan_writes_images_manifest_and_report(tmp_path: Path) -> None:
    stage, _cam, runner = make(tmp_path)
    rec = Recorder()
    runner.events = rec
    report = runner.run()
    n = len(runner.plan.tiles)
    lines = read_manifest(tmp_path)
    assert [r["tile"] for r in lines] == list(range(n))
    empty = [r for r in lines if r["empty"]]
    imaged = [r for r in lines if not r["empty"]]
    assert empty and imaged  # the +x column is glass
    for r in lines:
        assert set(r) >= {"tile", "x_um", "y_um", "z_um", "tissue_fraction", "empty", "autofocus", "timings_s", "image", "true_focus_z_um"}
    for r in empty:
        assert r["image"] is None and r["autofocus"] is None and r["tissue_fraction"] < 0.02
    for r in imaged:
        assert (tmp_path / r["image"]).is_file()
        assert r["autofocus"]["strategy"] == "stack" and r["autofocus"]["frames"] > 0
        assert r["focus_source"] == "autofocus"
        assert abs(r["focus_error_um"]) < 0.5
        assert set(r["timings_s"]) >= {"move", "settle", "low_capture", "tissue", "autofocus", "inference", "high_capture", "write", "total"}
        assert r["timings_s"]["settle"] == pytest.approx(0.1)
    # The first tissue tile ran the coarse initial focus; the others started from a neighbour.
    assert "initial_focus" in imaged[0] and all("initial_focus" not in r for r in imaged[1:])
    assert report["status"] == "complete" and report["tiles"]["done"] == n
    assert report["tiles"]["empty"] == len(empty)
    assert json.loads((tmp_path / "report.json").read_text())["status"] == "complete"
    assert stage.released and stage.homed
    assert stage.z == pytest.approx(lines[-1]["z_um"] + 500.0)  # parked: Z lifted, away from the slide
    assert rec.calls[0] == "started:0" and rec.calls[-1] == "finished:complete"
    assert rec.calls.count("tile:0") == 1


def test_a_used_folder_needs_resume(tmp_path: Path) -> None:
    make(tmp_path)[2].run()
    with pytest.raises(ConfigError, match="--resume"):
        make(tmp_path)[2].run()


def test_an_error_mid_scan_cleans_up_and_resume_finishes_without_duplicates(tmp_path: Path) -> None:
    stage, _cam, runner = make(tmp_path)
    stage.fail_after_moves = 40  # the cable is pulled in the middle of the scan
    rec = Recorder()
    runner.events = rec
    with pytest.raises(ConnectionError):
        runner.run()
    first = read_manifest(tmp_path)
    assert 0 < len(first) < len(runner.plan.tiles)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "failed" and "cable pulled" in report["error"]
    assert rec.calls[-1] == "finished:failed"
    # Simulate a crash in the middle of the next append: a partial line.
    with open(tmp_path / MANIFEST, "a") as f:
        f.write('{"tile": 99, "x_u')
    _, _, runner2 = make(tmp_path)
    runner2.resume = True
    rec2 = Recorder()
    runner2.events = rec2
    report2 = runner2.run()
    lines = read_manifest(tmp_path)
    assert [r["tile"] for r in lines] == list(range(len(runner.plan.tiles)))
    assert lines[: len(first)] == first  # finished tiles were not imaged again
    assert [c for c in rec2.calls if c.startswith("resumed")] == [f"resumed:{i}" for i in range(len(first))]
    assert report2["status"] == "complete" and report2["tiles"]["this_run"] == len(lines) - len(first)
    images = sorted(p.name for p in tmp_path.glob("tile_*"))
    assert images == sorted(r["image"] for r in lines if r["image"])


def test_ctrl_c_parks_releases_and_reports(tmp_path: Path) -> None:
    stage, _cam, runner = make(tmp_path)

    class Interrupt(ScanEvents):
        def tile_finished(self, tile, record):  # type: ignore[no-untyped-def]
            if tile.index == 2:
                raise KeyboardInterrupt

    runner.events = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert stage.released
    assert json.loads((tmp_path / "report.json").read_text())["status"] == "interrupted"
    assert len(read_manifest(tmp_path)) == 3


def test_manifest_refuses_a_duplicate_tile(tmp_path: Path) -> None:
    m = Manifest.open(tmp_path, resume=False)
    m.append({"tile": 0, "image": None})
    with pytest.raises(ConfigError, match="already"):
        m.append({"tile": 0, "image": None})
    m.close()


def test_resume_refuses_another_plan(tmp_path: Path) -> None:
    stage, _cam, runner = make(tmp_path)
    stage.fail_after_moves = 20
    with pytest.raises(ConnectionError):
        runner.run()
    stage2, cam2, runner2 = make(tmp_path)
    other = plan_tiles(Area(-30400, -20200, -29000, -19800), (256.0, 256.0))
    runner2 = ScanRunner(stage2, cam2, other, tmp_path, runner2.config, resume=True, clock=stage2.clock, sleep=stage2.sleep,
                         truth=cam2)
    with pytest.raises(ConfigError, match="was planned as"):
        runner2.run()
    assert not stage2.moves and not stage2.homed
