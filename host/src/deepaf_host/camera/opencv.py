"""A real camera through OpenCV's VideoCapture (USB/UVC webcams, V4L2 devices, files).

``OpenCVCamera(0)`` opens the first device, ``OpenCVCamera("/dev/video2")`` a device by
path, ``OpenCVCamera("run.mp4")`` replays a video file (looping; handy for tests and
demos without hardware). Each frame mode has its own resolution (seed 000: low
1280x720 for tissue detection and autofocus, high 4056x3040 for the tile); switching
mode re-negotiates the resolution and discards ``warmup_frames`` frames, because most
USB cameras deliver a few stale or badly exposed frames after a change. Frames come
back RGB (OpenCV delivers BGR).

The specimen-plane pixel size cannot be read from a camera: it is the sensor pixel
pitch divided by the total magnification, so it is passed in (calibrate it once with a
stage micrometer, or move the stage by a known distance and measure the image shift).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from ..errors import CameraError
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
        self._resolutions = dict(DEFAULT_RESOLUTIONS if resolutions is None else resolutions)
        if set(self._resolutions) != {"low", "high"}:
            raise CameraError(self.name, f"resolutions needs exactly the modes 'low' and 'high', got {sorted(self._resolutions)}")
        self._pixel_size_low_um = pixel_size_um
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
        # Fail now, not in the middle of a scan, when the device gives no picture.
        self._configure("low")

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
        low_w = self.frame_shape("low")[1]
        return self._pixel_size_low_um * low_w / self.frame_shape(mode)[1]

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
        if self._is_file and frame.shape[:2] != (height, width):
            log.info("camera %s: file frames are %s, not the %s mode's %sx%s", self.name, frame.shape[:2], mode, width, height)

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
