"""Coherent off-axis illumination: one or a few LEDs instead of the Koehler condenser.

Seed 001 (Pinkard et al., FCFNN) illuminates the specimen with a single LED at 24
degrees off the optical axis (illumination NA ``sin 24 = 0.41`` inside the objective's
0.5) and feeds the magnitude of the image's Fourier transform to its network. This
module gives the renderer the transfer functions of such a source.

For a source of mutually incoherent points ``s_k`` (pupil frequencies NA_k / lambda,
weights ``w_k``) and a weak object ``exp(-mu + i phi)``, the image is (Hopkins; the
same derivation as ``pupil``'s Koehler case, without assuming a symmetric source)

    I / B = 1 + (H_A mu + H_P phi) / B,   C(f) = sum_k w_k P*(s_k) P(s_k + f),
    H_A = -(C(f) + C*(-f)),  H_P = i (C(f) - C*(-f)),  B = C(0) = sum_k w_k.

For a point source ``C`` is closed form: with the pupil ``P(v) = circ(|v| <= NA /
lambda) exp(i k [dz D(|v|) + W(|v|)])`` (``k = 2 pi / lambda``, ``D`` the defocus path
per micrometre, ``W`` the balanced spherical aberration, both from ``PupilModel``),

    C_k(f) = circ(|s_k + f|) exp(i k [dz dD_k(f) + dW_k(f)]),
    dD_k(f) = D(|s_k + f|) - D(|s_k|),  dW_k(f) = W(|s_k + f|) - W(|s_k|).

No Hankel transform is needed: the transfer function is the pupil itself, shifted by
the illumination (the two-circle structure of seed 001's Fig. S2). It is not radially
symmetric, so it is evaluated on the frame's own frequency grid (``OffAxisTransfer``),
not on the radial tables the Koehler path uses. A column of absorbing section of depth
``e`` (the renderer's column model) averages ``C`` over defocus ``dz + u``, u uniform
in [-e/2, e/2]: a real factor ``g(dD) = mean_u cos(k u dD)`` (the mean of
``exp(i k u dD)`` over a symmetric set of ``u``).

The renderer's tables are normalised as the Koehler ones (``pupil.RadialOTF``): a frame
is ``1 - irfft(A_hat T_A + OPD_hat T_P)`` for the absorbed fraction ``A = 2 mu`` and the
optical path difference in micrometres, so

    T_A(f) = (C(f) + C*(-f)) / (2 B),   T_P(f) = -i k (C(f) - C*(-f)) / B.

Both are Hermitian (``T(-f) = T*(f)``): the image is real. For a symmetric source they
reduce to ``Re C / B`` and ``2 k Im C / B``, the Koehler tables: a dense grid of points
filling the condenser disc reproduces ``RadialOTF`` (the tests' Abbe check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .pupil import PupilModel

#: Seed 001's illumination: one LED 24 degrees off the axis.
PINKARD_LED_ANGLE_DEG = 24.0

#: Named sources, LED positions as (NA_x, NA_y) = (sin theta_x, sin theta_y). Empty:
#: Koehler illumination through the condenser (``Protocol.condenser_fraction``).
ILLUMINATIONS: dict[str, tuple[tuple[float, float], ...]] = {
    "koehler": (),
    # Seed 001's main configuration: one LED at 24 degrees.
    "off-axis": ((round(math.sin(math.radians(PINKARD_LED_ANGLE_DEG)), 4), 0.0),),
    # Seed 001's Note S2: a line of LEDs on one side did best of its 18 patterns.
    "off-axis-line": ((0.2, 0.0), (0.3, 0.0), (0.4, 0.0), (0.5, 0.0)),
}
DEFAULT_ILLUMINATION = "koehler"


def get_illumination(name: str) -> tuple[tuple[float, float], ...]:
    """LED positions (NA_x, NA_y) of a named illumination."""
    try:
        return ILLUMINATIONS[str(name)]
    except KeyError:
        raise ConfigError("illumination", f"unknown illumination {name!r}; choose from {', '.join(ILLUMINATIONS)}") from None


def check_leds(leds: tuple[tuple[float, float], ...], na: float) -> None:
    """Every LED must light the field inside the objective's aperture (brightfield): a
    darkfield LED gives no background ``B`` to normalise by."""
    for x, y in leds:
        if not math.hypot(x, y) < na:
            raise ConfigError(
                "illumination",
                f"LED at NA ({x}, {y}) is outside the objective's NA {na}: darkfield is not modelled; "
                f"use illumination NA below {na}",
            )


@dataclass
class _Shifted:
    """One LED's pupil shifted by its frequency, on the bins where it is non-zero."""

    index: np.ndarray  # flat indices of the rfft grid inside the shifted pupil
    d_defocus: np.ndarray  # dD (um of path per um of defocus), float64
    d_spherical: np.ndarray  # dW (um of path)


class OffAxisTransfer:
    """Transfer functions of LED illumination for one colour channel on one ``rfft2`` grid.

    ``shape`` is the real-space grid, ``pixel_um`` its pitch; ``leds`` the LED positions
    in NA units (equal weights). ``tables(d_um, extent_um)`` gives ``(T_A, T_P)`` as
    complex64 arrays of the ``rfft2`` layout for a layer at defocus ``d_um`` (pupil
    defocus, as ``RadialOTF.pairs`` takes it).
    """

    def __init__(self, model: PupilModel, leds: tuple[tuple[float, float], ...], shape: tuple[int, int], pixel_um: float) -> None:
        if not leds:
            raise ConfigError("illumination", "off-axis illumination needs at least one LED")
        check_leds(leds, model.na)
        self.model = model
        self.leds = tuple((float(x), float(y)) for x, y in leds)
        self.k = 2.0 * math.pi / model.wavelength_um
        fy = np.fft.fftfreq(shape[0], d=pixel_um)
        fx = np.fft.rfftfreq(shape[1], d=pixel_um)
        self.spectrum_shape = (len(fy), len(fx))
        lam = model.wavelength_um
        self._plus: list[_Shifted] = []
        self._minus: list[_Shifted] = []
        for na_x, na_y in self.leds:
            sx, sy = na_x / lam, na_y / lam
            s = math.hypot(sx, sy)
            d0 = float(model.defocus_basis(np.array([s]))[0])
            w0 = float(model.spherical_opd_um(np.array([s]))[0])
            for sign, bucket in ((1.0, self._plus), (-1.0, self._minus)):
                # Pupil at s + f (the term C(f)) and at s - f (for C*(-f)).
                nu = np.hypot(sy + sign * fy[:, None], sx + sign * fx[None, :]).ravel()
                index = np.flatnonzero(nu <= model.cutoff)
                v = nu[index]
                bucket.append(_Shifted(index, model.defocus_basis(v) - d0, model.spherical_opd_um(v) - w0))
        self._column: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

    def _depth_samples(self, extent_um: float) -> np.ndarray:
        """Sub-depths of a column, as ``RadialOTF`` samples them (a third of a DoF)."""
        if extent_um <= 0.0:
            return np.zeros(1)
        dof = self.model.immersion_index * self.model.wavelength_um / self.model.na**2
        n = max(2, math.ceil(3.0 * extent_um / dof))
        return extent_um * ((np.arange(n) + 0.5) / n - 0.5)

    def _column_factor(self, extent_um: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """g(dD) per LED, for the ``+f`` and ``-f`` pupils (cached per extent)."""
        key = round(extent_um * 1000)
        hit = self._column.get(key)
        if hit is None:
            sub = self._depth_samples(extent_um)
            hit = []
            for plus, minus in zip(self._plus, self._minus):
                hit.append(tuple(
                    np.mean(np.cos(self.k * np.multiply.outer(sub, part.d_defocus)), axis=0) for part in (plus, minus)
                ))
            self._column[key] = hit
        return hit

    def correlation(self, d_um: float, extent_um: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(C(f), C*(-f)) / B`` as complex128 arrays of the ``rfft2`` layout."""
        n = self.spectrum_shape[0] * self.spectrum_shape[1]
        c_plus = np.zeros(n, dtype=np.complex128)
        c_minus = np.zeros(n, dtype=np.complex128)
        weight = 1.0 / len(self.leds)
        for (plus, minus), (g_plus, g_minus) in zip(zip(self._plus, self._minus), self._column_factor(extent_um)):
            c_plus[plus.index] += (weight * g_plus) * np.exp(1j * self.k * (d_um * plus.d_defocus + plus.d_spherical))
            # C(-f) = P*(s) P(s - f); its conjugate has the opposite phase.
            c_minus[minus.index] += (weight * g_minus) * np.exp(-1j * self.k * (d_um * minus.d_defocus + minus.d_spherical))
        return c_plus.reshape(self.spectrum_shape), c_minus.reshape(self.spectrum_shape)

    def tables(self, d_um: float, extent_um: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(T_A, T_P)``, complex64: absorbed fraction and optical path (um)."""
        c, c_conj_minus = self.correlation(d_um, extent_um)
        t_a = 0.5 * (c + c_conj_minus)
        t_p = (-1j * self.k) * (c - c_conj_minus)
        return t_a.astype(np.complex64), t_p.astype(np.complex64)
