"""The level-0 mosaic, produced as 512 x 512 output tiles in row-major order.

Memory is bounded by a few source tiles, not by the slide nor by a row of tiles: the
output is made one band of tile rows at a time, left to right, and a source tile is
decoded (and flat-field corrected) once, the first time a band needs it; it then waits
in an unlinked scratch file (:class:`TileScratch`: the page cache holds it, the process
does not) from which each later band reads only the rows it covers. A band keeps in
memory the slices of the source tiles under the current column, and drops them once the
sweep has passed their right edge.

Blending: every imaged tile weighs its pixels by a separable linear ramp that rises
from its edges over the expected overlap (``feather_px``), so across an overlap one
tile fades into the next; a pixel is the weighted mean of the tiles covering it, and a
pixel that only one tile covers is exactly that tile's pixel. Pixels that no imaged
tile covers (glass that was skipped, the margin) take the background colour.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# A source tile placed in an output tile: (index, x0, y0, x1, y1 in output-tile
# coordinates, the tile's mosaic corner tx0, ty0, and the mosaic row its band slice starts at).
_Rect = tuple[int, int, int, int, int, int, int, int]


class TileScratch:
    """Fixed-size slots for decoded tiles in an unlinked temporary file."""

    def __init__(self, tile_shape: tuple[int, int], directory: str | Path | None = None) -> None:
        self.h, self.w = tile_shape
        self.slot_bytes = self.h * self.w * 3
        self._file = tempfile.TemporaryFile(dir=directory, prefix=".stitch-scratch-")  # noqa: SIM115 - closed in close()
        self._fd = self._file.fileno()
        self._slots: dict[int, int] = {}
        self._free: list[int] = []
        self._next = 0
        self.peak_slots = 0

    def put(self, key: int, rgb: np.ndarray) -> None:
        if rgb.shape != (self.h, self.w, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"tile {key}: expected ({self.h}, {self.w}, 3) uint8, got {rgb.shape} {rgb.dtype}")
        slot = self._free.pop() if self._free else self._next
        if slot == self._next:
            self._next += 1
        self.peak_slots = max(self.peak_slots, self._next)
        view = np.ascontiguousarray(rgb).data.cast("B")
        offset, done = slot * self.slot_bytes, 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)
        self._slots[key] = slot

    def __contains__(self, key: int) -> bool:
        return key in self._slots

    def rows(self, key: int, y0: int, y1: int) -> np.ndarray:
        """Rows ``y0:y1`` of tile ``key`` (a new array)."""
        out = np.empty((y1 - y0, self.w, 3), dtype=np.uint8)
        view = out.data.cast("B")
        offset, done = self._slots[key] * self.slot_bytes + y0 * self.w * 3, 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], offset + done)
            if n <= 0:
                raise OSError(f"short read from the stitch scratch file (tile {key})")
            done += n
        return out

    def free(self, key: int) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None:
            self._free.append(slot)

    def close(self) -> None:
        self._file.close()


def feather_ramp(n: int, feather_px: float) -> np.ndarray:
    """Weights along one axis of a tile: a linear ramp over ``feather_px`` at both ends."""
    if feather_px < 1:
        return np.ones(n, dtype=np.float32)
    c = np.arange(n, dtype=np.float32)
    d = np.minimum(c, n - 1 - c) + 1.0
    return np.clip(d / (feather_px + 1.0), 1e-3, 1.0).astype(np.float32)


@dataclass
class ComposeStats:
    decoded: int = 0
    output_tiles: int = 0
    single_source: int = 0
    blended: int = 0
    background: int = 0
    peak_scratch_tiles: int = 0
    peak_band_slices: int = 0
    notes: list[str] = field(default_factory=list)


class Composer:
    """Yields the mosaic's level 0 as ``tile_px`` squares (see the module docstring).

    ``corners``: {tile key: (x, y)} integer top-left corners of the imaged tiles in the
    mosaic; ``load(key)`` returns that tile's corrected RGB uint8 image.
    """

    def __init__(
        self,
        corners: dict[int, tuple[int, int]],
        tile_shape: tuple[int, int],
        mosaic_shape: tuple[int, int],
        load: Callable[[int], np.ndarray],
        *,
        background: tuple[int, int, int] = (255, 255, 255),
        feather_px: tuple[float, float] = (0.0, 0.0),
        tile_px: int = 512,
        scratch_dir: str | Path | None = None,
    ) -> None:
        self.keys = np.array(sorted(corners, key=lambda k: (corners[k][1], corners[k][0])), dtype=np.int64)
        xy = np.array([corners[int(k)] for k in self.keys], dtype=np.int64).reshape(-1, 2)
        self.th, self.tw = tile_shape
        self.x0, self.y0 = xy[:, 0], xy[:, 1]
        self.x1, self.y1 = self.x0 + self.tw, self.y0 + self.th
        self.height, self.width = mosaic_shape
        self.load = load
        self.background = np.array(background, dtype=np.uint8)
        self.wx = feather_ramp(self.tw, feather_px[0])
        self.wy = feather_ramp(self.th, feather_px[1])
        self.t = tile_px
        self.scratch_dir = scratch_dir
        self.stats = ComposeStats()
        self.grid = (-(-self.height // self.t), -(-self.width // self.t))  # (rows, cols) of output tiles
        self._template = np.empty((self.t, self.t, 3), dtype=np.uint8)
        self._template[:] = self.background

    def tiles(self) -> Iterator[np.ndarray]:
        scratch = TileScratch((self.th, self.tw), self.scratch_dir)
        try:
            yield from self._tiles(scratch)
        finally:
            self.stats.peak_scratch_tiles = scratch.peak_slots
            scratch.close()

    def _tiles(self, scratch: TileScratch) -> Iterator[np.ndarray]:
        t = self.t
        rows, cols = self.grid
        loaded: set[int] = set()
        for b in range(rows):
            by0, by1 = b * t, min((b + 1) * t, self.height)
            active = np.flatnonzero((self.y0 < by1) & (self.y1 > by0))
            active = active[np.argsort(self.x0[active], kind="stable")]
            band: dict[int, np.ndarray] = {}  # index -> rows by0:by1 of that tile (clipped)
            for c in range(cols):
                bx0, bx1 = c * t, min((c + 1) * t, self.width)
                for k in [k for k in band if self.x1[k] <= bx0]:
                    del band[k]
                cands = active[(self.x0[active] < bx1) & (self.x1[active] > bx0)]
                for k in cands:
                    k = int(k)
                    if k in band:
                        continue
                    ry0, ry1 = max(by0, int(self.y0[k])) - int(self.y0[k]), min(by1, int(self.y1[k])) - int(self.y0[k])
                    key = int(self.keys[k])
                    if k not in loaded:
                        rgb = self.load(key)
                        self.stats.decoded += 1
                        loaded.add(k)
                        if self.y1[k] > by1:  # later bands need it too
                            scratch.put(key, rgb)
                        band[k] = rgb[ry0:ry1].copy()
                        del rgb
                    else:
                        band[k] = scratch.rows(key, ry0, ry1)
                self.stats.peak_band_slices = max(self.stats.peak_band_slices, len(band))
                yield self._compose(cands, band, by0, by1, bx0, bx1)
            for k in active.tolist():
                if self.y1[k] <= by1:
                    scratch.free(int(self.keys[k]))

    def _compose(self, cands: np.ndarray, band: dict[int, np.ndarray], by0: int, by1: int, bx0: int, bx1: int) -> np.ndarray:
        """One output tile: every covering source pasted, then the weighted mean
        recomputed only on the rectangles where two or more sources overlap."""
        self.stats.output_tiles += 1
        out = self._template.copy()
        if len(cands) == 0:
            self.stats.background += 1
            return out
        # Each source's rectangle in output-tile coordinates, and where its pixels start.
        rects: list[_Rect] = []
        for k in cands:
            k = int(k)
            tx0, ty0 = int(self.x0[k]), int(self.y0[k])
            x0, x1 = max(bx0, tx0) - bx0, min(bx1, int(self.x1[k])) - bx0
            y0, y1 = max(by0, ty0) - by0, min(by1, int(self.y1[k])) - by0
            first_row = max(by0, ty0)  # band[k] starts at this mosaic row
            rects.append((k, x0, y0, x1, y1, tx0, ty0, first_row))
        for k, x0, y0, x1, y1, tx0, _, first_row in rects:
            out[y0:y1, x0:x1] = band[k][by0 + y0 - first_row:by0 + y1 - first_row, bx0 + x0 - tx0:bx0 + x1 - tx0]
        if len(rects) == 1:
            self.stats.single_source += 1
            return out
        blended = False
        for n, (_, ax0, ay0, ax1, ay1, *_rest) in enumerate(rects):
            for _, cx0, cy0, cx1, cy1, *_rest2 in rects[n + 1:]:
                ox0, oy0, ox1, oy1 = max(ax0, cx0), max(ay0, cy0), min(ax1, cx1), min(ay1, cy1)
                if ox1 > ox0 and oy1 > oy0:
                    self._blend(out, rects, band, ox0, oy0, ox1, oy1, by0, bx0)
                    blended = True
        if blended:
            self.stats.blended += 1
        else:
            self.stats.single_source += 1
        return out

    def _blend(self, out: np.ndarray, rects: list[_Rect], band: dict[int, np.ndarray],
               ox0: int, oy0: int, ox1: int, oy1: int, by0: int, bx0: int) -> None:
        """Weighted mean of every source covering the rectangle (ox0, oy0)-(ox1, oy1)."""
        acc = np.zeros((oy1 - oy0, ox1 - ox0, 3), dtype=np.float32)
        wsum = np.zeros((oy1 - oy0, ox1 - ox0), dtype=np.float32)
        for k, x0, y0, x1, y1, tx0, ty0, first_row in rects:
            sx0, sy0, sx1, sy1 = max(x0, ox0), max(y0, oy0), min(x1, ox1), min(y1, oy1)
            if sx1 <= sx0 or sy1 <= sy0:
                continue
            gx0, gy0 = bx0 + sx0, by0 + sy0  # mosaic coordinates
            weight = self.wy[gy0 - ty0:gy0 - ty0 + sy1 - sy0, None] * self.wx[None, gx0 - tx0:gx0 - tx0 + sx1 - sx0]
            pix = band[k][gy0 - first_row:gy0 - first_row + sy1 - sy0, gx0 - tx0:gx0 - tx0 + sx1 - sx0]
            acc[sy0 - oy0:sy1 - oy0, sx0 - ox0:sx1 - ox0] += pix * weight[..., None]
            wsum[sy0 - oy0:sy1 - oy0, sx0 - ox0:sx1 - ox0] += weight
        acc /= wsum[..., None]
        acc += 0.5
        out[oy0:oy1, ox0:ox1] = np.clip(acc, 0, 255).astype(np.uint8)
