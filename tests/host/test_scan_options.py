"""Scan options (issue 13, item 5): the virtual slide's defaults only on sim://, a
resumed scan's plan from its folder, conflicts named by flag; and the OpenCV camera's
frame sizes: a device (or an explicitly sized file) that delivers another size is
refused, and the default pixel size follows the frame width."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from deepaf_host.camera.opencv import OpenCVCamera
from deepaf_host.errors import FrameSizeError, OptionError
from deepaf_host.scan.manifest import MANIFEST, REPORT
from deepaf_host.scan.options import (
    OPTIONS_FILE,
    VIRTUAL_Z_START_UM,
    ScanOptions,
    parse_size,
    resolve_options,
    save_options,
)

REAL = {"area_mm": "-32,-22,-28,-18", "z_start_um": -4100.0, "z_min_um": -7500.0}


@pytest.mark.parametrize(("missing", "flag"), [("area_mm", "--area"), ("z_start_um", "--z-start"), ("z_min_um", "--z-min")])
def test_a_real_port_has_no_virtual_defaults(missing: str, flag: str) -> None:
    given = {k: v for k, v in REAL.items() if k != missing}
    with pytest.raises(OptionError, match="required on a real port") as info:
        resolve_options(ScanOptions(port="/dev/ttyACM0", out_dir=Path("o"), **given))  # type: ignore[arg-type]
    assert info.value.option == flag


def test_the_virtual_port_fills_the_virtual_slide() -> None:
    o = resolve_options(ScanOptions(port="sim://", out_dir=Path("o")))
    assert o.z_start_um == VIRTUAL_Z_START_UM and o.z_min_um is None and o.area_mm
    assert (o.objective, o.autofocus, o.overlap, o.settle_s, o.max_correction_um, o.image_format) == ("20x", "search", 0.1, 0.2, 30.0, "jpg")
    # The virtual camera's objective is the scan's when --objective is not given.
    assert resolve_options(ScanOptions(port="sim://", out_dir=Path("o"), camera="sim://10x")).objective == "10x"


def _folder(tmp_path: Path, **options: object) -> Path:
    out = tmp_path / "scan"
    out.mkdir()
    (out / MANIFEST).write_text("")
    save_options(resolve_options(ScanOptions(port="sim://", out_dir=out, **options)))  # type: ignore[arg-type]
    return out


def test_resume_takes_plan_and_tunables_from_the_folder(tmp_path: Path) -> None:
    out = _folder(tmp_path, area_mm="-30,-15,-29,-14", overlap=0.2, autofocus="stack", measure="nvar",
                  camera="sim://20x?low=640x360", z_start_um=-3990.0, settle_s=0.5, low_size="640x360")
    o = resolve_options(ScanOptions(port="sim://", out_dir=out, resume=True))
    assert (o.area_mm, o.overlap, o.autofocus, o.measure, o.camera) == ("-30,-15,-29,-14", 0.2, "stack", "nvar", "sim://20x?low=640x360")
    assert (o.z_start_um, o.settle_s, o.low_size) == (-3990.0, 0.5, "640x360")
    # A tunable given again holds; a plan option given again with the same value is fine.
    o = resolve_options(ScanOptions(port="sim://", out_dir=out, resume=True, settle_s=1.0, z_start_um=-3900.0,
                                    area_mm="-29,-14,-30,-15", low_size=(640, 360)))
    assert (o.settle_s, o.z_start_um) == (1.0, -3900.0)


@pytest.mark.parametrize(
    ("given", "flag"),
    [({"area_mm": "-30,-15,-29,-13"}, "--area"), ({"overlap": 0.1}, "--overlap"), ({"autofocus": "search"}, "--autofocus"),
     ({"measure": "brenner"}, "--measure"), ({"image_format": "png"}, "--format"), ({"objective": "40x"}, "--objective")],
)
def test_resume_refuses_another_plan_by_flag(tmp_path: Path, given: dict[str, object], flag: str) -> None:
    out = _folder(tmp_path, area_mm="-30,-15,-29,-14", overlap=0.2, autofocus="stack", measure="nvar")
    with pytest.raises(OptionError) as info:
        resolve_options(ScanOptions(port="sim://", out_dir=out, resume=True, **given))  # type: ignore[arg-type]
    assert info.value.option == flag
    assert str(info.value).startswith(f"{flag}: ") and "differs from the scan being resumed" in str(info.value)


def test_resume_of_a_folder_with_only_a_report(tmp_path: Path) -> None:
    """A folder written before scan_options.json: the report's plan is the plan."""
    out = tmp_path / "old"
    out.mkdir()
    (out / MANIFEST).write_text("")
    (out / REPORT).write_text(json.dumps({"plan": {"area_mm": [-30.3, -15.9, -29.75, -15.4], "overlap": 0.1},
                                          "autofocus": "stack", "objective": "20x", "camera": "sim://20x?low=640x360"}))
    o = resolve_options(ScanOptions(port="sim://", out_dir=out, resume=True))
    assert (o.area_mm, o.autofocus, o.camera) == ("-30.3,-15.9,-29.75,-15.4", "stack", "sim://20x?low=640x360")
    with pytest.raises(OptionError, match="--area"):
        resolve_options(ScanOptions(port="sim://", out_dir=out, resume=True, area_mm="-30,-15,-29,-14"))


def test_a_saved_options_file_from_elsewhere_is_refused(tmp_path: Path) -> None:
    out = _folder(tmp_path)
    data = json.loads((out / OPTIONS_FILE).read_text())
    data["options"]["laser_power"] = 3
    (out / OPTIONS_FILE).write_text(json.dumps(data))
    with pytest.raises(OptionError, match="laser_power"):
        resolve_options(ScanOptions(port="sim://", out_dir=out, resume=True))


def test_parse_size() -> None:
    assert parse_size("1280x720", "--low-size") == (1280, 720)
    assert parse_size("640X480", "--low-size") == (640, 480)
    for bad in ("1280", "1280x", "0x720", "axb", "99999x10"):
        with pytest.raises(OptionError, match="--high-size"):
            parse_size(bad, "--high-size")


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(2):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    return path


def test_a_file_is_held_to_a_size_only_when_one_is_asked_for(video: Path) -> None:
    with OpenCVCamera(str(video), pixel_size_um=0.5, warmup_frames=0) as cam:
        assert cam.frame_shape("low") == (48, 64)  # recorded size, default modes: accepted
    with pytest.raises(FrameSizeError) as info:
        OpenCVCamera(str(video), pixel_size_um=0.5, warmup_frames=0, resolutions={"low": (1280, 720)})
    assert (info.value.mode, info.value.requested, info.value.delivered) == ("low", (1280, 720), (64, 48))
    with OpenCVCamera(str(video), pixel_size_um=0.5, warmup_frames=0, resolutions={"high": (4056, 3040)}) as cam:
        with pytest.raises(FrameSizeError, match="high mode, not the 4056x3040"):
            cam.frame_shape("high")


def test_the_pixel_size_follows_the_frame_width(video: Path) -> None:
    # 0.18 um at 1280 px wide: a 64 px wide frame of the same field has 20x larger pixels.
    with OpenCVCamera(str(video), pixel_size_um=0.18, pixel_size_width=1280, warmup_frames=0) as cam:
        assert cam.pixel_size_um("low") == pytest.approx(3.6)
