"""Motion maths of the virtual board: trapezoidal velocity profiles and planner blocks.

Pure functions and small value objects, no I/O and no clock: the board asks "where is
the block at time t" and "when does it reach distance s", and schedules its events
from the answers. Units: millimetres along the path, seconds, mm/s, mm/s^2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

AXES = "xyz"
#: Tolerance of the step arithmetic (a fraction of one step).
STEP_EPS = 1e-9

_T = TypeVar("_T")


def vec3(values: Iterable[_T]) -> tuple[_T, _T, _T]:
    """``values`` -- one per axis, exactly three (ValueError otherwise) -- as a 3-tuple."""
    x, y, z = values
    return x, y, z


@dataclass(frozen=True)
class Piece:
    """One piece of constant acceleration: starts at time ``t0`` (relative to the
    profile), distance ``s0``, speed ``v0``; lasts ``dt`` with acceleration ``a``."""

    t0: float
    s0: float
    v0: float
    a: float
    dt: float

    @property
    def s1(self) -> float:
        return self.s0 + self.v0 * self.dt + 0.5 * self.a * self.dt * self.dt

    @property
    def v1(self) -> float:
        return max(0.0, self.v0 + self.a * self.dt)


class Profile:
    """A velocity profile over ``length`` mm made of constant-acceleration pieces."""

    def __init__(self, pieces: list[Piece], length: float) -> None:
        self.pieces = pieces
        self.length = length
        self.duration = pieces[-1].t0 + pieces[-1].dt if pieces else 0.0

    @classmethod
    def trapezoid(cls, length: float, v0: float, v_max: float, v1: float, accel: float) -> Profile:
        """Accelerate from ``v0`` towards ``v_max``, cruise, decelerate to ``v1`` at the
        end of ``length``. When the length is too short to reach ``v1`` from ``v0`` the
        profile ends at the speed it can reach (the planner never asks for that,
        except a feed hold that continues into the next block)."""
        if length <= 0.0:
            return cls([], 0.0)
        v0 = max(0.0, v0)
        v_max = max(v_max, v0, 1e-12)
        reach_end = math.sqrt(v0 * v0 + 2.0 * accel * length)
        v1 = min(max(0.0, v1), v_max, reach_end)
        if v0 * v0 - 2.0 * accel * length > v1 * v1:
            # Cannot slow down to v1 within the length: decelerate all the way.
            v_end = math.sqrt(v0 * v0 - 2.0 * accel * length)
            return cls([Piece(0.0, 0.0, v0, -accel, (v0 - v_end) / accel)], length)
        d_acc = (v_max * v_max - v0 * v0) / (2.0 * accel)
        d_dec = (v_max * v_max - v1 * v1) / (2.0 * accel)
        if d_acc + d_dec > length:
            v_peak = math.sqrt((2.0 * accel * length + v0 * v0 + v1 * v1) / 2.0)
            v_peak = max(v_peak, v0, v1)
            d_acc = (v_peak * v_peak - v0 * v0) / (2.0 * accel)
            d_dec = length - d_acc
            v_max = v_peak
        d_cruise = max(0.0, length - d_acc - d_dec)
        pieces: list[Piece] = []
        t = s = 0.0
        for v_start, a, dt in (
            (v0, accel, (v_max - v0) / accel),
            (v_max, 0.0, d_cruise / v_max if d_cruise > 0.0 else 0.0),
            (v_max, -accel, (v_max - v1) / accel),
        ):
            if dt > 0.0:
                piece = Piece(t, s, v_start, a, dt)
                pieces.append(piece)
                t += dt
                s = piece.s1
        return cls(pieces, length)

    @classmethod
    def stop(cls, v0: float, accel: float, length: float) -> Profile:
        """Decelerate from ``v0`` at once; ends stopped, or at the end of ``length``
        still moving when the length is too short to stop in."""
        if v0 <= 0.0 or length <= 0.0:
            return cls([], 0.0)
        v2 = v0 * v0 - 2.0 * accel * length
        v_end = math.sqrt(v2) if v2 > 0.0 else 0.0
        return cls([Piece(0.0, 0.0, v0, -accel, (v0 - v_end) / accel)], length)

    @property
    def end_speed(self) -> float:
        return self.pieces[-1].v1 if self.pieces else 0.0

    @property
    def end_distance(self) -> float:
        return self.pieces[-1].s1 if self.pieces else 0.0

    def _piece_at(self, t: float) -> Piece | None:
        for piece in reversed(self.pieces):
            if t >= piece.t0:
                return piece
        return None

    def distance(self, t: float) -> float:
        """Distance covered at time ``t`` (clamped to the profile)."""
        if t <= 0.0 or not self.pieces:
            return 0.0
        if t >= self.duration:
            return self.end_distance
        piece = self._piece_at(t)
        if piece is None:
            return 0.0
        dt = t - piece.t0
        return piece.s0 + piece.v0 * dt + 0.5 * piece.a * dt * dt

    def speed(self, t: float) -> float:
        if not self.pieces or t >= self.duration or t < 0.0:
            return 0.0 if (not self.pieces or t >= self.duration) else self.pieces[0].v0
        piece = self._piece_at(t)
        if piece is None:
            return 0.0
        return max(0.0, piece.v0 + piece.a * (t - piece.t0))

    def time_at(self, s: float) -> float | None:
        """The time at which the distance reaches ``s``; None if it never does."""
        if s <= 0.0:
            return 0.0
        for piece in self.pieces:
            if s <= piece.s1 + 1e-12:
                ds = s - piece.s0
                root = piece.v0 * piece.v0 + 2.0 * piece.a * ds
                denominator = piece.v0 + math.sqrt(max(0.0, root))
                if denominator <= 0.0:
                    return piece.t0
                return piece.t0 + min(piece.dt, 2.0 * ds / denominator)
        return None


@dataclass
class Block:
    """One straight move of the motors, as queued in the planner.

    ``steps`` are signed motor steps per axis. ``reported`` is False for the hidden
    backlash take-up blocks: their steps move the motors but never the reported
    position (protocol.md 6.4)."""

    steps: tuple[int, int, int]
    length: float
    unit: tuple[float, float, float]
    v_nominal: float
    accel: float
    kind: str = "line"  # line | jog | homing
    reported: bool = True  # False: a backlash take-up block
    #: For homing blocks: ("close" | "open", axis) -- stop the instant it happens.
    stop_on: tuple[str, int] | None = None
    #: Planner: the highest entry speed the junction with the previous block allows,
    #: and the entry speed planned by the look-ahead (mm/s).
    max_entry: float = 0.0
    entry: float = 0.0

    def steps_at(self, s: float) -> tuple[int, int, int]:
        """Motor steps taken (signed, per axis) once the block has covered ``s`` mm."""
        if self.length <= 0.0 or s >= self.length:
            return self.steps
        f = max(0.0, s) / self.length
        return vec3(int(math.copysign(math.floor(abs(n) * f + STEP_EPS), n)) if n else 0 for n in self.steps)

    def distance_for_steps(self, axis: int, k: int) -> float:
        """Distance along the block at which ``axis`` has taken ``k`` steps (k >= 0)."""
        n = abs(self.steps[axis])
        return self.length * k / n


def make_block(
    steps: tuple[int, int, int],
    steps_per_mm: tuple[float, float, float],
    rate_mm_min: float | None,
    max_rate_mm_min: tuple[float, float, float],
    accel_mm_s2: tuple[float, float, float],
    kind: str = "line",
    reported: bool = True,
) -> Block | None:
    """A block for ``steps``, its speed and acceleration limited per axis as GRBL does
    (the limit along the direction of travel). ``rate_mm_min`` None means rapid.
    Returns None when no motor moves."""
    delta_mm = [steps[i] / steps_per_mm[i] for i in range(3)]
    length = math.sqrt(sum(d * d for d in delta_mm))
    if length == 0.0:
        return None
    unit = vec3(d / length for d in delta_mm)
    rate_limit = _limit_by_axes(unit, tuple(r / 60.0 for r in max_rate_mm_min))
    accel = _limit_by_axes(unit, accel_mm_s2)
    v = rate_limit if rate_mm_min is None else min(rate_mm_min / 60.0, rate_limit)
    return Block(steps, length, unit, v, accel, kind=kind, reported=reported)


def _limit_by_axes(unit: tuple[float, ...], limits: tuple[float, ...]) -> float:
    value = math.inf
    for u, limit in zip(unit, limits):
        if u != 0.0:
            value = min(value, limit / abs(u))
    return value


def junction_speed(prev: Block, nxt: Block, deviation_mm: float) -> float:
    """Maximum speed through the corner between two blocks (GRBL's junction deviation:
    the speed at which a circle deviating ``deviation_mm`` from the corner is driven
    at the acceleration limit), limited by both blocks' nominal speeds."""
    cos_theta = -sum(a * b for a, b in zip(prev.unit, nxt.unit))
    if cos_theta > 0.999999:
        v = 0.0  # reversal
    elif cos_theta < -0.999999:
        v = math.inf  # straight on
    else:
        sin_half = math.sqrt(0.5 * (1.0 - cos_theta))
        accel = min(prev.accel, nxt.accel)
        v = math.sqrt(accel * deviation_mm * sin_half / (1.0 - sin_half))
    return min(v, prev.v_nominal, nxt.v_nominal)


def plan_entries(blocks: list[Block]) -> None:
    """The look-ahead's reverse pass: from the newest block (which must be able to
    stop at its end) back to the oldest, each entry speed is the highest from which
    the rest of the queue can still stop."""
    next_entry = 0.0
    for block in reversed(blocks):
        block.entry = min(block.max_entry, math.sqrt(next_entry * next_entry + 2.0 * block.accel * block.length))
        next_entry = block.entry
