"""Render what the camera sees: layered defocus in the Fourier domain, then the camera.

Per frame (or focal stack) at stage pose (x, y, z):

1. The slide region around (x, y), with a margin for the blur, is evaluated once and
   split into depth layers (seed 003's layered depth-of-field model). Sections (3-5 um)
   are thinner than the nuclei they cut, so at every pixel the stain fills a column as
   deep as the section; what varies is the column's centre ``o`` (the tissue undulates in
   the section, nuclei are cut off-centre, and the focal surface varies across the
   field), as a defocus offset in stage micrometres (depth / mountant index). Layers sit
   at evenly spaced offsets at most 1.2 depths of field apart and each pixel is shared
   between the two nearest (linear weights summing to one). What is layered is the
   absorbed fraction ``A = 1 - T``, so clear glass stays exactly clear whatever depths
   are assigned to it, and one layer gives exactly ``T (x) PSF``. The layer spectra
   ``S_mc = rfft2(A_c * w_m)`` (times the pixel MTF) are cached per position.
2. For each plane at defocus ``dz = z - focus_z(x, y)`` and each channel c:
   ``image_c = 1 - irfft2( sum_m S_mc * OTF_c(d_mc) + P_m * H_c(d_mc) )`` with
   ``d_mc = dz + o_m + b - f_c``: every layer blurred by its own defocus, summed in
   transmission; ``f_c`` is the channel's axial colour (the defocus at which it is in
   focus) and ``b`` the pupil defocus of green's sharpest image (spherical aberration
   under partially coherent light moves it a few tenths of a micrometre off the plane
   where the aberration is balanced): stage focus is where the image is sharpest. Under partially
   coherent Koehler illumination (condenser ``sigma`` < 1) ``OTF_c`` is the weak-object
   transfer function of absorption and ``H_c`` that of the section's optical path
   difference, whose layer spectra ``P_m`` are cached with the absorbance's; with
   ``sigma`` >= 1 imaging is incoherent (``H_c`` = 0, the OTF). Both are those of a
   column of the section's depth centred at defocus ``d`` (averaged over the column),
   from ``pupil.RadialOTF`` tables (computed in one batch per stack, cached per
   quantised defocus) looked up on the frame's frequency grid. The absorbed fraction
   enters linearly (exact when incoherent), the phase to first order (weak-object
   approximation: within 0.1 % of a brute-force Abbe sum for phases of 0.15 rad, and
   overestimating the contrast of excursions of 0.6 rad by about 30 %).
3. The camera: illumination colour, vignetting, photo-electrons with shot noise
   (Gaussian approximation of Poisson) and read noise, gain to digital numbers, an
   optional transfer curve, 8-bit quantisation and optional JPEG.

Outside the tissue outline the slide is clear glass. The frame is computed with a margin
that holds the whole blur up to ``margin_defocus_um`` (default 10 depths of field);
planes nearer focus use a grid with a quarter or half of that margin when it holds
their blur (same specimen region, cut exactly). Further from focus than the margin
allows, the blur of the margin's edge wraps around (FFT convolution is circular) into
the frame's border. Defocus beyond ``max_defocus_um`` (default 50 depths
of field) is rendered with the blur of ``max_defocus_um``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from scipy import fft as sfft
from scipy.special import ndtri

from ..errors import ConfigError
from .presets import (
    DEFAULT_RELAY,
    MOUNTANT_INDEX,
    WAVELENGTHS_UM,
    CameraMode,
    Objective,
    Protocol,
    get_camera_mode,
    get_objective,
    get_protocol,
    specimen_pixel_um,
)
from .illumination import OffAxisTransfer, check_leds
from .pupil import OTFLookup, PupilModel, RadialOTF, pixel_mtf
from .slide import VirtualSlide

#: Inverse normal CDF at 65536 quantiles: 16 random bits -> one Gaussian sample.
_GAUSS_LUT = ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)

RngLike = np.random.Generator | int | None

#: Planes per inverse-FFT batch: about this many megabytes of spectra at a time.
_BATCH_MB = 24


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 samples (65536-level inverse-CDF table; 3x faster than
    ``standard_normal`` and indistinguishable after 8-bit quantisation)."""
    return _GAUSS_LUT[rng.integers(0, 65536, size=shape, dtype=np.uint16)]


def _smooth_len(target: int, parity: int) -> int:
    """The smallest 7-smooth length >= target with the given parity (fast FFTs)."""
    n = max(target, 2)
    while True:
        if n % 2 == parity:
            m = n
            for f in (2, 3, 5, 7):
                while m % f == 0:
                    m //= f
            if m == 1:
                return n
        n += 1


class _Grid:
    """One FFT grid: the frame (on the computation grid) plus a margin on every side."""

    def __init__(self, inner: tuple[int, int], margin_px: int, outer: tuple[int, int] | None) -> None:
        gh, gw = inner
        if outer is None:  # the largest grid
            self.padded = (_smooth_len(gh + 2 * margin_px, gh % 2), _smooth_len(gw + 2 * margin_px, gw % 2))
        else:  # centred inside the largest grid (same parity: an exact centred crop)
            self.padded = (
                min(outer[0], _smooth_len(gh + 2 * margin_px, outer[0] % 2)),
                min(outer[1], _smooth_len(gw + 2 * margin_px, outer[1] % 2)),
            )
        self.margin_px = min((self.padded[0] - gh) // 2, (self.padded[1] - gw) // 2)
        self.crop = (
            slice((self.padded[0] - gh) // 2, (self.padded[0] - gh) // 2 + gh),
            slice((self.padded[1] - gw) // 2, (self.padded[1] - gw) // 2 + gw),
        )
        self.lookup: list[OTFLookup] | None = None
        self.mtf: np.ndarray | None = None
        self.offaxis: list[OffAxisTransfer] | None = None


class _Position:
    """What is cached per slide position: the weighted absorbance layers (M, C, H, W) on
    the largest grid and, per grid used, their spectra as (M, C, 2, Hf, Wf) float32 (real
    and imaginary planes). C is 3 (R, G, B absorbed fractions), plus the optical path
    difference as a fourth plane when imaging is partially coherent."""

    def __init__(self, layers: np.ndarray, offsets: np.ndarray, tissue_fraction: float, extent_um: float) -> None:
        self.layers = layers
        self.offsets = offsets
        self.extent_um = extent_um
        self.tissue_fraction = tissue_fraction
        self.spectra: dict[int, np.ndarray] = {}

    @property
    def nbytes(self) -> int:
        return self.layers.nbytes + sum(v.nbytes for v in self.spectra.values())


class Renderer:
    """Renders frames and focal stacks of a ``VirtualSlide`` for one optical setup.

    ``shape`` defaults to the camera mode's frame; a smaller shape renders the centre
    crop of that frame (vignetting follows the full frame). ``margin_defocus_um``
    (default 10 depths of field) sets the blur margin, ``max_defocus_um`` (default 50)
    the range of the OTF tables.
    """

    def __init__(
        self,
        objective: str | Objective = "20x",
        mode: str | CameraMode = "low",
        protocol: str | Protocol = "same",
        relay: float = DEFAULT_RELAY,
        shape: tuple[int, int] | None = None,
        margin_defocus_um: float | None = None,
        max_defocus_um: float | None = None,
        workers: int | None = None,
        cache_mb: float = 512.0,
        max_layers: int = 6,
    ) -> None:
        self.objective = get_objective(objective)
        self.mode = get_camera_mode(mode)
        self.protocol = get_protocol(protocol)
        if relay <= 0:
            raise ConfigError("relay", f"must be > 0, got {relay}")
        self.relay = float(relay)
        self.pixel_um = specimen_pixel_um(self.objective, self.mode, self.relay)
        self.shape = tuple(shape) if shape is not None else self.mode.shape
        if len(self.shape) != 2 or min(self.shape) < 8:
            raise ConfigError("shape", f"frame shape must be (H, W) with H, W >= 8, got {shape}")
        dof = self.objective.depth_of_field_um()
        self.depth_of_field_um = dof
        self.margin_defocus_um = float(margin_defocus_um) if margin_defocus_um is not None else 10.0 * dof
        self.max_defocus_um = float(max_defocus_um) if max_defocus_um is not None else 50.0 * dof
        if self.max_defocus_um < self.margin_defocus_um:
            raise ConfigError("max_defocus_um", f"{self.max_defocus_um} is below the margin defocus {self.margin_defocus_um}")
        self.layer_spacing_um = 1.2 * dof
        self.max_layers = int(max_layers)
        self.workers = workers if workers is not None else -1
        self.cache_bytes = int(cache_mb * 2**20)

        # The optical image is band-limited to 2 NA / lambda: frames sampled much finer
        # (high-resolution modes) are computed on a grid k times coarser that still holds
        # every frequency the optics pass (blue channel), then interpolated to the frame.
        nyquist = min(WAVELENGTHS_UM) / (4.0 * self.objective.na)
        self.upsample = max(1, int(0.98 * nyquist / self.pixel_um))
        self.grid_pixel_um = self.pixel_um * self.upsample
        h, w = self.shape
        self.grid_shape = (-(-h // self.upsample), -(-w // self.upsample))

        # Layer offsets reach half the section (in stage units) plus the focal surface's
        # small variation across the field.
        half_section = 0.5 * self.protocol.section_thickness_um / MOUNTANT_INDEX
        airy = WAVELENGTHS_UM[0] / self.objective.na
        margin_um = self.objective.geometric_blur_radius_um(self.margin_defocus_um + half_section) + airy
        self.margin_px = math.ceil(margin_um / self.grid_pixel_um)
        # Grids with a quarter, half and all of the margin: each plane is computed on the
        # smallest one that holds its blur (near focus the blur is small), all cut
        # exactly from the same specimen region.
        self._half_section_um = half_section
        self._airy_um = airy
        largest = _Grid(self.grid_shape, self.margin_px, None)
        self._grid_list = [
            _Grid(self.grid_shape, math.ceil(self.margin_px * f), largest.padded) for f in (0.25, 0.5)
        ] + [largest]
        self.padded = largest.padded
        # Defocus is quantised to 1/40 of the depth of field for the OTF tables (0.024 um at
        # 20x/0.75: invisible, and it lets stacks share tables).
        quantum = dof / 40.0
        # OTF tables reach 10 % past max_defocus_um for the layers' offsets; independent
        # of the protocol's section so that renderers of one objective share them.
        reach = 1.1 * self.max_defocus_um
        #: Condenser fraction of the objective NA (partial coherence; >= 1 incoherent).
        self.sigma = float(self.protocol.sigma(self.objective))
        #: Defocus (um) at which each of R, G, B is in focus (axial colour).
        self.colour_focus_um = tuple(float(v) for v in self.protocol.colour_focus_um(self.objective))
        self.otfs = [
            RadialOTF.shared(PupilModel.of(self.objective, lam, self.protocol.coverslip_error_um), reach, quantum,
                             sigma=self.sigma)
            for lam in WAVELENGTHS_UM
        ]
        #: LED positions (NA) of coherent off-axis illumination; empty: the condenser.
        self.leds = tuple(self.protocol.led_na)
        if self.leds:
            check_leds(self.leds, self.objective.na)
        # Off-axis light always shows the specimen's phase (the OPD plane is layered).
        self.coherent = self.otfs[0].coherent or bool(self.leds)
        #: Pupil defocus of the stage's focus: the green channel's sharpest image of a
        #: section of the protocol's thickness (``RadialOTF.best_focus_um``), so that dz = 0
        #: is the focus a person or a focus measure would choose, whatever the aberrations,
        #: the condenser and the section.
        self.focus_defocus_um = self.otfs[1].best_focus_um(2.0 * half_section)
        self._gain: np.ndarray | None = None
        self._cache: OrderedDict[tuple[object, ...], _Position] = OrderedDict()
        self._cached_bytes = 0

    # --- geometry -------------------------------------------------------------------------

    def field_of_view_um(self) -> tuple[float, float]:
        """(height, width) of the rendered frame in the specimen, micrometres."""
        return (self.shape[0] * self.pixel_um, self.shape[1] * self.pixel_um)

    def _grid_tools(self, g: _Grid) -> tuple[list[OTFLookup], np.ndarray]:
        if g.lookup is None or g.mtf is None:
            g.lookup = [OTFLookup(g.padded, self.grid_pixel_um, o.df, o.length) for o in self.otfs]
            g.mtf = pixel_mtf(g.padded, 1.0 / self.upsample)
        return g.lookup, g.mtf

    def _offaxis_tools(self, g: _Grid) -> list[OffAxisTransfer]:
        if g.offaxis is None:
            g.offaxis = [OffAxisTransfer(o.model, self.leds, g.padded, self.grid_pixel_um) for o in self.otfs]
        return g.offaxis

    def _grid_for(self, dz_um: float, entry: _Position) -> int:
        """Index of the smallest grid whose margin holds the blur of a plane at dz."""
        reach = abs(dz_um) + float(np.max(np.abs(entry.offsets))) + 0.5 * entry.extent_um
        need = (self.objective.geometric_blur_radius_um(reach) + self._airy_um) / self.grid_pixel_um
        for i, g in enumerate(self._grid_list):
            if g.margin_px >= need:
                return i
        return len(self._grid_list) - 1

    # --- specimen spectra -------------------------------------------------------------------

    def _layers(self, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Layer offsets and per-pixel weights (hat functions, summing to one)."""
        lo, hi = float(offset.min()), float(offset.max())
        m = min(self.max_layers, max(1, math.ceil((hi - lo) / self.layer_spacing_um) + 1))
        if m == 1:
            return np.array([0.5 * (lo + hi)]), None
        depths = np.linspace(lo, hi, m)
        t = (offset - np.float32(lo)) * np.float32((m - 1) / (hi - lo))
        weights = np.empty((m,) + offset.shape, dtype=np.float32)
        for j in range(m):
            np.subtract(t, np.float32(j), out=weights[j])
            np.abs(weights[j], out=weights[j])
            np.subtract(1.0, weights[j], out=weights[j])
            np.maximum(weights[j], 0.0, out=weights[j])
        return depths, weights

    def _position(self, slide: VirtualSlide, x_um: float, y_um: float) -> _Position:
        """The specimen layers around (x, y) (cached, least recently used first out)."""
        key = (slide.key, round(float(x_um), 4), round(float(y_um), 4))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        region = slide.region(x_um, y_um, self.padded, self.grid_pixel_um, self.protocol)
        # The columns' depth is folded into the OTFs (column OTF tables); the layers carry
        # the variation of the columns' centres.
        depths, weights = self._layers(region.offset_um)
        absorb = 1.0 - np.moveaxis(region.transmission, -1, 0)  # (3, H, W)
        if self.coherent and region.opd_um is not None:
            absorb = np.concatenate([absorb, region.opd_um[None]], axis=0)  # (4, H, W)
        layers = absorb[None] if weights is None else weights[:, None] * absorb[None]
        crop = self._grid_list[-1].crop
        entry = _Position(np.ascontiguousarray(layers, dtype=np.float32), depths, float(region.tissue[crop].mean()), region.extent_um)
        self._cache[key] = entry
        self._cached_bytes += entry.nbytes
        self._evict()
        return entry

    def _evict(self) -> None:
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes

    def _spectra(self, entry: _Position, gi: int) -> np.ndarray:
        """Layer spectra on grid ``gi`` (computed on first use, kept with the position)."""
        spec = entry.spectra.get(gi)
        if spec is not None:
            return spec
        g = self._grid_list[gi]
        _, mtf = self._grid_tools(g)
        big = self.padded
        y0, x0 = (big[0] - g.padded[0]) // 2, (big[1] - g.padded[1]) // 2
        m, nc = entry.layers.shape[:2]
        # Planar real and imaginary parts: real x real products are cheaper than complex x real.
        spec = np.empty((m, nc, 2) + mtf.shape, dtype=np.float32)  # (M, C, 2, Hf, Wf)
        for j in range(m):
            part = entry.layers[j, :, y0 : y0 + g.padded[0], x0 : x0 + g.padded[1]]
            f = sfft.rfft2(part, workers=self.workers)
            np.multiply(f.real, mtf, out=spec[j, :, 0])
            np.multiply(f.imag, mtf, out=spec[j, :, 1])
        entry.spectra[gi] = spec
        self._cached_bytes += spec.nbytes
        self._evict()
        return spec

    def tissue_fraction(self, slide: VirtualSlide, x_um: float, y_um: float) -> float:
        """Share of the frame inside the slide's tissue outline (holes not counted out)."""
        return self._position(slide, x_um, y_um).tissue_fraction

    def clear_cache(self) -> None:
        """Forget the cached specimen layers and spectra of every position."""
        self._cache.clear()
        self._cached_bytes = 0

    # --- optics -----------------------------------------------------------------------------

    def optical_stack(self, slide: VirtualSlide, x_um: float, y_um: float, z_um: Sequence[float] | np.ndarray) -> np.ndarray:
        """Blurred transmission (Z, 3, H, W) float32 at stage z values; no camera, no noise."""
        entry = self._position(slide, x_um, y_um)
        focus = float(slide.focus_z_um(x_um, y_um))
        dzs = [float(z) - focus for z in z_um]
        gh, gw = self.grid_shape
        out = np.empty((len(dzs), 3, gh, gw), dtype=np.float32)
        # All OTF tables of the stack at once (batched Hankel transforms).
        offsets = [float(o) for o in entry.offsets]
        by_grid: dict[int, list[int]] = {}
        for i, dz in enumerate(dzs):
            by_grid.setdefault(self._grid_for(dz, entry), []).append(i)
        if self.leds:
            for gi, planes in sorted(by_grid.items()):
                self._blur_offaxis(entry, gi, planes, dzs, out)
            return self._upsample(out) if self.upsample > 1 else out
        tables = [
            self.otfs[c].pairs([dz + o + self.focus_defocus_um - self.colour_focus_um[c] for dz in dzs for o in offsets],
                               entry.extent_um)
            for c in range(3)
        ]
        for gi, planes in sorted(by_grid.items()):
            self._blur(entry, gi, planes, tables, out)
        return self._upsample(out) if self.upsample > 1 else out

    def _blur(self, entry: _Position, gi: int, planes: list[int], tables: list[list[np.ndarray]], out: np.ndarray) -> None:
        """Planes ``planes`` of the stack on grid ``gi``, written into ``out``.

        ``tables[c][p * M + j]`` is the table of channel c, plane p, layer j: (length,)
        when incoherent, (2, length) (absorption, optical path) when partially coherent.
        """
        import cv2

        g = self._grid_list[gi]
        spectra = self._spectra(entry, gi)
        lookup, _ = self._grid_tools(g)
        m = spectra.shape[0]
        phase = spectra.shape[1] == 4
        hf, wf = spectra.shape[-2:]
        batch = max(1, min(len(planes), (_BATCH_MB * 2**20) // (3 * hf * wf * 8)))
        acc = np.empty((batch, 3, hf, wf), dtype=np.complex64)
        otf = np.empty((hf, wf), dtype=np.float32)
        acc_re = np.empty((hf, wf), dtype=np.float32)
        acc_im = np.empty((hf, wf), dtype=np.float32)
        for start in range(0, len(planes), batch):
            chunk = planes[start : start + batch]
            for k, p in enumerate(chunk):
                for c in range(3):
                    for j in range(m):
                        table = tables[c][p * m + j]
                        lookup[c](table[0] if table.ndim == 2 else table, out=otf)
                        s_re, s_im = spectra[j, c, 0], spectra[j, c, 1]
                        if j == 0:
                            np.multiply(s_re, otf, out=acc_re)
                            np.multiply(s_im, otf, out=acc_im)
                        else:
                            cv2.accumulateProduct(s_re, otf, acc_re)
                            cv2.accumulateProduct(s_im, otf, acc_im)
                        if phase:
                            lookup[c](table[1], out=otf)
                            cv2.accumulateProduct(spectra[j, 3, 0], otf, acc_re)
                            cv2.accumulateProduct(spectra[j, 3, 1], otf, acc_im)
                    cv2.merge([acc_re, acc_im], dst=acc[k, c].view(np.float32).reshape(hf, wf, 2))
            img = sfft.irfft2(acc[: len(chunk)], s=g.padded, workers=self.workers)
            for k, p in enumerate(chunk):
                np.subtract(1.0, img[k, :, g.crop[0], g.crop[1]], out=out[p])

    def _blur_offaxis(self, entry: _Position, gi: int, planes: list[int], dzs: list[float], out: np.ndarray) -> None:
        """Planes of the stack under LED illumination (``illumination``): the transfer
        functions are not radial, so they are evaluated on the grid itself, complex."""
        g = self._grid_list[gi]
        spectra = self._spectra(entry, gi)
        tools = self._offaxis_tools(g)
        m = spectra.shape[0]
        hf, wf = spectra.shape[-2:]
        layers = [(spectra[j, :, 0] + 1j * spectra[j, :, 1]).astype(np.complex64) for j in range(m)]  # (C, Hf, Wf)
        phase = spectra.shape[1] == 4
        acc = np.empty((3, hf, wf), dtype=np.complex64)
        for p in planes:
            for c in range(3):
                acc[c] = 0.0
                for j in range(m):
                    d = dzs[p] + float(entry.offsets[j]) + self.focus_defocus_um - self.colour_focus_um[c]
                    t_a, t_p = tools[c].tables(d, entry.extent_um)
                    acc[c] += layers[j][c] * t_a
                    if phase:
                        acc[c] += layers[j][3] * t_p
            img = sfft.irfft2(acc, s=g.padded, workers=self.workers)
            np.subtract(1.0, img[:, g.crop[0], g.crop[1]], out=out[p])

    def _upsample(self, planes: np.ndarray) -> np.ndarray:
        """Interpolate band-limited planes (Z, 3, gh, gw) onto the frame grid (Lanczos)."""
        import cv2

        k = self.upsample
        gh, gw = self.grid_shape
        h, w = self.shape
        y0, x0 = (gh * k - h) // 2, (gw * k - w) // 2
        out = np.empty((planes.shape[0], 3, h, w), dtype=np.float32)
        for z in range(planes.shape[0]):
            for c in range(3):
                big = cv2.resize(planes[z, c], (gw * k, gh * k), interpolation=cv2.INTER_LANCZOS4)
                out[z, c] = big[y0 : y0 + h, x0 : x0 + w]
        return out

    # --- camera -----------------------------------------------------------------------------

    def _gain_map(self) -> np.ndarray:
        """(3, H, W) illumination colour x vignetting of the (centre crop of the) frame."""
        if self._gain is None:
            h, w = self.shape
            fh, fw = self.mode.shape
            yy = (np.arange(h) - (h - 1) / 2.0)[:, None]
            xx = (np.arange(w) - (w - 1) / 2.0)[None, :]
            r2 = (xx**2 + yy**2) / ((fw / 2.0) ** 2 + (fh / 2.0) ** 2)
            v = min(max(self.protocol.vignetting, 0.0), 0.95)
            k = (1.0 - v) ** -0.5 - 1.0
            vign = 1.0 / (1.0 + k * r2) ** 2
            illum = np.asarray(self.protocol.illumination_rgb, dtype=np.float64)
            illum = illum / illum.max()
            self._gain = (illum[:, None, None] * vign[None]).astype(np.float32)
        return self._gain

    def camera(self, optical: np.ndarray, rng: RngLike = None) -> np.ndarray:
        """Turn blurred transmission (Z, 3, H, W) into camera frames (Z, H, W, 3) uint8.

        ``optical`` is used as scratch space (overwritten). Works in blocks of rows so
        that large frames stay in cache.
        """
        import cv2

        p = self.protocol
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        nz, _, h, w = optical.shape
        frames = np.empty((nz, h, w, 3), dtype=np.uint8)
        rows = max(1, (1 << 20) // w)
        if p.noise:
            # Work in photo-electrons: Gaussian approximation of Poisson shot noise plus
            # read noise, then the gain to digital numbers.
            gain = self._gain_map() * np.float32(p.white_electrons)
            to_dn = p.white_level_dn / p.white_electrons
        else:
            gain = self._gain_map()
            to_dn = p.white_level_dn
        read2 = np.float32(p.read_noise_e**2)
        rows = max(1, rows // 3)
        planes = [np.empty((h, w), dtype=np.uint8) for _ in range(3)]
        for z in range(nz):
            for r0 in range(0, h, rows):
                sig = optical[z, :, r0 : r0 + rows]  # (3, rows, w), all channels at once
                sig *= gain[:, r0 : r0 + rows]
                np.maximum(sig, 0.0, out=sig)
                scale = to_dn
                if p.noise:
                    sigma = sig + read2
                    np.sqrt(sigma, out=sigma)
                    sigma *= gaussian_noise(gen, sig.shape)
                    sig += sigma
                    np.maximum(sig, 0.0, out=sig)
                if p.gamma != 1.0:
                    if p.noise:
                        sig *= np.float32(1.0 / p.white_electrons)
                    np.power(sig, np.float32(p.gamma), out=sig)
                    scale = p.white_level_dn
                # Scale, round and saturate to 8 bits in one pass (values are >= 0).
                for c in range(3):
                    cv2.convertScaleAbs(sig[c], dst=planes[c][r0 : r0 + rows], alpha=scale)
            cv2.merge(planes, dst=frames[z])
        if p.jpeg_quality is not None:
            frames = np.stack([_jpeg(f, p.jpeg_quality) for f in frames])
        return frames

    # --- public -----------------------------------------------------------------------------

    def render_stack(
        self, slide: VirtualSlide, x_um: float, y_um: float, z_um: Sequence[float] | np.ndarray, rng: RngLike = None
    ) -> np.ndarray:
        """Frames (Z, H, W, 3) uint8 at stage (x, y) and each z of ``z_um``."""
        return self.camera(self.optical_stack(slide, x_um, y_um, z_um), rng)

    def render(self, slide: VirtualSlide, x_um: float, y_um: float, z_um: float, rng: RngLike = None) -> np.ndarray:
        """One frame (H, W, 3) uint8 at stage pose (x, y, z)."""
        return self.render_stack(slide, x_um, y_um, [z_um], rng)[0]


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is None:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise RuntimeError("JPEG round trip failed")
    return np.ascontiguousarray(decoded[..., ::-1])
