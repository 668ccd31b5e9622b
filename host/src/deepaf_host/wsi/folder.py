"""A finished scan folder as the stitcher sees it: tiles, their stage poses, the geometry.

``DIR/manifest.jsonl`` (one record per tile, see ``deepaf_host.scan.manifest``) and
``DIR/report.json`` (the plan: field of view, overlap, grid; the objective) are read
here and nowhere else in the package. Coordinates: the camera convention of the
scanner, image column along machine +X and image row along machine +Y, so a tile's
top-left corner in mosaic pixels is ``(x_um - fov_w / 2, y_um - fov_h / 2) / pixel_um``.

Ground truth (simulated scans only): a record may carry ``true_x_um`` / ``true_y_um``,
the stage position where the high-res frame was really taken (the commanded
``x_um`` / ``y_um`` plus the stage's repeatability error, backlash, skew...). When every
imaged tile has them, the stitcher scores its registration against them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import DeepAfError
from ..scan.manifest import write_atomic  # noqa: F401 - re-exported: the stitcher writes as the scan does

MANIFEST = "manifest.jsonl"
REPORT = "report.json"


class StitchError(DeepAfError):
    """A scan folder cannot be stitched as asked; ``path`` is the folder or file at fault."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot stitch {self.path}: {reason}")


@dataclass(frozen=True)
class TileInfo:
    """One manifest record, with the fields the stitcher uses."""

    index: int
    row: int
    col: int
    x_um: float
    y_um: float
    image: str | None
    empty: bool
    z_um: float | None = None
    tissue_fraction: float | None = None
    focus_source: str | None = None
    qc: str | None = None
    true_x_um: float | None = None
    true_y_um: float | None = None
    true_focus_z_um: float | None = None
    focus_error_um: float | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> TileInfo:
        qc = rec.get("qc")
        verdict = qc.get("verdict") if isinstance(qc, dict) else qc if isinstance(qc, str) else None

        def opt(key: str) -> float | None:
            v = rec.get(key)
            return None if v is None else float(v)

        return cls(
            index=int(rec["tile"]), row=int(rec["row"]), col=int(rec["col"]),
            x_um=float(rec["x_um"]), y_um=float(rec["y_um"]),
            image=rec.get("image") or None, empty=bool(rec.get("empty", False)),
            z_um=opt("z_um"), tissue_fraction=opt("tissue_fraction"), focus_source=rec.get("focus_source"),
            qc=verdict, true_x_um=opt("true_x_um"), true_y_um=opt("true_y_um"),
            true_focus_z_um=opt("true_focus_z_um"), focus_error_um=opt("focus_error_um"),
            timings_s={k: float(v) for k, v in (rec.get("timings_s") or {}).items()},
        )


@dataclass
class ScanFolder:
    """A scan folder opened for stitching."""

    path: Path
    tiles: list[TileInfo]
    report: dict[str, Any]
    #: (height, width) of every tile image, in pixels.
    tile_shape: tuple[int, int]
    #: Specimen size of one high-res pixel, in micrometres.
    pixel_size_um: float
    #: (width, height) of the field of view, um.
    fov_um: tuple[float, float]

    @classmethod
    def open(cls, directory: str | Path) -> ScanFolder:
        """Read ``directory``'s manifest and report. Raises :class:`StitchError` for a
        folder with no manifest, no imaged tile, or tiles of different sizes."""
        d = Path(directory)
        mpath = d / MANIFEST
        if not mpath.is_file():
            raise StitchError(d, f"no {MANIFEST} (not a scan folder)")
        records: dict[int, dict[str, Any]] = {}
        lines = mpath.read_text(encoding="utf-8").split("\n")
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                records[int(rec["tile"])] = rec
            except (ValueError, KeyError, TypeError):
                if n == len(lines) - 1:
                    continue  # a partial last line (a scan cut by a crash)
                raise StitchError(mpath, f"line {n + 1} is not a manifest record") from None
        tiles = [TileInfo.from_record(records[k]) for k in sorted(records)]
        imaged = [t for t in tiles if t.image]
        if not imaged:
            raise StitchError(d, "no tile has an image (nothing but glass was seen)")
        report: dict[str, Any] = {}
        rpath = d / REPORT
        if rpath.is_file():
            try:
                report = json.loads(rpath.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise StitchError(rpath, f"not JSON: {exc}") from None
        shape = image_shape(d / str(imaged[0].image))
        plan = report.get("plan") or {}
        fov = plan.get("fov_um")
        pixel = report.get("pixel_size_um")
        if pixel is None:
            if not fov:
                raise StitchError(d, f"{REPORT} gives neither pixel_size_um nor plan.fov_um: the pixel size is unknown")
            pixel = float(fov[0]) / shape[1]
        pixel = float(pixel)
        if not (math.isfinite(pixel) and pixel > 0):
            raise StitchError(d, f"pixel size {pixel} um is not positive")
        fov_um = (float(fov[0]), float(fov[1])) if fov else (shape[1] * pixel, shape[0] * pixel)
        return cls(d, tiles, report, shape, pixel, fov_um)

    @property
    def imaged(self) -> list[TileInfo]:
        return [t for t in self.tiles if t.image]

    @property
    def has_truth(self) -> bool:
        """True when every imaged tile carries its true stage position."""
        return all(t.true_x_um is not None and t.true_y_um is not None for t in self.imaged)

    def stage_px(self) -> np.ndarray:
        """(n, 2) top-left corners (x, y) of every tile from the commanded stage positions,
        in pixels, in the order of ``tiles``."""
        return self._corners([(t.x_um, t.y_um) for t in self.tiles])

    def true_px(self) -> np.ndarray:
        """(n, 2) top-left corners from the true stage positions (NaN where unknown)."""
        xy = [(t.true_x_um if t.true_x_um is not None else math.nan, t.true_y_um if t.true_y_um is not None else math.nan) for t in self.tiles]
        return self._corners(xy)

    def _corners(self, xy_um: list[tuple[float, float]]) -> np.ndarray:
        a = np.asarray(xy_um, dtype=np.float64).reshape(-1, 2)
        h, w = self.tile_shape
        return a / self.pixel_size_um - np.array([w / 2.0, h / 2.0])

    def read(self, tile: TileInfo) -> np.ndarray:
        """The tile's image as RGB uint8 (H, W, 3)."""
        if not tile.image:
            raise StitchError(self.path, f"tile {tile.index} has no image")
        rgb = read_rgb(self.path / tile.image)
        if rgb.shape[:2] != self.tile_shape:
            raise StitchError(self.path / tile.image, f"size {rgb.shape[1]}x{rgb.shape[0]} differs from the first tile's {self.tile_shape[1]}x{self.tile_shape[0]}")
        return rgb


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (OpenCV reads jpg/png/tif)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise StitchError(path, "cannot read the image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) of an image file."""
    rgb = read_rgb(path)
    return int(rgb.shape[0]), int(rgb.shape[1])
