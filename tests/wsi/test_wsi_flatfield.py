"""Flat-field estimate from the scan's own glass, or from many tiles."""

from __future__ import annotations

import numpy as np
from deepaf_host.wsi.flatfield import FlatFieldEstimator, apply_gain
from deepaf_host.wsi.synthetic import specimen_texture, vignetting_field

SHAPE = (120, 160)


def _tiles(n: int, glass_fraction: float, strength: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    tex = specimen_texture(512, seed=seed)
    vig = vignetting_field(SHAPE, strength)[..., None]
    out = []
    for _ in range(n):
        y, x = rng.integers(0, 512 - SHAPE[0]), rng.integers(0, 512 - SHAPE[1])
        img = tex[y:y + SHAPE[0], x:x + SHAPE[1]].astype(np.float32)
        if glass_fraction > 0:  # glass over a random band of the tile
            cut = rng.integers(0, 4)
            band = int(SHAPE[1] * glass_fraction)
            if cut % 2:
                img[:, :band] = (243, 242, 246)
            else:
                img[:, -band:] = (243, 242, 246)
        img = img * vig + rng.normal(0, 1.5, img.shape)
        out.append(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    return out


def test_glass_estimate_flattens_the_field() -> None:
    est = FlatFieldEstimator()
    for t in _tiles(30, 0.6, 0.25):
        est.add(t)
    ff, note = est.estimate()
    assert ff is not None, note
    assert ff.method == "glass"
    gain = ff.gain(SHAPE)
    flat = vignetting_field(SHAPE, 0.25)[..., None] * gain
    inner = flat[10:-10, 10:-10]
    # Corrected illumination is uniform within 3 % (it was 25 % darker in the corners).
    assert inner.max() / inner.min() < 1.03
    assert abs(ff.glass_rgb[1] - 242) <= 4
    corrected = apply_gain(np.full((*SHAPE, 3), 200, np.uint8), gain)
    assert corrected[0, 0, 1] > corrected[SHAPE[0] // 2, SHAPE[1] // 2, 1] + 30


def test_tissue_everywhere_and_few_tiles_is_refused() -> None:
    est = FlatFieldEstimator()
    for t in _tiles(5, 0.0, 0.25):
        est.add(t)
    ff, note = est.estimate()
    assert ff is None
    assert "5 tiles" in note


def test_many_tissue_tiles_average_out() -> None:
    est = FlatFieldEstimator()
    for t in _tiles(120, 0.0, 0.25, seed=2):
        est.add(t)
    ff, note = est.estimate()
    assert ff is not None and ff.method == "tiles", note
    flat = vignetting_field(SHAPE, 0.25)[..., None] * ff.gain(SHAPE)
    inner = flat[12:-12, 12:-12]
    assert inner.max() / inner.min() < 1.08
