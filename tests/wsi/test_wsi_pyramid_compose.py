"""Streaming parts: the scratch store, blending, and the pyramid halvers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from deepaf_host.wsi.compose import Composer, TileScratch, feather_ramp
from deepaf_host.wsi.pyramid import PyramidBuilder, level_shapes


def _assemble(tiles: list[np.ndarray], shape: tuple[int, int], t: int) -> np.ndarray:
    rows, cols = -(-shape[0] // t), -(-shape[1] // t)
    img = np.zeros((rows * t, cols * t, 3), np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, cols)
        img[r * t:(r + 1) * t, c * t:(c + 1) * t] = tile
    return img[:shape[0], :shape[1]]


def test_scratch_round_trip(tmp_path) -> None:
    s = TileScratch((40, 30), tmp_path)
    a = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    b = 255 - a
    s.put(1, a)
    s.put(2, b)
    assert np.array_equal(s.rows(1, 5, 17), a[5:17])
    s.free(1)
    s.put(3, b)  # reuses tile 1's slot
    assert s.peak_slots == 2
    assert np.array_equal(s.rows(3, 0, 40), b)
    assert np.array_equal(s.rows(2, 39, 40), b[39:40])
    s.close()
    assert list(tmp_path.iterdir()) == []  # unlinked from the start


def test_composer_blends_overlaps_and_keeps_single_cover_exact(tmp_path) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 200, (100, 120, 3), dtype=np.uint8)
    b = rng.integers(50, 255, (100, 120, 3), dtype=np.uint8)
    corners = {0: (0, 0), 1: (100, 30)}  # 20 px of overlap in x
    images = {0: a, 1: b}
    comp = Composer(corners, (100, 120), (130, 220), lambda k: images[k], background=(9, 9, 9),
                    feather_px=(20, 10), tile_px=64, scratch_dir=tmp_path)
    mosaic = _assemble(list(comp.tiles()), (130, 220), 64)
    assert np.array_equal(mosaic[0:100, 0:100], a[:, :100])  # only a
    assert np.array_equal(mosaic[30:130, 120:220], b[:, 20:])  # only b
    assert np.all(mosaic[100:130, 0:100] == 9)  # nothing there
    # In the overlap, a weighted mean of the two.
    wa = feather_ramp(120, 20)[None, 100:120] * feather_ramp(100, 10)[40:60, None]
    wb = feather_ramp(120, 20)[None, 0:20] * feather_ramp(100, 10)[10:30, None]
    expect = (a[40:60, 100:120] * wa[..., None] + b[10:30, 0:20] * wb[..., None]) / (wa + wb)[..., None]
    assert np.abs(mosaic[40:60, 100:120].astype(float) - expect).max() <= 0.51
    assert comp.stats.decoded == 2


@pytest.mark.parametrize("shape", [(700, 1100), (513, 512), (1500, 300)])
def test_pyramid_levels_are_area_means(tmp_path, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(2)
    img = cv2.GaussianBlur(rng.integers(0, 255, (*shape, 3), dtype=np.uint8), (0, 0), 3)
    t = 128
    p = PyramidBuilder(shape, t, 100, (0, 0, 0), tmp_path)
    rows, cols = -(-shape[0] // t), -(-shape[1] // t)
    padded = np.zeros((rows * t, cols * t, 3), np.uint8)
    padded[:shape[0], :shape[1]] = img
    for r in range(rows):
        for c in range(cols):
            p.push(padded[r * t:(r + 1) * t, c * t:(c + 1) * t])
    assert p.shapes == level_shapes(shape, 100)
    assert max(p.shapes[-1]) <= 100 and max(p.shapes[-2]) > 100
    level1 = _assemble(list(p.level_tiles(1)), p.shapes[1], t)
    expect = cv2.resize(padded, (cols * t // 2, rows * t // 2), interpolation=cv2.INTER_AREA)[:p.shapes[1][0], :p.shapes[1][1]]
    assert np.array_equal(level1, expect)
    assert p.level_image(len(p.shapes) - 1).shape[:2] == p.shapes[-1]
    p.close()
