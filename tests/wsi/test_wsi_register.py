"""Pairwise registration (phase correlation + NCC confidence) on known shifts."""

from __future__ import annotations

import numpy as np
import pytest
from deepaf_host.wsi.register import overlap_boxes, register_pair, register_strips
from deepaf_host.wsi.synthetic import specimen_texture


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    return specimen_texture(512, seed=1)


@pytest.mark.parametrize("err", [(0, 0), (3, -2), (-7, 5), (11, 4)])
def test_register_pair_recovers_the_stage_error(texture: np.ndarray, err: tuple[int, int]) -> None:
    h, w = 192, 256
    true = (230 + err[0], 10 + err[1])  # tile j truly at this offset from tile i
    a = texture[50:50 + h, 20:20 + w]
    b = texture[50 + true[1]:50 + true[1] + h, 20 + true[0]:20 + true[0] + w]
    res = register_pair(a, b, (230.0, 10.0), max_shift_px=30)
    assert res.ok, res.reason
    assert res.dx == pytest.approx(err[0], abs=0.3)
    assert res.dy == pytest.approx(err[1], abs=0.3)
    assert res.ncc > 0.8


def test_glass_overlap_is_rejected() -> None:
    rng = np.random.default_rng(0)
    glass = np.clip(240 + rng.normal(0, 2, (192, 256, 3)), 0, 255).astype(np.uint8)
    glass2 = np.clip(240 + rng.normal(0, 2, (192, 256, 3)), 0, 255).astype(np.uint8)
    res = register_pair(glass, glass2, (230.0, 0.0), max_shift_px=30)
    assert not res.ok
    assert res.ncc < 0.3


def test_shift_beyond_the_bound_is_rejected(texture: np.ndarray) -> None:
    a = texture[0:100, 0:80]
    b = texture[0:100, 20:100]  # 20 px off
    res = register_strips(a.mean(axis=2).astype(np.uint8), b.mean(axis=2).astype(np.uint8), max_shift_px=10)
    assert not res.ok and "beyond" in res.reason
    ok = register_strips(a.mean(axis=2).astype(np.uint8), b.mean(axis=2).astype(np.uint8), max_shift_px=30)
    assert ok.ok and ok.dx == pytest.approx(20, abs=0.5)


def test_overlap_boxes() -> None:
    (bi, bj) = overlap_boxes((230.0, -10.0), (192, 256), (192, 256))  # type: ignore[misc]
    assert bi == (230, 0, 256, 182)
    assert bj == (0, 10, 26, 192)
    assert overlap_boxes((300.0, 0.0), (192, 256), (192, 256)) is None
