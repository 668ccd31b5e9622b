"""Tile plans: coverage, serpentine order from the bottom-right corner, travel limits."""

from __future__ import annotations

import itertools
import pytest
from deepaf_host.errors import ConfigError, StageLimitError
from deepaf_host.scan.plan import Area, plan_tiles


def test_area_parses_mm_in_any_corner_order() -> None:
    a = Area.parse_mm("-29.5,-20,-31,-21")
    assert (a.x0_um, a.y0_um, a.x1_um, a.y1_um) == (-31000, -21000, -29500, -20000)
    for bad in ("1,2,3", "a,b,c,d", "1,1,1,2", "nan,0,1,1"):
        with pytest.raises(ConfigError):
            Area.parse_mm(bad)


def test_serpentine_from_the_bottom_right() -> None:
    plan = plan_tiles(Area.parse_mm("-31,-21,-29.5,-20"), (500.0, 375.0), overlap=0.1)
    assert (plan.rows, plan.cols) == (3, 4)
    t = plan.tiles
    assert [x.index for x in t] == list(range(12))
    # First tile: largest x, smallest y.
    assert t[0].x_um == max(x.x_um for x in t) and t[0].y_um == min(x.y_um for x in t)
    # Row 0 runs towards -x, row 1 back towards +x; consecutive tiles are neighbours.
    assert [x.col for x in t[:8]] == [0, 1, 2, 3, 3, 2, 1, 0]
    for a, b in itertools.pairwise(t):
        assert abs(a.x_um - b.x_um) + abs(a.y_um - b.y_um) == pytest.approx(450.0 if a.row == b.row else 337.5)
    # Coverage: the tiles span the area, and the steps leave the requested overlap.
    xs, ys = [x.x_um for x in t], [x.y_um for x in t]
    assert min(xs) - 250 <= -31000 and max(xs) + 250 >= -29500
    assert min(ys) - 187.5 <= -21000 and max(ys) + 187.5 >= -20000
    assert plan.step_um == (450.0, 337.5)


def test_an_area_smaller_than_a_field_is_one_tile_at_its_centre() -> None:
    plan = plan_tiles(Area(-30100, -20100, -30000, -20000), (500.0, 375.0))
    assert len(plan.tiles) == 1
    assert (plan.tiles[0].x_um, plan.tiles[0].y_um) == (-30050, -20050)


def test_out_of_travel_areas_are_refused() -> None:
    with pytest.raises(StageLimitError) as exc:
        plan_tiles(Area.parse_mm("-1,-1,1,1"), (500.0, 375.0))
    assert exc.value.axis == "x" and exc.value.limit_um == 0.0
    with pytest.raises(StageLimitError) as exc:
        plan_tiles(Area.parse_mm("-30,-45,-29,-44"), (500.0, 375.0))
    assert exc.value.axis == "y" and exc.value.limit_um == -40000.0
    with pytest.raises(ConfigError):
        plan_tiles(Area.parse_mm("-30,-20,-29,-19"), (500.0, 375.0), overlap=0.95)
