"""Peak refinement for sampled focus curves (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Samples = Sequence[float] | np.ndarray


def three_point_peak(z: Samples, score: Samples) -> float | None:
    """The vertex of the parabola through three (z, score) points, or None when they do
    not make a maximum (collinear points, or a minimum).

    When the three scores are positive the parabola is fitted to their logarithms
    (a Gaussian through the points), which is exact for the bell-shaped focus curves of
    most measures and never worse than the plain parabola near the peak. The spacing
    need not be uniform.
    """
    if len(z) != 3 or len(score) != 3:
        raise ValueError("three_point_peak takes exactly three points")
    zs = np.asarray(z, np.float64)
    s = np.asarray(score, np.float64)
    if np.all(s > 0):
        s = np.log(s)
    (z0, z1, z2), (s0, s1, s2) = zs, s
    denom = (z0 - z1) * (z0 - z2) * (z1 - z2)
    if denom == 0:
        return None
    a = (z2 * (s1 - s0) + z1 * (s0 - s2) + z0 * (s2 - s1)) / denom
    b = (z2 * z2 * (s0 - s1) + z1 * z1 * (s2 - s0) + z0 * z0 * (s1 - s2)) / denom
    if not a < 0:
        return None
    return float(-b / (2 * a))


def refine_peak(z: Samples, score: Samples) -> tuple[float, int]:
    """Refine the maximum of a sampled focus curve.

    Returns ``(z_peak, i_best)`` where ``i_best`` is the index of the best sample. The
    best sample and its two neighbours in z give a three-point fit; the result is kept
    within the neighbours' span. Raises ``ValueError`` when the best sample is at either
    end of the z range (the true peak may lie outside it) or there are fewer than three
    samples.
    """
    zs = np.asarray(z, np.float64)
    s = np.asarray(score, np.float64)
    if zs.shape != s.shape or zs.size < 3:
        raise ValueError("refine_peak needs at least three samples of equal length")
    order = np.argsort(zs, kind="stable")
    zs, s = zs[order], s[order]
    i = int(np.argmax(s))
    if i == 0 or i == zs.size - 1:
        raise ValueError(f"the sharpest plane is at the {'lower' if i == 0 else 'upper'} end of the range (z = {zs[i]:.2f} um)")
    vertex = three_point_peak(zs[i - 1 : i + 2], s[i - 1 : i + 2])
    z_peak = zs[i] if vertex is None else float(np.clip(vertex, zs[i - 1], zs[i + 1]))
    return z_peak, int(order[i])


def quadratic_peak(z: Samples, score: Samples, half_width_um: float) -> float | None:
    """Least-squares parabola through the samples within ``half_width_um`` of the best one
    (for dense, noisy, unevenly spaced samples such as a continuous sweep). None when it
    does not make a maximum inside those samples."""
    zs = np.asarray(z, np.float64)
    s = np.asarray(score, np.float64)
    z_best = zs[int(np.argmax(s))]
    near = np.abs(zs - z_best) <= half_width_um
    if np.count_nonzero(near) < 3 or np.ptp(zs[near]) == 0:
        return None
    zc = zs[near] - z_best
    a, b, _ = np.polyfit(zc, s[near], 2)
    if not a < 0:
        return None
    vertex = -b / (2 * a)
    if not zc.min() <= vertex <= zc.max():
        return None
    return float(z_best + vertex)
