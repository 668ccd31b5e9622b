"""The camera interface the scanner uses."""

from __future__ import annotations

import abc
from typing import Literal, Protocol

import numpy as np

FrameMode = Literal["low", "high"]


class PoseSource(Protocol):
    """Something that knows where the stage truly is (a virtual board, the firmware in
    simavr). Used by the virtual camera only: a real camera sees the real stage."""

    def true_position_um(self) -> tuple[float, float, float]:
        """The true stage position (x, y, z) in micrometres, machine coordinates."""
        ...


class Camera(abc.ABC):
    """A camera on the microscope. ``grab`` returns an RGB ``uint8`` array (H, W, 3).

    ``mode="low"`` is the fast low-resolution frame used for tissue detection and
    autofocus (seed 000: 1280x720); ``mode="high"`` is the final tile image
    (seed 000: 4056x3040).
    """

    #: A name for messages and the manifest (device index/path or URL).
    name: str

    #: The light of the low-res (autofocus) frames: the condenser (``koehler``) or seed
    #: 001's LED(s) (``optics.illumination``). A model is refused under other light.
    illumination: str = "koehler"

    @abc.abstractmethod
    def grab(self, mode: FrameMode = "low") -> np.ndarray:
        """Capture one frame. Raises ``CameraError`` when no frame comes."""

    @abc.abstractmethod
    def frame_shape(self, mode: FrameMode = "low") -> tuple[int, int]:
        """(height, width) of the frames ``grab(mode)`` returns."""

    @abc.abstractmethod
    def pixel_size_um(self, mode: FrameMode = "low") -> float:
        """Size of one pixel in the specimen plane, in micrometres (for planning tiles)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device."""

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
