"""The renderer: focus measures on simulated stacks, brightness, determinism, protocols."""

from __future__ import annotations

import numpy as np
import pytest
from deepaf_host.optics import Renderer, VirtualSlide, get_objective, get_protocol

X0, Y0 = -30000.0 + 37.0, -20000.0 + 11.0


def brenner(frame: np.ndarray) -> float:
    """Brenner gradient of the green channel (focus is green's: the other channels focus
    elsewhere by the objective's axial colour): mean squared difference two pixels apart."""
    g = frame[..., 1].astype(np.float64)
    d = g[:, 2:] - g[:, :-2]
    return float(np.mean(d * d))


def _curve(objective: str, thickness_um: float, step_fraction: float = 1 / 3) -> tuple[np.ndarray, np.ndarray, float]:
    slide = VirtualSlide(seed=1)
    protocol = get_protocol("clean").with_(section_thickness_um=thickness_um)
    renderer = Renderer(objective, "low", protocol, shape=(128, 128))
    step = renderer.depth_of_field_um * step_fraction
    focus = float(slide.focus_z_um(X0, Y0))
    # The stage grid does not fall on the focus: a sub-step offset, as on a real stage.
    zs = focus + 0.37 * step + np.arange(-12, 13) * step
    frames = renderer.render_stack(slide, X0, Y0, zs)
    return zs - focus, np.array([brenner(f) for f in frames]), step


def _fwhm(dz: np.ndarray, values: np.ndarray) -> float:
    v = values - values.min()
    half = v.max() / 2.0
    above = np.flatnonzero(v >= half)
    lo, hi = above[0], above[-1]
    left = dz[lo - 1] + (half - v[lo - 1]) * (dz[lo] - dz[lo - 1]) / (v[lo] - v[lo - 1])
    right = dz[hi] + (v[hi] - half) * (dz[hi + 1] - dz[hi]) / (v[hi] - v[hi + 1])
    return float(right - left)


@pytest.mark.parametrize("objective", ["20x", "10x"])
def test_brenner_peaks_at_true_focus(objective: str) -> None:
    dz, b, step = _curve(objective, thickness_um=0.0)
    assert abs(dz[int(np.argmax(b))]) <= step
    # Sharpness falls off on both sides.
    assert b[0] < 0.7 * b.max() and b[-1] < 0.7 * b.max()


def test_brenner_width_scales_with_depth_of_field() -> None:
    widths = {}
    for objective in ("20x", "10x"):
        dz, b, _ = _curve(objective, thickness_um=0.0)
        widths[objective] = _fwhm(dz, b)
    dof = {k: get_objective(k).depth_of_field_um() for k in widths}
    ratio = widths["10x"] / widths["20x"]
    expected = dof["10x"] / dof["20x"]  # 9x
    assert expected / 1.5 < ratio < expected * 1.5
    for k, width in widths.items():
        assert 0.8 * dof[k] < width < 4.0 * dof[k]


def test_thick_section_broadens_the_focus_curve() -> None:
    dz_thin, thin, _ = _curve("20x", thickness_um=0.0)
    dz_thick, thick, _ = _curve("20x", thickness_um=4.0)
    assert _fwhm(dz_thick, thick) > 1.15 * _fwhm(dz_thin, thin)


def test_defocus_conserves_brightness_and_glass_stays_clear() -> None:
    slide = VirtualSlide(seed=2)
    renderer = Renderer("20x", "low", "clean", shape=(96, 128))
    focus = float(slide.focus_z_um(X0, Y0))
    frames = renderer.optical_stack(slide, X0, Y0, [focus - 6.0, focus, focus + 6.0])
    means = frames.mean(axis=(2, 3))
    assert np.allclose(means[0], means[1], rtol=0.02) and np.allclose(means[2], means[1], rtol=0.02)
    # Far from the tissue: clear glass, exactly uniform whatever the defocus.
    glass = renderer.optical_stack(slide, -5000.0, -5000.0, [focus + 3.0])
    assert np.allclose(glass, 1.0, atol=1e-4)
    # Tissue absorbs: the in-focus frame at the tissue is darker than glass.
    assert means[1].max() < 0.95


def test_camera_levels_and_noise() -> None:
    slide = VirtualSlide(seed=2)
    clean = Renderer("20x", "low", "clean", shape=(64, 64))
    noisy = Renderer("20x", "low", "same", shape=(64, 64))
    z = float(slide.focus_z_um(-5000.0, -5000.0))
    glass_clean = clean.render(slide, -5000.0, -5000.0, z)
    glass_noisy = noisy.render(slide, -5000.0, -5000.0, z, rng=1)
    assert glass_clean.dtype == np.uint8 and glass_clean.shape == (64, 64, 3)
    assert int(glass_clean.max()) == int(glass_clean.min()) == round(get_protocol("clean").white_level_dn)
    # Shot noise of ~8000 electrons at white: sigma ~ 235 / sqrt(8000) ~ 2.6 DN.
    sd = glass_noisy.astype(np.float64).std(axis=(0, 1))
    assert np.all((sd > 1.5) & (sd < 4.0))


def test_same_inputs_same_bytes() -> None:
    slide = VirtualSlide(seed=3)
    z = float(slide.focus_z_um(X0, Y0)) + 2.0
    a = Renderer("20x", "low", "diff", shape=(64, 80)).render(slide, X0, Y0, z, rng=7)
    b = Renderer("20x", "low", "diff", shape=(64, 80)).render(VirtualSlide(seed=3), X0, Y0, z, rng=7)
    c = Renderer("20x", "low", "diff", shape=(64, 80)).render(slide, X0, Y0, z, rng=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_protocols_differ_in_colour() -> None:
    slide = VirtualSlide(seed=1)
    z = float(slide.focus_z_um(X0, Y0))
    same = Renderer("20x", "low", "same", shape=(96, 96)).render(slide, X0, Y0, z, rng=0).reshape(-1, 3).mean(0)
    diff = Renderer("20x", "low", "diff", shape=(96, 96)).render(slide, X0, Y0, z, rng=0).reshape(-1, 3).mean(0)
    # The other lab's halogen lamp and stains: a different colour balance (B/R ratio).
    assert abs(same[2] / same[0] - diff[2] / diff[0]) > 0.1


def test_high_resolution_frame_agrees_with_low_resolution_frame() -> None:
    """Both modes see the same field; the high one, reduced, matches the low one."""
    import cv2

    slide = VirtualSlide(seed=1)
    z = float(slide.focus_z_um(X0, Y0))
    low = Renderer("20x", "low", "clean", shape=(60, 80))
    high = Renderer("20x", "high", "clean", shape=(190, 253))
    assert high.upsample > 1  # computed on a coarser grid, then interpolated
    a = low.render(slide, X0, Y0, z).astype(np.float64)
    b = cv2.resize(high.render(slide, X0, Y0, z), (80, 60), interpolation=cv2.INTER_AREA).astype(np.float64)
    corr = np.corrcoef(a[..., 1].ravel(), b[..., 1].ravel())[0, 1]
    assert corr > 0.9
