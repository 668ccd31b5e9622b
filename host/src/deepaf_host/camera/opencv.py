"""A real camera through OpenCV's VideoCapture (USB/UVC webcams, V4L2 devices, files).

``OpenCVCamera(0)`` opens the first device, ``OpenCVCamera("/dev/video2")`` a device by
path, ``OpenCVCamera("run.mp4")`` replays a video file (looping; handy for tests and
demos without hardware). Each frame mode has its own resolution (default, seed 000:
low 1280x720 for tissue detection and autofocus, high 4056x3040 for the tile; the CLI's
``--low-size``/``--high-size``); switching mode re-negotiates the resolution and
discards ``warmup_frames`` frames, because most USB cameras deliver a few stale or badly
exposed frames after a change. Frames come back RGB (OpenCV delivers BGR).

A device that delivers another size than the one asked for is refused
(``FrameSizeError``): drivers silently fall back to a size they support, and a frame at
another pixel scale than the scan assumes would mislead tissue detection, tile planning
and a single-shot model alike. A video file replays the size it was recorded at; it is
held to a size only when that mode's size was asked for explicitly.

The specimen-plane pixel size cannot be read from a camera: it is the sensor pixel
pitch divided by the total magnification, so it is passed in (calibrate it once with a
stage micrometer, or move the stage by a known distance and measure the image shift).
``pixel_size_width`` says at which frame width that pixel size holds (every mode sees
the same field, so a frame half as wide has pixels twice as large); None: the low-res
frame as delivered.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ..errors import CameraError, FrameSizeError
from .base import Camera, FrameMode

log = logging.getLogger(__name__)

#: (width, height) per mode, seed 000.
DEFAULT_RESOLUTIONS: dict[str, tuple[int, int]] = {"low": (1280, 720), "high": (4056, 3040)}


class OpenCVCamera(Camera):
    """A camera opened with ``cv2.VideoCapture`` by device index, device path or file."""

    def __init__(
        self,
        source: int | str,
        *,
        pixel_size_um: float | None = None,
        resolutions: dict[str, tuple[int, int]] | None = None,
        pixel_size_width: int | None = None,
        warmup_frames: int = 3,
        exposure_ms: float | None = None,
        read_attempts: int = 3,
    ) -> None:
        if warmup_frames < 0 or read_attempts < 1:
            raise CameraError(str(source), f"warmup_frames must be >= 0 and read_attempts >= 1, got {warmup_frames}, {read_attempts}")
        if pixel_size_um is not None and not pixel_size_um > 0:
            raise CameraError(str(source), f"pixel_size_um must be positive, got {pixel_size_um}")
        self.name = str(source)
        self._source = source
        self._is_file = isinstance(source, str) and Path(source).is_file()
        if isinstance(source, str) and not self._is_file and not Path(source).exists():
            raise CameraError(self.name, "no such device or file")
        requested = dict(resolutions or {})
        if not set(requested) <= {"low", "high"}:
            raise CameraError(self.name, f"resolutions takes the modes 'low' and 'high', got {sorted(requested)}")
        for mode, size in requested.items():
            if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
                raise CameraError(self.name, f"the {mode} resolution must be two positive integers (width, height), got {size!r}")
        if pixel_size_width is not None and not pixel_size_width > 0:
            raise CameraError(self.name, f"pixel_size_width must be positive, got {pixel_size_width}")
        #: Modes whose size was asked for explicitly (a video file is held to them too).
        self._explicit = frozenset(requested)
        self._resolutions = {**DEFAULT_RESOLUTIONS, **requested}
        self._pixel_size_low_um = pixel_size_um
        self._pixel_size_width = pixel_size_width
        self._warmup_frames = warmup_frames
        self._read_attempts = read_attempts
        self._shapes: dict[str, tuple[int, int]] = {}
        self._mode: str | None = None
        #: Whether the device accepted the requested exposure (None: none requested).
        self.exposure_applied: bool | None = None

        self._cap = cv2.VideoCapture(source)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(self.name, "cannot open the camera (is it connected, and not in use by another program?)")
        if exposure_ms is not None:
            self.exposure_applied = self._set_exposure(exposure_ms)
        # Fail now, not in the middle of a scan, when the device gives no picture (or
        # not the size asked for).
        try:
            self._configure("low")
        except BaseException:
            self._cap.release()
            raise

    # --- Camera interface -------------------------------------------------------------

    def grab(self, mode: FrameMode = "low") -> np.ndarray:
        self._check_mode(mode)
        if self._mode != mode:
            self._configure(mode)
        return self._read(mode)

    def frame_shape(self, mode: FrameMode = "low") -> tuple[int, int]:
        self._check_mode(mode)
        if mode not in self._shapes:
            current = self._mode
            self._configure(mode)
            if current is not None and current != mode:
                self._configure(current)
        return self._shapes[mode]

    def pixel_size_um(self, mode: FrameMode = "low") -> float:
        self._check_mode(mode)
        if self._pixel_size_low_um is None:
            raise CameraError(
                self.name,
                "the specimen-plane pixel size is unknown: pass pixel_size_um (sensor pitch / magnification)",
            )
        # Both modes see the same field: the pixel size scales with the frame width.
        reference_w = self._pixel_size_width or self.frame_shape("low")[1]
        return self._pixel_size_low_um * reference_w / self.frame_shape(mode)[1]

    def close(self) -> None:
        self._cap.release()

    # --- private I/O ------------------------------------------------------------------

    @staticmethod
    def _check_mode(mode: str) -> None:
        if mode not in ("low", "high"):
            raise ValueError(f"mode must be 'low' or 'high', got {mode!r}")

    def _set_exposure(self, exposure_ms: float) -> bool:
        if not exposure_ms > 0:
            raise CameraError(self.name, f"exposure_ms must be positive, got {exposure_ms}")
        if self._is_file:
            return False
        # V4L2: auto exposure 1 = manual; the absolute exposure is in units of 100 us.
        self._cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)
        ok = bool(self._cap.set(cv2.CAP_PROP_EXPOSURE, exposure_ms * 10.0))
        if not ok:
            log.warning("camera %s does not allow setting the exposure; using its own", self.name)
        return ok

    def _configure(self, mode: str) -> None:
        width, height = self._resolutions[mode]
        if not self._is_file:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        for _ in range(self._warmup_frames):
            self._cap.grab()
        self._mode = mode
        frame = self._read(mode, record_shape=True)
        delivered = (int(frame.shape[1]), int(frame.shape[0]))
        if delivered != (width, height):
            if not self._is_file or mode in self._explicit:
                raise FrameSizeError(self.name, mode, (width, height), delivered)
            log.info("camera %s: file frames are %sx%s, not the %s mode's %sx%s", self.name, *delivered, mode, width, height)

    def _read(self, mode: str, record_shape: bool = False) -> np.ndarray:
        for _ in range(self._read_attempts):
            ok, frame = self._cap.read()
            if not ok and self._is_file:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # loop a recording
                ok, frame = self._cap.read()
            if ok and frame is not None and frame.size:
                rgb = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
                if record_shape or mode not in self._shapes:
                    self._shapes[mode] = (int(rgb.shape[0]), int(rgb.shape[1]))
                return rgb
        raise CameraError(self.name, f"returned no frame in {self._read_attempts} attempts ({mode} mode)")
