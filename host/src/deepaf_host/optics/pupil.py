"""Pupil, point spread function and optical transfer function of a brightfield objective.

Scalar, incoherent imaging of one colour channel. The pupil is a disc of radius
``NA / lambda`` in spatial frequency (cycles/um) with a phase

    phi(nu) = 2 pi / lambda * [ dz * (sqrt(n^2 - (lambda nu)^2) - n) + W_sa(nu) ],

the angular-spectrum (non-paraxial) defocus for a specimen ``dz`` further from the
objective than the focal plane, plus ``W_sa``: the wavefront error of a cover-glass
thickness error ``t`` (glass index ``n_g``), ``t * sqrt(n_g^2 - (lambda nu)^2)``, with
its best-fit piston and defocus removed over the pupil. Removing the defocus part
("balancing" it, as Zernike primary spherical does) keeps best focus at ``dz = 0`` while
``+dz`` and ``-dz`` blur differently. ``paraxial=True`` replaces the defocus term by its
paraxial form ``-dz (lambda nu)^2 / (2 n)`` (for comparison with textbook formulas).

``PSF = |FT(pupil)|^2``, normalised to unit integral. Because pupil and aberrations are
rotationally symmetric, the fast path computes the PSF and the OTF as Hankel transforms
(the 2-D Fourier transform of a radial function) on radial grids; ``psf_2d`` computes the
same PSF with a 2-D FFT of the sampled pupil (used by the tests as an independent check).

Partially coherent brightfield (Koehler illumination with the condenser closed to a
fraction ``sigma`` of the objective NA) is imaged through the weak-object transfer
functions (Hopkins; Streibl 1985; Tian and Waller 2015). For an object transmittance
``exp(-mu + i phi)`` with small ``mu`` and ``phi`` and a uniform disc source ``S`` of
radius ``sigma NA / lambda``, the image is

    I = B + H_A (x) mu + H_P (x) phi,   C(f) = int S(v) P*(v) P(v + f) dv,
    H_A = -2 Re C,  H_P = -2 Im C,  B = C(0)

for a pupil and source that are symmetric under v -> -v (as here). ``C`` is the cross
correlation of the source-limited pupil ``S P`` with ``P``; by the correlation theorem
it is the Fourier transform of ``conj(a_S) a``, the product of the two amplitude PSFs,
and both are radial, so ``C`` is one more Hankel transform of products this module
already computes. With ``sigma >= 1`` the source fills the pupil, ``C`` is the
incoherent OTF (real: no phase contrast) and ``H_A`` is the OTF that acts on the
absorbed fraction: the incoherent model is the limit, exactly. ``H_P`` is odd in defocus
and zero in focus for an aberration-free pupil (``P`` real): a phase object is invisible
in focus and shows with a contrast whose sign flips across focus (transport of
intensity), the physical cue of the defocus direction that a real microscope offers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import special

from . import _blas
from .presets import COVERSLIP_INDEX, Objective


@dataclass(frozen=True)
class PupilModel:
    """The pupil of one objective in one colour channel."""

    na: float
    wavelength_um: float
    immersion_index: float = 1.0
    coverslip_error_um: float = 0.0
    coverslip_index: float = COVERSLIP_INDEX
    paraxial: bool = False

    @classmethod
    def of(
        cls,
        objective: Objective,
        wavelength_um: float,
        coverslip_error_um: float = 0.0,
        paraxial: bool = False,
    ) -> PupilModel:
        return cls(objective.na, wavelength_um, objective.immersion_index, coverslip_error_um, paraxial=paraxial)

    @property
    def cutoff(self) -> float:
        """Coherent cut-off NA / lambda (cycles/um); the OTF reaches zero at twice this."""
        return self.na / self.wavelength_um

    def defocus_basis(self, nu: np.ndarray) -> np.ndarray:
        """OPD per micrometre of defocus (um/um), zero on axis."""
        s2 = (self.wavelength_um * nu) ** 2
        n = self.immersion_index
        if self.paraxial:
            return -s2 / (2.0 * n)
        return np.sqrt(n * n - s2) - n

    @cached_property
    def _spherical_fit(self) -> tuple[float, float]:
        """Piston and defocus coefficients removed from the cover-glass wavefront."""
        if self.coverslip_error_um == 0.0:
            return (0.0, 0.0)
        rho = (np.arange(4096) + 0.5) / 4096
        nu = rho * self.cutoff
        w = self._raw_spherical(nu)
        basis = np.stack([np.ones_like(nu), self.defocus_basis(nu)], axis=1)
        sw = np.sqrt(rho)[:, None]  # area weights (rho d rho) in the least squares
        coef, *_ = np.linalg.lstsq(basis * sw, w * sw[:, 0], rcond=None)
        return (float(coef[0]), float(coef[1]))

    def _raw_spherical(self, nu: np.ndarray) -> np.ndarray:
        s2 = (self.wavelength_um * nu) ** 2
        return self.coverslip_error_um * np.sqrt(self.coverslip_index**2 - s2)

    def spherical_opd_um(self, nu: np.ndarray) -> np.ndarray:
        """Balanced spherical aberration (um of optical path) at pupil frequencies ``nu``."""
        nu = np.asarray(nu, dtype=np.float64)
        if self.coverslip_error_um == 0.0:
            return np.zeros_like(nu)
        a, b = self._spherical_fit
        return self._raw_spherical(nu) - a - b * self.defocus_basis(nu)

    def spherical_rms_waves(self) -> float:
        """RMS of the balanced spherical aberration over the pupil, in waves."""
        rho = (np.arange(2048) + 0.5) / 2048
        w = self.spherical_opd_um(rho * self.cutoff)
        return float(np.sqrt(np.sum(w * w * rho) / np.sum(rho))) / self.wavelength_um

    def phase(self, nu: np.ndarray, dz_um: float | np.ndarray) -> np.ndarray:
        """Pupil phase (radians) at frequencies ``nu`` (cycles/um) for defocus ``dz_um``."""
        nu = np.asarray(nu, dtype=np.float64)
        opd = dz_um * self.defocus_basis(nu) + self.spherical_opd_um(nu)
        return (2.0 * math.pi / self.wavelength_um) * opd

    def pupil(self, nu: np.ndarray, dz_um: float | np.ndarray) -> np.ndarray:
        """Complex pupil function: unit amplitude inside the aperture, zero outside."""
        nu = np.asarray(nu, dtype=np.float64)
        inside = nu <= self.cutoff
        return np.where(inside, np.exp(1j * self.phase(np.minimum(nu, self.cutoff), dz_um)), 0.0)

    def geometric_radius_um(self, dz_um: float) -> float:
        s = self.na / self.immersion_index
        return abs(dz_um) * s / math.sqrt(1.0 - s * s)


# --- radial (Hankel) transforms --------------------------------------------------------


def _pupil_samples(model: PupilModel, extent_um: float) -> tuple[np.ndarray, float]:
    """Midpoints of the pupil radius, fine enough for the kernel J0(2 pi r nu), r <= extent."""
    n = max(256, math.ceil(12.0 * model.cutoff * extent_um))
    dnu = model.cutoff / n
    return (np.arange(n) + 0.5) * dnu, dnu


def radial_amplitude(model: PupilModel, r_um: np.ndarray, dz_um: float) -> np.ndarray:
    """Amplitude PSF a(r) = 2 pi int P(nu) J0(2 pi r nu) nu dnu, normalised so that
    |a|^2 integrates to one over the plane."""
    r = np.asarray(r_um, dtype=np.float64)
    extent = max(float(r.max(initial=0.0)), model.geometric_radius_um(dz_um))
    nu, dnu = _pupil_samples(model, extent)
    weights = model.pupil(nu, dz_um) * nu * dnu * 2.0 * math.pi
    kernel = special.j0(2.0 * math.pi * np.multiply.outer(r.ravel(), nu))
    amp = (kernel @ weights.real) + 1j * (kernel @ weights.imag)
    return (amp / math.sqrt(math.pi * model.cutoff**2)).reshape(r.shape)


def radial_psf(model: PupilModel, r_um: np.ndarray, dz_um: float) -> np.ndarray:
    """Intensity PSF at radii ``r_um`` (1/um^2); integrates to one over the plane."""
    amp = radial_amplitude(model, r_um, dz_um)
    return (amp.real**2 + amp.imag**2).astype(np.float64)


def psf_2d(model: PupilModel, dz_um: float, pixel_um: float, size: int) -> np.ndarray:
    """PSF sampled on a ``size`` x ``size`` grid of ``pixel_um``, by 2-D FFT of the pupil.

    The pupil is sampled on the FFT frequency grid; the PSF is ``|ifft2(pupil)|^2``,
    centred on pixel (size//2, size//2) and normalised to sum to one. Needs
    ``pixel_um <= lambda / (2 NA)`` (the pupil must fit the frequency grid) and a grid
    larger than the PSF (no wrap-around).
    """
    if pixel_um > 1.0 / (2.0 * model.cutoff):
        raise ValueError(f"pixel {pixel_um} um too coarse for the pupil: need <= {1 / (2 * model.cutoff):.4f} um")
    f = np.fft.fftfreq(size, d=pixel_um)
    nu = np.hypot(f[:, None], f[None, :])
    amp = np.fft.fftshift(np.fft.ifft2(model.pupil(nu, dz_um)))
    psf = amp.real**2 + amp.imag**2
    return psf / psf.sum()


# --- OTF tables for rendering ------------------------------------------------------------


class _Tier:
    """Hankel matrices for defocus up to ``reach_um``: radial grid, pupil grid, kernels.

    The OTF is computed on a frequency grid just fine enough for this tier's PSF extent
    (16 samples per 1/extent) and interpolated onto the common table grid.
    """

    def __init__(self, model: PupilModel, reach_um: float) -> None:
        airy = model.wavelength_um / model.na
        self.reach_um = reach_um
        self.extent_um = model.geometric_radius_um(reach_um) + 30.0 * airy
        dr = 1.0 / (10.0 * model.cutoff)
        nr = math.ceil(self.extent_um / dr)
        self.r = (np.arange(nr) + 0.5) * dr
        self.rdr = 2.0 * math.pi * self.r * dr
        self.nu, self.dnu = _pupil_samples(model, self.extent_um)
        f_max = 2.0 * model.cutoff
        n_f = 1 << max(9, math.ceil(math.log2(16.0 * f_max * self.extent_um)))
        self.f = np.linspace(0.0, f_max, n_f)
        self.j_amp = special.j0(2.0 * math.pi * np.multiply.outer(self.r, self.nu))
        self.j_otf = special.j0(2.0 * math.pi * np.multiply.outer(self.f, self.r)).astype(np.float32)

    def amplitude(self, model: PupilModel, dz_um: float | np.ndarray, source_nu: float | None = None) -> np.ndarray:
        """Amplitude PSF on ``r`` for one defocus, or (len(r), K) for K of them.

        With ``source_nu``, also the amplitude PSF of the pupil limited to the source
        disc of that radius: (len(r), 2K), the full pupil's K columns first.
        """
        dz = np.asarray(dz_um, dtype=np.float64)
        pupil = model.pupil(self.nu[:, None], dz[None, :]) if dz.ndim else model.pupil(self.nu, float(dz))
        scale = self.nu * (2.0 * math.pi * self.dnu / math.sqrt(math.pi * model.cutoff**2))
        weights = pupil * (scale[:, None] if dz.ndim else scale)
        if source_nu is not None:
            w2 = weights if weights.ndim == 2 else weights[:, None]
            weights = np.concatenate([w2, w2 * (self.nu <= source_nu)[:, None]], axis=1)
        # Two real products: numpy's real-matrix-times-complex-vector path is 100x slower.
        return (self.j_amp @ np.ascontiguousarray(weights.real)) + 1j * (self.j_amp @ np.ascontiguousarray(weights.imag))


_SHARED: dict[tuple[object, ...], RadialOTF] = {}


class RadialOTF:
    """Radial OTF tables of one pupil model for defocus up to ``max_defocus_um``.

    ``sigma`` is the condenser NA as a fraction of the objective NA (partial coherence);
    ``None`` is incoherent imaging (``shared`` maps ``sigma >= 1`` to it: the same
    absorption tables, no phase contrast). With a ``sigma`` the tables come in pairs (``pair``/``pairs``): row 0 is the transfer function of the absorbed fraction
    (``H_A / -2B``, the OTF in the incoherent limit), row 1 that of the optical path
    difference in micrometres (``(2 pi / lambda) H_P / -B``), both so that a frame is
    ``1 - irfft(A_hat row0 + OPD_hat row1)``.

    ``table(dz)`` is the OTF sampled at ``k * df`` for ``k = 0 .. length-2`` plus a final
    zero (for frequencies past the cut-off 2 NA / lambda). The PSF is computed on a radial
    grid out to the geometric blur radius plus 30 Airy units; the Hankel matrices come in
    tiers (up to 1/16, 1/4 and all of ``max_defocus_um``, built on first use) so that
    small defocus stays cheap. Defocus beyond the range is clamped to it. Tables are
    cached per defocus quantised to ``dz_quantum_um`` (least recently used out).

    ``table(dz, extent)`` with ``extent > 0`` is the OTF of a uniform absorbing column
    ``extent`` deep centred at ``dz``: the mean of the PSFs over its depth (sampled every
    third of a depth of field), transformed once (the OTF is linear in the PSF).
    """

    def __init__(
        self,
        model: PupilModel,
        max_defocus_um: float,
        dz_quantum_um: float,
        cache_entries: int = 2048,
        sigma: float | None = None,
    ) -> None:
        self.model = model
        if sigma is not None and not sigma > 0:
            raise ValueError(f"condenser sigma must be > 0, got {sigma}")
        #: Condenser fraction of the objective NA (a source larger than the pupil acts as
        #: one that fills it), or None: incoherent, without computing the phase tables.
        self.sigma = None if sigma is None else min(float(sigma), 1.0)
        self.max_defocus_um = float(max_defocus_um)
        self.dz_quantum_um = float(dz_quantum_um)
        self.cache_entries = cache_entries
        airy = model.wavelength_um / model.na
        extent = model.geometric_radius_um(self.max_defocus_um) + 30.0 * airy
        f_max = 2.0 * model.cutoff
        n_tab = 1 << max(11, math.ceil(math.log2(16.0 * f_max * extent)))
        self.df = f_max / (n_tab - 1)
        self.length = n_tab + 1
        self._f = np.arange(n_tab) * self.df
        self._reaches = [self.max_defocus_um / 16.0, self.max_defocus_um / 4.0, self.max_defocus_um]
        self._tiers: dict[int, _Tier] = {}
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    @property
    def coherent(self) -> bool:
        """True when the tables are pairs (absorption, optical path)."""
        return self.sigma is not None

    @classmethod
    def shared(cls, model: PupilModel, max_defocus_um: float, dz_quantum_um: float, sigma: float | None = None) -> RadialOTF:
        """One instance per (model, range, quantum, sigma) for the process, so that renderers
        of the same optics (low and high resolution, several protocols) share tables."""
        sigma = None if sigma is None or sigma >= 1.0 else round(float(sigma), 4)
        key = (model, float(max_defocus_um), float(dz_quantum_um), sigma)
        inst = _SHARED.get(key)
        if inst is None:
            inst = cls(model, max_defocus_um, dz_quantum_um, sigma=sigma)
            _SHARED[key] = inst
            while len(_SHARED) > 24:
                _SHARED.pop(next(iter(_SHARED)))
        return inst

    def _tier_index(self, dz_um: float) -> int:
        return next((i for i, reach in enumerate(self._reaches) if abs(dz_um) <= reach * (1 + 1e-9)), len(self._reaches) - 1)

    def _tier_k(self, k: int) -> _Tier:
        if k not in self._tiers:
            self._tiers[k] = _Tier(self.model, self._reaches[k])
        return self._tiers[k]

    def _tier(self, dz_um: float) -> _Tier:
        return self._tier_k(self._tier_index(dz_um))

    def key(self, dz_um: float) -> int:
        lim = self.max_defocus_um
        return round(min(max(dz_um, -lim), lim) / self.dz_quantum_um)

    def table(self, dz_um: float, extent_um: float = 0.0) -> np.ndarray:
        """The absorption transfer table at one defocus (the OTF when incoherent)."""
        return self.tables([dz_um], extent_um)[0]

    def tables(self, dz_um: Sequence[float], extent_um: float = 0.0) -> list[np.ndarray]:
        """Absorption transfer tables (row 0 of the pairs when partially coherent)."""
        return [t[0] if t.ndim == 2 else t for t in self.pairs(dz_um, extent_um)]

    def phase_table(self, dz_um: float, extent_um: float = 0.0) -> np.ndarray:
        """The optical-path transfer table at one defocus (zeros when incoherent)."""
        t = self.pairs([dz_um], extent_um)[0]
        return t[1] if t.ndim == 2 else np.zeros_like(t)

    def pairs(self, dz_um: Sequence[float], extent_um: float = 0.0) -> list[np.ndarray]:
        """Tables for several defocus values, (2, length) each when partially coherent and
        (length,) when incoherent; missing ones are computed in one batch."""
        q = self.dz_quantum_um
        ext = round(extent_um / q)
        keys = [(self.key(dz), ext) for dz in dz_um]
        missing = sorted({k for k in keys if k not in self._cache})
        out: dict[tuple[int, int], np.ndarray] = {}
        if missing:
            with _blas.single_thread():
                computed = self._compute_many([k[0] * q for k in missing], ext * q)
            out.update(zip(missing, computed))
        for k in keys:
            if k not in out:
                out[k] = self._cache[k]
            self._cache[k] = out[k]
            self._cache.move_to_end(k)
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)
        return [out[k] for k in keys]

    def _compute(self, dz_um: float, extent_um: float = 0.0) -> np.ndarray:
        return self._compute_many([dz_um], extent_um)[0]

    def _compute_many(self, dz_um: Sequence[float], extent_um: float = 0.0) -> list[np.ndarray]:
        lim = self.max_defocus_um
        if extent_um > 0.0:
            dof = self.model.immersion_index * self.model.wavelength_um / self.model.na**2
            n = max(2, math.ceil(3.0 * extent_um / dof))
            sub = extent_um * ((np.arange(n) + 0.5) / n - 0.5)
        else:
            sub = np.zeros(1)
        dzs = np.clip(np.asarray(dz_um, dtype=np.float64)[:, None] + sub[None, :], -lim, lim)  # (D, K)
        tier_of = [self._tier_index(float(np.abs(row).max())) for row in dzs]
        result: list[np.ndarray] = [np.empty(0)] * len(dzs)
        for t in sorted(set(tier_of)):
            rows = [i for i, k in enumerate(tier_of) if k == t]
            tier = self._tier_k(t)
            shape = (len(tier.r), len(rows), dzs.shape[1])
            if self.sigma is None:
                amp = tier.amplitude(self.model, dzs[rows].ravel())  # (Nr, len(rows) * K)
                psf = (amp.real**2 + amp.imag**2).reshape(shape).mean(axis=2)
                otf = tier.j_otf @ (psf * tier.rdr[:, None]).astype(np.float32)  # (n_f, len(rows))
                for col, i in enumerate(rows):
                    tab = np.zeros(self.length, dtype=np.float32)
                    tab[:-1] = np.interp(self._f, tier.f, otf[:, col] / otf[0, col])
                    result[i] = tab
                continue
            # Partially coherent: C = Hankel(conj(a_source) a), one column per defocus.
            amp = tier.amplitude(self.model, dzs[rows].ravel(), source_nu=self.sigma * self.model.cutoff)
            n = amp.shape[1] // 2
            cross = (np.conj(amp[:, n:]) * amp[:, :n]).reshape(shape).mean(axis=2)
            weight = tier.rdr[:, None]
            c_re = tier.j_otf @ (cross.real * weight).astype(np.float32)
            c_im = tier.j_otf @ (cross.imag * weight).astype(np.float32)
            to_opd = 4.0 * math.pi / self.model.wavelength_um  # 2 Im C / B per radian, 2 pi / lambda radians per um
            for col, i in enumerate(rows):
                tab = np.zeros((2, self.length), dtype=np.float32)
                b = c_re[0, col]
                tab[0, :-1] = np.interp(self._f, tier.f, c_re[:, col] / b)
                tab[1, :-1] = np.interp(self._f, tier.f, c_im[:, col] * (to_opd / b))
                result[i] = tab
        return result

    def best_focus_um(self, extent_um: float = 0.0, span_dof: float = 2.0) -> float:
        """Defocus of the sharpest image of an absorbing section ``extent_um`` deep (stage
        units; 0 = thin, see ``tables``): the maximum of the
        gradient energy ``int |H_A(f)|^2 f df`` of a specimen with a 1/f amplitude
        spectrum (what Brenner-like focus measures find), parabolic refinement on a grid
        of a tenth of a depth of field. Zero without aberrations; with spherical
        aberration under partially coherent light it moves off the plane where the
        aberration is balanced (the incoherent best focus), by a few tenths of a micrometre.
        """
        key = round(extent_um / self.dz_quantum_um)
        cache: dict[int, float] = self.__dict__.setdefault("_best_focus", {})
        if key in cache:
            return cache[key]
        dof = self.model.immersion_index * self.model.wavelength_um / self.model.na**2
        grid = np.arange(-span_dof, span_dof + 1e-9, 0.1) * dof  # +-2 depths of field
        f = self.frequencies()
        energy = np.array([float(np.sum(t.astype(np.float64) ** 2 * f)) for t in self.tables(list(grid), extent_um)])
        i = int(np.clip(np.argmax(energy), 1, len(grid) - 2))
        a, b, c = energy[i - 1 : i + 2]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        cache[key] = float(grid[i] + shift * (grid[1] - grid[0]))
        return cache[key]

    def psf(self, dz_um: float) -> tuple[np.ndarray, np.ndarray]:
        """(r, PSF(r)) on the radial grid used for ``dz_um``, unit integral (for tests)."""
        tier = self._tier(dz_um)
        amp = tier.amplitude(self.model, dz_um)
        return tier.r.copy(), amp.real**2 + amp.imag**2

    def frequencies(self) -> np.ndarray:
        """Frequencies (cycles/um) of the table entries."""
        return np.append(self._f, self._f[-1] + self.df)


def otf_index(shape: tuple[int, int], pixel_um: float, df: float, length: int) -> np.ndarray:
    """Index into a radial table for every bin of an ``rfft2`` spectrum of ``shape``."""
    fy = np.fft.fftfreq(shape[0], d=pixel_um)
    fx = np.fft.rfftfreq(shape[1], d=pixel_um)
    rad = np.hypot(fy[:, None], fx[None, :])
    idx = np.rint(rad / df)
    return np.minimum(idx, length - 1).astype(np.intp)


class OTFLookup:
    """Expands radial OTF tables onto the ``rfft2`` grid of one frame size.

    The nearest table entry of every frequency bin is precomputed as an OpenCV
    fixed-point remap (several times faster than a numpy gather on large grids).
    """

    def __init__(self, shape: tuple[int, int], pixel_um: float, df: float, length: int) -> None:
        import cv2

        idx = otf_index(shape, pixel_um, df, length).astype(np.float32)
        self._map, _ = cv2.convertMaps(idx, np.zeros_like(idx), cv2.CV_16SC2, nninterpolation=True)
        self.shape = idx.shape

    def __call__(self, table: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        import cv2

        row = table.reshape(1, -1)
        remap: Any = cv2.remap  # OpenCV's stubs do not admit map2=None
        return remap(row, self._map, None, cv2.INTER_NEAREST, dst=out, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def pixel_mtf(shape: tuple[int, int], pixel_ratio: float = 1.0) -> np.ndarray:
    """MTF of square pixels (100 % fill factor) on the ``rfft2`` layout of ``shape``, for
    camera pixels ``pixel_ratio`` times the grid pitch (1/k on a grid k times coarser)."""
    fy = np.fft.fftfreq(shape[0]) * pixel_ratio
    fx = np.fft.rfftfreq(shape[1]) * pixel_ratio
    return (np.sinc(fy)[:, None] * np.sinc(fx)[None, :]).astype(np.float32)
