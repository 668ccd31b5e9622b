"""Stitching benchmark: peak memory and throughput on a large synthetic scan.

    python -m deepaf_host.wsi.bench                 # 20 x 15 mm at 20x: 97 x 97 tiles of 640 x 480
    python -m deepaf_host.wsi.bench --tile 4056x3040 --rows 2    # two rows of full-size tiles

The default scan has the tile count of a 20 x 15 mm area at 20x on the scanner's camera
(4056 x 3040 px of 0.057 um: 97 x 97 fields at 10 % overlap), with smaller tiles of the
same field of view (640 x 480, so 0.36 um/px) to fit the disk and a few minutes; tissue
everywhere, so every tile is imaged (the worst case), stage errors on. ``--tile`` and
``--rows``/``--cols`` change that; ``--rows 2`` with full-size tiles shows that memory
does not grow with the tile size either.

The scan is written by one child process and stitched by another, so the parent stays
small: on Linux a child's ``ru_maxrss`` starts from its parent's resident size at the
fork (it survives the exec), which would count the generator's memory against the
stitcher. Peak memory is the stitch child's ``ru_maxrss`` (``os.wait4``) and, the same
without anything inherited, its own ``VmHWM`` read from ``/proc/self/status`` at the
end. Throughput = level-0 megapixels / wall seconds of the whole stitch (both passes,
all levels, thumbnail and reports).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..optics.presets import CAMERA_MODES, get_objective, specimen_pixel_um
from ..scan.plan import Area, plan_tiles
from .synthetic import SyntheticSpec, write_synthetic_scan


def _grid_20x15_mm() -> tuple[int, int, float]:
    """(rows, cols, field width um) of a 20 x 15 mm scan at 20x with the HQ camera."""
    p = specimen_pixel_um(get_objective("20x"), CAMERA_MODES["high"])
    fov = (4056 * p, 3040 * p)
    plan = plan_tiles(Area(-40000, -25000, -20000, -10000), fov, 0.1)
    return plan.rows, plan.cols, fov[0]


def _child(directory: str) -> None:
    from . import StitchOptions, stitch

    summary = stitch(directory, StitchOptions(force=True, use_cache=False))
    keep = ("tiles", "levels", "mosaic_megapixels", "output_bytes", "timings_s", "megapixels_per_s", "ground_truth",
            "compose", "flat_field")
    out = {k: summary[k] for k in keep}
    out["flat_field"] = {k: v for k, v in summary["flat_field"].items() if k != "grid_gain"}
    out["registration"] = summary["registration"]["summary"]
    out["vm_hwm_mb"] = _vm_hwm_mb()
    print(json.dumps(out))


def _vm_hwm_mb() -> float | None:
    """This process's peak resident memory since its exec (Linux), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _generate(directory: str, spec_json: str) -> None:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(spec_json).items()}
    spec = SyntheticSpec(**fields)
    t0 = time.perf_counter()
    made = write_synthetic_scan(directory, spec)
    gen_s = time.perf_counter() - t0
    tile_bytes = sum(p.stat().st_size for p in Path(directory).glob("tile_*"))
    h, w = spec.tile_shape
    print(f"synthetic scan: {spec.rows} x {spec.cols} = {made['tiles']} tiles of {w}x{h} px at {spec.pixel_size_um:.4f} um/px "
          f"({made['imaged']} imaged, {tile_bytes / 1e6:.0f} MB of JPEG) written in {gen_s:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tile", default="640x480", help="tile size WxH (default 640x480)")
    ap.add_argument("--rows", type=int, default=None, help="grid rows (default: 20 x 15 mm at 20x)")
    ap.add_argument("--cols", type=int, default=None, help="grid columns (default: 20 x 15 mm at 20x)")
    ap.add_argument("--dir", default=None, help="scan folder (default: a temporary one, removed after)")
    ap.add_argument("--reuse", action="store_true", help="stitch the scan already in --dir")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--generate", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    if args.generate:
        _generate(*args.generate)
        return 0
    rows, cols, fov_w = _grid_20x15_mm()
    rows, cols = args.rows or rows, args.cols or cols
    w, h = (int(v) for v in args.tile.lower().split("x"))
    spec = SyntheticSpec(rows=rows, cols=cols, tile_shape=(h, w), pixel_size_um=fov_w / w, jitter_um=1.0,
                         backlash_um=2.0, vignetting=0.15, texture_px=2048 if max(w, h) <= 2048 else 4096, detail_px=2.5, seed=7)
    tmp = None
    if args.dir is None:
        tmp = tempfile.mkdtemp(prefix="deepaf-wsi-bench-")
        directory = Path(tmp) / "scan"
    else:
        directory = Path(args.dir)
    try:
        if not args.reuse:
            gen = subprocess.run([sys.executable, "-m", "deepaf_host.wsi.bench", "--generate", str(directory),
                                  json.dumps(asdict(spec))], check=False)
            if gen.returncode != 0:
                return gen.returncode
        t0 = time.perf_counter()
        with tempfile.TemporaryFile("w+") as out:
            child = subprocess.Popen([sys.executable, "-m", "deepaf_host.wsi.bench", "--child", str(directory)], stdout=out)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t0
            out.seek(0)
            text = out.read()
        if child.returncode != 0:
            return child.returncode
        peak_mb = usage.ru_maxrss / 1024
        s = json.loads(text.strip().splitlines()[-1])
        mp = s["mosaic_megapixels"]
        levels = " / ".join(f"{b}x{a}" for a, b in s["levels"])
        print(f"slide: {levels} px ({len(s['levels'])} levels), {mp:.0f} megapixels, {s['output_bytes'] / 1e6:.0f} MB")
        print(f"stitch wall time: {wall:.1f} s (analyse {s['timings_s']['analyse']:.1f}, write {s['timings_s']['write']:.1f}) "
              f"-> {mp / wall:.1f} megapixels/s")
        print(f"peak RSS of the stitch process: {peak_mb:.0f} MB (ru_maxrss), {s['vm_hwm_mb']:.0f} MB (VmHWM)")
        reg = s["registration"]
        print(f"registration: {reg['accepted']}/{reg['pairs']} pairs accepted, {reg['dropped_outliers']} outliers dropped")
        gt = s.get("ground_truth")
        if gt:
            a, b = gt["seam_error_px"]["stitched_all_pairs"], gt["seam_error_px"]["stage_only_all_pairs"]
            print(f"seam error vs truth: median {a['median']:.2f} px, p95 {a['p95']:.2f}, max {a['max']:.2f} "
                  f"(stage only: median {b['median']:.2f}, max {b['max']:.2f}) over {a['n']} pairs")
        ff = s["flat_field"]
        print(f"flat field: {'applied (' + ff.get('method', '') + ')' if ff['applied'] else 'not applied'}" + (f" - {ff['note']}" if ff['note'] else ''))
        print(f"compose: {s['compose']['decoded']} tiles decoded, peak {s['compose']['peak_scratch_tiles']} in scratch, "
              f"{s['compose']['peak_band_slices']} band slices in memory")
        print(json.dumps({"tiles": rows * cols, "tile": [w, h], "megapixels": mp, "wall_s": round(wall, 2),
                          "mp_per_s": round(mp / wall, 2), "peak_rss_mb": round(peak_mb), "vm_hwm_mb": round(s["vm_hwm_mb"] or 0), "seam_error_px": gt["seam_error_px"] if gt else None}))
        return 0 if math.isfinite(wall) else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
