"""The corpus of real H&E images: provenance, integrity, splits, where the files are
(package or cache), the fetch message, and the pixel-size estimator."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from deepaf_host.errors import ConfigError, DatasetError
from deepaf_host.optics import corpus as corpus_module
from deepaf_host.optics.corpus import (
    CORPUS_DIR,
    CorpusImageMissing,
    cache_dir,
    corpus_images,
    estimate_pixel_um,
    load_manifest,
    read_image,
)
from skimage.color import hed2rgb

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

HEX40 = re.compile(r"[0-9a-f]{40}")


def test_every_entry_records_its_provenance_and_fetch_url() -> None:
    images = load_manifest()
    assert images
    for img in images:
        assert HEX40.fullmatch(img.commit), img.id
        assert img.repository and img.repo_path and img.licence_evidence and img.pixel_um > 0, img.id
        assert re.fullmatch(r"[0-9a-f]{64}", img.sha256), img.id
        assert img.url("https://example.org/") == f"https://example.org/{img.repository}/{img.commit}/{img.repo_path}"
    crc = next(img for img in images if img.id == "crc_val_norm_ylvcmehk")
    assert crc.url() == ("https://raw.githubusercontent.com/KatherLab/mopadi/a48792e1bc8762af878186cbc14d6f9739af5448/"
                         "images/example_data/CRC-VAL-HE-7K-NORM-TCGA-YLVCMEHK.tif")


def test_the_package_holds_only_the_shipped_images_and_they_verify() -> None:
    """Images taken from repository snapshots are fetched, never committed: the folder has
    the manifest, the README and the registry-sourced (shipped) files, nothing else."""
    images = load_manifest()
    shipped = [img for img in images if img.shipped]
    assert [img.id for img in shipped] == ["tiatoolbox_stain_norm_target"]
    assert {p.name for p in CORPUS_DIR.iterdir()} == {"manifest.json", "README.md"} | {img.path.name for img in shipped}
    for img in shipped:
        assert img.path.parent == CORPUS_DIR and img.present, img.path
        assert hashlib.sha256(img.path.read_bytes()).hexdigest() == img.sha256, img.id
        rgb = read_image(img)
        assert rgb.dtype == np.uint8 and rgb.shape == (img.height, img.width, 3), img.id
    raw = json.loads((CORPUS_DIR / "manifest.json").read_text(encoding="utf-8"))
    assert all(isinstance(e.get("shipped"), bool) for e in raw)


def test_splits_are_disjoint_and_non_empty() -> None:
    train = corpus_images("train")
    held = corpus_images("heldout")
    assert train and held
    ids_t, ids_h = {i.id for i in train}, {i.id for i in held}
    assert not ids_t & ids_h
    assert not {i.sha256 for i in train} & {i.sha256 for i in held}
    assert ids_t | ids_h == {i.id for i in corpus_images("all")}
    assert len({i.id for i in load_manifest()}) == len(load_manifest())


def test_unknown_split_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        corpus_images("validation")


def test_no_non_commercial_or_empty_licence() -> None:
    for img in load_manifest():
        assert img.licence.strip(), img.id
        assert "NC" not in img.licence, img.id
        assert not re.search(r"non-?commercial", img.licence, re.IGNORECASE), img.id


@pytest.mark.parametrize("image_id", [img.id for img in load_manifest()])
def test_every_image_on_this_machine_reads_as_rgb_uint8_of_the_manifest_size(image_id: str) -> None:
    img = next(i for i in load_manifest() if i.id == image_id)
    if not img.present:
        assert not img.shipped
        pytest.skip(f"{image_id} is not shipped and not fetched here (run `deepaf-host corpus fetch`)")
    assert hashlib.sha256(img.path.read_bytes()).hexdigest() == img.sha256, img.id
    rgb = read_image(img)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[:2] == (img.height, img.width), img.id


def test_a_corrupted_copy_raises_a_dataset_error(tmp_path: Path) -> None:
    img = next(i for i in load_manifest() if i.shipped)
    data = bytearray(img.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / img.path.name
    bad.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=img.path.name):
        read_image(dataclasses.replace(img, path=bad))


def test_the_cache_folder_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPAF_CORPUS_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "deepaf" / "specimens"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "deepaf" / "specimens"
    monkeypatch.setenv("DEEPAF_CORPUS_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def _tiny_corpus(tmp_path: Path) -> tuple[Path, bytes]:
    """A manifest (in tmp/pkg) of one non-shipped PNG whose bytes are returned, not written."""
    import io

    from PIL import Image

    rgb = (np.random.default_rng(3).random((24, 32, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    data = buf.getvalue()
    entry = {
        "id": "tiny", "file": "tiny.png", "sha256": hashlib.sha256(data).hexdigest(), "width": 32, "height": 24,
        "pixel_um": 0.5, "pixel_um_source": "declared: test", "split": "heldout", "licence": "CC0-1.0",
        "licence_evidence": "test", "repository": "someone/somewhere", "path": "img/tiny.png", "commit": "ab" * 20,
        "shipped": False,
    }
    (tmp_path / "pkg").mkdir()
    manifest = tmp_path / "pkg" / "manifest.json"
    manifest.write_text(json.dumps([entry]), encoding="utf-8")
    return manifest, data


def test_an_image_not_beside_the_manifest_is_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, data = _tiny_corpus(tmp_path)
    monkeypatch.setenv("DEEPAF_CORPUS_DIR", str(tmp_path / "cache"))
    (img,) = load_manifest(manifest)
    assert img.path == tmp_path / "cache" / "tiny.png" and not img.present
    with pytest.raises(CorpusImageMissing, match="deepaf-host corpus fetch --split heldout") as info:
        read_image(img)
    assert "not on this machine" in str(info.value) and str(tmp_path / "cache") in str(info.value)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny.png").write_bytes(data)
    (img,) = load_manifest(manifest)
    assert img.present and read_image(img).shape == (24, 32, 3)
    # A file beside the manifest wins over the cache.
    (tmp_path / "pkg" / "tiny.png").write_bytes(data)
    assert load_manifest(manifest)[0].path == tmp_path / "pkg" / "tiny.png"


def test_a_missing_corpus_image_names_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPAF_CORPUS_DIR", str(tmp_path / "empty"))
    img = next(i for i in load_manifest() if not i.shipped)
    assert not img.present
    with pytest.raises(DatasetError, match=f"not on this machine.*deepaf-host corpus fetch --split {img.split}"):
        read_image(img)


def test_simulate_refuses_a_split_with_a_missing_image_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from deepaf_host.cli import main
    from deepaf_host.stacks.simulate import simulate_dataset

    monkeypatch.setenv("DEEPAF_CORPUS_DIR", str(tmp_path / "empty"))
    with pytest.raises(CorpusImageMissing, match="deepaf-host corpus fetch --split heldout"):
        simulate_dataset(tmp_path / "out", stacks=2, z_range_um=(-1.0, 1.0, 1.0), size=(48, 48), specimen="corpus:heldout")
    assert not (tmp_path / "out").exists()
    # train: the shipped image is present but the others are not; no subset is used.
    result = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path / "cli"), "--stacks", "2", "--z=-1:1:1",
                                       "--size", "48x48", "--specimen", "corpus:train"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "deepaf-host corpus fetch --split train" in result.output
    assert not (tmp_path / "cli").exists()


def test_the_module_reads_the_manifest_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, _ = _tiny_corpus(tmp_path)
    monkeypatch.setattr(corpus_module, "MANIFEST", manifest)
    assert [img.id for img in corpus_images("heldout")] == ["tiny"] and corpus_images("train") == []


def _discs(pixel_um: float, diameter_um: float = 7.0, size: int = 360, seed: int = 0) -> np.ndarray:
    """Separate hematoxylin discs of a known diameter on an eosin background, rendered at pixel_um."""
    rng = np.random.default_rng(seed)
    r = diameter_um / pixel_um / 2
    pitch = int(np.ceil(3 * r + 6))
    yy, xx = np.mgrid[:size, :size]
    hema = np.zeros((size, size))
    for y0 in range(pitch // 2, size - pitch // 2, pitch):
        for x0 in range(pitch // 2, size - pitch // 2, pitch):
            cy, cx = np.array([y0, x0]) + rng.uniform(-r / 4, r / 4, 2)
            hema[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0
    hed = np.stack([0.8 * hema + 0.02, np.full_like(hema, 0.25), np.zeros_like(hema)], axis=-1)
    return (np.clip(hed2rgb(hed), 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("pixel_um", [0.25, 0.5])
def test_estimate_pixel_um_recovers_known_disc_size(pixel_um: float) -> None:
    est = estimate_pixel_um(_discs(pixel_um), nucleus_diameter_um=7.0)
    assert abs(est - pixel_um) / pixel_um < 0.15, est
    # Wrong assumed diameter scales the answer: the estimator really measures the discs.
    est2 = estimate_pixel_um(_discs(pixel_um), nucleus_diameter_um=14.0)
    assert abs(est2 - 2 * pixel_um) / (2 * pixel_um) < 0.15, est2


def test_the_figure_and_the_trust_bench_name_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both read corpus images that are fetched, not shipped: a one-line message, no traceback."""
    from deepaf_host.optics import figure
    from deepaf_host.scan import trust_bench

    monkeypatch.setenv("DEEPAF_CORPUS_DIR", str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match="deepaf-host corpus fetch --split train"):
        figure.main([str(tmp_path / "fig.png")])
    assert not (tmp_path / "fig.png").exists()
    with pytest.raises(SystemExit, match="deepaf-host corpus fetch --split heldout"):
        trust_bench.main(["--scenarios", "search: real H&E"])
