"""Registration of two overlapping tiles: pure functions on arrays.

Tile ``j`` is expected at ``d`` = (dx, dy) pixels from tile ``i`` (top-left to
top-left, from the stage). The expected overlap is cut from both tiles
(:func:`overlap_boxes`, :func:`cut_pair`); if the stage were exact the two strips would
show the same specimen. Phase correlation (:func:`phase_correlate`: high-passed strips,
Tukey window, zero-padded FFT so the correlation does not wrap, Gaussian sub-pixel
peak) measures the correction ``c`` with ``d_true = d + c``; its confidence is the
normalised cross-correlation (NCC) of the two strips once ``c`` is applied, on the
pixels they then share. A pair is accepted when that NCC is high enough, ``|c|`` is
within the bound the stage can be wrong by, and enough of the strip is still shared:
glass, out-of-focus or featureless overlaps give an NCC near 0 and are rejected, and
the global solve places those tiles by the stage and their other neighbours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.fft

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in a tile's pixels


@dataclass(frozen=True)
class PairResult:
    """The measured offset of tile ``j`` from tile ``i``."""

    #: Correction to the expected offset, pixels (x, y): d_true = d_expected + correction.
    dx: float
    dy: float
    #: NCC of the strips after the correction, in [-1, 1].
    ncc: float
    #: Phase-correlation peak response.
    response: float
    #: Fraction of the strip still shared after the correction.
    shared: float
    ok: bool
    reason: str = ""


def overlap_boxes(d: tuple[float, float], shape_i: tuple[int, int], shape_j: tuple[int, int]) -> tuple[Box, Box] | None:
    """Where tile ``j`` (at integer-rounded offset ``d`` from tile ``i``) overlaps ``i``:
    the box in ``i``'s pixels and the same specimen area in ``j``'s pixels; None when
    they do not overlap."""
    dx, dy = round(d[0]), round(d[1])
    hi, wi = shape_i
    hj, wj = shape_j
    x0, x1 = max(0, dx), min(wi, dx + wj)
    y0, y1 = max(0, dy), min(hi, dy + hj)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1), (x0 - dx, y0 - dy, x1 - dx, y1 - dy)


def grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 grey of an RGB uint8 image (the green channel carries the most detail in
    brightfield; the luma mix is as good and less noisy)."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _highpass(strip: np.ndarray, sigma: float) -> np.ndarray:
    f = strip.astype(np.float32)
    return f - cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _tukey(n: int, alpha: float = 0.5) -> np.ndarray:
    """A Tukey window: flat in the middle, cosine tapers over ``alpha / 2`` at each end."""
    x = np.arange(n, dtype=np.float64) / max(n - 1, 1)
    w = np.ones(n)
    edge = alpha / 2
    lo, hi = x < edge, x > 1 - edge
    w[lo] = 0.5 * (1 + np.cos(np.pi * (x[lo] / edge - 1)))
    w[hi] = 0.5 * (1 + np.cos(np.pi * ((x[hi] - 1) / edge + 1)))
    return w


def _peak_offset(line: np.ndarray, p: int) -> float:
    """Sub-pixel peak position along ``line`` near index ``p``: a Gaussian through the
    peak and its two neighbours (exact for a Gaussian peak, ~0.02 px on tissue)."""
    n = len(line)
    lo, mid, hi = (math.log(max(float(line[(p + k) % n]), 1e-12)) for k in (-1, 0, 1))
    den = lo - 2.0 * mid + hi
    return p + (0.5 * (lo - hi) / den if den < 0 else 0.0)


def phase_correlate(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(cx, cy, peak) such that ``b(u) = a(u + c)``, for two float images of one shape.

    The images are Tukey-windowed and zero-padded by half their size, so shifts up to
    half a strip are measured without the circular wrap-around of a plain FFT.
    """
    h, w = a.shape
    win = np.outer(_tukey(h), _tukey(w)).astype(np.float32)
    size = (scipy.fft.next_fast_len(h + h // 2, real=True), scipy.fft.next_fast_len(w + w // 2, real=True))
    fa = scipy.fft.rfft2(a * win, size)
    fb = scipy.fft.rfft2(b * win, size)
    cross = fb * np.conj(fa)
    cross /= np.abs(cross) + 1e-12
    corr = scipy.fft.irfft2(cross, size)
    py, px = np.unravel_index(int(np.argmax(corr)), corr.shape)
    cx = _peak_offset(corr[py, :], int(px))
    cy = _peak_offset(corr[:, px], int(py))
    if cx > size[1] / 2:
        cx -= size[1]
    if cy > size[0] / 2:
        cy -= size[0]
    return -cx, -cy, float(corr[py, px])


def _shifted_ncc(a: np.ndarray, b: np.ndarray, ix: int, iy: int) -> float:
    """NCC of ``a[u + (ix, iy)]`` against ``b[u]`` on the pixels both have."""
    h, w = a.shape
    x0, x1 = max(0, -ix), min(w, w - ix)
    y0, y1 = max(0, -iy), min(h, h - iy)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return -1.0
    return _ncc(a[y0 + iy:y1 + iy, x0 + ix:x1 + ix], b[y0:y1, x0:x1])


def _refine(a: np.ndarray, b: np.ndarray, ix: int, iy: int, steps: int = 3) -> tuple[float, float, float]:
    """Hill-climb the NCC over whole-pixel shifts from the phase-correlation estimate,
    then a parabola through the peak and its neighbours in x and in y. The NCC on the
    shared pixels is not biased by the window, which matters for narrow overlaps."""
    cache: dict[tuple[int, int], float] = {}

    def score(x: int, y: int) -> float:
        if (x, y) not in cache:
            cache[(x, y)] = _shifted_ncc(a, b, x, y)
        return cache[(x, y)]

    for _ in range(steps):
        best = max(((ix + dx, iy + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)), key=lambda p: score(*p))
        if best == (ix, iy):
            break
        ix, iy = best
    peak = score(ix, iy)

    def vertex(lo: float, hi: float) -> float:
        den = lo - 2.0 * peak + hi
        return float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5)) if den < 0 else 0.0

    return ix + vertex(score(ix - 1, iy), score(ix + 1, iy)), iy + vertex(score(ix, iy - 1), score(ix, iy + 1)), peak


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def register_strips(
    strip_i: np.ndarray,
    strip_j: np.ndarray,
    *,
    max_shift_px: float,
    min_ncc: float = 0.3,
    min_shared: float = 0.25,
    highpass_sigma: float = 6.0,
) -> PairResult:
    """Measure the correction between two grey strips of the same expected specimen area.

    ``strip_j(u) = strip_i(u + c)`` for the returned ``c`` = (dx, dy). The strips must be
    the same shape (as :func:`cut_pair` gives them).
    """
    if strip_i.shape != strip_j.shape:
        raise ValueError(f"strips differ in shape: {strip_i.shape} vs {strip_j.shape}")
    h, w = strip_i.shape[:2]
    if h < 8 or w < 8:
        return PairResult(0.0, 0.0, 0.0, 0.0, 0.0, False, "overlap too small")
    a = _highpass(strip_i, highpass_sigma)
    b = _highpass(strip_j, highpass_sigma)
    if float(a.std()) < 0.5 or float(b.std()) < 0.5:
        return PairResult(0.0, 0.0, 0.0, 0.0, 0.0, False, "no texture")
    cx, cy, response = phase_correlate(a, b)
    if abs(cx) < w - 2 and abs(cy) < h - 2:
        cx, cy, ncc = _refine(a, b, round(cx), round(cy))
    else:
        ncc = 0.0
    ix, iy = round(cx), round(cy)
    shared = max(0, w - abs(ix)) * max(0, h - abs(iy)) / float(w * h)
    if math.hypot(cx, cy) > max_shift_px:
        return PairResult(cx, cy, ncc, float(response), shared, False, f"shift {math.hypot(cx, cy):.1f} px beyond {max_shift_px:.1f} px")
    if shared < min_shared:
        return PairResult(cx, cy, ncc, float(response), shared, False, f"only {shared:.0%} of the overlap shared")
    if ncc < min_ncc:
        return PairResult(cx, cy, ncc, float(response), shared, False, f"NCC {ncc:.2f} below {min_ncc:.2f}")
    return PairResult(cx, cy, ncc, float(response), shared, True)


def cut_pair(
    grey_i: np.ndarray, grey_j: np.ndarray, d: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The expected-overlap strips of two grey tiles (None when they do not overlap)."""
    boxes = overlap_boxes(d, grey_i.shape[:2], grey_j.shape[:2])
    if boxes is None:
        return None
    (x0, y0, x1, y1), (u0, v0, u1, v1) = boxes
    return grey_i[y0:y1, x0:x1], grey_j[v0:v1, u0:u1]


def register_pair(
    rgb_i: np.ndarray, rgb_j: np.ndarray, d: tuple[float, float], *, max_shift_px: float, min_ncc: float = 0.3
) -> PairResult:
    """Register two RGB tiles expected ``d`` apart (the whole-tile convenience form).

    The result's (dx, dy) correct ``d``: ``d_true = (round(d) + correction)``.
    """
    cut = cut_pair(grey(rgb_i), grey(rgb_j), d)
    if cut is None:
        return PairResult(0.0, 0.0, 0.0, 0.0, 0.0, False, "no overlap")
    return register_strips(cut[0], cut[1], max_shift_px=max_shift_px, min_ncc=min_ncc)
