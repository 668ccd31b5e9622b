"""``stitch(DIR)``: a scan folder -> ``DIR/slide.ome.tif`` and its report.

Two passes over the tiles, each decoding every tile once:

1. analyse: in stage order, each tile's overlap strips are cut and registered against
   the neighbours already read (only strips wait in memory, never whole tiles), and
   the flat-field statistics are gathered. The result (pairs, flat field) is cached in
   ``DIR/.stitch-cache.json`` keyed by the manifest's hash and the registration
   settings, so a stitch that dies while writing resumes from pass 2.
2. solve the positions (:mod:`.solve`), then write: :class:`.compose.Composer` makes
   level 0 in 512 px tiles, :class:`.pyramid.PyramidBuilder` the lower levels, and
   :func:`.ometiff.write_pyramid` the file, to a temporary name that is renamed to
   ``slide.ome.tif`` only once complete: a crash never leaves a half slide under the
   final name. Then the thumbnail, the focus map (PNG + CSV), ``stitch.json`` and
   ``report.html``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

from .. import __version__
from .compose import Composer
from .flatfield import FlatField, FlatFieldEstimator, apply_gain, from_calibration
from .folder import MANIFEST, ScanFolder, StitchError, write_atomic
from .ometiff import SlideMetadata, write_pyramid
from .pyramid import PyramidBuilder
from .register import PairResult, grey, overlap_boxes, register_strips
from .solve import Edge, fit_camera_axes, solve_positions

log = logging.getLogger(__name__)

SLIDE = "slide.ome.tif"
THUMBNAIL = "thumbnail.png"
STITCH_JSON = "stitch.json"
CACHE = ".stitch-cache.json"
FLAT_FIELD_MODES = ("auto", "on", "off")

#: progress(phase, done, total): phases "analyse" (tiles) and "write" (output tiles).
Progress = Callable[[str, int, int], None]


@dataclass
class StitchOptions:
    """Settings of a stitch (the CLI fills these from its options)."""

    output: str = SLIDE
    #: Register neighbours (False: every tile where the stage put it).
    register: bool = True
    #: auto: correct when enough glass was seen; on: the same, but say so loudly when
    #: it cannot; off: never.
    flat_field: str = "auto"
    #: The most the stage may be off between two neighbours; larger shifts are rejected.
    max_shift_um: float = 25.0
    #: Lowest normalised cross-correlation of an accepted pair.
    min_ncc: float = 0.3
    #: A pair must overlap this much (pixels) across its seam to be registered.
    min_overlap_px: int = 16
    prior_weight: float = 1e-3
    #: A pair disagreeing with the global solution by more than this is dropped.
    outlier_px: float = 4.0
    tile_px: int = 512
    jpeg_quality: int = 90
    #: Halve until the larger side of the smallest level is at most this.
    smallest_level_px: int = 1024
    #: JPEG encoding threads.
    workers: int = 2
    #: The camera's rotation on the stage (degrees; machine +X appears this far from the
    #: image's +column axis towards +row; `deepaf-host calibrate` measures it): tiles are
    #: turned back by it and their solved positions turned into the stage's axes.
    #: None: the scan report's ``camera_rotation_deg`` (from the profile), else 0.
    rotation_deg: float | None = None
    #: Restitch even when the slide is newer than the manifest.
    force: bool = False
    #: Use the pass-1 cache when it matches.
    use_cache: bool = True
    #: Write the focus map, report.html (False: only the slide and stitch.json).
    reports: bool = True

    def __post_init__(self) -> None:
        if self.flat_field not in FLAT_FIELD_MODES:
            raise StitchError(self.output, f"flat_field must be one of {FLAT_FIELD_MODES}, got {self.flat_field!r}")
        if self.tile_px % 16 or self.tile_px < 64:
            raise StitchError(self.output, f"tile_px must be a multiple of 16, >= 64; got {self.tile_px}")
        if not 1 <= self.jpeg_quality <= 100:
            raise StitchError(self.output, f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.max_shift_um <= 0 or self.smallest_level_px < 16:
            raise StitchError(self.output, "max_shift_um must be positive and smallest_level_px >= 16")

    def analysis_key(self) -> dict[str, Any]:
        return {"register": self.register, "flat_field": self.flat_field, "max_shift_um": self.max_shift_um,
                "min_ncc": self.min_ncc, "min_overlap_px": self.min_overlap_px}


@dataclass
class Pair:
    """A registered neighbour pair (indices into ``ScanFolder.tiles``)."""

    i: int
    j: int
    #: Expected offset p_j - p_i from the stage, pixels.
    expected: tuple[float, float]
    result: PairResult

    @property
    def measured(self) -> tuple[float, float]:
        return round(self.expected[0]) + self.result.dx, round(self.expected[1]) + self.result.dy

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {"i": self.i, "j": self.j, "expected": [round(v, 3) for v in self.expected], "dx": round(r.dx, 3),
                "dy": round(r.dy, 3), "ncc": round(r.ncc, 4), "response": round(r.response, 4),
                "shared": round(r.shared, 4), "ok": r.ok, "reason": r.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Pair:
        res = PairResult(d["dx"], d["dy"], d["ncc"], d["response"], d["shared"], d["ok"], d["reason"])
        return cls(d["i"], d["j"], (d["expected"][0], d["expected"][1]), res)


@dataclass
class Analysis:
    pairs: list[Pair] = field(default_factory=list)
    flat_field: FlatField | None = None
    flat_field_note: str = ""
    #: Median colour of the glass seen in the tiles (None: none seen).
    glass_rgb: tuple[int, int, int] | None = None
    seconds: float = 0.0


def neighbour_pairs(folder: ScanFolder, min_overlap_px: int) -> list[tuple[int, int, tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Pairs of imaged tiles that share a side (from the stage positions): (i, j, box in
    i, box in j), with i before j in stage order (y, then x)."""
    h, w = folder.tile_shape
    corners = folder.stage_px()
    imaged = [k for k, t in enumerate(folder.tiles) if t.image]
    buckets: dict[tuple[int, int], list[int]] = {}
    for k in imaged:
        buckets.setdefault((math.floor(corners[k, 0] / w), math.floor(corners[k, 1] / h)), []).append(k)
    order = {k: n for n, k in enumerate(sorted(imaged, key=lambda k: (corners[k, 1], corners[k, 0])))}
    pairs = []
    for k in imaged:
        bx, by = math.floor(corners[k, 0] / w), math.floor(corners[k, 1] / h)
        for ox in (-1, 0, 1):
            for oy in (-1, 0, 1):
                for m in buckets.get((bx + ox, by + oy), []):
                    if order[m] <= order[k]:
                        continue
                    d = (corners[m, 0] - corners[k, 0], corners[m, 1] - corners[k, 1])
                    boxes = overlap_boxes(d, (h, w), (h, w))
                    if boxes is None:
                        continue
                    x0, y0, x1, y1 = boxes[0]
                    ow, oh = x1 - x0, y1 - y0
                    side = (ow >= w // 2 and oh >= min_overlap_px) or (oh >= h // 2 and ow >= min_overlap_px)
                    if side:
                        pairs.append((k, m, boxes[0], boxes[1]))
    return pairs


def analyse(folder: ScanFolder, opts: StitchOptions, progress: Progress | None = None) -> Analysis:
    """Pass 1 (see the module docstring)."""
    t0 = time.perf_counter()
    corners = folder.stage_px()
    max_shift_px = opts.max_shift_um / folder.pixel_size_um
    pairs = neighbour_pairs(folder, opts.min_overlap_px) if opts.register else []
    by_tile: dict[int, list[int]] = {}
    for n, (i, j, _, _) in enumerate(pairs):
        by_tile.setdefault(i, []).append(n)
        by_tile.setdefault(j, []).append(n)
    waiting: dict[int, np.ndarray] = {}  # pair -> strip of its first tile
    estimator = FlatFieldEstimator() if opts.flat_field != "off" else None
    imaged = sorted((k for k, t in enumerate(folder.tiles) if t.image), key=lambda k: (corners[k, 1], corners[k, 0]))

    def prepare(k: int) -> tuple[tuple[np.ndarray, np.ndarray] | None, dict[int, np.ndarray]]:
        """Decode a tile and cut what pass 1 needs of it (a worker thread: OpenCV and
        the FFT release the GIL, so decoding overlaps registration)."""
        tile = folder.tiles[k]
        rgb = folder.read(tile)
        stats = estimator.measure(rgb, all_glass=tile.empty) if estimator is not None else None
        strips: dict[int, np.ndarray] = {}
        if by_tile.get(k):
            g = grey(rgb)
            for n in by_tile[k]:
                i, _, box_i, box_j = pairs[n]
                x0, y0, x1, y1 = box_i if k == i else box_j
                strips[n] = g[y0:y1, x0:x1].copy()
        return stats, strips

    out = Analysis()
    with ThreadPoolExecutor(max(1, opts.workers)) as pool:
        ahead: deque[Future[tuple[tuple[np.ndarray, np.ndarray] | None, dict[int, np.ndarray]]]] = deque()
        todo = iter(imaged)
        for k in itertools.islice(todo, 2 * max(1, opts.workers)):
            ahead.append(pool.submit(prepare, k))
        for done, k in enumerate(imaged):
            stats, strips = ahead.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append(pool.submit(prepare, nxt))
            if estimator is not None and stats is not None:
                estimator.accumulate(*stats)
            for n, strip in strips.items():
                i, j, _, _ = pairs[n]
                if k == i:
                    waiting[n] = strip
                else:
                    res = register_strips(waiting.pop(n), strip, max_shift_px=max_shift_px, min_ncc=opts.min_ncc)
                    d = (float(corners[j, 0] - corners[i, 0]), float(corners[j, 1] - corners[i, 1]))
                    out.pairs.append(Pair(i, j, d, res))
            if progress is not None:
                progress("analyse", done + 1, len(imaged))
    if estimator is not None:
        out.flat_field, out.flat_field_note = estimator.estimate()
        if out.flat_field is None or out.flat_field.method == "tiles":
            # Too little glass in the scan: the flat field the profile's calibration took
            # on blank glass, when the scan recorded one, is a measurement, not a guess.
            calibrated, note = _calibrated_flat_field(folder, estimator)
            if calibrated is not None:
                out.flat_field, out.flat_field_note = calibrated, note
            elif note:
                out.flat_field_note = f"{out.flat_field_note}; {note}"
        out.glass_rgb = out.flat_field.glass_rgb if out.flat_field is not None else estimator.glass_rgb()
    else:
        out.flat_field_note = "flat-field correction switched off"
    out.seconds = time.perf_counter() - t0
    return out


def _calibrated_flat_field(folder: ScanFolder, estimator: FlatFieldEstimator) -> tuple[FlatField | None, str]:
    """The profile's calibrated flat field named in the scan report (``flat_field_path``),
    or None and why not (never an error: the stitch goes on without it)."""
    path = folder.report.get("flat_field_path")
    if not path:
        return None, ""
    try:
        image = tifffile.imread(path)
        ff = from_calibration(image, estimator.grid, estimator.glass_rgb())
    except (OSError, ValueError) as exc:
        log.warning("the calibrated flat field %s cannot be used: %s", path, exc)
        return None, f"the calibrated flat field {path} cannot be used ({exc})"
    return ff, f"the profile's calibrated flat field ({path})"


def _stats(values: np.ndarray) -> dict[str, float] | None:
    if len(values) == 0:
        return None
    v = np.asarray(values, dtype=np.float64)
    return {"median": round(float(np.median(v)), 3), "p95": round(float(np.percentile(v, 95)), 3),
            "max": round(float(v.max()), 3), "n": len(v)}


def score_against_truth(folder: ScanFolder, pairs: list[Pair], placed: np.ndarray) -> dict[str, Any] | None:
    """Seam errors against the true stage positions (simulated scans): for every
    neighbour pair of imaged tiles, |(p_j - p_i) - (t_j - t_i)| in pixels, for the
    stitched placement and for the stage positions alone."""
    if not folder.has_truth or not pairs:
        return None
    truth, stage = folder.true_px(), folder.stage_px()

    def seam(pos: np.ndarray, subset: list[Pair]) -> np.ndarray:
        return np.array([np.hypot(*((pos[p.j] - pos[p.i]) - (truth[p.j] - truth[p.i]))) for p in subset])

    accepted = [p for p in pairs if p.result.ok]
    return {
        "seam_error_px": {
            "stitched_all_pairs": _stats(seam(placed, pairs)),
            "stitched_registered_pairs": _stats(seam(placed, accepted)),
            "stage_only_all_pairs": _stats(seam(stage, pairs)),
        },
        "note": "pairs of neighbouring imaged tiles; 'registered' = the pairs whose overlap passed the confidence test",
    }


def _manifest_hash(folder: ScanFolder) -> str:
    return hashlib.sha256((folder.path / MANIFEST).read_bytes()).hexdigest()


def _load_cache(folder: ScanFolder, opts: StitchOptions, digest: str) -> Analysis | None:
    path = folder.path / CACHE
    if not opts.use_cache or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("manifest_sha256") != digest or data.get("options") != opts.analysis_key():
            return None
        ff = FlatField.from_dict(data["flat_field"]) if data.get("flat_field") else None
        glass = tuple(data["glass_rgb"]) if data.get("glass_rgb") else None
        return Analysis([Pair.from_dict(p) for p in data["pairs"]], ff, data.get("flat_field_note", ""), glass,
                        float(data.get("seconds", 0.0)))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        log.warning("ignoring an unreadable %s", path)
        return None


def _save_cache(folder: ScanFolder, opts: StitchOptions, digest: str, a: Analysis) -> None:
    data = {"manifest_sha256": digest, "options": opts.analysis_key(), "pairs": [p.to_dict() for p in a.pairs],
            "flat_field": a.flat_field.to_dict() if a.flat_field else None, "flat_field_note": a.flat_field_note,
            "glass_rgb": list(a.glass_rgb) if a.glass_rgb else None, "seconds": a.seconds}
    write_atomic(folder.path / CACHE, json.dumps(data).encode())


def _metadata(folder: ScanFolder, summary: dict[str, Any]) -> SlideMetadata:
    rep = folder.report
    objective = rep.get("objective")
    name, mag, na = (str(objective) if objective else None), None, None
    if objective:
        try:
            from ..optics.presets import get_objective

            obj = get_objective(str(objective))
            name, mag, na = obj.name, obj.magnification, obj.na
        except Exception:  # noqa: BLE001 - an objective the presets do not know: keep its name
            pass
    acquired = None
    if rep.get("started"):
        with contextlib.suppress(ValueError):
            acquired = datetime.fromisoformat(str(rep["started"]))
    annotations = {
        "scanner": f"deepaf-host {rep.get('version', __version__)}", "stitcher": f"deepaf-host {__version__}",
        "scan_status": str(rep.get("status", "unknown")), "camera": str(rep.get("camera", "")),
        "autofocus": str(rep.get("autofocus", "")), "plan": json.dumps(rep.get("plan", {})),
        "tiles": json.dumps(summary["tiles"]), "registration": json.dumps(summary["registration"]["summary"]),
        "flat_field": json.dumps({k: v for k, v in summary["flat_field"].items() if k != "grid_gain"}),
    }
    return SlideMetadata(
        pixel_size_um=folder.pixel_size_um, name=folder.path.name or "slide",
        description=f"Stitched by deepaf-host {__version__} from {len(folder.imaged)} tiles of {folder.path.name}",
        acquired=acquired, objective_name=name, objective_magnification=mag, objective_na=na, annotations=annotations,
    )


def stitch(directory: str | Path, options: StitchOptions | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Stitch a scan folder; returns the summary (also written to ``DIR/stitch.json``).

    Raises :class:`StitchError` for a folder that cannot be stitched.
    """
    opts = options or StitchOptions()
    t_start = time.perf_counter()
    folder = ScanFolder.open(directory)
    out_path = folder.path / opts.output
    digest = _manifest_hash(folder)
    summary_path = folder.path / STITCH_JSON
    if not opts.force and out_path.exists() and summary_path.exists():
        try:
            old = json.loads(summary_path.read_text())
            if old.get("manifest_sha256") == digest and old.get("slide") == opts.output:
                log.info("%s is up to date", out_path)
                old["up_to_date"] = True
                return old
        except ValueError:
            pass

    for stale in folder.path.glob(f".{opts.output}.partial-*"):  # left by a stitch that was killed
        stale.unlink()
    analysis = _load_cache(folder, opts, digest)
    resumed = analysis is not None
    if analysis is None:
        analysis = analyse(folder, opts, progress)
        _save_cache(folder, opts, digest, analysis)

    # --- global positions ------------------------------------------------------------
    t0 = time.perf_counter()
    stage = folder.stage_px()
    edges = [Edge(p.i, p.j, *p.measured, weight=max(p.result.ncc, 0.05)) for p in analysis.pairs if p.result.ok]
    solution = solve_positions(stage, edges, prior_weight=opts.prior_weight, outlier_px=opts.outlier_px)
    dropped = {(e.i, e.j) for e in solution.dropped}
    positions = solution.positions
    rotation = opts.rotation_deg if opts.rotation_deg is not None else float(folder.report.get("camera_rotation_deg") or 0.0)
    if rotation:
        # Offsets were measured in the camera's axes; the de-rotated mosaic is the stage's.
        a = math.radians(rotation)
        positions = positions @ np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    placed = np.round(positions).astype(np.int64)
    origin = placed.min(axis=0)
    placed -= origin
    h, w = folder.tile_shape
    mosaic = (int((placed[:, 1] + h).max()), int((placed[:, 0] + w).max()))
    solve_s = time.perf_counter() - t0

    linked = {p.i for p in analysis.pairs if p.result.ok} | {p.j for p in analysis.pairs if p.result.ok}
    imaged_idx = [k for k, t in enumerate(folder.tiles) if t.image]
    shift = np.hypot(*(solution.positions - stage)[imaged_idx].T) if imaged_idx else np.zeros(0)
    rejected = Counter(_reason_kind(p.result.reason) for p in analysis.pairs if not p.result.ok)
    ff = analysis.flat_field
    background = analysis.glass_rgb or (242, 242, 242)
    summary: dict[str, Any] = {
        "version": __version__, "slide": opts.output, "manifest_sha256": digest, "resumed_from_cache": resumed,
        "pixel_size_um": folder.pixel_size_um, "tile_shape": list(folder.tile_shape),
        "tiles": {"total": len(folder.tiles), "imaged": len(imaged_idx),
                  "placed_by_stage": sum(1 for k in imaged_idx if k not in linked)},
        "registration": {
            "summary": {
                "enabled": opts.register, "pairs": len(analysis.pairs),
                "accepted": sum(1 for p in analysis.pairs if p.result.ok), "dropped_outliers": len(solution.dropped),
                "rejected": dict(rejected),
                "residual_px": _stats(solution.residuals),
                "shift_from_stage_px": _stats(shift),
            },
            # How the camera sits on the stage, from the accepted pairs: a rotation of more
            # than a few tenths of a degree shows at every seam and is worth fixing on the
            # microscope; a scale off 1 means the pixel size is off.
            "camera_axes": fit_camera_axes(np.array([p.expected for p in analysis.pairs if p.result.ok]),
                                           np.array([p.measured for p in analysis.pairs if p.result.ok])),
            "max_shift_um": opts.max_shift_um, "min_ncc": opts.min_ncc,
        },
        "flat_field": {"applied": ff is not None, "note": analysis.flat_field_note, **(ff.to_dict() if ff else {})},
        "rotation_deg_applied": rotation,
        "ground_truth": score_against_truth(folder, analysis.pairs, placed.astype(np.float64)),
    }
    if opts.flat_field == "on" and ff is None:
        log.warning("flat-field correction asked for but not possible: %s", analysis.flat_field_note)

    # --- write ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    gain = ff.gain(folder.tile_shape) if ff is not None else None

    turn = None
    if rotation:
        turn = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rotation, 1.0)

    def load(k: int) -> np.ndarray:
        rgb = folder.read(folder.tiles[k])
        rgb = apply_gain(rgb, gain) if gain is not None else rgb
        if turn is not None:
            rgb = cv2.warpAffine(rgb, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return rgb

    corners = {k: (int(placed[k, 0]), int(placed[k, 1])) for k in imaged_idx}
    overlap = folder.report.get("plan", {}).get("overlap")
    step = folder.report.get("plan", {}).get("step_um")
    if step:
        feather = (max(0.0, w - step[0] / folder.pixel_size_um), max(0.0, h - step[1] / folder.pixel_size_um))
    else:
        feather = (w * float(overlap or 0.1), h * float(overlap or 0.1))
    composer = Composer(corners, folder.tile_shape, mosaic, load, background=background, feather_px=feather,
                        tile_px=opts.tile_px, scratch_dir=folder.path)
    pyramid = PyramidBuilder(mosaic, opts.tile_px, opts.smallest_level_px, background, directory=folder.path)
    total_out = composer.grid[0] * composer.grid[1]
    level0_tiles: list[np.ndarray] = []
    tmp = folder.path / f".{opts.output}.partial-{os.getpid()}"

    def level0() -> Any:
        for n, tile in enumerate(composer.tiles()):
            pyramid.push(tile)
            if len(pyramid.shapes) == 1:
                level0_tiles.append(tile)
            if progress is not None and (n % 64 == 0 or n + 1 == total_out):
                progress("write", n + 1, total_out)
            yield tile

    def levels() -> Any:
        yield mosaic, level0()
        for k in range(1, len(pyramid.shapes)):
            yield pyramid.shapes[k], pyramid.level_tiles(k)

    try:
        write_pyramid(tmp, levels(), len(pyramid.shapes), _metadata(folder, summary), tile_px=opts.tile_px,
                      jpeg_quality=opts.jpeg_quality, workers=opts.workers)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if len(pyramid.shapes) > 1:
            smallest = pyramid.level_image(len(pyramid.shapes) - 1)
        else:
            smallest = _assemble(level0_tiles, mosaic, opts.tile_px)
        os.replace(tmp, out_path)
    finally:
        pyramid.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    write_s = time.perf_counter() - t0
    _, png = cv2.imencode(".png", cv2.cvtColor(smallest, cv2.COLOR_RGB2BGR))
    write_atomic(folder.path / THUMBNAIL, png.tobytes())

    megapixels = mosaic[0] * mosaic[1] / 1e6
    total_s = time.perf_counter() - t_start
    summary.update({
        "levels": [list(s) for s in pyramid.shapes], "tile_px": opts.tile_px, "jpeg_quality": opts.jpeg_quality,
        "mosaic_megapixels": round(megapixels, 3), "output_bytes": out_path.stat().st_size,
        "compose": asdict(composer.stats),
        "positions": [{"tile": folder.tiles[k].index, "x_px": int(placed[k, 0]), "y_px": int(placed[k, 1]),
                       "from_stage_px": [round(float(v), 2) for v in solution.positions[k] - stage[k]]}
                      for k in range(len(folder.tiles))],
        "pairs_dropped_as_outliers": [[folder.tiles[i].index, folder.tiles[j].index] for i, j in sorted(dropped)],
        "timings_s": {"analyse": round(analysis.seconds, 3) if not resumed else 0.0, "solve": round(solve_s, 3),
                      "write": round(write_s, 3), "total": round(total_s, 3)},
        "megapixels_per_s": round(megapixels / total_s, 3) if total_s > 0 else None,
    })
    if opts.reports:
        from .focusmap import write_focus_map
        from .report import write_report_html

        summary["focus_map"] = write_focus_map(folder, placed, smallest, mosaic)
        summary["report"] = write_report_html(folder, summary)
    write_atomic(summary_path, (json.dumps(summary, indent=1) + "\n").encode())
    return summary


def _assemble(tiles: list[np.ndarray], shape: tuple[int, int], t: int) -> np.ndarray:
    rows, cols = -(-shape[0] // t), -(-shape[1] // t)
    img = np.empty((rows * t, cols * t, 3), dtype=np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, cols)
        img[r * t:(r + 1) * t, c * t:(c + 1) * t] = tile
    return img[:shape[0], :shape[1]].copy()


def _reason_kind(reason: str) -> str:
    """The kind of a rejection, for counting (the reason itself carries the values)."""
    for prefix, kind in (("NCC", "low_ncc"), ("shift", "shift_too_large"), ("only", "little_shared"),
                         ("no texture", "no_texture"), ("overlap too small", "small_overlap")):
        if reason.startswith(prefix):
            return kind
    return "other"
