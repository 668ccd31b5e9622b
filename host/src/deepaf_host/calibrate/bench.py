"""Calibration benchmark: ``python -m deepaf_host.calibrate.bench [--quick]``.

Runs the whole calibration on virtual microscopes given known errors -- a lead-screw
stage (``errors=leadscrew``: play, repeatability, skew) with another Z play, cameras
turned either way, relays that give pixel sizes no preset has, three objectives -- and
prints what was recovered against what was injected, with issue 15's bars: pixel size
within 1 %, rotation within 0.2 degrees, Z backlash within 1 um. Figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .. import sim
from ..board import VirtualBoard
from ..optics.presets import get_objective
from ..scan.session import open_microscope
from ..stage import Stage
from .run import CalibrationPlan, run_calibration

#: (objective, relay, camera rotation deg, Z play um, repeatability seed)
CASES = [
    ("20x", 1.20, 1.5, 4.0, 1),
    ("20x", 1.36, -2.5, 6.5, 2),
    ("10x", 1.50, 0.8, 3.0, 3),
    ("40x", 1.36, -0.6, 2.0, 4),
]


def run_case(objective: str, relay: float, rotation_deg: float, z_play_um: float, seed: int, low: str = "320x180",
             high: str = "320x240") -> dict[str, Any]:
    port = f"sim://?speed=max&errors=leadscrew&play_um=20,20,{z_play_um}&error_seed={seed}"
    camera = f"sim://{objective}?low={low}&high={high}&relay={relay}&rotation_deg={rotation_deg}&seed={seed}"
    t0 = time.perf_counter()
    with open_microscope(port, camera, objective=objective) as (stage, cam, clock, sleep, _):
        stage.home()
        board = sim.simulated_board(stage.connection)
        if not isinstance(board, VirtualBoard):  # the truth below is the Python emulator's injected errors
            raise RuntimeError(f"{port!r} did not open the virtual board (got {type(board).__name__})")
        plan = CalibrationPlan(at_um=(-30000.0, -19500.0), z_start_um=-4000.0,
                               dof_um=get_objective(objective).depth_of_field_um(), settle_s=0.2)
        result = run_calibration(stage, cam, plan, raw_stage=Stage(stage.connection, approach_um=0.0), sleep=sleep, clock=clock)
        truth = {"pixel_size_um": cam.pixel_size_um("low"), "rotation_deg": rotation_deg, "z_backlash_um": z_play_um,
                 "skew_deg": board.skew_deg, "xy_backlash_um": list(board.play_um[:2])}
    got = result.to_dict()
    return {
        "port": port, "camera": camera, "truth": truth, "measured": got,
        "pixel_error_pct": 100.0 * (got["pixel_size_um"] / truth["pixel_size_um"] - 1.0),
        "rotation_error_deg": got["rotation_deg"] - rotation_deg,
        "z_backlash_error_um": got["z_backlash_um"] - z_play_um,
        "wall_s": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the first case only")
    parser.add_argument("--low", default="320x180", help="low-res frame size WxH (default 320x180: fast; the camera's is 1280x720)")
    parser.add_argument("--high", default="320x240", help="high-res frame size WxH")
    parser.add_argument("--json", help="also write every case here")
    args = parser.parse_args(argv)
    cases = CASES[:1] if args.quick else CASES
    rows = []
    print(f"low-res frames {args.low}, high-res {args.high}")
    print(f"{'objective':9s} {'relay':>5s} {'pixel um':>9s} {'err %':>6s} {'rot deg':>7s} {'err':>6s} {'skew':>6s} "
          f"{'Zplay':>5s} {'Zmeas':>6s} {'err':>5s} {'XY play':>11s} {'wall s':>6s}")
    for objective, relay, rotation, play, seed in cases:
        r = run_case(objective, relay, rotation, play, seed, low=args.low, high=args.high)
        rows.append(r)
        m = r["measured"]
        print(f"{objective:9s} {relay:5.2f} {r['truth']['pixel_size_um']:9.4f} {r['pixel_error_pct']:+6.2f} {rotation:+7.2f} "
              f"{r['rotation_error_deg']:+6.3f} {m['skew_deg']:+6.3f} {play:5.1f} {m['z_backlash_um']:6.2f} "
              f"{r['z_backlash_error_um']:+5.2f} {m['xy_backlash_um'][0]:5.1f},{m['xy_backlash_um'][1]:5.1f} {r['wall_s']:6.1f}")
    ok = all(abs(r["pixel_error_pct"]) <= 1 and abs(r["rotation_error_deg"]) <= 0.2 and abs(r["z_backlash_error_um"]) <= 1
             for r in rows)
    print(f"bars (pixel 1 %, rotation 0.2 deg, Z backlash 1 um; stage: errors=leadscrew, skew 0.3 deg, XY play 20 um): "
          f"{'all met' if ok else 'NOT met'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
