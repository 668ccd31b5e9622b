"""The virtual camera: renders what the camera would see at the stage's true position.

``VirtualCamera`` follows a ``PoseSource`` (the virtual board, or the firmware in simavr
through its ``pos`` command) and renders a ``VirtualSlide`` with the optics simulator
(``deepaf_host.optics``): low-resolution 1280 x 720 and high-resolution 4056 x 3040
frames of the Raspberry Pi HQ camera of seed 000 by default.

URL (``--camera sim://...``)::

    sim://[objective][?key=value&...]

    objective          4x | 10x | 20x (default) | 40x
    protocol           same (default) | diff | clean
    seed               slide seed (default 0): tissue, focal surface
    specimen           procedural (default) | ihc | <folder of in-focus images>
    specimen_pixel_um  specimen size of one image pixel for ihc/folders (default 0.5)
    relay              relay magnification (default 1.36)
    low, high          frame size WxH of each mode (same field; default 1280x720, 4056x3040)
    noise              0 to switch camera noise off
    white_dn           digital number of clear glass (the lab's exposure; above 255 the
                       camera clips: an over-exposed lab), default the protocol's
    noise_seed         seed of the camera noise sequence (default: the slide seed)
    illumination       koehler (default) | off-axis | off-axis-line: the low-resolution
                       (autofocus) frames lit by seed 001's coherent LED(s) instead of
                       the condenser; high-resolution frames stay under the condenser,
                       as a scanner switches its LED off to capture the tile
    rotation_deg       the camera turned on its mount by this angle (default 0): machine +X
                       appears in the image at this angle from the +column axis, towards
                       +row; a camera put on by hand sits 1-2 degrees off
                       (``TYPICAL_ROTATION_DEG``)

For example ``sim://20x?protocol=diff&seed=3`` or ``sim://4x?specimen=ihc``.

Image orientation: column index grows with machine +X, row index with machine +Y (turned
by ``rotation_deg`` when given); the frame centre images the slide point at the stage
(x, y). ``true_focus_z_um(x, y)``
(tests and benchmarks only) is the stage z at which (x, y) is in focus.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np

from ..errors import CameraError, ConfigError
from ..optics.illumination import DEFAULT_ILLUMINATION, check_leds, get_illumination
from ..optics.presets import (
    CAMERA_MODES,
    DEFAULT_OBJECTIVE,
    DEFAULT_RELAY,
    SENSOR_PIXEL_UM,
    CameraMode,
    get_objective,
    get_protocol,
)
from ..optics.render import Renderer
from ..optics.slide import VirtualSlide
from ..optics.specimen import load_specimen
from .base import Camera, FrameMode, PoseSource

_URL_KEYS = {
    "protocol", "seed", "specimen", "specimen_pixel_um", "relay", "low", "high", "noise", "noise_seed", "white_dn",
    "rotation_deg", "illumination",
}

#: How far a camera put on a trinocular port by hand typically sits turned (degrees):
#: the value to give ``rotation_deg`` for a realistic set-up.
TYPICAL_ROTATION_DEG = 1.5


def _mode_with_size(name: str, size: tuple[int, int] | None) -> CameraMode:
    """A camera mode of ``size`` (W, H) seeing the same field width as the full sensor."""
    base = CAMERA_MODES[name]
    if size is None:
        return base
    w, h = size
    return CameraMode(name, w, h, SENSOR_PIXEL_UM * 4056 / w)


class VirtualCamera(Camera):
    """A camera on the virtual microscope, rendering the slide at ``pose_source``'s position."""

    def __init__(
        self,
        pose_source: PoseSource,
        *,
        objective: str = DEFAULT_OBJECTIVE,
        protocol: str = "same",
        seed: int = 0,
        specimen: str = "procedural",
        specimen_pixel_um: float = 0.5,
        relay: float = DEFAULT_RELAY,
        low_size: tuple[int, int] | None = None,
        high_size: tuple[int, int] | None = None,
        noise: bool = True,
        noise_seed: int | None = None,
        white_dn: float | None = None,
        rotation_deg: float = 0.0,
        illumination: str = DEFAULT_ILLUMINATION,
        slide: VirtualSlide | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or f"sim://{objective}?protocol={protocol}&seed={seed}&specimen={specimen}"
        try:
            self.objective = get_objective(objective)
            proto = get_protocol(protocol)
            if not noise:
                proto = proto.with_(noise=False)
            if white_dn is not None:
                proto = proto.with_(white_level_dn=float(white_dn))
            self.protocol = proto
            self.illumination = illumination
            leds = get_illumination(illumination)
            check_leds(leds, self.objective.na)
            #: The lab of each mode: the autofocus frames under the LED(s), if any.
            self._mode_protocol = {"low": proto.with_(led_na=leds), "high": proto}
            self.slide = slide if slide is not None else VirtualSlide(seed, load_specimen(specimen, seed, specimen_pixel_um))
        except ConfigError as exc:
            raise CameraError(self.name, str(exc)) from exc
        if not (math.isfinite(rotation_deg) and abs(rotation_deg) <= 45.0):
            raise CameraError(self.name, f"rotation_deg must be within +-45 degrees, got {rotation_deg!r}")
        self.rotation_deg = float(rotation_deg)
        self._rotated: dict[str, Renderer] = {}
        self._pose = pose_source
        self._modes = {"low": _mode_with_size("low", low_size), "high": _mode_with_size("high", high_size)}
        self._relay = float(relay)
        self._renderers: dict[str, Renderer] = {}
        self._noise_seed = int(seed if noise_seed is None else noise_seed)
        self._frames = 0
        self._closed = False

    @classmethod
    def from_url(cls, url: str, pose_source: PoseSource) -> VirtualCamera:
        """``sim://[objective][?key=value&...]`` (see the module docstring)."""
        parts = urlsplit(url)
        if parts.scheme != "sim":
            raise CameraError(url, "a virtual camera URL starts with sim://")
        kwargs: dict[str, Any] = {"name": url}
        preset = unquote(parts.netloc + parts.path).strip("/")
        if preset:
            kwargs["objective"] = preset
        try:
            for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)):
                if key not in _URL_KEYS:
                    raise CameraError(url, f"unknown option {key!r}; known: {', '.join(sorted(_URL_KEYS))}")
                if key in ("protocol", "specimen", "illumination"):
                    kwargs[key] = value
                elif key in ("seed", "noise_seed"):
                    kwargs[key] = int(value)
                elif key == "rotation_deg":
                    kwargs[key] = float(value)
                elif key in ("specimen_pixel_um", "relay", "white_dn"):
                    kwargs[key] = float(value)
                    if not kwargs[key] > 0:
                        raise CameraError(url, f"{key} must be positive, got {value!r}")
                elif key in ("low", "high"):
                    w, h = (int(v) for v in value.lower().split("x"))
                    if w < 8 or h < 8:
                        raise CameraError(url, f"{key} frame size must be at least 8x8, got {value!r}")
                    kwargs[f"{key}_size"] = (w, h)
                elif key == "noise":
                    kwargs["noise"] = value not in ("0", "false", "no", "off")
        except ValueError as exc:
            raise CameraError(url, f"malformed option: {exc}") from exc
        return cls(pose_source, **kwargs)

    # --- Camera interface -------------------------------------------------------------

    def _renderer(self, mode: str) -> Renderer:
        if mode not in ("low", "high"):
            raise CameraError(self.name, f"mode must be 'low' or 'high', got {mode!r}")
        r = self._renderers.get(mode)
        if r is None:
            # Layer spectra of recent positions: ~20 MB each at low resolution, ~150 MB
            # at high resolution (keep two).
            cache_mb = 256.0 if mode == "low" else 320.0
            r = Renderer(self.objective, self._modes[mode], self._mode_protocol[mode], relay=self._relay, cache_mb=cache_mb)
            self._renderers[mode] = r
        return r

    def grab(self, mode: FrameMode = "low") -> np.ndarray:
        if self._closed:
            raise CameraError(self.name, "the camera is closed")
        renderer = self._renderer(mode)
        x, y, z = self._pose.true_position_um()
        rng = np.random.default_rng([self._noise_seed, self._frames])
        self._frames += 1
        if not self.rotation_deg:
            return renderer.render(self.slide, x, y, z, rng)
        return renderer.camera(self._rotated_optics(mode, x, y, z), rng)[0]

    def _rotated_optics(self, mode: str, x: float, y: float, z: float) -> np.ndarray:
        """The blurred transmission (1, 3, H, W) of a camera turned by ``rotation_deg``:
        a larger axis-aligned field rendered, turned and cut to the frame."""
        import cv2

        h, w = self._modes[mode].shape
        a = math.radians(self.rotation_deg)
        c, s = math.cos(a), math.sin(a)
        big = self._rotated.get(mode)
        if big is None:
            bh = int(math.ceil(h * abs(c) + w * abs(s))) + 4
            bw = int(math.ceil(w * abs(c) + h * abs(s))) + 4
            big = Renderer(self.objective, self._modes[mode], self._mode_protocol[mode], relay=self._relay, shape=(bh, bw),
                           cache_mb=256.0 if mode == "low" else 320.0)
            self._rotated[mode] = big
        optical = big.optical_stack(self.slide, x, y, [z])
        bh, bw = big.shape
        # Frame pixel (u, v) from the centre shows the slide at p * R(-a) (u, v): machine
        # +X runs along (cos a, sin a) in (column, row).
        cx, cy, bx, by = (w - 1) / 2.0, (h - 1) / 2.0, (bw - 1) / 2.0, (bh - 1) / 2.0
        m = np.array([[c, s, bx - c * cx - s * cy], [-s, c, by + s * cx - c * cy]], dtype=np.float64)
        out = np.empty((1, 3, h, w), dtype=np.float32)
        for ch in range(3):
            cv2.warpAffine(optical[0, ch], m, (w, h), dst=out[0, ch], flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
        return out

    def frame_shape(self, mode: FrameMode = "low") -> tuple[int, int]:
        if mode not in ("low", "high"):
            raise CameraError(self.name, f"mode must be 'low' or 'high', got {mode!r}")
        return self._modes[mode].shape

    def pixel_size_um(self, mode: FrameMode = "low") -> float:
        return self._renderer(mode).pixel_um

    def close(self) -> None:
        self._closed = True
        for r in (*self._renderers.values(), *self._rotated.values()):
            r.clear_cache()

    # --- ground truth (tests and benchmarks only) -------------------------------------

    def true_focus_z_um(self, x_um: float, y_um: float) -> float:
        """Stage z at which the slide at stage (x, y) is in focus. Not for autofocus."""
        return float(self.slide.focus_z_um(x_um, y_um))

    def true_xy_um(self) -> tuple[float, float]:
        """Where the stage truly is in X/Y (with the board's simulated errors), which is
        where the frame was taken: the truth the stitcher's registration is scored on."""
        x, y, _ = self._pose.true_position_um()
        return float(x), float(y)

    def true_defocus_um(self) -> float:
        """Signed defocus z - focus at the current pose (positive: objective too far)."""
        x, y, z = self._pose.true_position_um()
        return z - self.true_focus_z_um(x, y)
