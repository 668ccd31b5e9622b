"""Calibration maths: pure functions on frames and numbers, no I/O.

Conventions (the scanner's, ``camera/virtual.py`` and ``wsi/solve.py``): image
coordinates are (column u, row v); a stage move of d micrometres moves the view so that
the new frame sits at ``A @ d`` pixels in the old one's coordinates, where ``A``'s
columns are the image directions of machine +X and +Y divided by the pixel size. The
rotation is the angle of +X from the +column axis towards +row; the skew is how far the
angle between the stage's axes in the image is from 90 degrees (positive: wider).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Phase-correlation responses below this are not a match (glass, no overlap, blur).
MIN_RESPONSE = 0.05


def _prepared(frame: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gray float32 with the slow shading (vignetting, uneven light) taken out: it does
    not move with the stage and would pull the correlation towards no shift."""
    import cv2

    g = np.asarray(frame, np.float32)
    if g.ndim == 3:
        g = g.mean(axis=-1, dtype=np.float32)
    return g - cv2.GaussianBlur(g, (0, 0), sigma_px)


def image_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Where frame ``b`` sits in frame ``a``'s pixel coordinates, ``(du, dv, response)``:
    a feature at (u, v) in ``b`` is at (u + du, v + dv) in ``a``. By phase correlation with
    a Hann window, sub-pixel; ``response`` (0-1) says how clear the match is."""
    import cv2

    if a.shape != b.shape:
        raise ValueError(f"frames of different shapes: {a.shape} and {b.shape}")
    sigma = max(2.0, min(a.shape[:2]) / 40.0)
    ga, gb = _prepared(a, sigma), _prepared(b, sigma)
    window = cv2.createHanningWindow(ga.shape[::-1], cv2.CV_32F)
    (sx, sy), response = cv2.phaseCorrelate(ga, gb, window)
    # phaseCorrelate gives the shift of b's content against a's; b's frame sits opposite.
    return -float(sx), -float(sy), float(response)


@dataclass(frozen=True)
class CameraAxes:
    """How the camera sits on the stage, from the image vectors of the stage's axes."""

    #: Image pixels per micrometre of +X and of +Y moves, as (du, dv).
    x_px_per_um: tuple[float, float]
    y_px_per_um: tuple[float, float]

    @property
    def pixel_size_x_um(self) -> float:
        return 1.0 / math.hypot(*self.x_px_per_um)

    @property
    def pixel_size_y_um(self) -> float:
        return 1.0 / math.hypot(*self.y_px_per_um)

    @property
    def pixel_size_um(self) -> float:
        """Square pixels: the geometric mean of the two axes' pixel sizes."""
        return math.sqrt(self.pixel_size_x_um * self.pixel_size_y_um)

    @property
    def angle_x_deg(self) -> float:
        return math.degrees(math.atan2(self.x_px_per_um[1], self.x_px_per_um[0]))

    @property
    def angle_y_deg(self) -> float:
        return math.degrees(math.atan2(-self.y_px_per_um[0], self.y_px_per_um[1]))

    @property
    def rotation_deg(self) -> float:
        """The angle of the stage's +X axis in the image (the camera's rotation)."""
        return self.angle_x_deg

    @property
    def skew_deg(self) -> float:
        """The stage's Y axis off square to X, as seen in the image."""
        return self.angle_y_deg - self.angle_x_deg

    def matrix(self) -> np.ndarray:
        """``A`` (2 x 2): image pixels (du, dv) of a stage move (dx, dy) um."""
        return np.array([[self.x_px_per_um[0], self.y_px_per_um[0]], [self.x_px_per_um[1], self.y_px_per_um[1]]])


def axis_vector(moves_um: Sequence[float], shifts_px: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The image vector (du, dv) of one micrometre along one stage axis, from a chain of
    moves along it and the measured frame offsets: the sums, so that the stage's error
    at each intermediate stop cancels and only the chain's two ends count."""
    total = float(np.sum(moves_um))
    if total == 0:
        raise ValueError("the moves add up to nothing")
    s = np.asarray(shifts_px, np.float64).reshape(-1, 2).sum(axis=0)
    return float(s[0] / total), float(s[1] / total)


def along(axis_px_per_um: tuple[float, float], shift_px: tuple[float, float]) -> float:
    """The stage move (um) along an axis that an image offset corresponds to."""
    a = np.asarray(axis_px_per_um, np.float64)
    return float(np.dot(shift_px, a) / np.dot(a, a))


def fit_peak(z_um: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray, fraction: float = 0.5) -> float | None:
    """The z of a focus curve's maximum: a parabola fitted (least squares) to the log of
    the scores of the contiguous samples around the best one that stay above ``fraction``
    of its height over the curve's floor -- a Gaussian peak, fitted on many samples so
    that where the grid falls on the peak hardly matters. None without a peak inside the
    samples."""
    z = np.asarray(z_um, np.float64)
    s = np.asarray(scores, np.float64)
    order = np.argsort(z)
    z, s = z[order], s[order]
    if z.size < 3 or not np.all(np.isfinite(s)):
        return None
    i = int(np.argmax(s))
    if i == 0 or i == z.size - 1:
        return None
    floor = float(np.min(s))
    height = s[i] - floor
    if height <= 0:
        return None
    level = floor + fraction * height
    lo, hi = i, i
    while lo > 0 and s[lo - 1] >= level:
        lo -= 1
    while hi < z.size - 1 and s[hi + 1] >= level:
        hi += 1
    lo, hi = min(lo, i - 1), max(hi, i + 1)
    zz, ss = z[lo : hi + 1], s[lo : hi + 1] - floor + 1e-3 * height
    a, b, _ = np.polyfit(zz - z[i], np.log(ss), 2)
    if not a < 0:
        return None
    peak = float(z[i] - b / (2 * a))
    return peak if z[lo] <= peak <= z[hi] else None


def flat_field(frames: Sequence[np.ndarray], smooth_px: float = 2.0) -> np.ndarray:
    """The flat field (H, W, 3) float32 of frames of blank glass: their per-pixel median
    (a speck of dirt on the slide moves between frames and goes; one on the camera stays),
    lightly smoothed against the camera noise, each channel scaled to a mean of 1. A tile
    divided by it is evenly lit."""
    import cv2

    stack = np.asarray(frames, np.float32)
    if stack.ndim != 4 or stack.shape[-1] != 3 or len(stack) < 1:
        raise ValueError(f"need RGB frames (N, H, W, 3), got {stack.shape}")
    med: np.ndarray = np.median(stack, axis=0).astype(np.float32)
    if smooth_px > 0:
        med = cv2.GaussianBlur(med, (0, 0), smooth_px)
    means = med.reshape(-1, 3).mean(axis=0)
    if np.any(means <= 1.0):
        raise ValueError("the glass frames are black: check the light and the exposure")
    return (med / means).astype(np.float32)


def corner_falloff(flat: np.ndarray) -> float:
    """How much darker the corners are than the centre, 0-1 (0: even), of a flat field's
    green channel (mean of the four corner 5 % squares against the centre's)."""
    g = np.asarray(flat, np.float64)[..., 1] if np.ndim(flat) == 3 else np.asarray(flat, np.float64)
    h, w = g.shape
    k = max(1, round(min(h, w) * 0.05))
    corners = [g[:k, :k], g[:k, -k:], g[-k:, :k], g[-k:, -k:]]
    centre = g[h // 2 - k // 2 : h // 2 + k // 2 + 1, w // 2 - k // 2 : w // 2 + k // 2 + 1]
    return float(1.0 - np.mean([c.mean() for c in corners]) / centre.mean())
