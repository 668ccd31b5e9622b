"""Trust benchmark: does a scan ever call a blurred tile good? (issue 13's bars)

    python -m deepaf_host.scan.trust_bench [--tiles 3x3] [--scenarios all] [--json]

Runs the scan bench's area (all tissue, 20x, low-res frames at the model's pixel size,
high-res stills reduced to 1014 x 760) on the virtual microscope under a set of
scenarios, and scores every tissue tile against the virtual camera's true focus:

- ``accepted_bad``: tiles whose QC said ``ok`` but which are more than DoF/2 from
  focus. The bar is 0 in every scenario: a tile may be blurred, never silently.
- ``flagged``: tiles the QC left ``suspect`` or ``failed`` (the scan then ends
  ``complete_with_defects``); ``within``: the share of tissue tiles within DoF/2;
  ``frames``: low-res frames per tile for focus (autofocus, verification, refocus).

Scenarios: the bench with ``search`` and with ``single-shot``; a start 150 um above
focus; an over-exposed lab (clear glass at 400 DN: the camera clips); a real H&E
image (the held-out corpus) as the specimen; a camera that does not see Z (a video
file), which must stop the scan with an error. Nothing is asserted here (tests
never assert on benchmarks); the README quotes its output.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import DatasetError, DeepAfError
from ..optics.presets import get_objective
from .bench import bench_area_mm, high_res_field_um
from .session import ScanOptions, run_scan

HALF_DOF_UM = get_objective("20x").depth_of_field_um() / 2
CAMERA = "sim://20x?high=1014x760"
Z_START_UM = -4000.0


def _heldout_folder(tmp: Path) -> Path:
    """The held-out corpus images in one folder (a virtual camera ``specimen=``)."""
    from ..optics.corpus import corpus_images, read_image

    folder = tmp / "heldout"
    folder.mkdir()
    for img in corpus_images("heldout"):
        cv2.imwrite(str(folder / f"{img.id}.png"), cv2.cvtColor(read_image(img), cv2.COLOR_RGB2BGR))
    return folder


def _z_blind_video(tmp: Path, frames: int = 400) -> Path:
    """A video of tissue-like texture that moves with time, never with Z."""
    rng = np.random.default_rng(0)
    path = tmp / "z-blind.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (1280, 720))
    base = cv2.resize((rng.random((90, 160, 3)) * 255).astype(np.uint8), (1280, 720), interpolation=cv2.INTER_CUBIC)
    for i in range(frames):
        writer.write(np.roll(base, 7 * i, axis=1))
    writer.release()
    return path


def scenarios(tmp: Path, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """name -> ScanOptions fields. The held-out images are read only when ``names`` (all
    when None) has a real H&E scenario; a missing one raises the corpus's DatasetError,
    which names ``deepaf-host corpus fetch``."""
    heldout = _heldout_folder(tmp) if names is None or any("real H&E" in n for n in names) else tmp / "heldout"
    return {
        "search": {"autofocus": "search"},
        "single-shot": {"autofocus": "single-shot"},
        "search: z-start +150": {"autofocus": "search", "z_start_um": Z_START_UM + 150.0},
        "single-shot: z-start +150": {"autofocus": "single-shot", "z_start_um": Z_START_UM + 150.0},
        "single-shot: over-exposed": {"autofocus": "single-shot", "camera": CAMERA + "&white_dn=400"},
        "single-shot: real H&E": {"autofocus": "single-shot", "camera": CAMERA + f"&specimen={heldout}"},
        "search: real H&E": {"autofocus": "search", "camera": CAMERA + f"&specimen={heldout}"},
        "Z-blind camera": {"autofocus": "search", "camera": str(_z_blind_video(tmp)), "pixel_size_um": 0.18057},
    }


def run_one(name: str, fields: dict[str, Any], area: str, out: Path) -> dict[str, Any]:
    opts = {"port": "sim://?speed=max", "camera": CAMERA, "out_dir": out, "area_mm": area, "z_start_um": Z_START_UM, **fields}
    t = time.perf_counter()
    row: dict[str, Any] = {"scenario": name}
    try:
        report = run_scan(ScanOptions(**opts))
    except DeepAfError as exc:
        row.update(status="stopped", error=str(exc), wall_s=time.perf_counter() - t)
        return row
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    tissue = [r for r in records if not r["empty"]]
    err = np.abs([r["focus_error_um"] for r in tissue])
    ok = np.array([(r.get("qc") or {}).get("verdict") == "ok" for r in tissue])
    frames = [sum(int((r.get(k) or {}).get("frames", 0)) for k in ("autofocus", "confirm", "refocus")) for r in tissue]
    row.update(
        status=report["status"], tiles=len(tissue), within=float(np.mean(err <= HALF_DOF_UM)) if err.size else float("nan"),
        accepted_bad=int(np.sum(ok & (err > HALF_DOF_UM))), flagged=int(np.sum(~ok)),
        flagged_in_focus=int(np.sum(~ok & (err <= HALF_DOF_UM))),
        frames=float(np.mean(frames[1:])) if len(frames) > 1 else float("nan"),
        err_median=float(np.median(err)) if err.size else float("nan"), err_max=float(err.max()) if err.size else float("nan"),
        wall_s=time.perf_counter() - t,
    )
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", default="3x3", help="COLSxROWS of the area (all tissue)")
    ap.add_argument("--scenarios", default="all", help="comma-separated names (see the module docstring), or all")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cols, rows = (int(v) for v in args.tiles.lower().split("x"))
    area = bench_area_mm(cols, rows, high_res_field_um("20x"), 0.1, (-30.0, -20.0))
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        names = None if args.scenarios == "all" else args.scenarios.split(",")
        try:
            chosen = scenarios(tmp, names)
        except DatasetError as exc:  # the held-out corpus is not fetched: say so, no traceback
            raise SystemExit(f"error: {exc}") from None
        if names is not None:
            chosen = {k: v for k, v in chosen.items() if k in names}
        for i, (name, fields) in enumerate(chosen.items()):
            results.append(run_one(name, fields, area, tmp / f"scan{i}"))
            print(f"  {name}: {results[-1]['status']} in {results[-1]['wall_s']:.0f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"Virtual microscope, 20x/0.75, {cols}x{rows} tissue tiles; DoF/2 = {HALF_DOF_UM:.2f} um; frames: mean low-res")
    print("frames for focus per tile after the first (autofocus + verification + refocus)\n")
    head = f"{'scenario':28s}{'status':>22s}{'tiles':>6s}{'within':>8s}{'accepted bad':>13s}{'flagged':>8s}{'frames':>8s}{'|err| med':>10s}{'max':>8s}"
    print(head)
    print("-" * len(head))
    for r in results:
        if r["status"] == "stopped":
            print(f"{r['scenario']:28s}{'stopped (exit 1)':>22s}  {r['error'][:90]}")
            continue
        print(f"{r['scenario']:28s}{r['status']:>22s}{r['tiles']:6d}{r['within']:8.0%}{r['accepted_bad']:13d}{r['flagged']:8d}"
              f"{r['frames']:8.1f}{r['err_median']:10.2f}{r['err_max']:8.2f}")


if __name__ == "__main__":
    main()
