"""Tile plans: which stage positions to image, in which order (pure functions).

Stage positions are machine coordinates in micrometres (GRBL negative space); a tile's
(x_um, y_um) is the stage position that puts the tile's centre under the objective.
The tile grid covers the requested area with the high-res field of view, tiles
``overlap`` apart (a fraction of the field), and is centred on the area.

Order (seed 000, "scanning begins from the bottom right corner", Fig. 1-b): the first
tile is the one at the largest x and smallest y ("right" = +x, "bottom" = -y in machine
coordinates), the first row runs towards -x, the next row (one step towards +y) runs
back towards +x, and so on: a serpentine, so consecutive tiles are always neighbours.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import ConfigError, StageLimitError
from ..codes import default_setting

#: The default scan area (mm): 3 x 2 tiles of the 20x field on the upper edge of the
#: virtual slide's tissue section, so that the demo images tissue and skips glass.
DEMO_AREA_MM = "-30.30,-15.92,-29.75,-15.62"

#: Default machine travel: the defaults of $130 and $131 (protocol/settings.csv), as
#: (min, max) um in machine coordinates (0 is the homed corner): X [-60000, 0], Y [-40000, 0].
DEFAULT_TRAVEL_UM: tuple[tuple[float, float], tuple[float, float]] = (
    (-1000.0 * default_setting(130), 0.0), (-1000.0 * default_setting(131), 0.0),
)


@dataclass(frozen=True)
class Area:
    """A rectangle in machine coordinates (um), x0 < x1, y0 < y1."""

    x0_um: float
    y0_um: float
    x1_um: float
    y1_um: float

    @classmethod
    def parse_mm(cls, text: str) -> Area:
        """``"X0,Y0,X1,Y1"`` in millimetres (any corner order) -> Area in um."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise ConfigError("area", f"expected X0,Y0,X1,Y1 in mm, got {text!r}") from None
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ConfigError("area", f"expected four finite numbers X0,Y0,X1,Y1 in mm, got {text!r}")
        x0, y0, x1, y1 = (v * 1000.0 for v in values)
        area = cls(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        if area.width_um == 0 or area.height_um == 0:
            raise ConfigError("area", f"the area {text!r} mm has no extent")
        return area

    @property
    def width_um(self) -> float:
        return self.x1_um - self.x0_um

    @property
    def height_um(self) -> float:
        return self.y1_um - self.y0_um

    def to_mm(self) -> list[float]:
        return [self.x0_um / 1000, self.y0_um / 1000, self.x1_um / 1000, self.y1_um / 1000]


@dataclass(frozen=True)
class Tile:
    """One field of the scan. ``index`` is its place in the scan order (0 first)."""

    index: int
    row: int
    col: int
    x_um: float
    y_um: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """The tiles of a scan and the geometry they came from."""

    area: Area
    fov_um: tuple[float, float]  # (width, height) of the high-res field
    step_um: tuple[float, float]  # (x, y) distance between tile centres
    overlap: float
    rows: int
    cols: int
    tiles: tuple[Tile, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "area_mm": self.area.to_mm(), "fov_um": list(self.fov_um), "step_um": list(self.step_um),
            "overlap": self.overlap, "rows": self.rows, "cols": self.cols, "tiles": len(self.tiles),
        }

    @property
    def scanned_area_mm2(self) -> float:
        """Area covered by the tiles, overlaps counted once."""
        w = (self.cols - 1) * self.step_um[0] + self.fov_um[0]
        h = (self.rows - 1) * self.step_um[1] + self.fov_um[1]
        return w * h / 1e6


def _count(extent_um: float, fov_um: float, step_um: float) -> int:
    if extent_um <= fov_um:
        return 1
    return math.ceil((extent_um - fov_um) / step_um - 1e-9) + 1


def plan_tiles(
    area: Area,
    fov_um: tuple[float, float],
    overlap: float = 0.1,
    travel_um: tuple[tuple[float, float], tuple[float, float]] = DEFAULT_TRAVEL_UM,
) -> Plan:
    """Tiles covering ``area`` with fields of ``fov_um`` = (width, height), serpentine from
    the bottom-right corner.

    Raises ``ConfigError`` for a bad overlap or field, ``StageLimitError`` (nothing has
    moved) when a tile centre lies outside the stage travel.
    """
    if not 0.0 <= overlap < 0.9:
        raise ConfigError("overlap", f"must be in [0, 0.9), got {overlap}")
    fw, fh = fov_um
    if not (fw > 0 and fh > 0):
        raise ConfigError("fov_um", f"field of view must be positive, got {fov_um}")
    sx, sy = fw * (1 - overlap), fh * (1 - overlap)
    cols, rows = _count(area.width_um, fw, sx), _count(area.height_um, fh, sy)
    cx, cy = (area.x0_um + area.x1_um) / 2, (area.y0_um + area.y1_um) / 2
    # Tile centres: a grid centred on the area; col 0 = largest x, row 0 = smallest y.
    xs = [cx + ((cols - 1) / 2 - c) * sx for c in range(cols)]
    ys = [cy + (r - (rows - 1) / 2) * sy for r in range(rows)]
    for axis, values, (lo, hi) in (("x", xs, travel_um[0]), ("y", ys, travel_um[1])):
        for v in (min(values), max(values)):
            if v < lo:
                raise StageLimitError(axis, v, lo, reason="travel (scan area)")
            if v > hi:
                raise StageLimitError(axis, v, hi, reason="travel (scan area)")
    tiles: list[Tile] = []
    for r in range(rows):
        order = range(cols) if r % 2 == 0 else range(cols - 1, -1, -1)
        for c in order:
            tiles.append(Tile(index=len(tiles), row=r, col=c, x_um=xs[c], y_um=ys[r]))
    return Plan(area=area, fov_um=(fw, fh), step_um=(sx, sy), overlap=overlap, rows=rows, cols=cols, tiles=tuple(tiles))
