"""Virtual refocusing (seed 002): training pairs, the tiled runtime, the card, and
``deepaf-host refocus`` on a scan folder of the virtual microscope with a tiny model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from deepaf_host.cli import main
from deepaf_host.errors import ModelError
from deepaf_host.optics import Renderer, VirtualSlide, get_protocol
from deepaf_host.optics.specimen import ProceduralTissue
from deepaf_host.refocus.card import RefocusCard
from deepaf_host.refocus.metrics import psnr, ssim
from deepaf_host.refocus.pairs import PairRenderer, slide_seed, tissue_position
from deepaf_host.refocus.repair import OUTPUT_SUFFIX
from deepaf_host.refocus.runtime import RefocusModel
from deepaf_host.scan.manifest import MANIFEST

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny-refocus.tflite"


def test_pair_truth_is_the_noise_free_dz0_render_of_the_same_field() -> None:
    slide = VirtualSlide(11, ProceduralTissue(11))
    pr = PairRenderer("same", shape=(64, 64))
    rng = np.random.default_rng(0)
    for _ in range(10):  # a field with stained tissue in it (not a hole of the section)
        x, y = tissue_position(slide, rng)
        ps = pr.render(slide, x, y, [0.0, 3.0, -3.0], np.random.default_rng(1))
        if ps.truth.std() > 15:
            break
    focus = float(slide.focus_z_um(x, y))
    clean = Renderer("20x", "low", get_protocol("same").with_(noise=False), shape=(64, 64), margin_defocus_um=11.0,
                     max_defocus_um=50.0)
    assert np.array_equal(ps.truth, clean.render(slide, x, y, focus))
    # The dz = 0 input is the same image with camera noise; defocused ones are further off.
    assert 0 < np.abs(ps.inputs[0].astype(int) - ps.truth).mean() < 4
    s0, s3, s_3 = (ssim(a, ps.truth) for a in ps.inputs)
    assert s0 > 0.8 and s3 < s0 - 0.1 and s_3 < s0 - 0.1
    # Another field of the slide is another truth.
    other = pr.render(slide, x + 30.0, y, [0.0], np.random.default_rng(1))
    assert ssim(other.truth, ps.truth) < 0.5


def test_held_out_slide_seeds_are_disjoint() -> None:
    train = {slide_seed(b, i) for b in (101, 102, 103) for i in range(200)}
    bench = {slide_seed(b, i) for b in (5001, 5002) for i in range(200)}
    assert len(train) == 600 and not train & bench


def test_metrics() -> None:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3)).astype(np.uint8), (0, 0), 1.5)
    assert ssim(img, img) == pytest.approx(1.0)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    assert ssim(blurred, img) < 0.9
    assert psnr(img, img) == float("inf") and 10 < psnr(blurred, img) < 40


def _frame(h: int = 100, w: int = 130) -> np.ndarray:
    rng = np.random.default_rng(3)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (0, 0), 2.0)


def test_tiled_inference_reproduces_one_pass_over_the_frame() -> None:
    model = RefocusModel.load(TINY)
    assert model.quantized
    frame = _frame()
    tiled = model.network_tiled(frame)
    assert tiled.shape == frame.shape
    assert np.array_equal(tiled, model.full_frame(frame))  # no seams
    assert np.abs(tiled.astype(int) - frame).mean() > 1  # the network does change the frame


def _copy_model(tmp_path: Path) -> Path:
    for suffix in (".tflite", ".json"):
        shutil.copy(TINY.with_suffix(suffix), tmp_path / TINY.with_suffix(suffix).name)
    return tmp_path / TINY.name


def test_corrupt_or_garbage_model_is_refused(tmp_path: Path) -> None:
    path = _copy_model(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the card"):
        RefocusModel.load(path)
    # Garbage whose card agrees (sha256 updated): not a loadable model.
    path.write_bytes(b"not a flatbuffer" * 10)
    card = json.loads(path.with_suffix(".json").read_text())
    card["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not a loadable"):
        RefocusModel.load(path)
    with pytest.raises(ModelError, match="card not found"):
        path.with_suffix(".json").unlink()
        RefocusModel.load(path)


def test_card_rejects_foreign_or_untileable_cards() -> None:
    good = json.loads(TINY.with_suffix(".json").read_text())
    RefocusCard.from_json(good)
    with pytest.raises(ModelError, match="not a refocus model card"):
        RefocusCard.from_json({**good, "format": "deepaf-model/1"})
    with pytest.raises(ModelError, match="unknown key"):
        RefocusCard.from_json({**good, "tile_px": 3})
    with pytest.raises(ModelError, match="multiple of the stride"):
        RefocusCard.from_json({**good, "margin": 11, "stride": 4})


# --- the command on a scan folder of the virtual microscope --------------------------------

#: 2 x 1 tiles inside the tissue, small frames (fast).
CAMERA = "sim://20x?low=320x180&high=320x240"
AREA_MM = "-30.25,-20.05,-29.90,-19.95"


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deepaf_host.board import VirtualBoard
    from deepaf_host.scan.session import ScanOptions, run_scan

    out = tmp_path_factory.mktemp("refocus") / "scan"
    board = VirtualBoard(speed="max", name="refocus-scan")
    report = run_scan(ScanOptions(port=board.url, camera=CAMERA, out_dir=out, area_mm=AREA_MM, autofocus="stack"))
    assert report["status"].startswith("complete")
    return out


def _records(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / MANIFEST).read_text().splitlines()]


@pytest.fixture
def scan_dir(scanned: Path, tmp_path: Path) -> Path:
    """A copy of the scan with its first imaged tile's QC made ``suspect``."""
    d = tmp_path / "scan"
    shutil.copytree(scanned, d)
    lines = (d / MANIFEST).read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    k = next(i for i, r in enumerate(recs) if r.get("image"))
    recs[k]["qc"] = {**(recs[k].get("qc") or {}), "verdict": "suspect"}
    lines[k] = json.dumps(recs[k])
    (d / MANIFEST).write_text("\n".join(lines) + "\n")
    return d


def test_refocus_repairs_the_suspect_tile_and_records_it(scan_dir: Path, tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    before = (scan_dir / MANIFEST).read_text().splitlines()
    images = {p.name: p.read_bytes() for p in scan_dir.iterdir() if p.name.startswith("tile_")}
    result = CliRunner().invoke(main, ["refocus", str(scan_dir), "--model", str(model)])
    assert result.exit_code == 0, result.output
    assert "1 tile(s) to refocus" in result.output and "refocused 1" in result.output
    after = (scan_dir / MANIFEST).read_text().splitlines()
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1  # every other line byte for byte
    rec = json.loads(after[changed[0]])
    assert rec["qc"]["verdict"] == "suspect"
    rf = rec["virtual_refocus"]
    assert rf["model"] == model.name and rf["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert rf["input"] == rec["image"] and rf["output"] == Path(rec["image"]).stem + OUTPUT_SUFFIX
    out = cv2.imread(str(scan_dir / rf["output"]))
    orig = cv2.imread(str(scan_dir / rec["image"]))
    assert out.shape == orig.shape and np.abs(out.astype(int) - orig).mean() > 0.5
    # The captured tiles are untouched.
    assert all((scan_dir / name).read_bytes() == data for name, data in images.items())
    # --all refocuses every imaged tile; the earlier repair is replaced, not duplicated.
    result = CliRunner().invoke(main, ["refocus", str(scan_dir), "--model", str(model), "--all"])
    assert result.exit_code == 0, result.output
    imaged = [r for r in _records(scan_dir) if r.get("image")]
    assert all("virtual_refocus" in r for r in imaged)
    assert len(list(scan_dir.glob("*" + OUTPUT_SUFFIX))) == len(imaged)
    assert all((scan_dir / name).read_bytes() == data for name, data in images.items())


def test_refocus_refuses_a_corrupt_model_and_writes_nothing(scan_dir: Path, tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    model.write_bytes(model.read_bytes()[:-100])
    before = (scan_dir / MANIFEST).read_bytes()
    result = CliRunner().invoke(main, ["refocus", str(scan_dir), "--model", str(model)])
    assert result.exit_code == 2 and "does not match the card" in result.output
    assert (scan_dir / MANIFEST).read_bytes() == before and not list(scan_dir.glob("*" + OUTPUT_SUFFIX))


def test_refocus_refuses_a_folder_that_is_not_a_finished_scan(scan_dir: Path, tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    result = CliRunner().invoke(main, ["refocus", str(tmp_path / "nowhere"), "--model", str(model)])
    assert result.exit_code == 2 and "not a folder" in result.output
    (scan_dir / "report.json").unlink()
    result = CliRunner().invoke(main, ["refocus", str(scan_dir), "--model", str(model)])
    assert result.exit_code == 2 and "no finished scan" in result.output


def test_refocus_never_overwrites_a_captured_tile(scan_dir: Path, tmp_path: Path) -> None:
    """A captured tile named like another tile's repair output is left alone (exit 1)."""
    model = _copy_model(tmp_path)
    recs = _records(scan_dir)
    k = next(i for i, r in enumerate(recs) if r.get("image") and r["qc"]["verdict"] == "suspect")
    j = next(i for i, r in enumerate(recs) if r.get("image") and i != k)
    target = Path(recs[k]["image"]).stem + OUTPUT_SUFFIX
    shutil.copy(scan_dir / recs[j]["image"], scan_dir / target)
    recs[j]["image"] = target
    (scan_dir / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in recs))
    kept = (scan_dir / target).read_bytes()
    result = CliRunner().invoke(main, ["refocus", str(scan_dir), "--model", str(model)])
    assert result.exit_code == 1 and "never overwritten" in result.output
    assert (scan_dir / target).read_bytes() == kept


def test_the_shipped_model_loads_with_its_card_and_refocuses_a_defocused_field() -> None:
    """models/deepaf-refocus-20x: its card matches the file, and on an unseen procedural
    field 3 um from focus its output is closer to the truth than the input."""
    model = RefocusModel.load()
    assert model.card.pixel_size_um == pytest.approx(0.1806, abs=1e-3) and model.quantized
    slide = VirtualSlide(slide_seed(5001, 7), ProceduralTissue(slide_seed(5001, 7)))
    pr = PairRenderer("same", shape=(128, 128))
    rng = np.random.default_rng(2)
    for _ in range(10):
        x, y = tissue_position(slide, rng)
        ps = pr.render(slide, x, y, [3.0], np.random.default_rng(3))
        if ps.truth.std() > 15:
            break
    out = model.refocus(ps.inputs[0]).image
    assert ssim(out, ps.truth) > ssim(ps.inputs[0], ps.truth) + 0.03
