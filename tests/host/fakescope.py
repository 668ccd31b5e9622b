"""A tiny microscope with real state for unit tests of the autofocus logic.

The stage keeps its position and a clock; a Z move at a set speed takes time on that
clock, and the camera advances the clock by its frame time, so a sweep sees the stage
move. The camera blurs a real IHC image by a Gaussian whose width grows with the
distance to the focal plane (the virtual microscope of deepaf_host does real optics;
this is only for testing control logic quickly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from deepaf_host.camera.base import Camera, FrameMode
from skimage import data


@dataclass
class Pos:
    x_um: float
    y_um: float
    z_um: float


@dataclass
class Status:
    base_state: str


class FakeStage:
    def __init__(self, z_um: float = -4000.0, z_min_um: float = -8000.0) -> None:
        self.t = 0.0
        self.x, self.y, self.z = -30000.0, -20000.0, z_um
        self.z_min_um = z_min_um
        self.moves: list[tuple[float, float, float]] = []
        self._sweep: tuple[float, float, float, float] | None = None  # t0, z0, z1, speed
        self.fail_after_moves: int | None = None
        self.homed = False
        self.released = False

    def home(self) -> None:
        self.t += 5.0
        self.x, self.y, self.z = -1000.0, -1000.0, -1000.0
        self.homed = True

    def release(self) -> None:
        self.released = True

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s

    def _z_now(self) -> float:
        if self._sweep is None:
            return self.z
        t0, z0, z1, v = self._sweep
        z = z0 + np.sign(z1 - z0) * v * (self.t - t0)
        if (z1 - z0) * (z - z1) >= 0:
            self.z, self._sweep = z1, None
            return z1
        return float(z)

    def position(self) -> Pos:
        return Pos(self.x, self.y, self._z_now())

    def move_to(self, x_um: float | None = None, y_um: float | None = None, z_um: float | None = None,
                *, speed_um_s: float | None = None, wait: bool = True) -> None:
        x_um = self.x if x_um is None else x_um
        y_um = self.y if y_um is None else y_um
        z_um = self.z if z_um is None else z_um
        if speed_um_s is not None and not wait:
            self.start_move_z(z_um, speed_um_s)
            return
        if self.fail_after_moves is not None and len(self.moves) >= self.fail_after_moves:
            raise ConnectionError("cable pulled")
        if z_um < self.z_min_um:
            raise ValueError("below the Z safety limit")
        self.wait_idle()
        self.t += abs(z_um - self.z) / 1000.0 + np.hypot(x_um - self.x, y_um - self.y) / 10000.0
        self.x, self.y, self.z = x_um, y_um, z_um
        self.moves.append((x_um, y_um, z_um))

    def start_move_z(self, z_um: float, speed_um_s: float) -> None:
        self.wait_idle()
        self._sweep = (self.t, self.z, z_um, speed_um_s)
        self.moves.append((self.x, self.y, z_um))

    def status(self) -> Status:
        self._z_now()
        return Status("Idle" if self._sweep is None else "Run")

    def wait_idle(self) -> None:
        if self._sweep is not None:
            t0, z0, z1, v = self._sweep
            self.t = max(self.t, t0 + abs(z1 - z0) / v)
            self._z_now()


class FakeCamera(Camera):
    name = "fake"

    def __init__(self, stage: FakeStage, focus_z_um: float, frame_s: float = 0.05, blank: bool = False,
                 blank_where: Callable[[float, float], bool] | None = None) -> None:
        img = data.immunohistochemistry()[128:384, 128:384]
        self.glass = np.full_like(img, 235)
        self.sharp = self.glass if blank else img
        self.blank_where = blank_where
        self.stage = stage
        self.focus_z_um = focus_z_um
        self.frame_s = frame_s
        self.grabs = 0
        self.rng = np.random.default_rng(3)

    def grab(self, mode: FrameMode = "low") -> np.ndarray:
        z_a = self.stage.position().z_um
        self.stage.t += self.frame_s
        z_b = self.stage.position().z_um
        self.grabs += 1
        dz = abs((z_a + z_b) / 2 - self.focus_z_um)
        sigma = 0.3 + 0.8 * dz
        blank = self.blank_where is not None and self.blank_where(self.stage.x, self.stage.y)
        sharp = self.glass if blank else self.sharp
        out = cv2.GaussianBlur(sharp.astype(np.float32), (0, 0), sigma)
        out += self.rng.normal(0, 1.5, out.shape).astype(np.float32)
        return np.clip(out, 0, 255).astype(np.uint8)

    def frame_shape(self, mode: FrameMode = "low") -> tuple[int, int]:
        return (256, 256)

    def pixel_size_um(self, mode: FrameMode = "low") -> float:
        return 0.5

    # The fake's ground truth (``deepaf_host.sim.Truth``): an exact stage, a flat focus.
    def true_focus_z_um(self, x_um: float, y_um: float) -> float:
        return self.focus_z_um

    def true_xy_um(self) -> tuple[float, float]:
        return (self.stage.x, self.stage.y)

    def true_defocus_um(self) -> float:
        return self.stage.position().z_um - self.focus_z_um
