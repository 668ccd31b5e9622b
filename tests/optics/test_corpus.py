"""The shipped corpus of real H&E images: provenance, integrity, splits, and the pixel-size estimator."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from deepaf_host.errors import ConfigError, DatasetError
from deepaf_host.optics.corpus import corpus_images, estimate_pixel_um, load_manifest, read_image
from skimage.color import hed2rgb

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_every_file_exists_and_matches_its_sha256() -> None:
    images = load_manifest()
    assert images
    for img in images:
        assert img.path.is_file(), img.path
        assert hashlib.sha256(img.path.read_bytes()).hexdigest() == img.sha256, img.id
        assert len(img.commit) == 40 and all(c in "0123456789abcdef" for c in img.commit), img.id
        assert img.repository and img.repo_path and img.licence_evidence and img.pixel_um > 0


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


def test_every_image_reads_as_rgb_uint8_of_the_manifest_size() -> None:
    for img in load_manifest():
        rgb = read_image(img)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert rgb.shape[:2] == (img.height, img.width), img.id


def test_a_corrupted_copy_raises_a_dataset_error(tmp_path: Path) -> None:
    img = load_manifest()[0]
    data = bytearray(img.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / img.path.name
    bad.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=img.path.name):
        read_image(dataclasses.replace(img, path=bad))
    with pytest.raises(DatasetError, match="missing"):
        read_image(dataclasses.replace(img, path=tmp_path / "absent.tif"))


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
