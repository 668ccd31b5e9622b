"""Seed 000's accuracy metrics on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from deepaf_host.model.metrics import focus_metrics, median_per_image
from deepaf_host.model.preprocess import CLIP_SIGMA, fourier_magnitude, input_kind, prepare, standardize


def test_hand_built_case() -> None:
    # DoF 1 um: |true| > 0.5 decides the direction, |error| <= 0.5 is within the DoF.
    true = [3.0, -2.0, 0.2, 5.0]
    pred = [2.8, 1.0, -0.1, 4.0]  # errors 0.2, 3.0, 0.3, 1.0; image 1 has the wrong sign
    m = focus_metrics(pred, true, dof_um=1.0)
    assert m["n_images"] == 4
    assert m["focus_error_um_mean"] == pytest.approx(4.5 / 4)
    assert m["focus_error_um_std"] == pytest.approx(np.std([0.2, 3.0, 0.3, 1.0]))
    assert m["false_direction_rate"] == pytest.approx(1 / 3)  # image 2 (|true| 0.2) is not decisive
    assert m["within_dof_rate"] == pytest.approx(2 / 4)
    by_bin = {b["abs_dz_um_min"]: b for b in m["per_bin"]}
    assert by_bin[0.0]["n_images"] == 1 and by_bin[2.0]["n_images"] == 2 and by_bin[4.0]["n_images"] == 1
    assert by_bin[7.0]["n_images"] == 0 and by_bin[7.0]["abs_dz_um_max"] is None
    assert sum(b["n_images"] for b in m["per_bin"]) == 4


def test_median_over_patches_ignores_an_outlier_patch() -> None:
    assert median_per_image([[1.0, 1.2, 9.0], [-2.0]]).tolist() == [1.2, -2.0]
    with pytest.raises(ValueError, match="no patch"):
        median_per_image([[]])


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="predictions"):
        focus_metrics([1.0], [1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="NaN"):
        focus_metrics([float("nan")], [1.0], 1.0)
    with pytest.raises(ValueError, match="depth of field"):
        focus_metrics([1.0], [1.0], 0.0)


def test_standardize_is_per_patch_and_per_channel() -> None:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, size=(2, 16, 16, 3)).astype(np.uint8)
    patches[1] = patches[1] // 4 + 100  # another lab: dimmer, lower contrast
    x = standardize(patches)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(1, 2)), 1, atol=1e-3)
    flat = standardize(np.full((1, 8, 8, 3), 200, np.uint8))  # glass: no noise amplification
    assert np.all(flat == 0)
    spike = np.zeros((1, 32, 32, 3), np.uint8)
    spike[0, 0, 0] = 255
    assert standardize(spike).max() == pytest.approx(CLIP_SIGMA)


def test_fourier_magnitude_is_fcfnn_input() -> None:
    rng = np.random.default_rng(1)
    patches = rng.integers(0, 256, size=(3, 96, 96, 3)).astype(np.uint8)
    x = fourier_magnitude(patches, crop=64)
    assert x.shape == (3, 64, 64, 1)
    np.testing.assert_allclose(np.expm1(x).mean(axis=(1, 2, 3)), 1, rtol=1e-5)  # unit mean before log1p
    assert 0.0 <= float(x.min()) and float(x.max()) < 8.0  # a range int8 keeps (log1p of <= 64^2)
    with pytest.raises(ValueError, match="larger than the patch"):
        fourier_magnitude(patches[:, :32, :32], crop=64)


def test_input_kinds() -> None:
    assert [input_kind(a) for a in ("spatiospectral", "fcfnn", "two-shot")] == ["patch", "fourier", "pair"]
    patches = np.zeros((1, 8, 8, 3), np.uint8)
    assert prepare("pair", patches, patches).shape == (1, 8, 8, 6)
    with pytest.raises(ValueError, match="second frame"):
        prepare("pair", patches)
    with pytest.raises(ValueError, match="unknown input kind"):
        prepare("nope", patches)
