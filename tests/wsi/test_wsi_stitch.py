"""End to end: a synthetic scan with stage errors -> slide.ome.tif, checked against the
true tile positions and opened with tifffile, tiffslide and OpenSlide."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from deepaf_host.wsi import ScanFolder, StitchError, StitchOptions, stitch
from deepaf_host.wsi.synthetic import SyntheticSpec, write_synthetic_scan

from wsi_cases import GRID


def _level0(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tf:
        return tf.series[0].levels[0].asarray()


def test_registration_error_against_truth(stitched_grid: tuple[Path, dict]) -> None:
    d, summary = stitched_grid
    folder = ScanFolder.open(d)
    truth = folder.true_px()
    placed = np.array([[p["x_px"], p["y_px"]] for p in summary["positions"]], dtype=float)
    stage = folder.stage_px()
    pairs = [(i, j) for i in range(9) for j in range(9) if i < j and
             np.all(np.abs(truth[j] - truth[i]) < np.array([256, 192]))
             and (abs(truth[j] - truth[i])[0] < 128 or abs(truth[j] - truth[i])[1] < 96)]
    assert len(pairs) == 12  # the grid's side neighbours
    err = [np.hypot(*((placed[j] - placed[i]) - (truth[j] - truth[i]))) for i, j in pairs]
    stage_err = [np.hypot(*((stage[j] - stage[i]) - (truth[j] - truth[i]))) for i, j in pairs]
    assert np.median(err) <= 1.0 and max(err) <= 3.0, err
    assert max(stage_err) > 5.0  # the stage alone would misplace the seams
    gt = summary["ground_truth"]["seam_error_px"]
    assert gt["stitched_all_pairs"]["max"] == pytest.approx(max(err), abs=1e-3)
    assert gt["stage_only_all_pairs"]["median"] == pytest.approx(np.median(stage_err), abs=1e-3)
    assert summary["registration"]["summary"]["accepted"] == 12


def test_ome_pyramid_opens_with_tifffile(stitched_grid: tuple[Path, dict]) -> None:
    d, summary = stitched_grid
    with tifffile.TiffFile(d / "slide.ome.tif") as tf:
        assert tf.is_ome and tf.is_bigtiff
        series = tf.series[0]
        shapes = [lvl.shape for lvl in series.levels]
        assert len(shapes) >= 3
        for big, small in zip(shapes, shapes[1:]):
            assert small[:2] == (-(-big[0] // 2), -(-big[1] // 2)) and small[2] == 3
        assert [list(s[:2]) for s in shapes] == summary["levels"]
        page = tf.pages.first
        assert page.is_tiled and page.tilewidth == 512 and page.compression == tifffile.COMPRESSION.JPEG
        ome = tf.ome_metadata
    px = float(ome.split('PhysicalSizeX="')[1].split('"')[0])
    assert px == pytest.approx(GRID.pixel_size_um, rel=0.01)
    assert 'NominalMagnification="20"' in ome and 'LensNA="0.75"' in ome


def test_level0_equals_tiles_at_their_solved_positions(stitched_grid: tuple[Path, dict]) -> None:
    d, summary = stitched_grid
    mosaic = _level0(d / "slide.ome.tif").astype(np.int16)
    folder = ScanFolder.open(d)
    h, w = folder.tile_shape
    for pos, tile in zip(summary["positions"], folder.tiles):
        img = folder.read(tile).astype(np.int16)
        x, y = pos["x_px"], pos["y_px"]
        # The tile's own middle (no neighbour overlaps it): equal up to JPEG error.
        m = (slice(40, h - 40), slice(40, w - 40))
        diff = np.abs(mosaic[y:y + h, x:x + w][m] - img[m]).mean()
        assert diff < 3.0, (tile.index, diff)
        off = np.abs(mosaic[y + 2:y + 2 + h, x + 1:x + 1 + w][m] - img[m]).mean()
        assert off > 2 * diff  # a wrong position shows


def test_opens_with_tiffslide(stitched_grid: tuple[Path, dict]) -> None:
    tiffslide = pytest.importorskip("tiffslide")
    d, summary = stitched_grid
    slide = tiffslide.TiffSlide(d / "slide.ome.tif")
    try:
        assert slide.level_count >= 3
        h, w = summary["levels"][0]
        assert slide.dimensions == (w, h)
        assert float(slide.properties["tiffslide.mpp-x"]) == pytest.approx(GRID.pixel_size_um, rel=0.01)
        region = np.asarray(slide.read_region((100, 50), 0, (200, 150)).convert("RGB"))
    finally:
        slide.close()
    assert np.array_equal(region, _level0(d / "slide.ome.tif")[50:200, 100:300])


def test_opens_with_openslide(stitched_grid: tuple[Path, dict]) -> None:
    openslide = pytest.importorskip("openslide", reason="OpenSlide (openslide-python + openslide-bin) is not installed")
    d, summary = stitched_grid
    slide = openslide.OpenSlide(d / "slide.ome.tif")
    try:
        assert slide.level_count >= 3
        assert [tuple(reversed(s)) for s in summary["levels"]] == list(slide.level_dimensions)
        assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(GRID.pixel_size_um, rel=0.01)
        region = np.asarray(slide.read_region((100, 50), 0, (200, 150)).convert("RGB")).astype(np.int16)
        low = np.asarray(slide.read_region((0, 0), 2, slide.level_dimensions[2]).convert("RGB"))
    finally:
        slide.close()
    # libjpeg versions may round the YCbCr conversion differently: within a grey level or two.
    assert np.abs(region - _level0(d / "slide.ome.tif")[50:200, 100:300]).mean() < 1.5
    assert low.shape[:2] == tuple(summary["levels"][2])


def test_outputs_beside_the_slide(stitched_grid: tuple[Path, dict]) -> None:
    d, summary = stitched_grid
    thumb = cv2.imread(str(d / "thumbnail.png"))
    assert thumb.shape[:2] == tuple(summary["levels"][-1])
    lines = (d / "focus_map.csv").read_text().splitlines()
    assert lines[0].startswith("tile,row,col,x_um,y_um,z_um") and len(lines) == 10
    assert cv2.imread(str(d / "focus_map.png")) is not None
    html = (d / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http" not in html.split("</style>")[1]
    assert html.count("<tr>") == 10  # header + 9 tiles
    assert json.loads((d / "stitch.json").read_text())["slide"] == "slide.ome.tif"
    assert not [p.name for p in d.iterdir() if p.name.startswith(".slide") or p.name.startswith(".stitch-s")]


def test_a_crash_leaves_no_slide_and_the_next_run_resumes(grid_scan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "scan"
    shutil.copytree(grid_scan, d)
    from deepaf_host.wsi import compose

    calls = {"n": 0}
    real = compose.Composer._compose

    def crash(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(compose.Composer, "_compose", crash)
    with pytest.raises(KeyboardInterrupt):
        stitch(d, StitchOptions(smallest_level_px=128))
    assert not (d / "slide.ome.tif").exists()
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == [".stitch-cache.json"]
    monkeypatch.setattr(compose.Composer, "_compose", real)
    (d / ".slide.ome.tif.partial-99999").write_bytes(b"II*")  # as a killed stitch leaves it
    summary = stitch(d, StitchOptions(smallest_level_px=128))
    assert not (d / ".slide.ome.tif.partial-99999").exists()
    assert summary["resumed_from_cache"] is True
    assert (d / "slide.ome.tif").exists()
    again = stitch(d, StitchOptions(smallest_level_px=128))
    assert again.get("up_to_date") is True
    forced = stitch(d, StitchOptions(smallest_level_px=128, force=True, use_cache=False))
    assert forced["resumed_from_cache"] is False


def test_island_with_glass_and_vignetting(tmp_path: Path) -> None:
    spec = SyntheticSpec(rows=4, cols=5, tile_shape=(144, 192), tissue="island", store_glass=True, vignetting=0.25,
                         jitter_um=1.0, backlash_um=1.5, seed=5)
    d = tmp_path / "island"
    write_synthetic_scan(d, spec)
    folder = ScanFolder.open(d)
    assert any(t.empty and t.image for t in folder.tiles)  # glass frames were stored
    summary = stitch(d, StitchOptions(smallest_level_px=128))
    ff = summary["flat_field"]
    assert ff["applied"] and ff["method"] == "glass" and ff["gain_max"] > 1.15
    reg = summary["registration"]["summary"]
    assert reg["rejected"]  # glass-glass overlaps have no texture to register on
    gt = summary["ground_truth"]["seam_error_px"]["stitched_registered_pairs"]
    assert gt["median"] <= 1.0 and gt["max"] <= 3.0
    # The glass is flat after correction: corner and centre of a glass tile agree.
    mosaic = _level0(d / "slide.ome.tif").astype(float)
    pos = summary["positions"][0]  # tile 0, a corner of the scan: glass
    tile = mosaic[pos["y_px"]:pos["y_px"] + 144, pos["x_px"]:pos["x_px"] + 192, 1]
    assert abs(tile[60:84, 80:112].mean() - tile[2:14, 2:14].mean()) < 4


def test_a_scan_without_glass_takes_the_profiles_calibrated_flat_field(tmp_path: Path) -> None:
    """Tissue in every field and too few tiles to average: the scan's own estimate is
    refused; the flat field `calibrate` took on blank glass (recorded by the scan in its
    report) corrects the tiles instead. A missing or broken file is only a note."""
    from deepaf_host.wsi.synthetic import vignetting_field

    spec = SyntheticSpec(rows=3, cols=3, tile_shape=(144, 192), tissue="full", vignetting=0.3, seed=7)
    d = tmp_path / "full"
    write_synthetic_scan(d, spec)
    plain = stitch(d, StitchOptions(smallest_level_px=128, reports=False))
    assert not plain["flat_field"]["applied"]

    def corner_minus_centre(summary: dict) -> float:
        mosaic = _level0(d / "slide.ome.tif").astype(float)
        pos = summary["positions"][4]  # the middle tile
        tile = mosaic[pos["y_px"]:pos["y_px"] + 144, pos["x_px"]:pos["x_px"] + 192, 1]
        return float(tile[:20, :20].mean() - tile[62:82, 86:106].mean())

    before = corner_minus_centre(plain)
    report = json.loads((d / "report.json").read_text())
    light = np.repeat(vignetting_field(spec.tile_shape, 0.3)[..., None], 3, axis=2) * np.array([0.9, 1.0, 1.1], np.float32)
    tifffile.imwrite(tmp_path / "flat-20x.tif", light, photometric="rgb")
    report["flat_field_path"] = str(tmp_path / "flat-20x.tif")
    (d / "report.json").write_text(json.dumps(report))
    summary = stitch(d, StitchOptions(smallest_level_px=128, reports=False, force=True, use_cache=False))
    ff = summary["flat_field"]
    assert ff["applied"] and ff["method"] == "calibrated", ff
    assert 1 / 0.7 * 0.9 <= ff["gain_max"] <= 1 / 0.7 * 1.1  # corners 30 % darker
    # The vignetting is gone: a tile's corner is no longer darker than its centre.
    assert before < -10 and abs(corner_minus_centre(summary)) < 0.5 * abs(before)
    (tmp_path / "flat-20x.tif").write_bytes(b"not a tiff")
    broken = stitch(d, StitchOptions(smallest_level_px=128, reports=False, force=True, use_cache=False))
    assert not broken["flat_field"]["applied"] and "cannot be used" in broken["flat_field"]["note"]


def test_not_a_scan_folder(tmp_path: Path) -> None:
    with pytest.raises(StitchError, match="manifest"):
        stitch(tmp_path)
