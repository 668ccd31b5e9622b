"""Scan benchmark on the virtual microscope: time per tile by phase, seconds per mm^2.

    python -m deepaf_host.scan.bench [--tiles 3x3] [--strategies stack,search,sweep] [--full-frames]

Runs the same small scan (all tissue) once per autofocus strategy on ``sim://?speed=max``:
the board's event-driven clock times every move with the protocol's rates and
accelerations (Z 1 mm/s and 5 mm/s^2, X/Y 10 mm/s and 50 mm/s^2, 115200 baud), and the
camera time model of :mod:`deepaf_host.scan.timing` (Raspberry Pi HQ camera: 33 ms per
low-res frame, 0.75 s per high-res still) times every frame; host computation (tissue
detection, focus measures, inference, JPEG encoding and writing) is measured in wall
time on this machine and added. The settle time after each XY move is 0.2 s. Prints a
table; nothing is asserted (tests never assert timings).

By default the virtual camera renders the low-res frames at full size (1280x720, the
pixel size the single-shot model was trained at and checks) and the high-res stills
reduced (1014x760: the same field, coarser pixels) to keep the benchmark short; the
simulated camera time still is that of the full-size frames. ``--full-frames`` also
renders 4056x3040 stills (slow: ~15 s of rendering per high-res frame here).

Anchors: OpenFlexure users report ~8 s per field for autofocus and capture; seed 002
(Table 1) reports ~40 s/mm^2 for OughtaFocus (Brent search) at 20x/0.75.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeepAfError
from .session import ScanOptions, run_scan

PHASES = ("move", "settle", "low_capture", "tissue", "autofocus", "inference", "high_capture", "write", "total")


def high_res_field_um(objective: str = "20x") -> tuple[float, float]:
    """The full high-res field (width, height) in um for ``objective``, at any rendered frame size."""
    from ..optics.presets import CAMERA_MODES, get_objective, specimen_pixel_um

    mode = CAMERA_MODES["high"]
    pixel = specimen_pixel_um(get_objective(objective), mode)
    return mode.width_px * pixel, mode.height_px * pixel


def bench_area_mm(cols: int, rows: int, fov_um: tuple[float, float], overlap: float, centre_mm: tuple[float, float]) -> str:
    """An area that holds exactly cols x rows tiles."""
    w = (cols - 1) * fov_um[0] * (1 - overlap) + fov_um[0] * 0.999
    h = (rows - 1) * fov_um[1] * (1 - overlap) + fov_um[1] * 0.999
    cx, cy = centre_mm
    return f"{cx - w / 2000:.4f},{cy - h / 2000:.4f},{cx + w / 2000:.4f},{cy + h / 2000:.4f}"


def run_one(strategy: str, area: str, camera: str, out: Path) -> dict[str, Any]:
    opts = ScanOptions(port="sim://?speed=max", camera=camera, out_dir=out, area_mm=area, autofocus=strategy)
    t = time.perf_counter()
    report = run_scan(opts)
    wall = time.perf_counter() - t
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    imaged = [r for r in records if not r["empty"]]
    phases = {p: float(np.mean([r["timings_s"].get(p, 0.0) for r in imaged])) for p in PHASES}
    af = [r["autofocus"] for r in imaged if r.get("autofocus")]
    errs = np.abs([r["focus_error_um"] for r in imaged if "focus_error_um" in r])
    first = imaged[0]["timings_s"]["total"] if imaged else float("nan")
    steady = [r["timings_s"]["total"] for r in imaged[1:]]
    steady_af = [r["timings_s"]["autofocus"] + r["timings_s"]["inference"] for r in imaged[1:]]
    step_mm2 = report["plan"]["step_um"][0] * report["plan"]["step_um"][1] / 1e6  # new area per tile
    return {
        "strategy": strategy, "tiles": len(records), "imaged": len(imaged), "phases": phases,
        "af_frames": float(np.mean([a["frames"] for a in af])) if af else float("nan"),
        "af_ok": sum(a["ok"] for a in af), "s_per_mm2": report["time_s"]["per_mm2"],
        "s_per_tile_steady": float(np.mean(steady)) if steady else float("nan"), "first_tile_s": first,
        "s_per_mm2_steady": float(np.mean(steady)) / step_mm2 if steady else float("nan"),
        "af_s_per_mm2_steady": float(np.mean(steady_af)) / step_mm2 if steady_af else float("nan"),
        "err_median": float(np.median(errs)) if errs.size else float("nan"),
        "err_max": float(errs.max()) if errs.size else float("nan"),
        "within_half_dof": float(np.mean(errs <= 0.49)) if errs.size else float("nan"), "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", default="3x3", help="COLSxROWS of the benchmark area (all tissue)")
    ap.add_argument("--strategies", default="stack,search,sweep,single-shot", help="comma-separated; single-shot is skipped (with the reason) when its model is missing or does not match")
    ap.add_argument("--full-frames", action="store_true", help="render full-size frames (slow)")
    ap.add_argument("--centre-mm", default="-30.0,-20.0", help="centre of the area, mm")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    cols, rows = (int(v) for v in args.tiles.lower().split("x"))
    camera = "sim://20x" if args.full_frames else "sim://20x?high=1014x760"
    fov_um = high_res_field_um("20x")
    cx, cy = (float(v) for v in args.centre_mm.split(","))
    area = bench_area_mm(cols, rows, fov_um, 0.1, (cx, cy))
    results = []
    for strategy in args.strategies.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                results.append(run_one(strategy, area, camera, Path(tmp) / "scan"))
            except DeepAfError as exc:
                print(f"  {strategy}: skipped: {exc}", file=sys.stderr)
                continue
            print(f"  {strategy}: done in {results[-1]['wall_s']:.0f} s of wall time", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"Virtual microscope, 20x/0.75, {cols}x{rows} tiles of {fov_um[0]:.0f}x{fov_um[1]:.0f} um, overlap 0.1, area {area} mm")
    print("Simulated clock: board motion at protocol.md rates; camera 33 ms/low-res frame, 0.75 s/high-res still; settle 0.2 s;")
    print("host computation in wall time on this machine. Mean seconds per tissue tile by phase (the first tile includes the")
    print("coarse initial focus, 25 frames):\n")
    head = f"{'phase':14s}" + "".join(f"{r['strategy']:>12s}" for r in results)
    print(head)
    print("-" * len(head))
    for p in PHASES:
        print(f"{p:14s}" + "".join(f"{r['phases'][p]:12.3f}" for r in results))
    print("-" * len(head))
    rows_out = [
        ("tile, steady s", "s_per_tile_steady", "{:12.2f}"), ("first tile s", "first_tile_s", "{:12.2f}"),
        ("s/mm^2, scan", "s_per_mm2", "{:12.1f}"), ("s/mm^2 steady", "s_per_mm2_steady", "{:12.1f}"),
        ("AF s/mm^2", "af_s_per_mm2_steady", "{:12.1f}"),
        ("AF frames", "af_frames", "{:12.1f}"), ("AF ok", "af_ok", "{:12d}"),
        ("|err| median", "err_median", "{:12.3f}"), ("|err| max", "err_max", "{:12.3f}"),
        ("within DoF/2", "within_half_dof", "{:12.0%}"),
    ]
    for label, key, fmt in rows_out:
        print(f"{label:14s}" + "".join(fmt.format(r[key]) if r[key] is not None else f"{'-':>12s}" for r in results))
    print("\ns/mm^2, scan: the whole scan (first tile included) over the area the tiles cover; steady: a tile after the")
    print("first, over the new area each tile adds (the tile step); AF s/mm^2: the autofocus phase alone, steady.")
    print("Anchors: OpenFlexure ~8 s per field (autofocus + capture); seed 002 ~40 s/mm^2 of autofocus alone (OughtaFocus, Brent).")


if __name__ == "__main__":
    main()
