"""Focus measures: closed-form values on hand-built arrays, and the order of sharpness on a real image."""

from __future__ import annotations

import itertools
import numpy as np
import pytest
from deepaf_host.errors import ConfigError
from deepaf_host.focus import measures as fm
from scipy import ndimage
from skimage import data


@pytest.fixture(scope="module")
def ihc_gray() -> np.ndarray:
    return fm.gray(data.immunohistochemistry())


def test_gray_scales_uint8_and_weights_channels() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[..., 1] = 255
    assert fm.gray(frame) == pytest.approx(np.full((4, 4), 0.587), abs=1e-6)
    assert fm.gray(np.full((3, 3), 2.5, np.float64)).dtype == np.float32
    with pytest.raises(ValueError):
        fm.gray(np.zeros((4, 4, 4), np.uint8))


def test_closed_forms_on_a_hand_built_image() -> None:
    # Rows alternate 0 and 1: every vertical neighbour pair differs, every pair two apart agrees.
    x = np.zeros((6, 4), np.float32)
    x[1::2] = 1.0
    n = x.size
    mu = 0.5
    # eq. 8: sum x(m)x(m+1) = 0 ; sum x(m)x(m+2) = rows 1,3 pairs (1*1) -> 2 pairs * 4 columns = 8
    assert fm.vollath4(x) == pytest.approx((0.0 - 8.0) / n)
    # eq. 9: 0 - MN mu^2, divided by MN
    assert fm.vollath5(x) == pytest.approx(-(mu**2))
    assert fm.std(x) == pytest.approx(0.5)
    assert fm.nvar(x) == pytest.approx(0.25 / 0.5)
    # Brenner: pixels two apart are equal along both axes.
    assert fm.brenner(x) == 0.0
    # Laplacian of alternating rows: +-2 on the interior, variance 4.
    assert fm.laplacian(x) == pytest.approx(4.0)


def test_brenner_counts_both_axes() -> None:
    ramp = np.tile(np.arange(8, dtype=np.float32), (8, 1))  # changes along columns only
    assert fm.brenner(ramp) == pytest.approx(4.0 * 6 * 8 / 64)
    assert fm.brenner(ramp.T) == pytest.approx(fm.brenner(ramp))


def test_nvar_of_a_black_frame_is_zero() -> None:
    assert fm.nvar(np.zeros((8, 8))) == 0.0


@pytest.mark.parametrize("name", sorted(fm.MEASURES))
def test_every_measure_falls_with_blur_on_a_real_image(name: str, ihc_gray: np.ndarray) -> None:
    measure = fm.get(name)
    values = [measure(ndimage.gaussian_filter(ihc_gray, s) if s else ihc_gray) for s in (0, 0.7, 1.5, 3.0, 6.0)]
    assert all(a > b for a, b in itertools.pairwise(values)), values


@pytest.mark.parametrize("name", sorted(fm.MEASURES))
def test_every_measure_finds_the_sharp_plane_of_a_blur_stack(name: str, ihc_gray: np.ndarray) -> None:
    # A symmetric synthetic focal stack: blur grows with |plane - 4|, plus camera noise.
    rng = np.random.default_rng(1)
    stack = [ndimage.gaussian_filter(ihc_gray, 0.25 + 0.6 * abs(i - 4)) for i in range(9)]
    stack = [p + rng.normal(0, 0.01, p.shape).astype(np.float32) for p in stack]
    scores = [fm.get(name)(p) for p in stack]
    assert int(np.argmax(scores)) == 4


def test_spectral_band_selects_high_frequencies() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (128, 128)).astype(np.float32)
    smooth = ndimage.gaussian_filter(noise, 3.0)
    # Low band: both have energy; high band: only the unblurred noise does.
    assert fm.spectral(noise, band=(0.6, 1.0)) - fm.spectral(smooth, band=(0.6, 1.0)) > 3.0
    assert fm.spectral(noise, band=(0.6, 1.0)) - fm.spectral(smooth, band=(0.6, 1.0)) > (
        fm.spectral(noise, band=(0.0, 0.1)) - fm.spectral(smooth, band=(0.0, 0.1))
    )
    with pytest.raises(ValueError):
        fm.spectral(noise, band=(0.5, 0.2))


def test_measures_reject_colour_and_tiny_images() -> None:
    with pytest.raises(ValueError):
        fm.vollath4(np.zeros((8, 8, 3)))
    with pytest.raises(ValueError):
        fm.brenner(np.zeros((2, 8)))


def test_registry_lookup() -> None:
    assert fm.get("vollath5") is fm.vollath5
    assert fm.DEFAULT_MEASURE in fm.MEASURES
    with pytest.raises(ConfigError, match="unknown measure 'sharpness'"):
        fm.get("sharpness")
