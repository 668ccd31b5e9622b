"""The optics of the virtual microscope: a physically based brightfield defocus simulator.

Pure numpy/scipy (OpenCV only for fast table look-ups and JPEG); no I/O in the physics.

- ``presets``: objectives (4x/0.10, 10x/0.25, 20x/0.75, 40x/0.65), camera modes (low
  1280x720, high 4056x3040 of the Raspberry Pi HQ camera), relay, lab protocols.
- ``pupil``: pupil with defocus and balanced spherical aberration, PSF, OTF tables, and
  the partially coherent (condenser) transfer functions of absorption and phase.
- ``specimen``: procedural H&E tissue and real in-focus images (stain concentrations);
  ``corpus``: the shipped real H&E images with their provenance.
- ``slide``: ``VirtualSlide``, a slide in machine coordinates with a focal surface.
- ``render``: ``Renderer``, frames and focal stacks with layered defocus and a camera.
"""

from .presets import (
    CAMERA_MODES,
    DEFAULT_RELAY,
    OBJECTIVES,
    PROTOCOLS,
    WAVELENGTHS_UM,
    CameraMode,
    Objective,
    Protocol,
    get_camera_mode,
    get_objective,
    get_protocol,
    specimen_pixel_um,
)
from .pupil import PupilModel, RadialOTF, psf_2d, radial_psf
from .render import Renderer
from .slide import Region, VirtualSlide
from .specimen import (
    ImageSpecimen,
    ProceduralTissue,
    Specimen,
    SpecimenSample,
    load_specimen,
)

__all__ = [
    "CAMERA_MODES",
    "DEFAULT_RELAY",
    "OBJECTIVES",
    "PROTOCOLS",
    "WAVELENGTHS_UM",
    "CameraMode",
    "ImageSpecimen",
    "Objective",
    "ProceduralTissue",
    "Protocol",
    "PupilModel",
    "RadialOTF",
    "Region",
    "Renderer",
    "Specimen",
    "SpecimenSample",
    "VirtualSlide",
    "get_camera_mode",
    "get_objective",
    "get_protocol",
    "load_specimen",
    "psf_2d",
    "radial_psf",
    "specimen_pixel_um",
]
