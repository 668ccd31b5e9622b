"""Pyramid levels built while level 0 streams by.

A TIFF writer takes one level at a time, level 0 first; the lower levels are therefore
made on the fly from level 0's tiles and kept, uncompressed, in temporary spool files
(a quarter, a sixteenth... of level 0) until their turn. :class:`Halver` turns the
row-major tiles of one level into the row-major tiles of the next (2 x 2 area mean),
holding half a row of output tiles; halvers chain, so every level is made in the same
single pass over level 0.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np


def level_shapes(shape: tuple[int, int], smallest_px: int) -> list[tuple[int, int]]:
    """(H, W) of each level: halving (rounding up) until the larger side is <= ``smallest_px``."""
    shapes = [shape]
    while max(shapes[-1]) > smallest_px:
        h, w = shapes[-1]
        shapes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return shapes


def tile_grid(shape: tuple[int, int], tile_px: int) -> tuple[int, int]:
    """(rows, cols) of ``tile_px`` tiles covering ``shape``."""
    return -(-shape[0] // tile_px), -(-shape[1] // tile_px)


class TileSpool:
    """Append-only file of equal-size uint8 RGB tiles, read back in the same order."""

    def __init__(self, tile_px: int, directory: str | Path | None = None) -> None:
        self.tile_px = tile_px
        self.count = 0
        self._file = tempfile.TemporaryFile(dir=directory, prefix=".stitch-spool-")  # noqa: SIM115 - closed in close()

    def append(self, tile: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(tile).data)
        self.count += 1

    def __iter__(self) -> Iterator[np.ndarray]:
        self._file.flush()
        self._file.seek(0)
        n = self.tile_px * self.tile_px * 3
        for _ in range(self.count):
            buf = self._file.read(n)
            if len(buf) != n:
                raise OSError("short read from a pyramid spool file")
            yield np.frombuffer(buf, dtype=np.uint8).reshape(self.tile_px, self.tile_px, 3)

    def close(self) -> None:
        self._file.close()


class Halver:
    """Consumes level-k tiles (row-major, ``tile_px`` square, padded at the edges) and
    emits level-(k+1) tiles the same way through ``emit``.

    A level-(k+1) tile is the 2 x 2 area mean of four level-k tiles: the upper half
    comes from row 2i, the lower from row 2i+1. Only the upper halves of the current
    output row wait (half a tile row of level k+1); each output tile is emitted as
    soon as its lower-right source arrives.
    """

    def __init__(
        self, shape: tuple[int, int], tile_px: int, emit: Callable[[np.ndarray], None], background: tuple[int, int, int]
    ) -> None:
        self.t = tile_px
        self.rows_in, self.cols_in = tile_grid(shape, tile_px)
        self.shape_out = (math.ceil(shape[0] / 2), math.ceil(shape[1] / 2))
        self.rows_out, self.cols_out = tile_grid(self.shape_out, tile_px)
        self.emit = emit
        self.background = np.array(background, dtype=np.uint8)
        half = tile_px // 2
        self._upper = np.empty((half, self.cols_out * tile_px, 3), dtype=np.uint8)
        self._current = self._blank()
        self._row = 0
        self._col = 0
        self.emitted = 0

    def _blank(self) -> np.ndarray:
        tile = np.empty((self.t, self.t, 3), dtype=np.uint8)
        tile[:] = self.background
        return tile

    def push(self, tile: np.ndarray) -> None:
        half = self.t // 2
        small = cv2.resize(tile, (half, half), interpolation=cv2.INTER_AREA)
        c = self._col * half
        if self._row % 2 == 0:
            self._upper[:, c:c + half] = small
            if self._row == self.rows_in - 1:  # no lower row: emit with background below
                self._emit_column(lower=None)
        else:
            self._emit_column(lower=small)
        self._col += 1
        if self._col == self.cols_in:
            self._col = 0
            self._row += 1
            if self._row % 2 == 0 or self._row == self.rows_in:
                self._flush_row_end()

    def _emit_column(self, lower: np.ndarray | None) -> None:
        """Place the half-tile of input column ``_col``; emit the output tile it completes."""
        half = self.t // 2
        c = self._col * half
        j, left = divmod(c, self.t)
        out = self._current
        out[:half, left:left + half] = self._upper[:, c:c + half]
        if lower is not None:
            out[half:, left:left + half] = lower
        if left + half == self.t or self._col == self.cols_in - 1:
            self.emit(out)
            self.emitted += 1
            self._current = self._blank()

    def _flush_row_end(self) -> None:
        """Output tiles of this row to the right of the last input column: background."""
        done_cols = -(-self.cols_in * (self.t // 2) // self.t)
        for _ in range(done_cols, self.cols_out):
            self.emit(self._blank())
            self.emitted += 1
        self._upper[:] = self.background

    def done(self) -> bool:
        return self.emitted == self.rows_out * self.cols_out


class PyramidBuilder:
    """Level 0's tiles in, every lower level spooled (see the module docstring)."""

    def __init__(
        self, shape: tuple[int, int], tile_px: int, smallest_px: int, background: tuple[int, int, int],
        directory: str | Path | None = None,
    ) -> None:
        self.shapes = level_shapes(shape, smallest_px)
        self.tile_px = tile_px
        self.spools = [TileSpool(tile_px, directory) for _ in self.shapes[1:]]
        self.halvers: list[Halver] = []
        for k in range(len(self.shapes) - 1):
            spool = self.spools[k]
            nxt: Callable[[np.ndarray], None]
            if k + 1 < len(self.shapes) - 1:
                def nxt(tile: np.ndarray, spool: TileSpool = spool, k: int = k) -> None:
                    spool.append(tile)
                    self.halvers[k + 1].push(tile)
            else:
                nxt = spool.append
            self.halvers.append(Halver(self.shapes[k], tile_px, nxt, background))

    def push(self, tile: np.ndarray) -> None:
        """One level-0 tile (row-major order)."""
        if self.halvers:
            self.halvers[0].push(tile)

    def level_tiles(self, level: int) -> Iterator[np.ndarray]:
        """The tiles of ``level`` >= 1, after level 0 was pushed entirely."""
        halver = self.halvers[level - 1]
        if not halver.done():
            raise RuntimeError(f"pyramid level {level} is incomplete ({halver.emitted} tiles)")
        return iter(self.spools[level - 1])

    def level_image(self, level: int) -> np.ndarray:
        """A whole (small) level as one array, cropped to its shape: for the thumbnail."""
        h, w = self.shapes[level]
        rows, cols = tile_grid((h, w), self.tile_px)
        t = self.tile_px
        img = np.empty((rows * t, cols * t, 3), dtype=np.uint8)
        for n, tile in enumerate(self.level_tiles(level)):
            r, c = divmod(n, cols)
            img[r * t:(r + 1) * t, c * t:(c + 1) * t] = tile
        return img[:h, :w].copy()

    def close(self) -> None:
        for s in self.spools:
            s.close()
