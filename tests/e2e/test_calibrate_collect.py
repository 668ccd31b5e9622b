"""Calibrate and collect end to end on the virtual microscope (issue 15 items 2-3).

Calibrate must recover what the virtual microscope was given -- pixel size within 1 %,
camera rotation within 0.2 degrees, Z backlash within 1 um -- on a stage with the
errors of a lead-screw GRBL stage (repeatability, XY play, skew). Collect must write a
dataset that ``eval --model stack`` and the training loader take, with labels near the
true focus, and resume after an interruption without a stack lost or taken twice."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from deepaf_host.calibrate.measure import corner_falloff
from deepaf_host.camera.virtual import VirtualCamera
from deepaf_host.cli import main
from deepaf_host.collect import Collector, CollectPlan
from deepaf_host.model.train.data import extract_patches, iter_stacks
from deepaf_host.optics.presets import get_objective
from deepaf_host.scan.session import open_microscope
from deepaf_host.stacks import open_stacks

ROTATION_DEG = -1.7
Z_PLAY_UM = 6.5
#: relay 1.2 instead of 1.36: a pixel size no preset has.
CAMERA = f"sim://20x?low=320x180&high=320x240&relay=1.2&rotation_deg={ROTATION_DEG}"
PORT = f"sim://?speed=max&errors=leadscrew&play_um=20,20,{Z_PLAY_UM}&error_seed=3"


class _At:
    def __init__(self, x: float, y: float, z: float) -> None:
        self.pose = (x, y, z)

    def true_position_um(self) -> tuple[float, float, float]:
        return self.pose


def test_calibrate_recovers_the_injected_pixel_size_rotation_and_backlash(tmp_path: Path) -> None:
    profile = tmp_path / "scope" / "profile.toml"
    out = tmp_path / "calibration.json"
    result = CliRunner().invoke(main, ["calibrate", "--port", PORT, "--camera", CAMERA, "--profile", str(profile), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "before" in result.output and "after" in result.output and f"wrote {profile}" in result.output
    measured = json.loads(out.read_text())
    truth = VirtualCamera.from_url(CAMERA, _At(0, 0, 0))
    assert measured["pixel_size_um"] == pytest.approx(truth.pixel_size_um("low"), rel=0.01)
    assert measured["high_pixel_size_um"] == pytest.approx(truth.pixel_size_um("high"), rel=0.02)
    assert measured["rotation_deg"] == pytest.approx(ROTATION_DEG, abs=0.2)
    assert measured["skew_deg"] == pytest.approx(0.3, abs=0.2)  # errors=leadscrew
    assert measured["z_backlash_um"] == pytest.approx(Z_PLAY_UM, abs=1.0)
    assert measured["xy_backlash_um"] == pytest.approx([20.0, 20.0], abs=5.0)
    # the profile holds it, with the flat field and blank image beside it
    doc = tomllib.loads(profile.read_text())
    table = doc["objectives"]["20x"]
    assert table["pixel_size_um"] == pytest.approx(measured["pixel_size_um"], rel=1e-4)
    assert table["rotation_deg"] == pytest.approx(measured["rotation_deg"], abs=1e-3)
    assert doc["stage"]["backlash_um"][2] == pytest.approx(measured["z_backlash_um"], abs=1e-2)
    assert doc["microscope"]["port"] == PORT and "# camera index" in profile.read_text()
    flat = tifffile.imread(profile.parent / table["flat_field"])
    assert flat.shape == (240, 320, 3) and flat.mean(axis=(0, 1)) == pytest.approx([1, 1, 1], abs=1e-3)
    gx, gy = measured["glass_um"]
    clean = VirtualCamera.from_url(CAMERA + "&noise=0", _At(gx, gy, measured["focus_z_um"])).grab("high")
    assert corner_falloff(flat) == pytest.approx(corner_falloff(clean.astype(np.float32)), abs=0.015)
    assert (profile.parent / table["blank_image"]).exists()
    shown = CliRunner().invoke(main, ["profile", "show", str(profile)])
    assert shown.exit_code == 0 and json.loads(shown.output)["objectives"]["20x"]["blank_image"].endswith("blank-20x.png")


#: Across the upper edge of the virtual slide's tissue: glass and tissue.
AREA = "-31,-17,-29,-14"
COLLECT_CAMERA = "sim://20x?low=320x270"


def _plan(fields: int) -> CollectPlan:
    return CollectPlan(area_mm=AREA, fields=fields, z_um=(-3.0, 3.0, 0.5), objective="20x", size=(256, 256), seed=1,
                       settle_s=0.0, provenance={"port": "sim://"})


def test_collect_writes_a_dataset_that_eval_and_training_read_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "stacks"

    def stop_after_two(done: int, total: int, record: dict) -> None:
        if done == 2:
            raise KeyboardInterrupt

    # Ctrl-C after the second stack (a progress callback that raises is otherwise ignored)
    with open_microscope("sim://?speed=max", COLLECT_CAMERA) as (stage, camera, clock, sleep, _):
        stage.home()
        with pytest.raises(KeyboardInterrupt):
            Collector(stage, camera, _plan(3), out, sleep=sleep, clock=clock, progress=stop_after_two).run()
    assert len(open_stacks(out)) == 2
    refused = CliRunner().invoke(main, ["collect", "--port", "sim://?speed=max", "--camera", COLLECT_CAMERA, "--out", str(out),
                                        "--fields", "3", "--z=-3:3:0.5", "--size", "256x256", "--seed", "1", "--area", AREA])
    assert refused.exit_code == 2 and "--resume" in refused.output
    other = CliRunner().invoke(main, ["collect", "--port", "sim://?speed=max", "--camera", COLLECT_CAMERA, "--out", str(out),
                                      "--fields", "3", "--z=-3:3:0.25", "--size", "256x256", "--seed", "1", "--area", AREA, "--resume"])
    assert other.exit_code == 2 and "z_um" in other.output
    result = CliRunner().invoke(main, ["collect", "--port", "sim://?speed=max", "--camera", COLLECT_CAMERA, "--out", str(out),
                                       "--fields", "3", "--z=-3:3:0.5", "--size", "256x256", "--seed", "1", "--area", AREA,
                                       "--settle", "0", "--resume"])
    assert result.exit_code == 0, result.output
    data = open_stacks(out)
    assert len(data) == 3 and len({r.extra["field"] for r in data}) == 3 and len({r.file for r in data}) == 3
    journal = [json.loads(line) for line in (out / "collect.jsonl").read_text().splitlines()]
    assert len({j["field"] for j in journal}) == len(journal)  # no place visited twice
    truth = VirtualCamera.from_url(COLLECT_CAMERA, _At(0, 0, 0))
    dof = get_objective("20x").depth_of_field_um()
    for record in data:
        assert record.source == "collected" and record.objective == "20x/0.75" and record.extra["approach"] == "down"
        assert record.pixel_size_um == pytest.approx(truth.pixel_size_um("low"), rel=1e-4)
        assert list(record.z_um) == sorted(record.z_um) and record.planes == 13
        assert data.load(record).shape == (13, 256, 256, 3)
        true_focus = truth.true_focus_z_um(record.extra["x_um"], record.extra["y_um"])
        assert abs(record.focus_z_um - true_focus) < dof / 2  # labelled by its own focus curve, sub-plane
        assert min(record.z_um) < record.focus_z_um < max(record.z_um)
    # the glass in the area was skipped, never stacked
    assert any(j.get("skipped") == "glass" for j in journal)
    assert all(j["tissue_fraction"] >= 0.5 for j in journal if "stack" in j)
    # eval's stack reference and the training loader take it
    ev = CliRunner().invoke(main, ["eval", "--data", str(out), "--model", "stack"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.output)["n_images"] == 3
    patches = extract_patches(iter_stacks([out]), patch_size=64, patches_per_plane=2)
    assert patches.patches.shape[1:] == (64, 64, 3) and len(set(patches.stack.tolist())) == 3
