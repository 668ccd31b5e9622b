"""Two-shot refocusing (seed 003, TSVA): two-shot pairs, shot ordering by Brenner's
gradient, the two-input runtime, ``scan --two-shot`` taking the second shot of the tiles
it could not verify, and ``deepaf-host refocus --two-shot`` fusing them, with a tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from deepaf_host.cli import main
from deepaf_host.errors import ConfigError, ModelError
from deepaf_host.refocus.card import TWO_SHOT_SEPARATION_UM, RefocusCard
from deepaf_host.focus.measures import brenner, gray
from deepaf_host.refocus.metrics import order_shots, ssim
from deepaf_host.refocus.pairs import iter_pair_sets
from deepaf_host.refocus.runtime import RefocusModel
from deepaf_host.scan.manifest import MANIFEST
from deepaf_host.scan.timing import PI_HQ_TIMING

DATA = Path(__file__).parent / "data"
TINY_TSVA = DATA / "tiny-tsva.tflite"
TINY = DATA / "tiny-refocus.tflite"


def _frame(seed: int, h: int = 100, w: int = 130, blur: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), blur)


def test_two_shot_pairs_hold_the_tile_and_a_shot_one_separation_away() -> None:
    dz = np.array([0.0, 2.0, -3.0, 4.0, -1.0, 2.5])
    sets = list(iter_pair_sets(seed=7, slides=1, fields_per_slide=2, planes_per_field=0, shape=(48, 48), dz_fixed=dz,
                               separation_um=TWO_SHOT_SEPARATION_UM))
    signs = []
    for ps in sets:
        assert ps.inputs.shape == (6, 2, 48, 48, 3) and ps.second_dz_um is not None
        assert np.array_equal(ps.dz_um, dz)
        step = ps.second_dz_um - ps.dz_um
        assert np.allclose(np.abs(step), TWO_SHOT_SEPARATION_UM)
        signs.extend(np.sign(step))
        # The in-focus tile is closer to the truth than its second shot, 1 um away.
        assert ssim(ps.inputs[0, 0], ps.truth) > ssim(ps.inputs[0, 1], ps.truth)
    assert set(signs) == {-1.0, 1.0}  # above and below, at random
    # As the scan takes it (and TSVA's "prefixed focal distances"): always above (+Z).
    for ps in iter_pair_sets(seed=7, slides=1, fields_per_slide=2, planes_per_field=0, shape=(48, 48), dz_fixed=dz,
                             separation_um=TWO_SHOT_SEPARATION_UM, second_side="above"):
        assert ps.second_dz_um is not None and np.allclose(ps.second_dz_um - ps.dz_um, TWO_SHOT_SEPARATION_UM)
    with pytest.raises(ConfigError, match="second_side"):
        next(iter_pair_sets(seed=7, slides=1, fields_per_slide=1, planes_per_field=1, shape=(48, 48),
                            separation_um=TWO_SHOT_SEPARATION_UM, second_side="below"))


def test_the_sharper_shot_goes_first() -> None:
    sharp = _frame(1, blur=0.8)
    soft = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    assert brenner(gray(sharp)) > brenner(gray(soft))
    a, b, swapped = order_shots(soft, sharp)
    assert swapped and a is sharp and b is soft
    a, b, swapped = order_shots(sharp, soft)
    assert not swapped and a is sharp
    # The "tile" order keeps the tile first, however sharp its second shot.
    a, b, swapped = order_shots(soft, sharp, "tile")
    assert not swapped and a is soft and b is sharp
    with pytest.raises(ValueError, match="shot order"):
        order_shots(soft, sharp, "random")


def test_a_tile_first_card_feeds_the_tile_first(tmp_path: Path) -> None:
    """The card's order reaches the network: with "tile" the tile is Y1 even when its
    second shot is sharper, so the output differs from the Brenner-ordered one."""
    brenner_model = RefocusModel.load(TINY_TSVA)
    card = json.loads(TINY_TSVA.with_suffix(".json").read_text())
    shutil.copy(TINY_TSVA, tmp_path / TINY_TSVA.name)
    (tmp_path / TINY_TSVA.with_suffix(".json").name).write_text(json.dumps({**card, "order": "tile"}))
    tile_model = RefocusModel.load(tmp_path / TINY_TSVA.name)
    soft, sharp = _frame(6, blur=2.0), _frame(6, blur=0.8)
    assert np.array_equal(brenner_model.network_tiled(soft, sharp), brenner_model.network_tiled(sharp, soft))
    assert np.array_equal(tile_model.network_tiled(sharp, soft), brenner_model.network_tiled(sharp, soft))
    assert not np.array_equal(tile_model.network_tiled(soft, sharp), brenner_model.network_tiled(soft, sharp))
    assert not tile_model.refocus(soft, second=sharp).swapped and brenner_model.refocus(soft, second=sharp).swapped


def test_two_shot_runtime_tiles_without_seams_and_needs_both_shots() -> None:
    model = RefocusModel.load(TINY_TSVA)
    assert model.shots == 2 and model.card.separation_um == TWO_SHOT_SEPARATION_UM
    tile, second = _frame(3), _frame(4)
    out = model.network_tiled(tile, second)
    assert out.shape == tile.shape and np.array_equal(out, model.full_frame(tile, second))
    # The inputs are ordered by sharpness, so the order they are given in does not matter.
    assert np.array_equal(out, model.network_tiled(second, tile))
    # Both shots count: another second shot, another output.
    assert np.abs(model.network_tiled(tile, _frame(5)).astype(int) - out).mean() > 0.5
    with pytest.raises(ModelError, match="needs the second shot"):
        model.refocus(tile)
    with pytest.raises(ModelError, match="differ in size"):
        model.refocus(tile, second=_frame(4, h=64))
    with pytest.raises(ModelError, match="takes no second shot"):
        RefocusModel.load(TINY).refocus(tile, second=second)


def test_card_shots_and_separation_must_agree() -> None:
    good = json.loads(TINY_TSVA.with_suffix(".json").read_text())
    assert RefocusCard.from_json(good).shots == 2
    for bad in ({"shots": 3}, {"separation_um": None}, {"shots": 1}, {"separation_um": -1.0}):
        with pytest.raises(ModelError, match="shots"):
            RefocusCard.from_json({**good, **bad})
    with pytest.raises(ModelError, match="shot order"):
        RefocusCard.from_json({**good, "order": "sharpest"})
    assert RefocusCard.from_json(good).second_side == "either"  # cards from before the key
    assert RefocusCard.from_json({**good, "second_side": "above"}).second_side == "above"
    with pytest.raises(ModelError, match="second shot side"):
        RefocusCard.from_json({**good, "second_side": "below"})


# --- scan --two-shot and refocus --two-shot on the virtual microscope ---------------------

#: Under the LED (seed 001's light) no autofocus tile is called ok (the checks look at LED
#: frames), so every tissue tile ends suspect and gets its second shot.
CAMERA = "sim://20x?low=320x180&high=320x240&illumination=off-axis"
AREA_MM = "-30.25,-20.05,-29.90,-19.95"
#: Longer than a 1 um Z move, so the second shot's timing shows whether it settled.
SETTLE_S = 1.0


def _records(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / MANIFEST).read_text().splitlines()]


@pytest.fixture(scope="module")
def two_shot_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deepaf_host.board import VirtualBoard
    from deepaf_host.scan.session import ScanOptions, run_scan

    out = tmp_path_factory.mktemp("two-shot") / "scan"
    board = VirtualBoard(speed="max", name="two-shot-scan")
    report = run_scan(ScanOptions(port=board.url, camera=CAMERA, out_dir=out, area_mm=AREA_MM, autofocus="stack",
                                  illumination="off-axis", two_shot_um=TWO_SHOT_SEPARATION_UM,
                                  settle_s=SETTLE_S))
    assert report["status"] == "complete_with_defects"
    return out


def test_scan_takes_a_second_shot_above_every_tile_it_could_not_verify(two_shot_scan: Path) -> None:
    imaged = [r for r in _records(two_shot_scan) if r.get("image")]
    assert imaged and all(r["qc"]["verdict"] != "ok" for r in imaged)
    # A tile focused by the scan's refocus search, under the same LED, stays unverified too.
    refocused = [r for r in imaged if (r.get("refocus") or {}).get("ok")]
    assert refocused and all("under off-axis light" in r["qc"]["reason"] for r in refocused)
    for rec in imaged:
        shot = rec["shot2"]
        assert shot["image"] == rec["image"].replace(".jpg", ".shot2.jpg")
        assert shot["delta_um"] == pytest.approx(TWO_SHOT_SEPARATION_UM)
        # The stage truly stood that much higher (+Z) when it took it.
        assert shot["focus_error_um"] - rec["focus_error_um"] == pytest.approx(TWO_SHOT_SEPARATION_UM, abs=0.05)
        a, b = (cv2.imread(str(two_shot_scan / n)) for n in (rec["image"], shot["image"]))
        assert a.shape == b.shape and 0.2 < ssim(a, b) < 0.999  # the same field, another plane
        # The stage settled after the 1 um move before the frame: the settle time and one
        # high-res grab of the camera's timing model, at least (the board's clock).
        grab = PI_HQ_TIMING.high_exposure_s + PI_HQ_TIMING.high_readout_s
        assert rec["timings_s"]["two_shot"] >= SETTLE_S + grab


def test_refocus_two_shot_fuses_each_tile_with_its_second_shot(two_shot_scan: Path, tmp_path: Path) -> None:
    d = tmp_path / "scan"
    shutil.copytree(two_shot_scan, d)
    for suffix in (".tflite", ".json"):
        shutil.copy(TINY_TSVA.with_suffix(suffix), tmp_path / TINY_TSVA.with_suffix(suffix).name)
    model = tmp_path / TINY_TSVA.name
    # A tile whose second shot went missing is listed, the others are repaired.
    recs = _records(d)
    imaged = [i for i, r in enumerate(recs) if r.get("image")]
    lost = recs[imaged[0]].pop("shot2")
    (d / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in recs))
    result = CliRunner().invoke(main, ["refocus", str(d), "--model", str(model), "--two-shot"])
    assert result.exit_code == 1, result.output
    assert "two shots 1 um apart" in result.output and "no second shot" in result.output
    after = _records(d)
    assert "virtual_refocus" not in after[imaged[0]]
    assert all(after[i].get("refocus") == recs[i].get("refocus") for i in imaged)  # the scan's own is kept
    for i in imaged[1:]:
        rf = after[i]["virtual_refocus"]
        assert rf["second_shot"] == after[i]["shot2"]["image"] and rf["separation_um"] == pytest.approx(1.0)
        assert (d / rf["output"]).is_file()
    # A second shot at another distance than the model's is refused for that tile.
    recs = _records(d)
    recs[imaged[0]]["shot2"] = {**lost, "delta_um": 2.5}
    (d / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in recs))
    result = CliRunner().invoke(main, ["refocus", str(d), "--model", str(model)])  # a two-shot model implies it
    assert result.exit_code == 1 and "model takes shots 1 um apart" in result.output
    # A model trained with the shot above the tile (as the scan takes it) refuses one below.
    card = json.loads((tmp_path / TINY_TSVA.with_suffix(".json").name).read_text())
    (tmp_path / TINY_TSVA.with_suffix(".json").name).write_text(json.dumps({**card, "second_side": "above"}))
    recs[imaged[0]]["shot2"] = {**lost, "delta_um": -1.0}
    (d / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in recs))
    result = CliRunner().invoke(main, ["refocus", str(d), "--model", str(model)])
    assert result.exit_code == 1 and "1 um below the tile; the model takes it 1 um above" in result.output
    # --two-shot with a single-image model is refused before anything is written.
    before = (d / MANIFEST).read_bytes()
    result = CliRunner().invoke(main, ["refocus", str(d), "--model", str(TINY), "--two-shot"])
    assert result.exit_code == 2 and "single-image model" in result.output
    assert (d / MANIFEST).read_bytes() == before


def test_two_shot_is_refused_out_of_range() -> None:
    from deepaf_host.scan.options import OptionError, resolve_options
    from deepaf_host.scan.session import ScanOptions

    with pytest.raises(OptionError, match="--two-shot"):
        resolve_options(ScanOptions(port="sim://", out_dir=Path("/nonexistent/x"), two_shot_um=12.0))


def test_the_shipped_two_shot_model_fuses_two_defocused_shots_without_seams() -> None:
    """models/deepaf-tsva-20x: its card matches the file and says two shots 1 um apart, the
    second above the tile (as the scan takes it); on unseen procedural fields 3 um from
    focus (second shot at 4 um) its output is closer to the truth than the sharper shot
    alone, and the tiled frame equals one pass."""
    model = RefocusModel.load(two_shot=True)
    assert model.shots == 2 and model.card.separation_um == TWO_SHOT_SEPARATION_UM
    assert model.card.second_side == "above"
    assert model.card.pixel_size_um == pytest.approx(0.1806, abs=1e-3)
    sets = list(iter_pair_sets(seed=5001, slides=2, fields_per_slide=1, planes_per_field=0, shape=(128, 128),
                               dz_fixed=np.array([3.0]), separation_um=TWO_SHOT_SEPARATION_UM,
                               second_side=model.card.second_side))
    for ps in sets:
        tile, second = ps.inputs[0, 0], ps.inputs[0, 1]
        out = model.refocus(tile, second=second).image
        sharper = order_shots(tile, second)[0]
        assert ssim(out, ps.truth) > ssim(sharper, ps.truth) + 0.03
    # A frame two of the card's tiles wide (256 pixels kept of each): no seam where they meet.
    wide = np.concatenate([ps.inputs[0] for ps in sets], axis=2)  # (2, 128, 256, 3)
    wide = np.ascontiguousarray(np.concatenate([wide, wide[:, :, ::-1]], axis=2))  # 512 pixels wide
    assert np.array_equal(model.network_tiled(wide[0], wide[1]), model.full_frame(wide[0], wide[1]))
