"""``deepaf-host refocus DIR``: repair a finished scan's out-of-focus tiles after the fact.

Which tiles: those whose focus QC (``record["qc"]["verdict"]``) is ``suspect`` or
``failed``; with ``all_tiles`` every tissue tile with an image.

How: a tile is taken to the model's pixel size (its own pixel is the plan's field of
view over the image width, ``report.json``'s ``plan.fov_um``, unless given), refocused
there (tiled, with the guard), and the network's output is interpolated back to the
tile's pixels (host/docs/refocus/README.md: why, and what it scores on high-res tiles). The
repaired image is written beside the original as ``<stem>.refocused.png`` (lossless);
a captured tile is never overwritten (a name the manifest holds as a tile image is
refused). A tile the guard judges already in focus gets no file.

Two-shot models (seed 003, TSVA; card ``shots`` 2) also take the tile's second shot, taken
by ``deepaf-host scan --two-shot`` and named in the record's ``shot2`` (``image``,
``delta_um``): both frames are resampled alike, and a tile without one, or with one at
another distance than the model was trained for, is not repaired (listed).

What is recorded: each repaired tile's manifest record gains a ``virtual_refocus`` object
(model file, its sha256, input and output files, guard, pixel sizes, seconds); the
manifest is rewritten atomically, every other line kept byte for byte.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ConfigError, DeepAfError
from ..scan.manifest import MANIFEST, REPORT, write_atomic
from .runtime import RefocusModel

#: QC verdicts repaired by default.
REPAIR_VERDICTS = ("suspect", "failed")
#: Suffix of a repaired image (beside ``<stem>.<ext>`` of the captured tile).
OUTPUT_SUFFIX = ".refocused.png"
#: Relative pixel-size difference below which a tile is refocused without resampling.
SCALE_TOLERANCE = 0.02
#: The key of a repair in the tile's manifest record (``refocus`` is the scan's own
#: classical refocus of a tile whose QC was not ok, and is kept).
RECORD_KEY = "virtual_refocus"
#: Relative difference between a second shot's distance and the two-shot model's.
SEPARATION_TOLERANCE = 0.1


class RepairError(DeepAfError):
    """One tile could not be repaired (unreadable image, ...)."""

    def __init__(self, tile: int, reason: str) -> None:
        self.tile = tile
        self.reason = reason
        super().__init__(f"tile {tile}: {reason}")


@dataclass
class TileOutcome:
    tile: int
    image: str
    verdict: str
    output: str | None = None
    passed_through: bool = False
    detail_ratio: float = 0.0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RepairSummary:
    directory: Path
    model: str
    selected: int
    outcomes: list[TileOutcome] = field(default_factory=list)

    @property
    def repaired(self) -> int:
        return sum(1 for o in self.outcomes if o.output)

    @property
    def passed(self) -> int:
        return sum(1 for o in self.outcomes if o.passed_through)

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o.error)


def output_name(image: str) -> str:
    return Path(image).stem + OUTPUT_SUFFIX


def read_scan(directory: str | Path) -> tuple[Path, list[tuple[bytes, dict[str, Any] | None]], dict[str, Any]]:
    """A finished scan folder -> (folder, manifest lines with their parsed record, report)."""
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError("DIR", f"{d} is not a folder")
    path = d / MANIFEST
    if not path.is_file():
        raise ConfigError("DIR", f"{d} holds no scan ({MANIFEST} missing)")
    if not (d / REPORT).is_file():
        raise ConfigError("DIR", f"{d} holds no finished scan ({REPORT} missing: is it still running, or did it crash? "
                          "finish it with 'deepaf-host scan --resume' first)")
    try:
        report = json.loads((d / REPORT).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("DIR", f"{d / REPORT} is not valid JSON: {exc}") from None
    lines: list[tuple[bytes, dict[str, Any] | None]] = []
    for n, raw in enumerate(path.read_bytes().split(b"\n")):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            int(rec["tile"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError("DIR", f"{path} line {n + 1} is not a manifest record") from None
        lines.append((raw, rec))
    return d, lines, report


def select_tiles(records: list[dict[str, Any]], all_tiles: bool = False) -> list[dict[str, Any]]:
    """Tiles to repair: an image, and a QC verdict in ``REPAIR_VERDICTS`` (or any, with ``all_tiles``)."""
    chosen = []
    for rec in records:
        if rec.get("empty") or not rec.get("image"):
            continue
        verdict = (rec.get("qc") or {}).get("verdict")
        if all_tiles or verdict in REPAIR_VERDICTS:
            chosen.append(rec)
    return chosen


def tile_pixel_um(report: dict[str, Any], width_px: int) -> float:
    """The tile's pixel size from the plan's field of view (um) and the image width."""
    try:
        fov_x = float(report["plan"]["fov_um"][0])
    except (KeyError, TypeError, IndexError, ValueError):
        raise ConfigError("pixel-size-um", "the scan's report.json has no plan.fov_um: give --pixel-size-um") from None
    return fov_x / width_px


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    img: np.ndarray | None
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        img = np.asarray(tifffile.imread(path))
    else:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        img = None if bgr is None else np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError("not an 8-bit RGB image")
    return np.ascontiguousarray(img)


def repair_image(model: RefocusModel, rgb: np.ndarray, pixel_um: float, guard: bool = True,
                 second: np.ndarray | None = None) -> tuple[np.ndarray, bool, float]:
    """Refocus one captured tile at its ``pixel_um`` (two-shot models: with its ``second``
    shot) -> (repaired tile, passed through, detail ratio)."""
    import cv2

    scale = pixel_um / model.card.pixel_size_um  # > 1: the tile's pixels are coarser than the model's
    h, w = rgb.shape[:2]
    if abs(scale - 1.0) <= SCALE_TOLERANCE:
        res = model.refocus(rgb, guard=guard, second=second)
        return res.image, res.passed_through, res.detail_ratio
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    low = cv2.resize(rgb, size, interpolation=method)
    res = model.refocus(low, guard=guard, second=None if second is None else cv2.resize(second, size, interpolation=method))
    if res.passed_through:
        return (second if res.swapped and second is not None else rgb).copy(), True, res.detail_ratio
    # The network's output, interpolated back: the optics pass nothing finer than the
    # model's pixel (host/docs/refocus), and the output is also free of the tile's noise.
    out = cv2.resize(res.image, (w, h), interpolation=cv2.INTER_CUBIC if scale < 1 else cv2.INTER_AREA)
    return np.asarray(out, dtype=np.uint8), False, res.detail_ratio


def second_shot(d: Path, rec: dict[str, Any], model: RefocusModel) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The tile's second shot for a two-shot model (None for a single-image model) and
    what the record will say of it; a missing or mismatched shot is a ``RepairError``."""
    if model.card.shots == 1:
        return None, {}
    tile = int(rec["tile"])
    shot = rec.get("shot2")
    if not isinstance(shot, dict) or not shot.get("image"):
        raise RepairError(tile, "no second shot (scan with --two-shot to take one for tiles whose QC is not ok)")
    try:
        delta = float(shot["delta_um"])
    except (KeyError, TypeError, ValueError):
        raise RepairError(tile, "the second shot's record has no delta_um") from None
    expected = float(model.card.separation_um or 0.0)
    if abs(abs(delta) - expected) > SEPARATION_TOLERANCE * expected:
        raise RepairError(tile, f"the second shot is {delta:g} um from the tile; the model takes shots {expected:g} um apart")
    if model.card.second_side == "above" and delta < 0:
        raise RepairError(tile, f"the second shot is {-delta:g} um below the tile; the model takes it {expected:g} um above")
    try:
        rgb = _read_rgb(d / shot["image"])
    except (OSError, ValueError) as exc:
        raise RepairError(tile, f"cannot read {shot['image']}: {exc}") from None
    return rgb, {"second_shot": shot["image"], "separation_um": delta}


def repair_scan(
    directory: str | Path,
    model: RefocusModel,
    *,
    all_tiles: bool = False,
    guard: bool = True,
    pixel_size_um: float | None = None,
    progress: Callable[[TileOutcome, int, int], None] | None = None,
) -> RepairSummary:
    """Repair the selected tiles of a finished scan and record it in its manifest."""
    import cv2

    d, lines, report = read_scan(directory)
    records = [rec for _, rec in lines if rec is not None]
    captured = {rec["image"] for rec in records if rec.get("image")}
    chosen = select_tiles(records, all_tiles)
    summary = RepairSummary(d, model.name, len(chosen))
    updates: dict[int, dict[str, Any]] = {}
    try:
        for k, rec in enumerate(chosen):
            tile = int(rec["tile"])
            verdict = (rec.get("qc") or {}).get("verdict")
            outcome = TileOutcome(tile, rec["image"], str(verdict) if verdict else "no qc")
            t0 = time.perf_counter()
            try:
                name = output_name(rec["image"])
                if name in captured:
                    raise RepairError(tile, f"{name} is a captured tile of this scan: it is never overwritten")
                try:
                    rgb = _read_rgb(d / rec["image"])
                except (OSError, ValueError) as exc:
                    raise RepairError(tile, f"cannot read {rec['image']}: {exc}") from None
                second, shot_record = second_shot(d, rec, model)
                if second is not None and second.shape != rgb.shape:
                    raise RepairError(tile, f"the second shot is {second.shape[1]}x{second.shape[0]} pixels, the tile "
                                      f"{rgb.shape[1]}x{rgb.shape[0]}")
                pixel = pixel_size_um if pixel_size_um is not None else tile_pixel_um(report, rgb.shape[1])
                out, passed, ratio = repair_image(model, rgb, pixel, guard=guard, second=second)
                outcome.passed_through, outcome.detail_ratio = passed, ratio
                if not passed:
                    ok, buf = cv2.imencode(".png", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
                    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB
                        raise RepairError(tile, "PNG encoding failed")
                    write_atomic(d / name, buf.tobytes())
                    outcome.output = name
                outcome.seconds = time.perf_counter() - t0
                updates[tile] = {
                    "model": model.path.name,
                    "model_sha256": model.card.sha256,
                    "input": rec["image"],
                    **shot_record,
                    "output": outcome.output,
                    "qc_verdict": verdict,
                    "passed_through": passed,
                    "detail_ratio": round(ratio, 4),
                    "guard": bool(guard),
                    "tile_pixel_um": round(pixel, 6),
                    "model_pixel_um": model.card.pixel_size_um,
                    "seconds": round(outcome.seconds, 3),
                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "version": __version__,
                }
            except (RepairError, ConfigError) as exc:
                outcome.error = str(exc)
            summary.outcomes.append(outcome)
            if progress is not None:
                progress(outcome, k + 1, len(chosen))
    finally:
        if updates:
            _record(d, lines, updates)
    return summary


def _record(d: Path, lines: list[tuple[bytes, dict[str, Any] | None]], updates: dict[int, dict[str, Any]]) -> None:
    """Rewrite the manifest with ``virtual_refocus`` added to the updated records (others byte for byte)."""
    out = []
    for raw, rec in lines:
        if rec is not None and int(rec["tile"]) in updates:
            rec = dict(rec)
            rec[RECORD_KEY] = updates[int(rec["tile"])]
            out.append(json.dumps(rec, allow_nan=False).encode("utf-8"))
        else:
            out.append(raw)
    write_atomic(d / MANIFEST, b"\n".join(out) + b"\n")
