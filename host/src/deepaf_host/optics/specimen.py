"""In-focus specimens: procedural H&E tissue and real histology images.

A specimen is a deterministic function of world position (micrometres): ``sample``
evaluates it on a regular grid and returns stain *concentrations* (hematoxylin, eosin,
DAB) and the depth of what is seen inside the section. The slide turns concentrations
into transmission with the protocol's stain vectors (Beer-Lambert), so one specimen can
be rendered as any lab would have stained it.

Procedural H&E: eosin background (cytoplasm) with granular texture, wavy stroma fibres,
nuclei (epithelial, elongated fibroblasts, small dark lymphocytes) with chromatin texture
and a darker rim, cellularity varying over hundreds of micrometres, holes (lumina, fat,
tears). Sections (3-5 um) are thinner than nuclei (5-10 um), so every structure fills
the section's thickness; what varies is the depth of that column: the tissue undulates
inside the section and each nucleus is cut a little off-centre (seed 003's layered model,
with each pixel's column spread over its depth range by the renderer).

Real images: any RGB images of in-focus tissue, tiled with mirroring over the plane;
colour-deconvolved with a reference stain matrix (Ruifrok H, E, DAB) so that the
``same`` protocol reproduces them exactly and another protocol re-stains them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol as TypingProtocol

import numpy as np

from ..errors import ConfigError
from .fields import fbm, hash_uniform, smoothstep, value_noise
from .presets import RUIFROK_HED


@dataclass
class SpecimenSample:
    """A specimen evaluated on a grid."""

    #: (H, W, 3) float32 stain concentrations: hematoxylin, eosin, DAB (OD units).
    concentration: np.ndarray
    #: (H, W) float32 physical depth (um) of the centre of the absorbing column at each
    #: pixel, below the section mid-plane (positive = further from the objective); the
    #: column itself spans the section's thickness around it.
    depth_um: np.ndarray


class Specimen(TypingProtocol):
    """Anything that can be evaluated on a grid of world coordinates."""

    #: A short description for manifests (``procedural``, ``ihc``, a folder).
    name: str

    def sample(self, xs_um: np.ndarray, ys_um: np.ndarray, pixel_um: float, thickness_um: float) -> SpecimenSample: ...


def _background_depth(xs: np.ndarray, ys: np.ndarray, seed: int, thickness_um: float) -> np.ndarray:
    """Smooth undulation of the tissue inside the section (about +-20 % of its thickness)."""
    return (0.2 * thickness_um) * fbm(xs, ys, 40.0, seed, stream=90, octaves=2)


class ProceduralTissue:
    """Unlimited procedural H&E tissue, the same everywhere for the same seed."""

    name = "procedural"

    #: Side of the hash cells that hold at most one nucleus (um).
    cell_um = 8.0
    #: Largest semi-axis a nucleus may have (um); bounds the stamping window.
    max_axis_um = 7.5

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def sample(self, xs_um: np.ndarray, ys_um: np.ndarray, pixel_um: float, thickness_um: float) -> SpecimenSample:
        xs = np.asarray(xs_um, dtype=np.float64)
        ys = np.asarray(ys_um, dtype=np.float64)
        s = self.seed
        fine = 2.0 * pixel_um  # finest structure a pixel can show without aliasing

        cellularity = np.clip(0.5 + 1.2 * fbm(xs, ys, 250.0, s, stream=1, octaves=2), 0.0, 1.0)
        stroma = 1.0 - cellularity

        eosin = 0.22 + 0.08 * fbm(xs, ys, 12.0, s, stream=2, octaves=3, min_spacing_um=fine)
        if 1.5 >= fine:
            eosin += 0.05 * value_noise(xs, ys, 1.5, s, stream=3)
        eosin += 0.30 * stroma * self._fibres(xs, ys, pixel_um)
        hema = 0.05 + 0.02 * fbm(xs, ys, 20.0, s, stream=4, octaves=2)

        nuc_h, nuc_mask, nuc_depth = self._nuclei(xs, ys, pixel_um, thickness_um)
        chromatin: np.ndarray | float = 0.8
        if 0.7 >= fine:
            chromatin = 0.8 + 0.4 * value_noise(xs, ys, 0.7, s, stream=5)
        hema += nuc_h * chromatin
        eosin *= 1.0 - 0.4 * nuc_mask

        # Holes (lumina, fat, tears): sharp-edged (about 1 um, or 1.5 pixels) irregular gaps.
        soft = 0.015 * max(1.0, 1.5 * pixel_um)
        holes = smoothstep(0.36, 0.36 + soft, fbm(xs, ys, 60.0, s, stream=6, octaves=3, min_spacing_um=fine))
        keep = (1.0 - holes).astype(np.float32)
        conc = np.empty((ys.size, xs.size, 3), dtype=np.float32)
        conc[..., 0] = hema * keep
        conc[..., 1] = eosin * keep
        conc[..., 2] = 0.0

        depth = _background_depth(xs, ys, s, thickness_um)
        depth += nuc_mask * (nuc_depth - depth)
        return SpecimenSample(conc, depth.astype(np.float32))

    def _fibres(self, xs: np.ndarray, ys: np.ndarray, pixel_um: float) -> np.ndarray:
        """Wavy collagen fibres about 3 um apart, in bundles of two orientations.

        Each family is the level sets of ``n . x / 30 um + warp(x)``: a fixed direction
        ``n`` (per slide) bent by smooth noise weaker than the ramp, so fibres run
        roughly parallel without closing into loops. A large-scale field chooses the
        family, a 5 um noise breaks fibres into segments, and each harmonic of the fibre
        profile fades out before the pixel Nyquist frequency (no moire on coarse pixels).
        """
        u = hash_uniform(np.arange(2), 0, self.seed, 300)
        mix = smoothstep(-0.25, 0.25, fbm(xs, ys, 400.0, self.seed, stream=12, octaves=2))
        breaks = 0.55 + 0.45 * value_noise(xs, ys, 5.0, self.seed, stream=13) if 5.0 >= 2 * pixel_um else 0.55
        out = np.zeros((ys.size, xs.size), dtype=np.float32)
        for fam in range(2):
            ang = math.pi * float(u[0]) + fam * 1.2
            # The ramp only matters modulo whole fibres: shift it near zero, then float32.
            rx = np.cos(ang) * xs / 30.0
            ry = np.sin(ang) * ys / 30.0
            shift = math.floor(rx[0] + ry[0])
            field = ((rx - shift).astype(np.float32)[None, :] + ry.astype(np.float32)[:, None]) + 0.8 * fbm(
                xs, ys, 60.0, self.seed, stream=10 + fam, octaves=2
            )
            # Fibre profile ((1 + cos)/2)^3 = 5/16 + 15/32 cos + 3/16 cos 2x + 1/32 cos 3x,
            # written by harmonics so that each can fade out before it reaches the pixel
            # Nyquist frequency (fibres run at most ~0.65 per um: ramp plus steepest warp).
            c = np.cos(np.float32(2.0 * math.pi * 10.0) * field)
            c2 = 2.0 * c * c - 1.0
            c3 = (4.0 * c * c - 3.0) * c
            if 3.0 * 0.65 * pixel_um <= 0.35:
                fib = 0.46875 * c + 0.1875 * c2 + 0.03125 * c3
            else:
                gy, gx = np.gradient(field, np.float32(pixel_um))
                cycles_per_px = np.sqrt(gx * gx + gy * gy) * np.float32(10.0 * pixel_um)
                fib = np.zeros_like(c)
                for k, (amp, ck) in enumerate(((0.46875, c), (0.1875, c2), (0.03125, c3)), start=1):
                    fib += amp * smoothstep(0.5, 0.35, k * cycles_per_px) * ck
            weight = mix if fam == 0 else 1.0 - mix
            out += weight * (0.3125 + breaks * fib)
        return out

    def _nucleus_table(self, xs: np.ndarray, ys: np.ndarray, thickness_um: float) -> dict[str, np.ndarray]:
        """Nuclei whose stamps may touch the grid: one hashed draw per cell."""
        c = self.cell_um
        pad = self.max_axis_um + 1.0
        i0, i1 = math.floor((xs.min() - pad) / c), math.floor((xs.max() + pad) / c)
        j0, j1 = math.floor((ys.min() - pad) / c), math.floor((ys.max() + pad) / c)
        ci = np.arange(i0, i1 + 1)
        cj = np.arange(j0, j1 + 1)
        cx = (ci + 0.5) * c
        cy = (cj + 0.5) * c
        cell = np.clip(0.5 + 1.2 * fbm(cx, cy, 250.0, self.seed, stream=1, octaves=2), 0.0, 1.0)
        ii, jj = np.meshgrid(ci, cj)
        u = [hash_uniform(ii, jj, self.seed, 100 + k).reshape(ii.shape) for k in range(9)]
        density = 0.08 + 0.55 * cell
        present = u[0] < density
        kind = np.where(u[1] < 0.15, 2, np.where(u[1] < 0.15 + 0.6 * (1.0 - cell), 1, 0))  # 0 epi, 1 fibro, 2 lympho
        a = np.select([kind == 0, kind == 1, kind == 2], [2.6 + 1.6 * u[2], 4.0 + 3.0 * u[2], 2.2 + 0.5 * u[2]])
        aspect = np.select([kind == 0, kind == 1, kind == 2], [1.0 + 0.6 * u[3], 2.5 + 1.5 * u[3], 1.0 + 0.15 * u[3]])
        conc = np.select([kind == 0, kind == 1, kind == 2], [0.50 + 0.35 * u[4], 0.75 + 0.3 * u[4], 1.1 + 0.3 * u[4]])
        sel = present.ravel()
        return {
            "x": ((ii + u[5]) * c).ravel()[sel],
            "y": ((jj + u[6]) * c).ravel()[sel],
            "a": a.ravel()[sel],
            "b": (a / aspect).ravel()[sel],
            "theta": (math.pi * u[7]).ravel()[sel],
            "conc": conc.ravel()[sel],
            "depth": ((u[8] - 0.5) * 0.4 * thickness_um).ravel()[sel],
        }

    def _nuclei(
        self, xs: np.ndarray, ys: np.ndarray, pixel_um: float, thickness_um: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stamp all nuclei: hematoxylin, coverage (0..1) and coverage-weighted depth."""
        h, w = ys.size, xs.size
        nuc = self._nucleus_table(xs, ys, thickness_um)
        hsum = np.zeros(h * w, dtype=np.float64)
        msum = np.zeros(h * w, dtype=np.float64)
        dsum = np.zeros(h * w, dtype=np.float64)
        edge = max(0.3, pixel_um)
        # Stamp window per nucleus (pixels), rounded up to buckets of 8 so that nuclei of
        # similar size are stamped together in one vectorised pass.
        wins = (np.ceil((2.0 * (nuc["a"] + edge) / pixel_um + 2.0) / 8.0) * 8).astype(np.int64)
        x0, y0 = xs[0], ys[0]
        for win in np.unique(wins):
            pick = np.flatnonzero(wins == win)
            chunk = max(1, 1_000_000 // int(win * win))
            off = np.arange(win)
            for s in range(0, pick.size, chunk):
                sel = pick[s : s + chunk]
                cx, cy = nuc["x"][sel], nuc["y"][sel]
                ix = np.floor((cx - x0) / pixel_um).astype(np.int64)[:, None] - win // 2 + off  # (N, win)
                iy = np.floor((cy - y0) / pixel_um).astype(np.int64)[:, None] - win // 2 + off
                dx = (ix * pixel_um + x0 - cx[:, None]).astype(np.float32)[:, None, :]  # (N, 1, win)
                dy = (iy * pixel_um + y0 - cy[:, None]).astype(np.float32)[:, :, None]  # (N, win, 1)
                ct = np.cos(nuc["theta"][sel]).astype(np.float32)[:, None, None]
                st = np.sin(nuc["theta"][sel]).astype(np.float32)[:, None, None]
                a = nuc["a"][sel].astype(np.float32)[:, None, None]
                b = nuc["b"][sel].astype(np.float32)[:, None, None]
                uu = (dx * ct + dy * st) / a
                vv = (dy * ct - dx * st) / b
                inside_um = (1.0 - np.sqrt(uu * uu + vv * vv)) * b  # about the distance to the edge
                m = np.clip(0.5 + inside_um / np.float32(edge), 0.0, 1.0)
                ok = (m > 0) & (ix >= 0)[:, None, :] & (ix < w)[:, None, :] & (iy >= 0)[:, :, None] & (iy < h)[:, :, None]
                flat = (iy[:, :, None] * w + ix[:, None, :])[ok]
                mv = m[ok]
                rim = 1.0 + 0.5 * np.exp(-((inside_um[ok] / np.float32(0.45)) ** 2))
                per = np.broadcast_to(np.arange(sel.size)[:, None, None], m.shape)[ok]
                hsum += np.bincount(flat, weights=mv * rim * nuc["conc"][sel][per], minlength=h * w)
                msum += np.bincount(flat, weights=mv, minlength=h * w)
                dsum += np.bincount(flat, weights=mv * nuc["depth"][sel][per], minlength=h * w)
        depth = np.divide(dsum, msum, out=np.zeros_like(dsum), where=msum > 1e-6)
        shape = (h, w)
        return (
            hsum.reshape(shape).astype(np.float32),
            np.minimum(msum, 1.0).reshape(shape).astype(np.float32),
            depth.reshape(shape).astype(np.float32),
        )


def _od_to_concentration(rgb: np.ndarray, white: np.ndarray, reference: np.ndarray) -> np.ndarray:
    t = np.clip(rgb.astype(np.float64) / white, 1.0 / 255.0, 1.0)
    od = -np.log10(t)
    return (od @ np.linalg.inv(reference)).astype(np.float32)


class ImageSpecimen:
    """Real in-focus images tiled over the plane (mirrored, so one image tiles seamlessly).

    ``pixel_um`` is the specimen size of one image pixel. With several images each tile
    takes one of them by a hash of its index (seams between different images remain).
    Images are cropped to the smallest common size.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        pixel_um: float = 0.5,
        seed: int = 0,
        name: str = "images",
        reference: Sequence[Sequence[float]] = RUIFROK_HED,
    ) -> None:
        if not images:
            raise ConfigError("specimen", "no images given")
        h = min(im.shape[0] for im in images)
        w = min(im.shape[1] for im in images)
        ref = np.asarray(reference, dtype=np.float64)
        stack = []
        for im in images:
            if im.ndim != 3 or im.shape[2] < 3:
                raise ConfigError("specimen", f"images must be RGB, got shape {im.shape}")
            y0 = (im.shape[0] - h) // 2
            x0 = (im.shape[1] - w) // 2
            crop = im[y0 : y0 + h, x0 : x0 + w, :3]
            white = np.maximum(np.percentile(crop.reshape(-1, 3), 99.5, axis=0), 1.0)
            stack.append(_od_to_concentration(crop, white, ref))
        self.conc = np.stack(stack).reshape(-1, 3)  # (K*h*w, 3)
        self.count, self.h, self.w = len(stack), h, w
        self.pixel_um = float(pixel_um)
        self.seed = int(seed)
        self.name = name

    @classmethod
    def ihc(cls, pixel_um: float = 0.5, seed: int = 0) -> ImageSpecimen:
        """scikit-image's immunohistochemistry image (DAB + hematoxylin, 512 x 512)."""
        from skimage import data

        return cls([data.immunohistochemistry()], pixel_um=pixel_um, seed=seed, name="ihc")

    @classmethod
    def from_folder(cls, folder: str | Path, pixel_um: float = 0.5, seed: int = 0) -> ImageSpecimen:
        """All PNG/JPEG/TIFF images of a folder (sorted by name)."""
        import cv2

        path = Path(folder)
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".tif", ".tiff"}) if path.is_dir() else []
        if not files:
            raise ConfigError("specimen", f"no images (png, jpg, tif) in {str(path)!r}")
        images = []
        for f in files:
            im = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if im is None:
                raise ConfigError("specimen", f"cannot read image {str(f)!r}")
            images.append(im[..., ::-1])
        return cls(images, pixel_um=pixel_um, seed=seed, name=str(path))

    def _axis(self, coords_um: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Tile index, the two neighbouring image pixels and the weight of the second."""
        pos = coords_um / self.pixel_um
        tile = np.floor(pos / size).astype(np.int64)
        local = pos - tile * size
        local = np.where(tile % 2 == 1, size - local, local) - 0.5  # mirror odd tiles
        i0 = np.floor(local)
        t = (local - i0).astype(np.float32)
        i0 = i0.astype(np.int64)
        return tile, np.clip(i0, 0, size - 1), np.clip(i0 + 1, 0, size - 1), t

    def sample(self, xs_um: np.ndarray, ys_um: np.ndarray, pixel_um: float, thickness_um: float) -> SpecimenSample:
        xs = np.asarray(xs_um, dtype=np.float64)
        ys = np.asarray(ys_um, dtype=np.float64)
        tx, x0, x1, wx = self._axis(xs, self.w)
        ty, y0, y1, wy = self._axis(ys, self.h)
        if self.count > 1:
            pick = (hash_uniform(tx[None, :], ty[:, None], self.seed, 200) * self.count).astype(np.int64)
            base = pick.reshape(ys.size, xs.size) * (self.h * self.w)
        else:
            base = np.zeros((ys.size, xs.size), dtype=np.int64)
        r0 = base + (y0 * self.w)[:, None]
        r1 = base + (y1 * self.w)[:, None]
        c = self.conc
        wxx = wx[None, :, None]
        top = c[r0 + x0[None, :]] * (1 - wxx) + c[r0 + x1[None, :]] * wxx
        bot = c[r1 + x0[None, :]] * (1 - wxx) + c[r1 + x1[None, :]] * wxx
        wyy = wy[:, None, None]
        conc = (top * (1 - wyy) + bot * wyy).astype(np.float32)
        depth = _background_depth(xs, ys, self.seed, thickness_um)
        return SpecimenSample(conc, depth.astype(np.float32))


def load_specimen(spec: str, seed: int = 0, pixel_um: float = 0.5) -> Specimen:
    """``procedural``, ``ihc`` or a folder of in-focus images."""
    if spec == "procedural":
        return ProceduralTissue(seed)
    if spec == "ihc":
        return ImageSpecimen.ihc(pixel_um=pixel_um, seed=seed)
    return ImageSpecimen.from_folder(spec, pixel_um=pixel_um, seed=seed)
