"""The single-shot scan: autofocus with the shipped int8 model, on the virtual
microscope at the model's own low-res pixel size (1280 x 720 frames of the 20x view)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deepaf_host.board import VirtualBoard
from deepaf_host.errors import ModelError
from deepaf_host.model.card import ModelCard
from deepaf_host.model.runtime import card_path_for, default_model_path
from deepaf_host.optics.presets import CAMERA_MODES, get_objective, specimen_pixel_um
from deepaf_host.scan.bench import bench_area_mm, high_res_field_um
from deepaf_host.scan.manifest import MANIFEST
from deepaf_host.scan.session import ScanOptions, run_scan

#: Full-size low-res frames (what the model was trained on), small high-res stills.
CAMERA = "sim://20x?high=512x384"
#: The 20x depth of field of seed 000 (lambda n / NA^2 + n e / (M NA)), um.
DOF_UM = get_objective("20x").depth_of_field_um()


def test_the_default_model_is_shipped_and_matches_its_card() -> None:
    path = default_model_path()
    assert path.is_file(), path
    card = ModelCard.load(card_path_for(path))
    card.check_file(path)  # name and sha256
    card.check_scan("20x", specimen_pixel_um(get_objective("20x"), CAMERA_MODES["low"]))  # the virtual camera's


@pytest.fixture(scope="module")
def single_shot_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], list[dict[str, object]]]:
    """A 2 x 2 all-tissue single-shot scan (report, imaged tiles)."""
    out = tmp_path_factory.mktemp("scan") / "scan"
    area = bench_area_mm(2, 2, high_res_field_um("20x"), 0.1, (-30.0, -20.0))  # all tissue
    board = VirtualBoard(speed="max", name="e2e-default-scan")
    report = run_scan(ScanOptions(port=board.url, camera=CAMERA, out_dir=out, area_mm=area, autofocus="single-shot"))
    lines = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    return report, [r for r in lines if not r["empty"]]


def test_the_single_shot_scan_verifies_every_move_or_falls_back(
    single_shot_scan: tuple[dict[str, object], list[dict[str, object]]],
) -> None:
    report, imaged = single_shot_scan
    assert report["status"] in ("complete", "complete_with_defects")
    assert len(imaged) == 4
    assert str(report["model"]).startswith("deepaf-spatiospectral-20x.tflite@")
    for r in imaged:
        af = r["autofocus"]
        assert af["strategy"].startswith("single-shot"), af["strategy"]
        if af["strategy"] == "single-shot":  # accepted: the second frame confirmed it
            assert af["details"]["verify"]["passed"] and af["frames"] == 2
        else:  # ">search": the prediction was not trusted, and the fallback says why
            assert af["details"]["fallback_reason"]
    # Trust: whatever the model does, no tile ends up beyond the depth of field.
    errors = [float(r["focus_error_um"]) for r in imaged]  # type: ignore[arg-type]
    assert all(abs(e) <= DOF_UM for e in errors), errors


@pytest.mark.xfail(strict=True, reason="the shipped model was trained before the partially coherent optics and "
                   "misses focus by 0.8-1.8 um on them (issue 12, open), so most tiles fall back to the search; "
                   "strict: passing fails, then remove the mark and make single-shot the default strategy again")
def test_the_single_shot_scan_meets_the_bar_of_two_frames_within_half_the_depth_of_field(
    single_shot_scan: tuple[dict[str, object], list[dict[str, object]]],
) -> None:
    _, imaged = single_shot_scan
    later = [r["autofocus"]["frames"] for r in imaged[1:]]  # type: ignore[index]
    errors = [abs(float(r["focus_error_um"])) for r in imaged]  # type: ignore[arg-type]
    assert sum(later) / len(later) <= 2.2 and all(e <= DOF_UM / 2 for e in errors), (later, errors)


def test_a_model_for_another_pixel_size_is_refused_before_any_motion(board: VirtualBoard, tmp_path: Path) -> None:
    steps = board.motor_steps()
    with pytest.raises(ModelError, match="um/pixel"):
        # 640 x 360 low-res frames of the same field: pixels twice as large.
        run_scan(ScanOptions(port=board.url, camera="sim://20x?low=640x360&high=512x384", out_dir=tmp_path / "o", autofocus="single-shot"))
    assert board.motor_steps() == steps
