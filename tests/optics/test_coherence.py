"""Partially coherent brightfield (issue 12): the weak-object transfer functions of
absorption and phase against a brute-force Abbe sum, their symmetries, the incoherent
limit, the sign of phase contrast across focus, and axial colour in rendered stacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from deepaf_host.optics import OBJECTIVES, PupilModel, RadialOTF, Renderer, VirtualSlide, get_protocol, psf_2d
from deepaf_host.optics.pupil import otf_index

GREEN = 0.54
OBJ = OBJECTIVES["20x"]
N, DX = 128, 0.09  # Abbe field: 11.5 um, sampled finer than lambda / (4 NA)
SIGMA = 0.5


def abbe_image(t: np.ndarray, model: PupilModel, dz: float, sigma: float) -> np.ndarray:
    """Koehler brightfield by brute force: one coherent image per source point of the
    condenser disc (on the FFT lattice), intensities summed (Abbe's method)."""
    f = np.fft.fftfreq(N, d=DX)
    pupil = model.pupil(np.hypot(f[:, None], f[None, :]), dz)
    spectrum = np.fft.fft2(t)
    df = 1.0 / (N * DX)
    points = [(i, j) for i in range(-N // 2, N // 2) for j in range(-N // 2, N // 2)
              if math.hypot(i * df, j * df) <= sigma * model.cutoff]
    image = np.zeros((N, N))
    for i, j in points:  # illumination tilted by (i, j) lattice steps shifts the spectrum
        field = np.fft.ifft2(np.roll(spectrum, (i, j), axis=(0, 1)) * pupil)
        image += field.real**2 + field.imag**2
    return image / len(points)


def fast_image(t: np.ndarray, opd_um: np.ndarray, otf: RadialOTF, dz: float, phase_sign: float = 1.0) -> np.ndarray:
    """The renderer's path: absorbed fraction and optical path through the radial tables."""
    tab = otf.pairs([dz])[0]
    idx = otf_index((N, N), DX, otf.df, otf.length)
    absorbed = np.fft.rfft2(1.0 - np.abs(t) ** 2)
    return 1.0 - np.fft.irfft2(absorbed * tab[0][idx] + phase_sign * np.fft.rfft2(opd_um) * tab[1][idx], s=(N, N))


def weak_object(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    mu = ndimage.gaussian_filter(rng.random((N, N)), 3.0)
    mu = 0.03 * (mu - mu.min()) / (mu.max() - mu.min())
    phi = ndimage.gaussian_filter(rng.random((N, N)), 2.5)
    phi = 0.15 * (phi - phi.mean()) / np.abs(phi - phi.mean()).max()
    return np.exp(-mu + 1j * phi), phi * GREEN / (2.0 * math.pi)


@pytest.mark.parametrize("coverslip_um", [0.0, 15.0])
@pytest.mark.parametrize("dz", [-2.0, 0.0, 1.0])
def test_fast_path_agrees_with_a_brute_force_abbe_sum(coverslip_um: float, dz: float) -> None:
    model = PupilModel.of(OBJ, GREEN, coverslip_error_um=coverslip_um)
    otf = RadialOTF(model, 12.0, 0.005, sigma=SIGMA)
    t, opd = weak_object()
    inner = slice(16, -16)  # away from the FFT's wrap-around
    truth = abbe_image(t, model, dz, SIGMA)[inner, inner]
    fast = fast_image(t, opd, otf, dz)[inner, inner]
    rms = float(np.sqrt(np.mean((truth - fast) ** 2)))
    assert rms <= 0.01 * truth.mean()
    # The phase term matters: with its sign flipped the paths disagree (where it is seen).
    if dz != 0.0 or coverslip_um:
        wrong = fast_image(t, opd, otf, dz, phase_sign=-1.0)[inner, inner]
        assert float(np.sqrt(np.mean((truth - wrong) ** 2))) > 3 * rms


def test_phase_transfer_is_odd_in_defocus_and_zero_in_focus() -> None:
    otf = RadialOTF(PupilModel.of(OBJ, GREEN), 12.0, 0.005, sigma=SIGMA)
    peak = np.abs(otf.phase_table(1.0)).max()
    assert peak > 0.5  # phase contrast exists out of focus...
    assert np.abs(otf.phase_table(0.0)).max() < 1e-4 * peak  # ...and not in focus
    for dz in (0.5, 1.0, 3.0):
        np.testing.assert_allclose(otf.phase_table(-dz), -otf.phase_table(dz), atol=1e-4 * peak)
        np.testing.assert_allclose(otf.table(-dz), otf.table(dz), atol=1e-4)
    # Spherical aberration breaks both symmetries (the +dz / -dz cue of the old model).
    sa = RadialOTF(PupilModel.of(OBJ, GREEN, coverslip_error_um=20.0), 12.0, 0.005, sigma=SIGMA)
    assert np.abs(sa.phase_table(0.0)).max() > 0.05 * peak


def test_incoherent_limit_is_the_otf() -> None:
    """A source that fills the pupil (sigma = 1) gives the incoherent OTF and no phase
    contrast; both match the 2-D FFT of the PSF (an independent computation)."""
    model = PupilModel.of(OBJ, GREEN, coverslip_error_um=15.0)
    full = RadialOTF(model, 12.0, 0.005, sigma=1.0)
    incoherent = RadialOTF(model, 12.0, 0.005)
    f = np.fft.fftfreq(1024, 0.1)[:512]
    for dz in (0.0, -1.0, 2.5):
        np.testing.assert_allclose(full.table(dz), incoherent.table(dz), atol=2e-3)
        assert np.abs(full.phase_table(dz)).max() < 2e-3
        otf = np.real(np.fft.fft2(np.fft.ifftshift(psf_2d(model, dz, 0.1, 1024))))[0, :512]
        assert np.abs(np.interp(f, full.frequencies(), full.table(dz)) - otf).max() < 0.01
    # A small condenser aperture changes the absorption transfer (coherence matters).
    small = RadialOTF(model, 12.0, 0.005, sigma=0.3)
    assert np.abs(small.table(2.5) - incoherent.table(2.5)).max() > 0.05


def test_positive_phase_is_bright_beyond_focus_and_dark_before() -> None:
    """Transport of intensity: a thicker (positive optical path) spot converges light,
    so it is bright when the focal plane lies beyond the specimen (dz > 0 here: the
    pupil's defocus propagates the field by +dz) and dark before it."""
    model = PupilModel.of(OBJ, GREEN)
    otf = RadialOTF(model, 12.0, 0.005, sigma=SIGMA)
    yy, xx = np.mgrid[:N, :N]
    phi = 0.1 * np.exp(-(((yy - N / 2) ** 2 + (xx - N / 2) ** 2) * DX * DX) / 2.0)
    t = np.exp(1j * phi)
    opd = phi * GREEN / (2.0 * math.pi)
    c = N // 2
    for dz, brighter in ((1.0, True), (-1.0, False)):
        for image in (abbe_image(t, model, dz, SIGMA), fast_image(t, opd, otf, dz)):
            assert (image[c, c] > 1.005) if brighter else (image[c, c] < 0.995)
    assert abs(fast_image(t, opd, otf, 0.0)[c, c] - 1.0) < 1e-3


def _phase_only_stack(dzs: np.ndarray, **changes: object) -> np.ndarray:
    """Green channel of a rendered stack of an unstained section (phase only)."""
    slide = VirtualSlide(seed=3)
    x, y = slide.tissue_center_um
    protocol = get_protocol("clean").with_(stain_strength=(0.0, 0.0, 0.0), coverslip_error_um=0.0,
                                           axial_colour_um=(0.0, 0.0, 0.0), tissue_index_excess=0.02, **changes)
    renderer = Renderer("20x", "low", protocol, shape=(96, 96))
    assert renderer.coherent == (protocol.sigma(renderer.objective) < 1.0)
    focus = float(slide.focus_z_um(x, y))
    optical = renderer.optical_stack(slide, x, y, focus + dzs)
    return optical[:, 1]


def test_weak_phase_object_contrast_flips_sign_with_defocus() -> None:
    above, at, below = _phase_only_stack(np.array([1.0, 0.0, -1.0]), section_thickness_um=0.0001)
    a, b = above - above.mean(), below - below.mean()
    assert float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < -0.9
    assert at.std() < 0.1 * above.std()  # invisible in focus
    # Fully open condenser: incoherent imaging, the unstained section vanishes.
    wide = _phase_only_stack(np.array([1.0]), section_thickness_um=0.0001, condenser_fraction=1.0)
    assert wide.std() < 1e-4


def test_axial_colour_puts_each_channel_in_focus_where_set() -> None:
    slide = VirtualSlide(seed=1)
    x, y = -30000.0 + 37.0, -20000.0 + 11.0
    shifts = (1.5, 0.0, -1.0)
    protocol = get_protocol("clean").with_(section_thickness_um=0.0, coverslip_error_um=0.0, axial_colour_um=shifts)
    renderer = Renderer("20x", "low", protocol, shape=(128, 128))
    focus = float(slide.focus_z_um(x, y))
    dz = np.arange(-3.0, 3.01, 0.25) + 0.05
    frames = renderer.render_stack(slide, x, y, focus + dz)
    for c, shift in enumerate(shifts):
        g = frames[..., c].astype(np.float64)
        sharp = ((g[:, :, 2:] - g[:, :, :-2]) ** 2).mean(axis=(1, 2))
        assert abs(dz[int(np.argmax(sharp))] - shift) <= 0.25
