"""Focal-stack datasets: writer/reader round trip, validation, image folders, simulate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from deepaf_host.cli import main
from deepaf_host.errors import ConfigError, DatasetError
from deepaf_host.stacks import FORMAT, StackWriter, open_stacks, simulate_dataset


def _frames(z: int = 3, h: int = 8, w: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (z, h, w, 3), dtype=np.uint8)


def _write(root: Path, **changes: object) -> Path:
    kw: dict[str, object] = {
        "z_um": [-4001.0, -4000.5, -4000.0], "focus_z_um": -4000.3, "objective": "20x/0.75", "pixel_size_um": 0.18, "protocol": "same", "source": "simulated"
    }
    kw.update(changes)
    with StackWriter(root) as w:
        w.add(_frames(), **kw)  # type: ignore[arg-type]
        w.add(_frames(seed=1), **kw, x_um=-1.5)  # type: ignore[arg-type]
    return root


def test_round_trip(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    ds = open_stacks(root)
    assert len(ds) == 2
    rec = ds[1]
    assert rec.file == "stack_0001.ome.tif" and rec.z_um == (-4001.0, -4000.5, -4000.0)
    assert rec.focus_z_um == -4000.3 and rec.objective == "20x/0.75" and rec.pixel_size_um == 0.18
    assert rec.protocol == "same" and rec.source == "simulated" and rec.extra == {"x_um": -1.5}
    assert np.allclose(rec.distance_to_focus_um(), [0.7, 0.2, -0.3])
    assert np.array_equal(ds.load(0), _frames()) and np.array_equal(ds.load(rec), _frames(seed=1))
    doc = json.loads((root / "index.json").read_text())
    assert doc["format"] == FORMAT
    with tifffile.TiffFile(root / rec.file) as tif:
        assert tif.is_ome and tif.series[0].axes == "ZYXS"


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    with pytest.raises(DatasetError, match="already"):
        StackWriter(root)


def _edit_index(root: Path, fn) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads((root / "index.json").read_text())
    fn(doc)
    (root / "index.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="deepaf-stacks/2"), r"'format' must be 'deepaf-stacks/1'"),
        (lambda d: d.update(stacks={}), r"'stacks' must be a list"),
        (lambda d: d["stacks"][1].pop("focus_z_um"), r"stacks\[1\] lacks 'focus_z_um'"),
        (lambda d: d["stacks"][0].update(z_um=[1, "a", 3]), r"stacks\[0\] \(stack_0000.ome.tif\): 'z_um' must be"),
        (lambda d: d["stacks"][0].update(z_um=[1, 1, 3]), r"repeated"),
        (lambda d: d["stacks"][0].update(focus_z_um="x"), r"'focus_z_um' must be a number or null"),
        (lambda d: d["stacks"][0].update(pixel_size_um=-1), r"'pixel_size_um' must be a positive"),
        (lambda d: d["stacks"][0].update(file="../x.tif"), r"relative path inside"),
        (lambda d: d["stacks"][1].update(file="stack_0000.ome.tif"), r"same file"),
        (lambda d: d["stacks"][0].update(z_um=[1.0, 2.0]), r"has 3 planes but the index lists 2"),
        (lambda d: d["stacks"][0].update(file="nope.tif"), r"missing"),
    ],
)
def test_rejects_bad_index(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    root = _write(tmp_path / "ds")
    _edit_index(root, edit)
    with pytest.raises(DatasetError, match=message) as err:
        open_stacks(root)
    assert str(root) in str(err.value)  # names the file


def test_rejects_bad_files(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    (root / "index.json").write_text('{"format": "deepaf-stacks/1", "stacks": [}')
    with pytest.raises(DatasetError, match=r"index.json.*not valid JSON: .* line 1"):
        open_stacks(root)
    root = _write(tmp_path / "ds2")
    (root / "stack_0001.ome.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(DatasetError, match=r"stack_0001.ome.tif.*not a readable TIFF"):
        open_stacks(root)
    root = _write(tmp_path / "ds3")
    tifffile.imwrite(root / "stack_0000.ome.tif", np.zeros((3, 8, 10, 3), np.uint16), photometric="rgb")
    with pytest.raises(DatasetError, match=r"stack_0000.ome.tif.*uint8"):
        open_stacks(root)
    with pytest.raises(DatasetError, match="no such folder"):
        open_stacks(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no index.json"):
        open_stacks(tmp_path / "empty")
    with pytest.raises(DatasetError, match="must be uint8"), StackWriter(tmp_path / "w") as w:
        w.add(np.zeros((3, 8, 8, 3), np.float32), z_um=[0, 1, 2], focus_z_um=None, objective="x", pixel_size_um=None, protocol=None, source="t")


def _image_folder(folder: Path, table: str) -> list[np.ndarray]:
    import cv2

    folder.mkdir(parents=True)
    frames = [_frames(1, 12, 14, seed=i)[0] for i in range(3)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"p{i}.png"), f[..., ::-1])
    if table == "csv":
        (folder / "z.csv").write_text("file,z_um,focus_z_um\np0.png,10.0,11.2\np1.png,11.0,\np2.png,12.0,\n")
    else:
        (folder / "z.json").write_text(json.dumps({"z_um": [10.0, 11.0, 12.0], "focus_z_um": 11.2, "pixel_size_um": 0.5, "objective": "10x/0.25"}))
    return frames


@pytest.mark.parametrize("table", ["csv", "json"])
def test_reads_image_folders(tmp_path: Path, table: str) -> None:
    frames = _image_folder(tmp_path / "s1", table)
    ds = open_stacks(tmp_path / "s1")
    assert len(ds) == 1 and ds[0].z_um == (10.0, 11.0, 12.0) and ds[0].focus_z_um == 11.2
    assert np.array_equal(ds.load(0), np.stack(frames))
    # A folder of such folders.
    _image_folder(tmp_path / "s2", table)
    ds = open_stacks(tmp_path)
    assert [r.file for r in ds] == ["s1", "s2"]


def test_image_folder_errors(tmp_path: Path) -> None:
    _image_folder(tmp_path / "s", "csv")
    (tmp_path / "s" / "z.csv").write_text("file,z_um\np0.png,1\np1.png,x\np2.png,3\n")
    with pytest.raises(DatasetError, match=r"z.csv.*'z_um' column"):
        open_stacks(tmp_path / "s")
    (tmp_path / "s" / "z.csv").write_text("file,z_um\np0.png,1\np9.png,2\n")
    with pytest.raises(DatasetError, match=r"p9.png.*missing"):
        open_stacks(tmp_path / "s")
    (tmp_path / "s" / "z.csv").write_text("name,z\np0.png,1\n")
    with pytest.raises(DatasetError, match=r"columns 'file' and 'z_um'"):
        open_stacks(tmp_path / "s")


def _digest(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_simulate_round_trips_and_is_deterministic(tmp_path: Path) -> None:
    kw = {"stacks": 2, "z_range_um": (-1.0, 1.0, 0.5), "seed": 4, "size": (48, 64)}
    ds = simulate_dataset(tmp_path / "a", **kw)  # type: ignore[arg-type]
    simulate_dataset(tmp_path / "b", **kw)  # type: ignore[arg-type]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    other = simulate_dataset(tmp_path / "c", **{**kw, "seed": 5})  # type: ignore[arg-type]
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c") and len(other) == 2
    assert len(ds) == 2
    for rec in ds:
        frames = ds.load(rec)
        assert frames.shape == (5, 48, 64, 3)
        d = rec.distance_to_focus_um()
        assert d is not None and np.allclose(np.diff(d), -0.5)
        # The focus falls between planes: distances are not multiples of the step.
        assert np.min(np.abs(d / 0.5 - np.round(d / 0.5))) > 1e-3
        assert -8000 < rec.focus_z_um < 0 and rec.source == "simulated" and rec.objective == "20x/0.75"
        # The sharpest plane (Brenner) is the one nearest focus, give or take one plane.
        g = frames.astype(float).mean(-1)
        brenner = ((g[:, :, 2:] - g[:, :, :-2]) ** 2).mean(axis=(1, 2))
        assert abs(int(np.argmax(brenner)) - int(np.argmin(np.abs(d)))) <= 1


def test_simulate_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["simulate", "--out", str(out), "--stacks", "1", "--z", "-1:1:1", "--size", "32x40", "--protocol", "diff", "--seed", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ds = open_stacks(out)
    assert ds[0].protocol == "diff" and ds.load(0).shape == (3, 32, 40, 3)
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "already" in again.output
    bad = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path / "x"), "--z", "1:0:1"])
    assert bad.exit_code != 0 and "stop >= start" in bad.output


def test_random_protocol_draws_a_lab_per_slide_and_records_it(tmp_path: Path) -> None:
    kw = {"stacks": 4, "z_range_um": (-1.0, 1.0, 1.0), "seed": 9, "size": (48, 48), "protocol": "random",
          "stacks_per_slide": 2}
    ds = simulate_dataset(tmp_path / "a", **kw)  # type: ignore[arg-type]
    simulate_dataset(tmp_path / "b", **kw)  # type: ignore[arg-type]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # still: same seed, same bytes
    labs = [rec.extra["protocol_params"] for rec in ds]
    assert all(rec.protocol == "random" for rec in ds)
    assert labs[0] == labs[1] and labs[2] == labs[3] and labs[0] != labs[2]  # one lab per slide
    # The record holds every parameter of the lab: it rebuilds the same Protocol.
    from deepaf_host.optics.presets import Protocol

    recorded = Protocol(**{k: tuple(tuple(r) for r in v) if k == "stain_od" else tuple(v) if isinstance(v, list) else v
                           for k, v in labs[2].items()})
    assert recorded.to_dict() == labs[2]
    # The draws stay inside the documented ranges.
    from deepaf_host.optics.presets import random_protocol

    for i in range(50):
        lab = random_protocol(np.random.default_rng(i))
        assert 2.0 <= lab.section_thickness_um <= 6.0 and 0.0 <= lab.coverslip_error_um <= 40.0
        assert 1500 <= lab.white_electrons <= 12000 and lab.jpeg_quality in (None, *range(70, 96))
        assert all(abs(np.linalg.norm(v) - 1) < 1e-3 for v in lab.stain_od[:2])
        assert 0.0 <= lab.tissue_index_excess <= 0.03 and lab.condenser_fraction is not None
        assert 0.3 <= lab.condenser_fraction <= 1.0 and lab.axial_colour_um is not None


def _check_corpus_split(tmp_path: Path, split: str) -> None:
    from deepaf_host.optics.corpus import corpus_images

    images = {img.id: img for img in corpus_images(split)}
    ds = simulate_dataset(tmp_path / split, stacks=4, z_range_um=(-1.0, 1.0, 1.0), seed=5, size=(48, 48),
                          specimen=f"corpus:{split}", stacks_per_slide=1)
    seen: set[str] = set()
    for rec in ds:
        img = images[rec.extra["specimen_image"]]  # KeyError: an image of the other split
        assert 0.8 * img.pixel_um <= rec.extra["specimen_pixel_um"] <= 1.2 * img.pixel_um
        seen.add(img.id)
    assert seen
    with pytest.raises(ConfigError, match="split"):
        simulate_dataset(tmp_path / "bad", stacks=1, z_range_um=(-1.0, 1.0, 1.0), size=(48, 48), specimen="corpus:test")


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_corpus_specimens_come_from_their_split_at_a_recorded_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: str
) -> None:
    """On a two-split manifest of images present everywhere (the shipped image as train,
    a re-encoded crop of it as heldout), so it runs without fetching."""
    from deepaf_host.optics import corpus
    from PIL import Image

    shipped = next(img for img in corpus.load_manifest() if img.shipped)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / shipped.path.name).write_bytes(shipped.path.read_bytes())
    Image.fromarray(corpus.read_image(shipped)[100:500, 200:700]).save(pkg / "crop.png")
    crop = {"id": "crop", "file": "crop.png", "sha256": hashlib.sha256((pkg / "crop.png").read_bytes()).hexdigest(),
            "width": 500, "height": 400, "pixel_um": 0.5, "split": "heldout", "shipped": True}
    shipped_entry = next(e for e in json.loads(corpus.MANIFEST.read_text(encoding="utf-8")) if e["id"] == shipped.id)
    entries = [{**shipped_entry, "split": "train"}, {**shipped_entry, **crop}]
    (pkg / "manifest.json").write_text(json.dumps(entries))
    monkeypatch.setattr(corpus, "MANIFEST", pkg / "manifest.json")
    monkeypatch.setenv("DEEPAF_CORPUS_DIR", str(tmp_path / "no-cache"))
    _check_corpus_split(tmp_path, split)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_the_real_corpus_splits_simulate_when_fetched(tmp_path: Path, split: str) -> None:
    from deepaf_host.optics.corpus import corpus_images

    missing = [img.id for img in corpus_images(split) if not img.present]
    if missing:
        pytest.skip(f"corpus images {missing} are not on this machine (`deepaf-host corpus fetch --split {split}`)")
    _check_corpus_split(tmp_path, split)
