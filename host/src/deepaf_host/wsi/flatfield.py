"""Flat-field (vignetting) correction estimated from the scan's own tiles.

In brightfield the camera sees ``I(x, y) = L(x, y) * T(specimen)``: the illumination and
vignetting ``L`` multiply whatever is in view, so a tile is corrected by the gain
``L_ref / L(x, y)``, per colour channel. ``L`` is the look of blank glass. Empty glass
tiles are not stored by the scanner today, so the estimate is BaSiC-style from every
tile: each tile is reduced to a coarse grid (``grid`` cells); a cell counts as glass in
that tile when all its pixels are bright and grey (low HSV saturation); the per-cell
median of the glass values over the tiles is ``L`` where glass was seen, and a smooth
low-order polynomial surface fitted to those cells fills the rest (vignetting is smooth).
Stored glass frames, when a scan keeps them, simply count as all-glass tiles.

When too few cells saw glass (a section that fills every field), a scan of many tiles
still calibrates: over ``min_tiles_average`` fields or more, the specimen under a cell
is as likely anywhere in the field, so the per-cell median of ALL pixels over the tiles
is ``L`` times a constant. The gain then only flattens the field (its colour stays);
with fewer tiles the estimate is refused (None, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class FlatField:
    """A per-channel gain on a coarse grid; :meth:`gain` gives it at a tile's size."""

    #: (gh, gw, 3) gain L_ref / L of each cell; >= 1 away from the brightest place.
    grid_gain: np.ndarray
    #: RGB of blank glass after the correction (the slide's background colour).
    glass_rgb: tuple[int, int, int]
    #: Fraction of the grid's cells where glass was seen.
    coverage: float
    #: Tiles that contributed.
    frames: int
    #: "glass" (blank glass seen in the tiles) or "tiles" (median of many tiles).
    method: str = "glass"

    def gain(self, shape: tuple[int, int]) -> np.ndarray:
        """(H, W, 3) gain at a tile's full size (bicubic from the grid), as float16: half
        the memory of a 12-megapixel map, and 1/2000 of precision is plenty for a gain."""
        h, w = shape
        g = cv2.resize(self.grid_gain.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        return np.clip(g, 0.5, 2.5).astype(np.float16)

    def to_dict(self) -> dict[str, object]:
        return {
            "grid_shape": list(self.grid_gain.shape[:2]), "glass_rgb": list(self.glass_rgb),
            "coverage": round(self.coverage, 4), "frames": self.frames, "method": self.method,
            "gain_min": round(float(self.grid_gain.min()), 4), "gain_max": round(float(self.grid_gain.max()), 4),
            "grid_gain": np.round(self.grid_gain, 4).tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlatField:
        """From :meth:`to_dict`'s JSON; a malformed dict raises KeyError, TypeError,
        ValueError or IndexError (the stitch cache's loader treats those as unreadable)."""
        g = np.asarray(d["grid_gain"], dtype=np.float32)
        rgb = tuple(int(v) for v in d["glass_rgb"])
        return cls(g, (rgb[0], rgb[1], rgb[2]), float(d["coverage"]), int(d["frames"]), str(d.get("method", "glass")))


def from_calibration(image: np.ndarray, grid: tuple[int, int], glass_rgb: tuple[int, int, int] | None) -> FlatField:
    """The flat field `deepaf-host calibrate` measured on blank glass (a (H, W, 3) map of
    the light, any scale per channel), on the estimator's grid: gain = brightest / map
    per channel, as the scan's own estimate. Raises ValueError for a map that is not
    positive, finite and (H, W, 3)."""
    light = np.asarray(image, dtype=np.float32)
    if light.ndim != 3 or light.shape[2] != 3 or not np.all(np.isfinite(light)) or light.min() <= 0:
        raise ValueError(f"a flat field must be a positive, finite (H, W, 3) map, got shape {light.shape}")
    gh, gw = grid
    cells = cv2.resize(light, (gw, gh), interpolation=cv2.INTER_AREA)
    gain = np.clip(cells.reshape(-1, 3).max(axis=0) / cells, 0.5, 2.5).astype(np.float32)
    return FlatField(gain, glass_rgb or (242, 242, 242), 1.0, 0, "calibrated")


def apply_gain(rgb: np.ndarray, gain: np.ndarray, rows: int = 512) -> np.ndarray:
    """``rgb * gain`` rounded and clipped to uint8 (in bands of ``rows`` to bound memory)."""
    if rgb.shape != gain.shape:
        raise ValueError(f"image {rgb.shape} and gain {gain.shape} differ")
    out = np.empty_like(rgb)
    for y in range(0, rgb.shape[0], rows):
        band = rgb[y:y + rows].astype(np.float32)
        band *= gain[y:y + rows]
        np.clip(band + 0.5, 0, 255, out=band)
        out[y:y + rows] = band.astype(np.uint8)
    return out


def _poly_terms(u: np.ndarray, v: np.ndarray, degree: int) -> np.ndarray:
    return np.stack([u**a * v**b for a in range(degree + 1) for b in range(degree + 1 - a)], axis=-1)


class FlatFieldEstimator:
    """Accumulate glass statistics tile by tile (memory: a histogram per grid cell)."""

    def __init__(
        self,
        grid: tuple[int, int] = (24, 32),
        *,
        saturation_max: float = 0.10,
        value_min: float = 0.55,
    ) -> None:
        self.grid = grid
        self.saturation_max = saturation_max
        self.value_min = value_min
        gh, gw = grid
        self._hist = np.zeros((gh * gw * 3, 256), dtype=np.uint32)
        self._hist_all = np.zeros((gh * gw * 3, 256), dtype=np.uint32)
        self.frames = 0
        self.tiles = 0

    def measure(self, rgb: np.ndarray, *, all_glass: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A tile reduced to the grid, and which cells show glass (pure: may run in a
        worker thread; :meth:`accumulate` then adds the result)."""
        gh, gw = self.grid
        h, w = rgb.shape[:2]
        mid = cv2.resize(rgb, (max(gw, w // 4), max(gh, h // 4)), interpolation=cv2.INTER_AREA)
        small = cv2.resize(mid, (gw, gh), interpolation=cv2.INTER_AREA)
        if all_glass:
            return small, np.ones((gh, gw), dtype=bool)
        hsv = cv2.cvtColor(mid, cv2.COLOR_RGB2HSV)
        bg = ((hsv[..., 1] < self.saturation_max * 255) & (hsv[..., 2] > self.value_min * 255)).astype(np.float32)
        return small, cv2.resize(bg, (gw, gh), interpolation=cv2.INTER_AREA) > 0.98

    def accumulate(self, small: np.ndarray, glass: np.ndarray) -> None:
        gh, gw = self.grid
        self.tiles += 1
        self._hist_all[np.arange(gh * gw * 3), small.ravel()] += 1
        if not glass.any():
            return
        self.frames += 1
        cells = np.flatnonzero(glass.ravel())
        idx = (cells[:, None] * 3 + np.arange(3)[None, :]).ravel()
        vals = small.reshape(-1, 3)[cells].ravel()
        np.add.at(self._hist, (idx, vals), 1)

    def add(self, rgb: np.ndarray, *, all_glass: bool = False) -> None:
        """Add one tile (RGB uint8). ``all_glass``: a stored blank-glass frame."""
        self.accumulate(*self.measure(rgb, all_glass=all_glass))

    def glass_rgb(self) -> tuple[int, int, int] | None:
        """Median colour of all the glass seen (the slide's background), None if none."""
        counts = self._hist.reshape(-1, 3, 256).sum(axis=0)
        if counts[0].sum() == 0:
            return None
        med = [int(np.argmax(np.cumsum(counts[c]) >= (counts[c].sum() + 1) // 2)) for c in range(3)]
        return med[0], med[1], med[2]

    def estimate(
        self, *, min_samples: int = 3, min_coverage: float = 0.3, min_tiles_average: int = 40, degree: int = 4
    ) -> tuple[FlatField | None, str]:
        """The flat field, or None and why not."""
        gh, gw = self.grid
        counts = self._hist.sum(axis=1)
        valid_cells = counts.reshape(gh * gw, 3)[:, 0] >= min_samples
        coverage = float(valid_cells.mean())
        hist, method, frames = self._hist, "glass", self.frames
        if coverage < min_coverage:
            if self.tiles < min_tiles_average:
                seen = "no glass seen" if self.frames == 0 else f"glass seen in only {coverage:.0%} of the field (need {min_coverage:.0%})"
                return None, f"{seen} and only {self.tiles} tiles (need {min_tiles_average} to average): no flat-field correction"
            hist, method, frames = self._hist_all, "tiles", self.tiles
            counts = hist.sum(axis=1)
            valid_cells = np.ones(gh * gw, dtype=bool)
        cum = np.cumsum(hist, axis=1)
        median = np.argmax(cum >= (counts[:, None] + 1) // 2, axis=1).astype(np.float64).reshape(gh * gw, 3)
        yy, xx = np.mgrid[0:gh, 0:gw]
        u = (xx.ravel() + 0.5) / gw * 2 - 1
        v = (yy.ravel() + 0.5) / gh * 2 - 1
        terms = _poly_terms(u, v, degree)
        fitted = np.empty((gh * gw, 3))
        for c in range(3):
            coef, *_ = np.linalg.lstsq(terms[valid_cells], median[valid_cells, c], rcond=None)
            fitted[:, c] = terms @ coef
        surface = np.maximum(fitted, 1.0).reshape(gh, gw, 3)
        ref = surface.reshape(-1, 3)[valid_cells].max(axis=0)
        gain = np.clip(ref / surface, 0.5, 2.5).astype(np.float32)
        glass = self.glass_rgb() if method == "tiles" else tuple(int(min(255, round(r))) for r in ref)
        if glass is None:
            glass = (242, 242, 242)
        note = "" if method == "glass" else f"too little glass ({coverage:.0%} of the field): estimated from the median of {self.tiles} tiles"
        return FlatField(gain, (glass[0], glass[1], glass[2]), coverage, frames, method), note
