"""Physics of the pupil, PSF and OTF (issue 4): textbook values a wrong model would miss."""

from __future__ import annotations

import math

import numpy as np
import pytest
from deepaf_host.optics import OBJECTIVES, PupilModel, RadialOTF, psf_2d, radial_psf

GREEN = 0.54


def _fwhm(r: np.ndarray, profile: np.ndarray) -> float:
    """Full width at half maximum of a radial profile peaking at r = 0 (linear interpolation)."""
    half = profile[0] / 2.0
    i = int(np.argmax(profile < half))
    r0, r1, p0, p1 = r[i - 1], r[i], profile[i - 1], profile[i]
    return 2.0 * (r0 + (half - p0) * (r1 - r0) / (p1 - p0))


@pytest.mark.parametrize("key", ["4x", "20x", "40x"])
@pytest.mark.parametrize("wavelength", [0.46, 0.61])
def test_in_focus_fwhm_is_airy(key: str, wavelength: float) -> None:
    obj = OBJECTIVES[key]
    model = PupilModel.of(obj, wavelength)
    expected = 0.51 * wavelength / obj.na
    r = np.linspace(0.0, expected, 801)
    fwhm = _fwhm(r, radial_psf(model, r, 0.0))
    assert fwhm == pytest.approx(expected, rel=0.05)
    # The same from the 2-D FFT of the sampled pupil (an independent computation).
    pixel = wavelength / obj.na / 40.0
    psf = psf_2d(model, 0.0, pixel, 256)
    row = psf[128, 128:]
    fwhm_fft = _fwhm(np.arange(row.size) * pixel, row)
    assert fwhm_fft == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("dz", [0.0, 1.0, 4.0])
def test_psf_sums_to_one(dz: float) -> None:
    obj = OBJECTIVES["20x"]
    model = PupilModel.of(obj, GREEN, coverslip_error_um=20.0)
    # 2-D FFT PSF: normalised on its grid.
    psf = psf_2d(model, dz, 0.06, 512)
    assert psf.sum() == pytest.approx(1.0, abs=1e-9)
    assert psf.min() >= 0.0
    # Hankel PSF: normalised by the pupil's energy (Parseval), not by its own sum; its
    # integral over the plane must come out at one on its own.
    r = np.linspace(0.0, 60.0, 12001)[1:]
    integral = np.trapezoid(2.0 * math.pi * r * radial_psf(model, r, dz), r)
    assert integral == pytest.approx(1.0, abs=0.01)
    # OTF tables: unit at zero frequency (brightness is conserved by defocus).
    tables = RadialOTF(model, 10.0, 0.01)
    assert tables.table(dz)[0] == pytest.approx(1.0)


def test_axial_intensity_matches_paraxial_formula() -> None:
    """I(0, dz) / I(0, 0) = [sin(u/4) / (u/4)]^2 with u = 2 pi NA^2 dz / (n lambda)."""
    obj = OBJECTIVES["20x"]
    paraxial = PupilModel.of(obj, GREEN, paraxial=True)
    dzs = np.linspace(-4.0, 4.0, 33)
    measured = np.array([radial_psf(paraxial, np.zeros(1), dz)[0] for dz in dzs])
    measured /= radial_psf(paraxial, np.zeros(1), 0.0)[0]
    u = 2.0 * math.pi * obj.na**2 * dzs / (obj.immersion_index * GREEN)
    expected = np.sinc(u / (4.0 * math.pi)) ** 2
    assert np.abs(measured - expected).max() < 1e-3
    # First zero at dz = 2 n lambda / NA^2, as the formula says.
    assert expected[np.argmin(np.abs(dzs - 2 * GREEN / obj.na**2))] < 0.02
    # The default (angular-spectrum) defocus agrees with the paraxial form at low NA...
    low = OBJECTIVES["4x"]
    exact = PupilModel.of(low, GREEN)
    dzs = np.linspace(-200.0, 200.0, 21)
    measured = np.array([radial_psf(exact, np.zeros(1), dz)[0] for dz in dzs]) / radial_psf(exact, np.zeros(1), 0.0)[0]
    u = 2.0 * math.pi * low.na**2 * dzs / GREEN
    assert np.abs(measured - np.sinc(u / (4.0 * math.pi)) ** 2).max() < 0.01
    # ...and departs from it at NA 0.75, where the paraxial form is no longer valid: the
    # first axial minimum moves from 2 n lambda / NA^2 to about lambda / (n - sqrt(n^2 - NA^2)).
    exact20 = PupilModel.of(obj, GREEN)
    dzs = np.linspace(0.5, 2.5, 401)
    axial = [radial_psf(exact20, np.zeros(1), dz)[0] for dz in dzs]
    minimum = dzs[int(np.argmin(axial))]
    assert minimum == pytest.approx(GREEN / (1.0 - math.sqrt(1.0 - obj.na**2)), rel=0.05)
    assert minimum < 0.9 * 2 * GREEN / obj.na**2


def test_defocus_symmetric_without_spherical_aberration() -> None:
    model = PupilModel.of(OBJECTIVES["20x"], GREEN)
    r = np.linspace(0.0, 8.0, 2001)
    for dz in (0.7, 1.5, 3.0):
        plus, minus = radial_psf(model, r, dz), radial_psf(model, r, -dz)
        assert np.abs(plus - minus).sum() / plus.sum() < 1e-9


def test_defocus_asymmetric_with_spherical_aberration() -> None:
    model = PupilModel.of(OBJECTIVES["20x"], GREEN, coverslip_error_um=15.0)
    # A realistic amount: a 15 um cover-glass error at NA 0.75 is ~0.05 waves RMS.
    assert 0.02 < model.spherical_rms_waves() < 0.1
    r = np.linspace(0.0, 8.0, 2001)
    for dz in (0.7, 1.5, 3.0):
        plus, minus = radial_psf(model, r, dz), radial_psf(model, r, -dz)
        assert np.abs(plus - minus).sum() / plus.sum() > 0.1
    # Balanced: best focus (peak intensity) stays at dz = 0, within a tenth of the DoF.
    dzs = np.linspace(-0.5, 0.5, 41)
    peak = dzs[np.argmax([radial_psf(model, np.zeros(1), dz)[0] for dz in dzs])]
    assert abs(peak) <= 0.1 * OBJECTIVES["20x"].depth_of_field_um()


@pytest.mark.parametrize(("key", "dz"), [("20x", 10.0), ("20x", -20.0), ("40x", 10.0), ("10x", 80.0), ("4x", 600.0)])
def test_large_defocus_blur_radius_is_geometric(key: str, dz: float) -> None:
    """The encircled energy is that of a geometric disc of radius dz tan(asin(NA/n))."""
    obj = OBJECTIVES[key]
    model = PupilModel.of(obj, GREEN)
    edge = abs(dz) * math.tan(math.asin(obj.na / obj.immersion_index))
    assert obj.geometric_blur_radius_um(dz) == pytest.approx(edge)
    r = np.linspace(0.0, 2.0 * edge, 4001)[1:]
    ee = np.cumsum(2.0 * math.pi * r * radial_psf(model, r, dz)) * (r[1] - r[0])

    def geometric(radius: float) -> np.ndarray:
        # Rays leave the pupil uniformly in sin(theta); a ray at theta lands at |dz| tan(theta).
        rr = r * edge / radius
        return np.minimum(1.0, (rr / (obj.na * np.sqrt(rr**2 + dz**2))) ** 2)

    scales = np.linspace(0.7, 1.3, 601)
    best = scales[np.argmin([np.mean((ee - geometric(edge * s)) ** 2) for s in scales])]
    assert best == pytest.approx(1.0, abs=0.05)
    assert ee[np.searchsorted(r, 1.1 * edge)] > 0.95  # nearly all light inside the disc


def test_otf_tables_match_fft_of_the_psf() -> None:
    model = PupilModel.of(OBJECTIVES["20x"], GREEN, coverslip_error_um=15.0)
    tables = RadialOTF(model, 12.0, 0.005)
    for dz in (0.0, -1.0, 2.5, 8.0):
        psf = psf_2d(model, dz, 0.1, 1024)
        otf = np.real(np.fft.fft2(np.fft.ifftshift(psf)))[0, :512]
        f = np.fft.fftfreq(1024, 0.1)[:512]
        assert np.abs(np.interp(f, tables.frequencies(), tables.table(dz)) - otf).max() < 0.01
