"""A virtual slide in machine coordinates: tissue, empty glass and a focal surface.

Coordinates are the stage's machine coordinates in micrometres (protocol.md: GRBL's
negative space, X in [-60000, 0], Y in [-40000, 0], Z in [-8000, 0]; +Z moves the
objective away from the specimen). The slide point imaged at the centre of a frame is
the stage (x, y) itself. In a frame, column index grows with +X and row index with +Y
(pixel (row i, col j) of an H x W frame at stage (x, y) shows the slide point
``x + (j - (W-1)/2) * p, y + (i - (H-1)/2) * p`` for specimen pixel ``p``).

The slide is generated lazily and deterministically from its seed: every region is a
pure function of its coordinates, so overlapping frames agree and the same place always
renders the same tissue. A tissue section of about 12 x 8 mm with an irregular outline
sits around (x, y) = (-30000, -20000); everything else is empty glass.

Focus: the section's mid-plane at (x, y) is in focus at stage z = ``focus_z_um(x, y)``,
around -4000 um: a per-slide offset, a tilt (slide not flat on the stage) and a smooth
warp (bent slide, uneven mountant) over millimetres, so the focus varies by tens of
micrometres over the tissue and every field needs its own. The defocus of a frame is
``dz = z - focus_z_um(x, y)`` (positive: the objective is too far from the specimen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fields import hash_uniform, smoothstep, value_noise, value_noise_at
from .presets import MOUNTANT_INDEX, Protocol
from .specimen import ProceduralTissue, Specimen


@dataclass
class Region:
    """A part of the slide evaluated on a pixel grid, ready for the renderer."""

    #: (H, W, 3) float32 in-focus transmission in R, G, B (1 = clear glass).
    transmission: np.ndarray
    #: (H, W) float32 defocus offset (um of stage z) of each pixel relative to the
    #: region's centre: a pixel at offset o is at defocus dz + o when the centre is at dz.
    offset_um: np.ndarray
    #: (H, W) float32 tissue coverage of the slide's outline (0 glass, 1 tissue).
    tissue: np.ndarray
    #: Depth extent of the absorbing column at each pixel (um of stage z): the section
    #: thickness divided by the mountant index.
    extent_um: float = 0.0
    #: (H, W) float32 optical path difference of the section against the mountant (um);
    #: None for a pure absorption object.
    opd_um: np.ndarray | None = None


#: Stain concentration (OD units, hematoxylin + eosin + DAB) at which tissue counts as
#: 63 % dense in the phase model: eosin-stained cytoplasm and stroma (0.2-0.5) are
#: dense, lightly stained loose tissue is not, nuclei saturate.
DENSITY_SCALE_OD = 0.3


def optical_path_um(concentration: np.ndarray, tissue: np.ndarray, texture: np.ndarray, thickness_um: float,
                    index_excess: float) -> np.ndarray:
    """The section's optical path difference against the mountant (um).

    Dry mass carries the refractive index and the stains bind to it (eosin to protein,
    hematoxylin to nuclei), so the local density is taken from the total stain
    concentration, ``1 - exp(-c / DENSITY_SCALE_OD)`` (0 in holes and on glass), and
    modulated by a texture the stains do not show (``texture`` about in [-1, 1], +-25 %):
    the phase is tied to the tissue, not a copy of its colour.
    """
    density = 1.0 - np.exp(-np.sum(concentration, axis=-1) / np.float32(DENSITY_SCALE_OD))
    density *= tissue * (1.0 + 0.25 * texture)
    return (np.float32(thickness_um * index_excess) * density).astype(np.float32)


class VirtualSlide:
    """A slide: a specimen inside a tissue outline, on a tilted and warped focal surface."""

    def __init__(
        self,
        seed: int = 0,
        specimen: Specimen | None = None,
        tissue_center_um: tuple[float, float] = (-30000.0, -20000.0),
        tissue_size_um: tuple[float, float] = (12000.0, 8000.0),
        focus_z0_um: float = -4000.0,
        focus_offset_range_um: float = 50.0,
        tilt_um_per_mm: float = 1.5,
        warp_um: float = 8.0,
        warp_scale_um: float = 3000.0,
    ) -> None:
        self.seed = int(seed)
        self.specimen = specimen if specimen is not None else ProceduralTissue(self.seed)
        self.tissue_center_um = (float(tissue_center_um[0]), float(tissue_center_um[1]))
        self.tissue_size_um = (float(tissue_size_um[0]), float(tissue_size_um[1]))
        u = hash_uniform(np.arange(3), 0, self.seed, 900)
        self.focus_offset_um = float((2.0 * u[0] - 1.0) * focus_offset_range_um)
        # Tilt: a random direction with magnitude up to tilt_um_per_mm.
        ang = 2.0 * math.pi * float(u[1])
        mag = tilt_um_per_mm * (0.5 + 0.5 * float(u[2])) / 1000.0
        self.tilt = (mag * math.cos(ang), mag * math.sin(ang))
        self.focus_z0_um = float(focus_z0_um)
        self.warp_um = float(warp_um)
        self.warp_scale_um = float(warp_scale_um)

    @property
    def key(self) -> tuple[object, ...]:
        """Identifies the slide's content (for caches)."""
        return (type(self).__name__, self.seed, getattr(self.specimen, "name", ""), id(self.specimen))

    # --- focus ------------------------------------------------------------------------

    def focus_z_um(self, x_um: float | np.ndarray, y_um: float | np.ndarray) -> float | np.ndarray:
        """Stage z at which the section mid-plane at (x, y) is in focus."""
        x = np.asarray(x_um, dtype=np.float64)
        y = np.asarray(y_um, dtype=np.float64)
        cx, cy = self.tissue_center_um
        z = (
            self.focus_z0_um
            + self.focus_offset_um
            + self.tilt[0] * (x - cx)
            + self.tilt[1] * (y - cy)
            + self.warp_um * value_noise_at(x, y, self.warp_scale_um, self.seed, 901)
        )
        return float(z) if z.ndim == 0 else z

    def _focus_grid(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        cx, cy = self.tissue_center_um
        warp = value_noise(xs, ys, self.warp_scale_um, self.seed, 901).astype(np.float64)
        return (
            self.focus_z0_um
            + self.focus_offset_um
            + self.tilt[0] * (xs[None, :] - cx)
            + self.tilt[1] * (ys[:, None] - cy)
            + self.warp_um * warp
        )

    # --- tissue outline ---------------------------------------------------------------

    def _outline(self, x: np.ndarray, y: np.ndarray, noise: np.ndarray) -> np.ndarray:
        cx, cy = self.tissue_center_um
        ax, ay = self.tissue_size_um[0] / 2.0, self.tissue_size_um[1] / 2.0
        rad = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
        g = (1.0 - rad + 0.35 * noise) * min(ax, ay)  # about micrometres inside the outline
        return smoothstep(-10.0, 10.0, g)

    def tissue_at(self, x_um: float | np.ndarray, y_um: float | np.ndarray) -> np.ndarray:
        """Tissue coverage of the outline at points (0 glass, 1 tissue)."""
        x = np.asarray(x_um, dtype=np.float64)
        y = np.asarray(y_um, dtype=np.float64)
        noise = value_noise_at(x, y, 1500.0, self.seed, 902)
        return self._outline(x, y, noise)

    # --- regions ----------------------------------------------------------------------

    @staticmethod
    def grid(x_um: float, y_um: float, shape: tuple[int, int], pixel_um: float) -> tuple[np.ndarray, np.ndarray]:
        """World coordinates of the pixel centres of a frame centred at (x, y)."""
        h, w = shape
        xs = x_um + (np.arange(w) - (w - 1) / 2.0) * pixel_um
        ys = y_um + (np.arange(h) - (h - 1) / 2.0) * pixel_um
        return xs, ys

    def region(self, x_um: float, y_um: float, shape: tuple[int, int], pixel_um: float, protocol: Protocol) -> Region:
        """The slide around (x, y) on a ``shape`` grid of ``pixel_um``, stained per ``protocol``."""
        xs, ys = self.grid(x_um, y_um, shape, pixel_um)
        sample = self.specimen.sample(xs, ys, pixel_um, protocol.section_thickness_um)
        noise = value_noise(xs, ys, 1500.0, self.seed, 902).astype(np.float64)
        tissue = self._outline(xs[None, :], ys[:, None], noise).astype(np.float32)
        stains = np.asarray(protocol.stain_od, dtype=np.float32) * np.asarray(protocol.stain_strength, dtype=np.float32)[:, None]
        od = sample.concentration @ stains
        od *= tissue[..., None]
        transmission = np.power(np.float32(10.0), -od, dtype=np.float32)
        z_centre = self.focus_z_um(x_um, y_um)
        offset = (z_centre - self._focus_grid(xs, ys)).astype(np.float32)
        offset += (sample.depth_um / MOUNTANT_INDEX) * tissue
        opd = None
        if protocol.tissue_index_excess != 0.0:
            texture = value_noise(xs, ys, max(2.0, 2.0 * pixel_um), self.seed, 903)
            opd = optical_path_um(sample.concentration, tissue, texture, protocol.section_thickness_um,
                                  protocol.tissue_index_excess)
        return Region(transmission, offset, tissue, protocol.section_thickness_um / MOUNTANT_INDEX, opd)
