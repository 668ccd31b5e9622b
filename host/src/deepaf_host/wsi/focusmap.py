"""The scan's focal surface: ``focus_map.csv`` (one row per tile) and ``focus_map.png``
(each imaged tile's z as a colour over the slide's thumbnail, with its QC mark).

Marks: with a QC verdict (``qc.verdict`` in the manifest) ok = small green dot,
suspect = orange triangle, failed = red cross. Scans without QC mark how each tile's z
was found: autofocus = small white dot, neighbour's z = magenta ring, the scan's
start z = magenta square. Tiles of glass (no image) are left uncoloured.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import cv2
import numpy as np

from .folder import ScanFolder, TileInfo, write_atomic

FOCUS_MAP_PNG = "focus_map.png"
FOCUS_MAP_CSV = "focus_map.csv"

CSV_COLUMNS = ("tile", "row", "col", "x_um", "y_um", "z_um", "true_focus_z_um", "focus_error_um", "focus_source",
               "qc", "empty", "tissue_fraction", "x_px", "y_px")

# BGR colours (OpenCV draws in BGR).
_GREEN, _ORANGE, _RED, _WHITE, _MAGENTA, _BLACK = (60, 180, 60), (0, 140, 255), (40, 40, 220), (255, 255, 255), (200, 60, 200), (0, 0, 0)


def focus_csv(folder: ScanFolder, placed: np.ndarray) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(CSV_COLUMNS)
    for k, t in enumerate(folder.tiles):
        def f(v: float | None, nd: int = 4) -> str:
            return "" if v is None else f"{v:.{nd}f}"

        wr.writerow([t.index, t.row, t.col, f(t.x_um, 3), f(t.y_um, 3), f(t.z_um), f(t.true_focus_z_um), f(t.focus_error_um),
                     t.focus_source or "", t.qc or "", int(t.empty), f(t.tissue_fraction), int(placed[k, 0]), int(placed[k, 1])])
    return buf.getvalue()


def _mark(img: np.ndarray, t: TileInfo, cx: int, cy: int, r: int) -> None:
    r = max(2, r)
    if t.qc == "failed":
        cv2.line(img, (cx - r, cy - r), (cx + r, cy + r), _RED, 2, cv2.LINE_AA)
        cv2.line(img, (cx - r, cy + r), (cx + r, cy - r), _RED, 2, cv2.LINE_AA)
    elif t.qc == "suspect":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)
        cv2.polylines(img, [pts], True, _ORANGE, 2, cv2.LINE_AA)
    elif t.qc == "ok":
        cv2.circle(img, (cx, cy), max(2, r // 2), _GREEN, -1, cv2.LINE_AA)
    elif t.focus_source == "neighbour":
        cv2.circle(img, (cx, cy), r, _MAGENTA, 2, cv2.LINE_AA)
    elif t.focus_source == "start":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), _MAGENTA, 2)
    else:
        cv2.circle(img, (cx, cy), max(2, r // 3), _WHITE, -1, cv2.LINE_AA)


def focus_map_image(folder: ScanFolder, placed: np.ndarray, thumbnail: np.ndarray, mosaic: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The focus map (RGB) and the z range (um) its colours span (None without z)."""
    scale_up = max(1.0, 640.0 / thumbnail.shape[1])
    base = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2BGR)
    if scale_up > 1:
        base = cv2.resize(base, (round(thumbnail.shape[1] * scale_up), round(thumbnail.shape[0] * scale_up)), interpolation=cv2.INTER_NEAREST)
    sx, sy = base.shape[1] / mosaic[1], base.shape[0] / mosaic[0]
    th, tw = folder.tile_shape
    plan = folder.report.get("plan") or {}
    step = plan.get("step_um")
    cw = (step[0] / folder.pixel_size_um) if step else tw * 0.9
    ch = (step[1] / folder.pixel_size_um) if step else th * 0.9
    zs = [t.z_um for t in folder.tiles if t.image and t.z_um is not None]
    zr = (min(zs), max(zs)) if zs else None
    overlay = base.copy()
    cells = []
    for k, t in enumerate(folder.tiles):
        if not t.image:
            continue
        cx, cy = (placed[k, 0] + tw / 2) * sx, (placed[k, 1] + th / 2) * sy
        x0, y0 = round(cx - cw * sx / 2), round(cy - ch * sy / 2)
        x1, y1 = round(cx + cw * sx / 2), round(cy + ch * sy / 2)
        cells.append((t, round(cx), round(cy), max(2, round(min(cw * sx, ch * sy) / 6))))
        if t.z_um is not None and zr is not None:
            level = 0.5 if zr[1] == zr[0] else (t.z_um - zr[0]) / (zr[1] - zr[0])
            colour = cv2.applyColorMap(np.array([[round(255 * level)]], dtype=np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
            cv2.rectangle(overlay, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in colour), -1)
    img = cv2.addWeighted(overlay, 0.55, base, 0.45, 0)
    for t, cx, cy, r in cells:
        _mark(img, t, cx, cy, r)
    img = np.vstack([img, _legend(img.shape[1], zr, any(t.qc for t in folder.tiles))])
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), zr


def _legend(width: int, zr: tuple[float, float] | None, qc: bool) -> np.ndarray:
    h = 78
    panel: np.ndarray = np.full((h, max(width, 480), 3), 255, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    bar_w = min(260, panel.shape[1] // 2 - 20)
    ramp = cv2.applyColorMap(np.tile(np.linspace(0, 255, bar_w).astype(np.uint8), (14, 1)), cv2.COLORMAP_VIRIDIS)
    panel[10:24, 10:10 + bar_w] = ramp
    if zr is not None:
        cv2.putText(panel, f"z {zr[0]:.1f}", (10, 42), font, 0.42, _BLACK, 1, cv2.LINE_AA)
        label = f"{zr[1]:.1f} um"
        (lw, _), _ = cv2.getTextSize(label, font, 0.42, 1)
        cv2.putText(panel, label, (10 + bar_w - lw, 42), font, 0.42, _BLACK, 1, cv2.LINE_AA)
        cv2.putText(panel, f"focus z (stage, um): span {zr[1] - zr[0]:.2f}", (10, 64), font, 0.42, _BLACK, 1, cv2.LINE_AA)
    x = 30 + bar_w
    dummy = [("ok", None, "QC ok"), ("suspect", None, "QC suspect"), ("failed", None, "QC failed")] if qc else \
        [(None, "autofocus", "autofocus"), (None, "neighbour", "neighbour z"), (None, "start", "start z")]
    for n, (verdict, source, label) in enumerate(dummy):
        y = 17 + n * 22
        t = TileInfo(index=0, row=0, col=0, x_um=0, y_um=0, image=None, empty=False, qc=verdict, focus_source=source)
        _mark(panel, t, x + 8, y, 6)
        cv2.putText(panel, label, (x + 22, y + 5), font, 0.42, _BLACK, 1, cv2.LINE_AA)
    if panel.shape[1] > width:
        panel = cv2.resize(panel, (width, max(20, math.floor(h * width / panel.shape[1]))), interpolation=cv2.INTER_AREA)
    return panel


def write_focus_map(folder: ScanFolder, placed: np.ndarray, thumbnail: np.ndarray, mosaic: tuple[int, int]) -> dict[str, Any]:
    """Write ``focus_map.png`` and ``focus_map.csv``; returns what the report says of them."""
    write_atomic(folder.path / FOCUS_MAP_CSV, focus_csv(folder, placed).encode())
    img, zr = focus_map_image(folder, placed, thumbnail, mosaic)
    _, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    write_atomic(folder.path / FOCUS_MAP_PNG, png.tobytes())
    return {"png": FOCUS_MAP_PNG, "csv": FOCUS_MAP_CSV, "z_range_um": list(zr) if zr else None}
