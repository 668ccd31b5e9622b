"""A camera time model for simulated scans and the benchmark.

On the virtual microscope the board's clock runs the motion in simulated time, but
rendering a frame takes no simulated time at all. :class:`TimedCamera` wraps a camera
and spends simulated time per grab, as a real camera would:

``exposure`` -- half of it before the frame is taken and half after (the frame shows
the stage at mid-exposure, and the stage keeps moving meanwhile, which is what a
continuous sweep sees), then ``readout`` (sensor readout, transfer and decode).

Default figures (:data:`PI_HQ_TIMING`), for the Raspberry Pi HQ camera of seed 000
(Sony IMX477) under a brightfield LED:

- low-res 1280x720 frames from the video pipeline at 30 fps: 10 ms exposure and a
  frame every 33 ms, so readout 23 ms;
- high-res 4056x3040 stills: 10 ms exposure; switching the sensor to the full-resolution
  still mode, reading 12.3 Mpixel at the sensor's 10 fps, and switching back take
  about 0.75 s in all on a Raspberry Pi (picamera2 mode switch plus one frame).

These are estimates to make the benchmark's seconds per field comparable with the
anchors (OpenFlexure ~8 s per field for autofocus and capture; seed 002 ~40 s/mm^2);
change them with ``CameraTiming(...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..camera.base import Camera, FrameMode


@dataclass(frozen=True)
class CameraTiming:
    """Seconds a grab takes, per mode."""

    low_exposure_s: float = 0.010
    low_readout_s: float = 0.023
    high_exposure_s: float = 0.010
    high_readout_s: float = 0.740

    def exposure_s(self, mode: FrameMode) -> float:
        return self.low_exposure_s if mode == "low" else self.high_exposure_s

    def readout_s(self, mode: FrameMode) -> float:
        return self.low_readout_s if mode == "low" else self.high_readout_s


PI_HQ_TIMING = CameraTiming()


class TimedCamera(Camera):
    """``camera`` whose grabs take simulated time on ``sleep``'s clock."""

    def __init__(self, camera: Camera, sleep: Callable[[float], None], timing: CameraTiming = PI_HQ_TIMING) -> None:
        self.camera = camera
        self.sleep = sleep
        self.timing = timing
        self.name = camera.name
        self.illumination = camera.illumination

    @property
    def frame_delay_s(self) -> float:
        """From the grab call to the middle of the low-res frame's exposure (see the sweep)."""
        return self.timing.low_exposure_s / 2

    def grab(self, mode: FrameMode = "low") -> np.ndarray:
        half = self.timing.exposure_s(mode) / 2
        self.sleep(half)
        frame = self.camera.grab(mode)
        self.sleep(half + self.timing.readout_s(mode))
        return frame

    def frame_shape(self, mode: FrameMode = "low") -> tuple[int, int]:
        return self.camera.frame_shape(mode)

    def pixel_size_um(self, mode: FrameMode = "low") -> float:
        return self.camera.pixel_size_um(mode)

    def close(self) -> None:
        self.camera.close()


