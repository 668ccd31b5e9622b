"""Objectives, camera modes, relay optics and lab protocols of the virtual microscope.

Everything here is plain data: the physics (``pupil``), the specimen (``specimen``,
``slide``) and the camera model (``render``) take these records as arguments.

Sampling of the default system
------------------------------
The camera is the Raspberry Pi HQ camera of seed 000 (Sony IMX477, 4056 x 3040 pixels
of 1.55 um). The high-resolution frame is the full sensor; the low-resolution frame
(1280 x 720) is the full sensor width scaled down by 4056/1280 and cropped to 16:9, so
its effective pixel is 4.91 um at the sensor and it sees the central 16:9 band of the
high-resolution field. A relay lens of ``DEFAULT_RELAY`` = 1.36x between objective and
sensor makes the 20x/0.75 low-resolution frame sample at 0.181 um in the specimen,
the Nyquist pixel lambda/(4 NA) = 0.180 um of the green channel: the frame the
autofocus model sees holds all the detail the objective passes (red is oversampled,
blue slightly undersampled, as with any colour sensor). The high-resolution frame of
the same objective then samples at 0.057 um (about 3x oversampled).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..errors import ConfigError

#: Centre wavelengths of the R, G, B channels in micrometres (seed 000 / issue 4).
WAVELENGTHS_UM: tuple[float, float, float] = (0.610, 0.540, 0.460)

#: Pixel pitch of the Raspberry Pi HQ camera (Sony IMX477), micrometres.
SENSOR_PIXEL_UM = 1.55

#: Magnification of the relay between objective and camera (see the module docstring).
DEFAULT_RELAY = 1.36

#: Refractive index of the mounting medium (depths in the section are divided by it to
#: give the equivalent stage defocus, paraxially).
MOUNTANT_INDEX = 1.5

#: Refractive index of cover glass, for the spherical aberration of a coverslip error.
COVERSLIP_INDEX = 1.52

#: Koehler illumination: the condenser aperture is set to about 2/3 to 3/4 of the
#: objective's NA (the usual guidance of microscope makers' manuals: contrast against
#: resolution). The presets' default fraction (``sigma``); 1 or more is incoherent.
DEFAULT_CONDENSER_FRACTION = 0.7

#: Axial colour by correction class: the stage defocus (in depths of field of green) at
#: which the R, G and B channels are in focus, relative to green. An achromat brings two
#: colours to one focus and leaves a secondary spectrum, green focusing nearer the lens
#: than red and blue; it is of the order of the depth of field (why achromats were used
#: with a green filter for photography). A plan apochromat brings three colours together:
#: a residue well inside the depth of field. Orders of magnitude, not one maker's
#: measurement: ``random_protocol`` draws around them.
AXIAL_COLOUR_DOF: dict[str, tuple[float, float, float]] = {
    "achromat": (0.8, 0.0, 0.6),
    "plan-apo": (0.1, 0.0, -0.1),
}


@dataclass(frozen=True)
class Objective:
    """A microscope objective: magnification, numerical aperture and immersion index."""

    name: str
    magnification: float
    na: float
    immersion_index: float = 1.0
    #: Correction class (a key of ``AXIAL_COLOUR_DOF``): the axial colour of the lens.
    correction: str = "achromat"
    #: Condenser NA as a fraction of this NA (partial coherence; >= 1 incoherent).
    condenser_fraction: float = DEFAULT_CONDENSER_FRACTION

    def axial_colour_um(self) -> tuple[float, float, float]:
        """Stage defocus (um) at which R, G, B are in focus relative to green."""
        dof = self.depth_of_field_um()
        r, g, b = AXIAL_COLOUR_DOF[self.correction]
        return (r * dof, g * dof, b * dof)

    def depth_of_field_um(self, wavelength_um: float = WAVELENGTHS_UM[1]) -> float:
        """Wave-optical depth of field n lambda / NA^2 (about 1 um for 20x/0.75)."""
        return self.immersion_index * wavelength_um / self.na**2

    def nyquist_pixel_um(self, wavelength_um: float = WAVELENGTHS_UM[1]) -> float:
        """Largest specimen pixel that samples the incoherent cut-off 2 NA / lambda."""
        return wavelength_um / (4.0 * self.na)

    def half_angle_rad(self) -> float:
        return math.asin(self.na / self.immersion_index)

    def geometric_blur_radius_um(self, dz_um: float) -> float:
        """Radius of the geometric defocus disc, |dz| tan(asin(NA / n))."""
        return abs(dz_um) * math.tan(self.half_angle_rad())


OBJECTIVES: dict[str, Objective] = {
    "4x": Objective("4x/0.10", 4.0, 0.10),
    "10x": Objective("10x/0.25", 10.0, 0.25),
    "20x": Objective("20x/0.75", 20.0, 0.75, correction="plan-apo"),
    "40x": Objective("40x/0.65", 40.0, 0.65),
}
DEFAULT_OBJECTIVE = "20x"


def get_objective(name: str | Objective) -> Objective:
    """An objective by preset key ("20x") or full name ("20x/0.75")."""
    if isinstance(name, Objective):
        return name
    key = str(name).strip().lower()
    for k, obj in OBJECTIVES.items():
        if key in (k, obj.name.lower()):
            return obj
    raise ConfigError("objective", f"unknown objective {name!r}; presets: {', '.join(OBJECTIVES)}")


@dataclass(frozen=True)
class CameraMode:
    """One output mode of the camera: frame size and effective pixel pitch at the sensor."""

    name: str
    width_px: int
    height_px: int
    sensor_pixel_um: float

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height_px, self.width_px)


CAMERA_MODES: dict[str, CameraMode] = {
    "low": CameraMode("low", 1280, 720, SENSOR_PIXEL_UM * 4056 / 1280),
    "high": CameraMode("high", 4056, 3040, SENSOR_PIXEL_UM),
}


def get_camera_mode(name: str | CameraMode) -> CameraMode:
    if isinstance(name, CameraMode):
        return name
    try:
        return CAMERA_MODES[str(name)]
    except KeyError:
        raise ConfigError("mode", f"unknown camera mode {name!r}; modes: {', '.join(CAMERA_MODES)}") from None


def specimen_pixel_um(objective: Objective, mode: CameraMode, relay: float = DEFAULT_RELAY) -> float:
    """Size of one camera pixel in the specimen plane."""
    return mode.sensor_pixel_um / (objective.magnification * relay)


@dataclass(frozen=True)
class Protocol:
    """The conditions of one lab: staining, section, mounting, illumination and camera.

    Stain vectors are optical densities (base 10) per unit concentration in the R, G, B
    channels; rows are hematoxylin, eosin and DAB (DAB only matters for real IHC images).
    """

    name: str
    stain_od: tuple[tuple[float, float, float], ...]
    stain_strength: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: Relative spectral power of the lamp in R, G, B after the camera's white balance.
    illumination_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: Camera digital number of clear glass at the frame centre (brightest channel).
    white_level_dn: float = 235.0
    #: Photo-electrons collected by a pixel under clear glass (sets the shot noise).
    white_electrons: float = 8000.0
    read_noise_e: float = 3.0
    #: Output transfer curve exponent (1 = linear).
    gamma: float = 1.0
    #: JPEG quality of the delivered frames; None = lossless.
    jpeg_quality: int | None = None
    #: Relative brightness loss at the frame corners (cos^4-like falloff).
    vignetting: float = 0.08
    #: Cover glass thickness error (um) -> spherical aberration (+dz and -dz differ).
    coverslip_error_um: float = 15.0
    #: Physical section thickness (um); depths in it become separate defocus layers.
    section_thickness_um: float = 3.0
    noise: bool = True
    #: Refractive index of dense tissue above the mountant's (the specimen's phase:
    #: optical path = section thickness x this x local density). Dried protein is about
    #: 1.53-1.54 and resinous mountants are chosen near it (about 1.49-1.52); aqueous
    #: mountants are 1.40-1.45 (Bancroft's Theory and Practice of Histological
    #: Techniques, "Mounting media"). Sections also hold mountant-filled spaces, which
    #: lowers the effective difference.
    tissue_index_excess: float = 0.008
    #: Condenser NA as a fraction of the objective's; None = the objective's preset.
    condenser_fraction: float | None = None
    #: Axial colour: stage defocus (um) at which R, G, B are in focus relative to
    #: green; None = the objective's correction class.
    axial_colour_um: tuple[float, float, float] | None = None
    #: Coherent LED illumination instead of the condenser: LED positions (NA_x, NA_y),
    #: mutually incoherent, equal power (``illumination.ILLUMINATIONS``; seed 001). Empty:
    #: Koehler illumination with ``condenser_fraction``. The stage's focus stays that of
    #: the Koehler image (seed 001 takes its ground truth from the incoherent stack).
    led_na: tuple[tuple[float, float], ...] = ()

    def sigma(self, objective: Objective) -> float:
        """The condenser fraction in force with ``objective``."""
        return objective.condenser_fraction if self.condenser_fraction is None else self.condenser_fraction

    def colour_focus_um(self, objective: Objective) -> tuple[float, float, float]:
        """The axial colour in force with ``objective`` (um, R, G, B)."""
        return objective.axial_colour_um() if self.axial_colour_um is None else self.axial_colour_um

    def with_(self, **changes: Any) -> Protocol:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        """The parameters as JSON-ready data (recorded with each randomised stack)."""
        return {k: [list(v) for v in val] if k in ("stain_od", "led_na") else (list(val) if isinstance(val, tuple) else val)
                for k, val in asdict(self).items()}


#: Ruifrok and Johnston's H, E and DAB optical-density vectors (normalised).
RUIFROK_HED: tuple[tuple[float, float, float], ...] = (
    (0.650, 0.704, 0.286),
    (0.072, 0.990, 0.105),
    (0.268, 0.570, 0.776),
)

PROTOCOLS: dict[str, Protocol] = {
    # The training lab: standard H&E, white-balanced LED, good exposure, lossless frames.
    "same": Protocol(name="same", stain_od=RUIFROK_HED),
    # Another lab: a bluer hematoxylin applied longer, a paler and more orange eosin, a
    # halogen lamp without white balance, short exposure at high gain, JPEG frames,
    # stronger vignetting, thicker mountant/cover glass and thicker sections.
    "diff": Protocol(
        name="diff",
        stain_od=((0.550, 0.760, 0.345), (0.050, 0.900, 0.430), (0.300, 0.560, 0.760)),
        stain_strength=(1.35, 0.70, 1.0),
        illumination_rgb=(1.0, 0.87, 0.66),
        white_level_dn=215.0,
        white_electrons=2500.0,
        read_noise_e=5.0,
        gamma=0.85,
        jpeg_quality=85,
        vignetting=0.22,
        coverslip_error_um=30.0,
        section_thickness_um=5.0,
        # An aqueous-compatible mountant of lower index, the condenser opened further and
        # an achromat's secondary spectrum (whatever the objective).
        tissue_index_excess=0.02,
        condenser_fraction=0.85,
        axial_colour_um=(0.75, 0.0, 0.55),
    ),
    # The `same` lab with an ideal camera: no noise, no vignetting (for tests, ground truth).
    "clean": Protocol(name="clean", stain_od=RUIFROK_HED, noise=False, vignetting=0.0),
}
DEFAULT_PROTOCOL = "same"

#: Not a lab but a draw of labs: ``random_protocol`` gives each slide its own conditions.
RANDOM_PROTOCOL = "random"


def random_protocol(rng: np.random.Generator) -> Protocol:
    """One lab drawn at random (domain randomisation for training data).

    The ranges span what differs between labs' H&E slides and cameras: stain hue
    (each stain vector moved up to 0.2 per channel, then renormalised) and strength,
    lamp colour with or without white balance, exposure, gain and noise, tone curve,
    JPEG, vignetting, the cover glass error behind spherical aberration, the
    section thickness, the mountant (the specimen's phase), the condenser aperture
    (coherence) and the objective's axial colour (an achromat's secondary spectrum, or
    an apochromat's small residue). A model trained on such draws has seen many labs,
    none of them exactly the one it is tested on.

    The condenser fraction is drawn on a 0.05 grid so that labs share OTF tables.
    """

    def stain(vector: tuple[float, float, float]) -> tuple[float, float, float]:
        v = np.clip(np.asarray(vector) + rng.uniform(-0.2, 0.2, size=3), 0.02, None)
        r = np.round(v / np.linalg.norm(v), 4)
        return float(r[0]), float(r[1]), float(r[2])

    return Protocol(
        name=RANDOM_PROTOCOL,
        stain_od=(stain(RUIFROK_HED[0]), stain(RUIFROK_HED[1]), RUIFROK_HED[2]),
        stain_strength=(round(float(rng.uniform(0.6, 1.5)), 3), round(float(rng.uniform(0.5, 1.5)), 3), 1.0),
        illumination_rgb=(1.0, round(float(rng.uniform(0.8, 1.05)), 3), round(float(rng.uniform(0.6, 1.1)), 3)),
        white_level_dn=round(float(rng.uniform(180.0, 245.0)), 1),
        white_electrons=round(float(np.exp(rng.uniform(np.log(1500.0), np.log(12000.0)))), 0),
        read_noise_e=round(float(rng.uniform(2.0, 6.0)), 2),
        gamma=round(float(rng.uniform(0.8, 1.2)), 3),
        jpeg_quality=None if rng.random() < 0.5 else int(rng.integers(70, 96)),
        vignetting=round(float(rng.uniform(0.0, 0.3)), 3),
        coverslip_error_um=round(float(rng.uniform(0.0, 40.0)), 1),
        section_thickness_um=round(float(rng.uniform(2.0, 6.0)), 2),
        tissue_index_excess=round(float(rng.uniform(0.0, 0.03)), 4),
        condenser_fraction=round(0.05 * int(rng.integers(6, 21)), 2),
        axial_colour_um=_random_axial_colour(rng),
    )


def _random_axial_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """R, G, B focus (um) of an achromat (half the draws) or an apochromat, at 20x/0.75's
    depth of field scale (0.96 um)."""
    dof = OBJECTIVES["20x"].depth_of_field_um()
    if rng.random() < 0.5:
        r, b = rng.uniform(0.3, 1.2), rng.uniform(0.2, 1.0)
    else:
        r, b = rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2)
    return (round(float(r * dof), 3), 0.0, round(float(b * dof), 3))


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[str(name)]
    except KeyError:
        raise ConfigError("protocol", f"unknown protocol {name!r}; presets: {', '.join(PROTOCOLS)}") from None
