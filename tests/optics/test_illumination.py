"""Coherent off-axis LED illumination (issue 17, seed 001): the closed-form transfer
functions against a brute-force coherent image, against the Koehler tables when many
LEDs fill the condenser, the tilted beam's lateral shift, and the renderer's use."""

from __future__ import annotations

import math

import numpy as np
import pytest
from deepaf_host.errors import ConfigError
from deepaf_host.optics import (
    OBJECTIVES,
    PupilModel,
    RadialOTF,
    Renderer,
    VirtualSlide,
    get_protocol,
)
from deepaf_host.optics.illumination import ILLUMINATIONS, OffAxisTransfer
from deepaf_host.optics.pupil import OTFLookup

GREEN = 0.54
OBJ = OBJECTIVES["20x"]
N, DX = 128, 0.09  # 11.5 um field, finer than lambda / (4 NA)
DF = 1.0 / (N * DX)
LATTICE_LED = 9  # an LED whose tilt is a whole number of frequency bins: NA 0.42


def weak_object(seed: int = 0, absorb: float = 0.08, phase: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random weak object: amplitude transmittance and its phase (radians)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(N, d=DX)
    low = np.hypot(f[:, None], f[None, :]) < 1.2
    a = np.fft.ifft2(np.fft.fft2(rng.standard_normal((N, N))) * low).real
    p = np.fft.ifft2(np.fft.fft2(rng.standard_normal((N, N))) * low).real
    mu = absorb * (a - a.min()) / np.ptp(a)
    phi = phase * p / np.abs(p).max()
    return np.exp(-mu + 1j * phi), phi


def coherent_image(t: np.ndarray, model: PupilModel, dz: float, tilt: tuple[int, int]) -> np.ndarray:
    """One tilted plane wave, no approximation: the object spectrum shifted by the tilt
    (its DC passes the pupil at the LED's frequency), through the pupil, |.|^2."""
    f = np.fft.fftfreq(N, d=DX)
    pupil = model.pupil(np.hypot(f[:, None], f[None, :]), dz)
    field = np.fft.ifft2(np.roll(np.fft.fft2(t), tilt, axis=(0, 1)) * pupil)
    return field.real**2 + field.imag**2


def fast_image(t: np.ndarray, phi: np.ndarray, transfer: OffAxisTransfer, dz: float, phase_sign: float = 1.0) -> np.ndarray:
    t_a, t_p = transfer.tables(dz)
    absorbed = np.fft.rfft2(1.0 - np.abs(t) ** 2)
    opd = np.fft.rfft2(phase_sign * phi * GREEN / (2 * math.pi))
    return 1.0 - np.fft.irfft2(absorbed * t_a + opd * t_p, s=(N, N))


@pytest.mark.parametrize("dz", [0.0, 1.5, -1.5, -4.0])
def test_one_led_matches_a_brute_force_coherent_image(dz: float) -> None:
    model = PupilModel.of(OBJ, GREEN, coverslip_error_um=15.0)
    led_na = LATTICE_LED * DF * GREEN
    transfer = OffAxisTransfer(model, ((0.0, led_na),), (N, N), DX)  # (NA_x, NA_y): tilt along axis 0
    t, phi = weak_object()
    exact = coherent_image(t, model, dz, (LATTICE_LED, 0))
    fast = fast_image(t, phi, transfer, dz)
    flipped = fast_image(t, phi, transfer, dz, phase_sign=-1.0)
    rms = float(np.sqrt(np.mean((fast - exact) ** 2)))
    assert rms <= 0.01 * float(exact.mean()), rms  # the weak-object linearisation's error
    assert float(np.sqrt(np.mean((flipped - exact) ** 2))) > 2.0 * rms  # the phase's sign matters


def test_many_leds_filling_the_condenser_reproduce_the_koehler_tables() -> None:
    """Abbe's view of Koehler illumination: a disc of mutually incoherent points. The
    closed-form point sum must give the radial tables' (Hankel) transfer functions."""
    model = PupilModel.of(OBJ, GREEN, coverslip_error_um=15.0)
    sigma, step = 0.7, 0.01
    grid = np.arange(-sigma * OBJ.na, sigma * OBJ.na + 1e-9, step)
    leds = tuple((float(x), float(y)) for x in grid for y in grid if math.hypot(x, y) < sigma * OBJ.na)
    shape, pixel = (96, 96), 0.18
    transfer = OffAxisTransfer(model, leds, shape, pixel)
    radial = RadialOTF(model, 20.0, 0.024, sigma=sigma)
    look = OTFLookup(shape, pixel, radial.df, radial.length)
    for dz, extent in [(0.0, 0.0), (1.0, 0.0), (-2.5, 0.0), (2.0, 2.0)]:
        t_a, t_p = transfer.tables(dz, extent)
        pair = radial.pairs([dz], extent)[0]
        for mine, ref in ((t_a, look(pair[0])), (t_p, look(pair[1]))):
            rel = np.sqrt(np.mean(np.abs(mine - ref) ** 2) / np.mean(ref**2))
            assert rel < 0.03, (dz, extent, rel)  # source sampling and nearest-bin lookup
            assert np.abs(mine.imag).max() < 0.01 * np.abs(ref).max()  # a symmetric source: real tables


def test_tables_are_hermitian_so_frames_are_real() -> None:
    model = PupilModel.of(OBJ, GREEN, coverslip_error_um=15.0)
    transfer = OffAxisTransfer(model, ILLUMINATIONS["off-axis"], (64, 64), 0.18)
    for table in transfer.tables(2.0, 3.0):
        col = table[:, 0]  # fx = 0: T(-fy) must be conj(T(fy))
        np.testing.assert_allclose(col[1:], np.conj(col[1:][::-1]), atol=1e-6)


def test_a_tilted_beam_moves_the_defocused_image_sideways() -> None:
    """Under an LED at angle theta a defocused image shifts by dz tan(theta), to the
    opposite side for the opposite defocus: the cue seed 001's illumination adds."""
    model = PupilModel.of(OBJ, GREEN)
    led_na = 0.4
    transfer = OffAxisTransfer(model, ((led_na, 0.0),), (N, N), DX)
    y, x = np.mgrid[:N, :N] * DX
    dot = 0.3 * np.exp(-((x - N * DX / 2) ** 2 + (y - N * DX / 2) ** 2) / (2 * 0.4**2))
    spectrum = np.fft.rfft2(dot)
    expected = 3.0 * led_na / math.sqrt(1 - led_na**2)
    centres = []
    for dz in (-3.0, 3.0):
        image = 1.0 - np.fft.irfft2(spectrum * transfer.tables(dz)[0], s=(N, N))
        weight = np.clip(1.0 - image, 0.0, None)
        centres.append(float((weight * x).sum() / weight.sum()) - N * DX / 2)
    assert centres[0] * centres[1] < 0
    assert abs(abs(centres[0]) - expected) < 0.15 * expected, (centres, expected)
    assert abs(abs(centres[1]) - expected) < 0.15 * expected, (centres, expected)


def test_a_darkfield_led_is_refused() -> None:
    model = PupilModel.of(OBJ, GREEN)
    with pytest.raises(ConfigError, match="outside the objective's NA"):
        OffAxisTransfer(model, ((0.8, 0.0),), (32, 32), 0.18)
    with pytest.raises(ConfigError, match="illumination"):
        Renderer("10x", "low", get_protocol("clean").with_(led_na=ILLUMINATIONS["off-axis"]), shape=(32, 32))


def test_the_renderer_under_an_led_keeps_glass_clear_and_the_koehler_focus() -> None:
    slide = VirtualSlide(seed=1)
    lab = get_protocol("clean")
    koehler = Renderer("20x", "low", lab, shape=(96, 96))
    led = Renderer("20x", "low", lab.with_(led_na=ILLUMINATIONS["off-axis"]), shape=(96, 96))
    assert led.focus_defocus_um == koehler.focus_defocus_um  # ground truth from the condenser image
    glass = led.optical_stack(slide, 0.0, 0.0, [-4000.0, -3990.0])  # far outside the tissue outline
    np.testing.assert_allclose(glass, 1.0, atol=1e-4)
    x, y = slide.tissue_center_um
    z = slide.focus_z_um(x, y)
    frames = led.optical_stack(slide, x, y, [z - 2.0, z, z + 2.0])
    assert np.isfinite(frames).all() and 0.05 < float(frames.std()) and float(frames.min()) > -0.2
    # Seen under the LED the ±2 um planes differ from the condenser's.
    assert float(np.abs(frames - koehler.optical_stack(slide, x, y, [z - 2.0, z, z + 2.0])).mean()) > 0.01


def test_the_virtual_camera_lights_only_its_autofocus_frames_with_the_led() -> None:
    from deepaf_host.camera.virtual import VirtualCamera
    from deepaf_host.errors import CameraError

    class Pose:
        def __init__(self, xyz: tuple[float, float, float]) -> None:
            self.xyz = xyz

        def true_position_um(self) -> tuple[float, float, float]:
            return self.xyz

    slide = VirtualSlide(seed=1)
    x, y = slide.tissue_center_um
    pose = Pose((x, y, slide.focus_z_um(x, y) + 2.0))
    sizes = "&low=128x96&high=160x120&noise=0"
    led = VirtualCamera.from_url(f"sim://20x?seed=1&illumination=off-axis{sizes}", pose)
    plain = VirtualCamera.from_url(f"sim://20x?seed=1{sizes}", pose)
    assert np.abs(led.grab("low").astype(int) - plain.grab("low").astype(int)).mean() > 2.0
    np.testing.assert_array_equal(led.grab("high"), plain.grab("high"))
    with pytest.raises(CameraError, match="illumination"):
        VirtualCamera.from_url("sim://20x?illumination=ring", pose)
    with pytest.raises(CameraError, match="outside the objective's NA"):
        VirtualCamera.from_url("sim://10x?illumination=off-axis", pose)


def test_stacks_under_an_led_say_so_and_a_condenser_model_refuses_them(tmp_path) -> None:
    from deepaf_host.model.card import ModelCard
    from deepaf_host.model.evaluate import optics_mismatches
    from deepaf_host.model.runtime import default_model_path
    from deepaf_host.stacks import open_stacks
    from deepaf_host.stacks.simulate import simulate_dataset

    simulate_dataset(tmp_path / "oa", stacks=1, z_range_um=(-1.0, 1.0, 1.0), size=(64, 64), illumination="off-axis")
    simulate_dataset(tmp_path / "k", stacks=1, z_range_um=(-1.0, 1.0, 1.0), size=(64, 64))
    oa, k = open_stacks(tmp_path / "oa"), open_stacks(tmp_path / "k")
    assert [r.illumination for r in oa] == ["off-axis"] and [r.illumination for r in k] == ["koehler"]
    assert not np.array_equal(oa.load(0), k.load(0))
    card = ModelCard.load(default_model_path().with_suffix(".json"))
    assert card.illumination == "koehler"
    (_, _, problems), = optics_mismatches(card, [(oa, oa[0])])
    assert [p.quantity for p in problems] == ["illumination"]
    assert "trained under koehler illumination, the stack is lit by off-axis" in problems[0].reason
    assert optics_mismatches(card, [(k, k[0])]) == []
    with pytest.raises(ConfigError, match="outside the objective's NA"):
        simulate_dataset(tmp_path / "x", stacks=1, objective="10x", illumination="off-axis")
