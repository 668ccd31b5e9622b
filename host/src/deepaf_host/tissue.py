"""Tissue detection on brightfield frames: pure functions on RGB arrays.

Seed 000 (eq. 1) keeps a frame when the mean of the HSV value channel passes a
threshold, ``1/N sum V_i > tau``. On a brightfield microscope the empty glass is the
BRIGHTEST thing in view: stained tissue absorbs light, so it LOWERS the value ``V`` and
RAISES the saturation ``S`` (see host/docs/tissue/README.md for the measurements on a
real IHC image and on simulated H&E fields). Read literally, eq. 1 would keep the empty
glass; the statistic is right but the direction must be ``mean V < tau`` for tissue
(the paper presumably worked on an inverted value or on dark-field-like frames).

A mean over the whole frame is also a weak test when tissue covers only a corner of the
field, and pale connective tissue is barely darker than glass. So this module decides
per pixel, on both channels, after a small box blur (texture in tissue averages to a
darker/more saturated level, while camera noise on glass averages out):

    tissue pixel  <=>  blur(V) < value_max   or   blur(S) > saturation_min

and reports the tissue fraction of the frame. The thresholds come from a frame of blank
glass (:func:`calibrate`): the darkest blurred ``V`` and the most saturated blurred
``S`` seen on glass (robust percentiles, which cover vignetting and noise), each moved
by a margin. :data:`DEFAULT_THRESHOLDS` serve when no blank frame is at hand.

:func:`select_patches` picks up to K square patches (224x224 for the model), most tissue
first, without overlap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TissueThresholds:
    """Per-pixel thresholds of the tissue test (values in [0, 1])."""

    #: A pixel whose blurred HSV value is below this is tissue (glass is brighter).
    value_max: float
    #: A pixel whose blurred HSV saturation is above this is tissue (glass is grey).
    saturation_min: float
    #: Side of the box blur in pixels (odd; 1 = none).
    blur_px: int = 9
    #: Seed 000 eq. 1's tau for the frame mean of V: frames darker than this have tissue.
    mean_value_max: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


#: Thresholds for a white-balanced, well-exposed brightfield camera (glass V >= 0.85,
#: S <= 0.08) when no blank frame was taken. Calibrate for anything else.
DEFAULT_THRESHOLDS = TissueThresholds(value_max=0.80, saturation_min=0.12, blur_px=9, mean_value_max=0.80)


def value_saturation(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV value and saturation of an RGB ``uint8`` frame, as float32 in [0, 1].

    V = max(R, G, B); S = (max - min) / max (0 where max = 0), as OpenCV and skimage.
    """
    rgb = np.asarray(frame)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB frame, got {rgb.dtype}")
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    scale = np.float32(1.0 / 255.0)
    return hsv[..., 2].astype(np.float32) * scale, hsv[..., 1].astype(np.float32) * scale


def mean_value(frame: np.ndarray) -> float:
    """Seed 000 eq. 1's statistic: the mean of the HSV value channel, in [0, 1]."""
    v, _ = value_saturation(frame)
    return float(v.mean(dtype=np.float64))


def _blur(channel: np.ndarray, blur_px: int) -> np.ndarray:
    if blur_px <= 1:
        return channel
    return cv2.blur(channel, (blur_px, blur_px), borderType=cv2.BORDER_REFLECT)


def calibrate(
    blank: np.ndarray,
    *,
    value_margin: float = 0.05,
    saturation_margin: float = 0.05,
    blur_px: int = 9,
    percentile: float = 0.5,
) -> TissueThresholds:
    """Thresholds from a frame of blank glass (no tissue in view).

    ``value_max`` = the ``percentile``-th percentile of the blurred V on glass minus
    ``value_margin``; ``saturation_min`` = the (100 - ``percentile``)-th percentile of the
    blurred S plus ``saturation_margin``. ``mean_value_max`` (eq. 1's tau) = the mean V
    of the glass minus ``value_margin``. Raises ``ValueError`` for a frame that does not
    look like glass (too dark to threshold against).
    """
    if blur_px < 1 or blur_px % 2 == 0:
        raise ValueError(f"blur_px must be a positive odd number, got {blur_px}")
    v, s = value_saturation(blank)
    vb, sb = _blur(v, blur_px), _blur(s, blur_px)
    v_lo = float(np.percentile(vb, percentile))
    s_hi = float(np.percentile(sb, 100.0 - percentile))
    if v_lo - value_margin <= 0.05:
        raise ValueError(f"blank frame is too dark to calibrate on (glass V {v_lo:.3f}); check the light and exposure")
    return TissueThresholds(
        value_max=v_lo - value_margin,
        saturation_min=min(1.0, s_hi + saturation_margin),
        blur_px=blur_px,
        mean_value_max=float(v.mean(dtype=np.float64)) - value_margin,
    )


def tissue_mask(frame: np.ndarray, thresholds: TissueThresholds = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Boolean (H, W) mask, True where the frame shows tissue."""
    v, s = value_saturation(frame)
    vb, sb = _blur(v, thresholds.blur_px), _blur(s, thresholds.blur_px)
    return (vb < thresholds.value_max) | (sb > thresholds.saturation_min)


def tissue_fraction(mask: np.ndarray) -> float:
    """The fraction of True pixels of a tissue mask."""
    m = np.asarray(mask, dtype=bool)
    return float(np.count_nonzero(m)) / m.size if m.size else 0.0


def looks_blank(frame: np.ndarray, *, deviation: float = 0.04, background_px: int = 61, blur_px: int = 9) -> bool:
    """True for a frame of blank glass, whatever the lamp's colour and the exposure.

    The thresholds of :func:`tissue_mask` need a blank frame first; a camera that is not
    white-balanced (a yellow halogen lamp) makes glass look saturated, so the default
    thresholds call it tissue. Glass is featureless instead: each channel, blurred over
    ``blur_px``, stays within ``deviation`` (relative) of its own smooth background
    (``background_px`` box: vignetting and uneven light pass) at all but 0.2 % of the
    pixels. Stained tissue at any magnification has detail that fails it. A frame too
    dark to judge (mean below 20 DN) is not blank.
    """
    rgb = np.asarray(frame, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB frame (H, W, 3), got shape {rgb.shape}")
    if float(rgb.mean()) < 20.0:
        return False
    fine = cv2.blur(rgb, (blur_px, blur_px), borderType=cv2.BORDER_REFLECT)
    smooth = cv2.blur(rgb, (background_px, background_px), borderType=cv2.BORDER_REFLECT)
    off = np.abs(fine - smooth) / np.maximum(smooth, 1.0)
    return float(np.count_nonzero((off > deviation).any(axis=2))) / off.shape[0] / off.shape[1] < 0.002


def has_tissue_by_mean_value(frame: np.ndarray, thresholds: TissueThresholds) -> bool:
    """Seed 000 eq. 1, with the brightfield direction: mean V below tau means tissue."""
    tau = thresholds.mean_value_max if thresholds.mean_value_max is not None else thresholds.value_max
    return mean_value(frame) < tau


@dataclass(frozen=True)
class Patch:
    """A square patch of a frame: top-left corner (row ``y``, column ``x``) and side."""

    y: int
    x: int
    size: int
    tissue_fraction: float

    def crop(self, frame: np.ndarray) -> np.ndarray:
        return frame[self.y : self.y + self.size, self.x : self.x + self.size]


def _window_fractions(integral: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """Tissue fraction of the ``size`` x ``size`` windows with top-left corners ys x xs."""
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    counts = integral[yy + size, xx + size] - integral[yy, xx + size] - integral[yy + size, xx] + integral[yy, xx]
    return counts.astype(np.float64) / (size * size)


def select_patches(
    mask: np.ndarray,
    size: int = 224,
    k: int = 8,
    min_fraction: float = 0.5,
    stride: int | None = None,
    *,
    pack: bool = True,
) -> list[Patch]:
    """Up to ``k`` non-overlapping ``size`` x ``size`` patches, most tissue first.

    Candidates lie on a grid of ``stride`` pixels (default ``size // 4``); a candidate
    with less than ``min_fraction`` tissue is never chosen. Ties keep the patch nearer
    the frame centre (the optics are best there). Returns [] when the frame is smaller
    than a patch or no candidate has enough tissue.

    Two layouts are tried: greedy, best candidate first, which follows irregular tissue;
    and regular tilings of the frame at every grid offset, which pack a frame full of
    tissue. A tiling replaces the greedy choice only when it holds more patches with at
    least the same mean tissue fraction. Greedy alone wastes area: on a 512 x 512 frame
    full of tissue its first patch is the central one, and no second 224-pixel patch
    fits beside it, while a tiling holds four. The model's answer is the median over the
    patches, so every patch lost makes it less robust. ``pack=False`` keeps the greedy
    layout only.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    if size < 1 or k < 0:
        raise ValueError(f"size must be >= 1 and k >= 0, got size={size}, k={k}")
    h, w = m.shape
    if h < size or w < size or k == 0:
        return []
    step = max(1, stride if stride is not None else size // 4)
    integral = cv2.integral(m.astype(np.uint8))  # (h+1, w+1), int32

    def ranked(ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The windows at ys x xs with enough tissue: corners and fractions, most tissue
        first, ties nearer the frame centre first."""
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        f = _window_fractions(integral, ys, xs, size).ravel()
        centre = np.hypot(yy.ravel() + size / 2 - h / 2, xx.ravel() + size / 2 - w / 2)
        order = np.lexsort((centre, -f))
        order = order[f[order] >= min_fraction]
        return yy.ravel()[order], xx.ravel()[order], f[order]

    # Greedy over the candidate grid, with windows flush with the far edges too, so a
    # tissue strip there is not missed.
    ys = np.unique(np.append(np.arange(0, h - size + 1, step), h - size))
    xs = np.unique(np.append(np.arange(0, w - size + 1, step), w - size))
    greedy: list[Patch] = []
    for y, x, f in zip(*ranked(ys, xs)):
        if len(greedy) >= k:
            break
        if all(abs(y - p.y) >= size or abs(x - p.x) >= size for p in greedy):
            greedy.append(Patch(y=int(y), x=int(x), size=size, tissue_fraction=float(f)))
    if not pack or len(greedy) >= k:  # no tiling can hold more than k
        return greedy

    # Regular tilings: each grid offset below one patch side, and the centred one. A
    # tiling may replace the greedy choice only with more patches and at least the same
    # mean tissue fraction: taking more but emptier patches gave a larger focus error in
    # a scan along a tissue edge (README, single-shot models). The best has the most
    # patches, then the most tissue, then lies nearest the centre.
    def offsets(extent: int) -> list[int]:
        return sorted(set(range(0, min(size, extent - size + 1), step)) | {(extent % size) // 2})

    greedy_mean = float(np.mean([p.tissue_fraction for p in greedy])) if greedy else 0.0
    best_key, best_tiles = (0, 0.0, 0.0), None
    for oy in offsets(h):
        for ox in offsets(w):
            ty, tx, f = (a[:k] for a in ranked(np.arange(oy, h - size + 1, size), np.arange(ox, w - size + 1, size)))
            if len(f) <= len(greedy) or float(f.mean()) < greedy_mean - 1e-9:
                continue
            centre = np.hypot(ty + size / 2 - h / 2, tx + size / 2 - w / 2).sum()
            key = (-len(f), -float(f.sum()), float(centre))
            if best_tiles is None or key < best_key:
                best_key, best_tiles = key, (ty, tx, f)
    if best_tiles is None:
        return greedy
    return [Patch(y=int(y), x=int(x), size=size, tissue_fraction=float(f)) for y, x, f in zip(*best_tiles)]
