"""Synthetic scan folders with known tile positions, for tests and the benchmark.

A scan folder exactly as the scanner writes it (``manifest.jsonl``, ``report.json``, JPEG
tiles; the plan from :func:`deepaf_host.scan.plan.plan_tiles`, so the serpentine order
and the row/col conventions are the scanner's), cut from a procedural H&E-like
specimen. The specimen is a periodic texture (``texture_px`` square) laid over the whole
slide, with a tissue outline that is an analytic function of the stage position, so a
scan of any size is made tile by tile in constant memory and fast: no slide image is
ever held whole.

Each tile is cut where the stage TRULY was: the commanded position plus a stage error
(Gaussian repeatability ``jitter_um``, and ``backlash_um`` in x on the rows that run
towards +x), rounded to whole pixels. The manifest records the commanded ``x_um`` /
``y_um`` and the truth in ``true_x_um`` / ``true_y_um`` (what a simulated stage with
errors writes). Vignetting (``vignetting``: fractional darkening at the corners),
camera noise and JPEG compression follow; a focal surface, focus errors and QC
verdicts fill the focus fields.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from ..scan.manifest import encode_image, tile_image_name
from .folder import write_atomic
from ..scan.plan import Area, plan_tiles

#: Stain optical densities per unit of stain (RGB), Ruifrok & Johnston's H and E vectors.
_H = np.array([0.650, 0.704, 0.286], dtype=np.float32)
_E = np.array([0.072, 0.990, 0.105], dtype=np.float32)
_GLASS = np.array([243.0, 242.0, 246.0], dtype=np.float32)


@dataclass(frozen=True)
class SyntheticSpec:
    rows: int = 3
    cols: int = 3
    #: (height, width) of a tile, pixels.
    tile_shape: tuple[int, int] = (192, 256)
    pixel_size_um: float = 0.5
    overlap: float = 0.1
    jitter_um: float = 1.0
    backlash_um: float = 2.0
    #: "full": tissue everywhere; "island": an irregular section with glass around it.
    tissue: str = "full"
    #: Write an image for tiles of blank glass too (the scanner does not).
    store_glass: bool = False
    vignetting: float = 0.0
    noise: float = 2.0
    jpeg_quality: int = 92
    image_format: str = "jpg"
    texture_px: int = 1024
    #: Nuclei blur (pixels): the texture's finest detail.
    detail_px: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tissue not in ("full", "island"):
            raise ValueError(f"tissue must be 'full' or 'island', got {self.tissue!r}")
        if self.rows < 1 or self.cols < 1:
            raise ValueError("rows and cols must be >= 1")


def specimen_texture(size: int, seed: int, detail_px: float = 2.0) -> np.ndarray:
    """A periodic (``size`` x ``size``) RGB uint8 H&E-like texture: nuclei on stroma."""
    rng = np.random.default_rng(seed)
    n_nuclei = int(size * size / (14.0 * detail_px) ** 2)
    impulses = np.zeros((size, size), dtype=np.float32)
    ys, xs = rng.integers(0, size, n_nuclei), rng.integers(0, size, n_nuclei)
    np.add.at(impulses, (ys, xs), rng.uniform(0.6, 1.4, n_nuclei).astype(np.float32))
    nuclei = ndimage.gaussian_filter(impulses, 1.6 * detail_px, mode="wrap")
    nuclei = np.clip(nuclei / (np.percentile(nuclei, 99.5) + 1e-6), 0, 1.2)
    fine = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 0.8 * detail_px, mode="wrap")
    coarse = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 12 * detail_px, mode="wrap")
    fibres = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), (1.0 * detail_px, 6 * detail_px), mode="wrap")
    norm = lambda a: (a - a.mean()) / (a.std() + 1e-6)  # noqa: E731
    h = 0.9 * nuclei + 0.05 * norm(fine) + 0.08
    e = 0.30 + 0.10 * norm(coarse) + 0.08 * norm(fibres) + 0.04 * norm(fine)
    od = np.clip(h, 0, None)[..., None] * _H + np.clip(e, 0.02, None)[..., None] * _E
    rgb = _GLASS * np.exp(-od)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def tissue_weight(x_um: np.ndarray, y_um: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """Tissue (1) vs glass (0) of an irregular section centred on ``centre``, soft edge."""
    u = (x_um - centre[0]) / radii[0]
    v = (y_um - centre[1]) / radii[1]
    ang = np.arctan2(v, u)
    r = np.hypot(u, v) * (1.0 + 0.12 * np.sin(3 * ang + 0.7) + 0.07 * np.sin(7 * ang + 2.1))
    return np.clip((1.0 - r) * 12.0, 0.0, 1.0).astype(np.float32)


def vignetting_field(shape: tuple[int, int], strength: float) -> np.ndarray:
    """(H, W) multiplicative illumination: 1 at the centre, 1 - ``strength`` in the corners."""
    h, w = shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (u + 0.5) / w * 2 - 1
    v = (v + 0.5) / h * 2 - 1
    return (1.0 - strength * (u * u + v * v) / 2.0).astype(np.float32)


def write_synthetic_scan(
    out_dir: str | Path, spec: SyntheticSpec = SyntheticSpec(), progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Write a synthetic scan folder; returns its summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "manifest.jsonl").exists():
        raise FileExistsError(f"{out} already holds a scan")
    rng = np.random.default_rng(spec.seed + 1)
    h, w = spec.tile_shape
    pix = spec.pixel_size_um
    fov = (w * pix, h * pix)
    step = (fov[0] * (1 - spec.overlap), fov[1] * (1 - spec.overlap))
    cx, cy = -30000.0, -20000.0
    width, height = fov[0] + (spec.cols - 1) * step[0], fov[1] + (spec.rows - 1) * step[1]
    area = Area(cx - width / 2 + 1e-6, cy - height / 2 + 1e-6, cx + width / 2 - 1e-6, cy + height / 2 - 1e-6)
    plan = plan_tiles(area, fov, spec.overlap, travel_um=((-1e6, 0.0), (-1e6, 0.0)))
    if (plan.rows, plan.cols) != (spec.rows, spec.cols):
        raise RuntimeError(f"plan came out {plan.rows}x{plan.cols}, wanted {spec.rows}x{spec.cols}")
    texture = specimen_texture(spec.texture_px, spec.seed, spec.detail_px)
    period = spec.texture_px
    noise_bank = np.clip(rng.normal(0, spec.noise, (512, 512, 3)), -127, 127).astype(np.int8) if spec.noise > 0 else None
    vig = vignetting_field(spec.tile_shape, spec.vignetting)[..., None] if spec.vignetting > 0 else None
    radii = (0.42 * width, 0.42 * height)
    coarse = (max(2, h // 8), max(2, w // 8))
    lines: list[str] = []
    imaged = 0
    for tile in plan.tiles:
        err_x = rng.normal(0, spec.jitter_um) + (spec.backlash_um if tile.row % 2 == 1 else 0.0)
        err_y = rng.normal(0, spec.jitter_um)
        # Truth rounded to whole pixels: the tile is an exact crop of the specimen.
        corner_x = round((tile.x_um + err_x) / pix - w / 2)
        corner_y = round((tile.y_um + err_y) / pix - h / 2)
        true_x, true_y = (corner_x + w / 2) * pix, (corner_y + h / 2) * pix
        if spec.tissue == "full":
            mask = None
            fraction = 1.0
        else:
            gy, gx = np.mgrid[0:coarse[0], 0:coarse[1]].astype(np.float64)
            xs = (corner_x + (gx + 0.5) * w / coarse[1]) * pix
            ys = (corner_y + (gy + 0.5) * h / coarse[0]) * pix
            small = tissue_weight(xs, ys, (cx, cy), radii)
            fraction = float(small.mean())
            mask = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)[..., None] if fraction > 0 else None
        empty = fraction < 0.02
        z_true = -4000.0 + 2e-4 * (tile.x_um - cx) + 1.5e-4 * (tile.y_um - cy) + 1.5 * math.sin((tile.x_um - cx) / 3000.0)
        rec: dict[str, Any] = {
            "tile": tile.index, "row": tile.row, "col": tile.col, "x_um": tile.x_um, "y_um": tile.y_um,
            "z_um": None, "tissue_fraction": round(fraction, 5), "empty": empty, "image": None,
            "focus_source": "none", "autofocus": None, "true_x_um": true_x, "true_y_um": true_y,
        }
        if not empty or spec.store_glass:
            rows_idx = (corner_y + np.arange(h)) % period
            cols_idx = (corner_x + np.arange(w)) % period
            img = texture[rows_idx[:, None], cols_idx[None, :]].astype(np.float32)
            if mask is not None:
                img = img * mask + _GLASS * (1.0 - mask)
            elif empty:
                img = np.broadcast_to(_GLASS, img.shape).copy()
            if vig is not None:
                img *= vig
            if noise_bank is not None:
                oy, ox = rng.integers(0, 512 - 1, 2)
                ny = (oy + np.arange(h)) % 512
                nx = (ox + np.arange(w)) % 512
                img += noise_bank[ny[:, None], nx[None, :]]
            rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)
            name = tile_image_name(tile.index, tile.row, tile.col, spec.image_format)
            (out / name).write_bytes(encode_image(rgb, spec.image_format, spec.jpeg_quality))
            rec["image"] = name
        if not empty:
            imaged += 1
            err = float(rng.normal(0, 0.3))
            source = "neighbour" if tile.index % 17 == 5 else "autofocus"
            verdict = "failed" if tile.index % 23 == 11 else "suspect" if abs(err) > 0.5 else "ok"
            rec.update({
                "z_um": z_true + err, "focus_source": source, "true_focus_z_um": z_true, "focus_error_um": err,
                "qc": {"verdict": verdict},
                "timings_s": {"move": 0.3, "autofocus": 1.2, "high_capture": 0.5, "total": 2.4},
            })
        else:
            rec["z_um"] = z_true
        lines.append(json.dumps(rec))
        if progress is not None:
            progress(tile.index + 1, len(plan.tiles))
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    report = {
        "status": "complete", "version": "synthetic", "plan": plan.to_dict(), "objective": "20x",
        "camera": "synthetic", "pixel_size_um": pix, "autofocus": "synthetic",
        "tiles": {"planned": len(plan.tiles), "done": len(plan.tiles), "imaged": imaged, "empty": len(plan.tiles) - imaged},
        "synthetic": asdict(spec),
    }
    write_atomic(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    return {"tiles": len(plan.tiles), "imaged": imaged, "dir": str(out)}
