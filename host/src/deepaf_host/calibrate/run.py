"""The calibration sequence: what moves, what is grabbed, in which order.

1. **Focus** at a place on tissue (``at_um``): broad stack, then Brent's search.
2. **Pixel size and rotation** (``xy``): a chain of jogs along X, then one along Y, each
   about a third of the field, every jog in the same direction (-) after taking up the
   backlash, each frame registered on the one before by phase correlation. The chain's
   offsets add up: the stage's error at every intermediate stop cancels, so over a few
   millimetres the pixel size comes out to a small fraction of a percent and the angle
   to a few hundredths of a degree even on a stage with micrometres of repeatability
   error. Then jogs that reverse (the lost motion of X and Y) and a short chain of
   high-resolution frames (their pixel size).
3. **Z backlash** (``z``): the same focus peak approached from below, plane by plane
   going up, and from above going down; the peak is fitted on many planes each time, and
   the difference of the two is the lost motion (repeated, averaged).
4. **Flat field** (``flat``): blank glass (``glass_um``, or searched for around the
   tissue), frames a field apart: the median of the high-res frames is the flat field,
   the median of the low-res ones the blank image that calibrates tissue detection.

Nothing here knows whether it talks to the virtual microscope.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..camera.base import Camera, FrameMode
from ..errors import DeepAfError
from ..focus import measures
from ..tissue import DEFAULT_THRESHOLDS, TissueThresholds, looks_blank, tissue_fraction, tissue_mask
from .focus import find_focus
from .measure import MIN_RESPONSE, CameraAxes, along, axis_vector, corner_falloff, fit_peak, flat_field, image_shift

STEPS = ("xy", "z", "flat")

#: Progress callback: (step, done, total).
Progress = Callable[[str, int, int], None]


class CalibrationError(DeepAfError):
    """A calibration step could not measure what it measures; ``step`` names it."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"calibration ({step}): {reason}")


@dataclass
class CalibrationPlan:
    """Where and how much to measure."""

    at_um: tuple[float, float]
    z_start_um: float
    dof_um: float
    glass_um: tuple[float, float] | None = None
    steps: tuple[str, ...] = STEPS
    x_travel_um: float = 3000.0
    y_travel_um: float = 2000.0
    jog_fraction: float = 0.35
    high_jogs: int = 4
    reversals: int = 4
    z_range_dof: float = 4.0
    z_step_dof: float = 0.25
    z_repeats: int = 2
    #: Take-up before each chain and sweep: more than the largest backlash expected.
    take_up_um: float = 60.0
    flat_frames: int = 5
    measure: str = "laplacian"
    settle_s: float = 0.0
    thresholds: TissueThresholds = DEFAULT_THRESHOLDS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.steps) - set(STEPS))
        if unknown or not self.steps:
            raise CalibrationError("plan", f"steps are {', '.join(STEPS)}, not {', '.join(unknown) or 'none'}")
        if not 0.05 <= self.jog_fraction <= 0.45:
            raise CalibrationError("plan", f"jog_fraction must be 0.05-0.45 of the field, not {self.jog_fraction}")


@dataclass
class Calibration:
    """What a calibration measured (None: that step did not run)."""

    at_um: tuple[float, float]
    focus_z_um: float
    axes: CameraAxes | None = None
    chain_um: tuple[float, float] | None = None
    min_response: float | None = None
    xy_backlash_um: tuple[float, float] | None = None
    high_pixel_size_um: float | None = None
    z_backlash_um: float | None = None
    z_backlash_runs_um: list[float] = field(default_factory=list)
    board_backlash_um: tuple[float, float, float] | None = None
    glass_um: tuple[float, float] | None = None
    flat: np.ndarray | None = None
    blank: np.ndarray | None = None
    frames: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        a = self.axes
        return {
            "at_um": list(self.at_um), "focus_z_um": round(self.focus_z_um, 3),
            "pixel_size_um": None if a is None else round(a.pixel_size_um, 6),
            "pixel_size_x_um": None if a is None else round(a.pixel_size_x_um, 6),
            "pixel_size_y_um": None if a is None else round(a.pixel_size_y_um, 6),
            "rotation_deg": None if a is None else round(a.rotation_deg, 4),
            "skew_deg": None if a is None else round(a.skew_deg, 4),
            "chain_um": None if self.chain_um is None else list(self.chain_um),
            "min_response": self.min_response,
            "xy_backlash_um": None if self.xy_backlash_um is None else [round(v, 2) for v in self.xy_backlash_um],
            "high_pixel_size_um": None if self.high_pixel_size_um is None else round(self.high_pixel_size_um, 6),
            "z_backlash_um": None if self.z_backlash_um is None else round(self.z_backlash_um, 3),
            "z_backlash_runs_um": [round(v, 3) for v in self.z_backlash_runs_um],
            "board_backlash_um": None if self.board_backlash_um is None else list(self.board_backlash_um),
            "glass_um": None if self.glass_um is None else list(self.glass_um),
            "corner_falloff": None if self.flat is None else round(corner_falloff(self.flat), 4),
            "frames": self.frames, "seconds": round(self.seconds, 1),
        }


class _Session:
    """The devices and the books of one calibration."""

    def __init__(self, stage: Any, camera: Camera, plan: CalibrationPlan, sleep: Callable[[float], None],
                 clock: Callable[[], float], progress: Progress | None) -> None:
        self.stage, self.camera, self.plan = stage, camera, plan
        self.sleep, self.clock = sleep, clock
        self.progress = progress
        self.frames = 0
        self.score_fn = measures.get(plan.measure)

    def tell(self, step: str, done: int, total: int) -> None:
        if self.progress is not None:
            try:
                self.progress(step, done, total)
            except Exception:  # noqa: BLE001 - a broken progress display never stops a calibration
                pass

    def grab(self, mode: FrameMode = "low") -> np.ndarray:
        if self.plan.settle_s > 0:
            self.sleep(self.plan.settle_s)
        self.frames += 1
        return self.camera.grab(mode)

    def move(self, **axes: float) -> None:
        self.stage.move_to(**axes)

    def fov_um(self, mode: FrameMode) -> tuple[float, float]:
        h, w = self.camera.frame_shape(mode)
        p = self.camera.pixel_size_um(mode)
        return w * p, h * p


def run_calibration(
    stage: Any,
    camera: Camera,
    plan: CalibrationPlan,
    *,
    raw_stage: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> Calibration:
    """Run the steps of ``plan`` on a homed stage. ``raw_stage`` moves Z straight to its
    target (no overshoot: a ``Stage`` with ``approach_um=0``), for the Z backlash sweeps
    from below; ``stage`` is the scanner's, whose moves end going down."""
    s = _Session(stage, camera, plan, sleep, clock, progress)
    t0 = clock()
    x, y = plan.at_um
    s.tell("focus", 0, 1)
    s.move(x_um=x, y_um=y, z_um=plan.z_start_um)
    frame = s.grab()
    fraction = tissue_fraction(tissue_mask(frame, plan.thresholds))
    if fraction < 0.2:
        raise CalibrationError("focus", f"({x / 1000:g}, {y / 1000:g}) mm shows {fraction:.0%} tissue; calibrate "
                                        "needs a place on tissue (--at X,Y in mm)")
    z_focus, n = find_focus(stage, camera, plan.z_start_um, plan.dof_um, sleep=sleep, clock=clock)
    s.frames += n
    s.tell("focus", 1, 1)
    result = Calibration(at_um=(x, y), focus_z_um=z_focus)
    if "xy" in plan.steps:
        _xy(s, result)
        s.move(x_um=x, y_um=y, z_um=z_focus)
    if "z" in plan.steps:
        _z_backlash(s, raw_stage if raw_stage is not None else stage, result)
    if "flat" in plan.steps:
        _flat(s, result)
    settings = getattr(stage, "settings", None)
    board = getattr(settings, "backlash_mm", None)
    result.board_backlash_um = None if board is None else tuple(round(v * 1000.0, 3) for v in board)
    s.move(x_um=x, y_um=y, z_um=z_focus)
    result.frames = s.frames
    result.seconds = clock() - t0
    return result


# --- pixel size, rotation, XY backlash -----------------------------------------------


def _chain(s: _Session, axis: str, start_um: float, jog_um: float, jogs: int, mode: FrameMode, step: str,
           done: int, total: int) -> tuple[list[float], list[tuple[float, float]], float, np.ndarray]:
    """Jogs of -``jog_um`` along ``axis`` from ``start_um`` (approached from +); returns
    the moves, the frame offsets, the weakest correlation response and the last frame."""
    s.move(**{f"{axis}_um": start_um + s.plan.take_up_um})
    s.move(**{f"{axis}_um": start_um})
    prev = s.grab(mode)
    moves: list[float] = []
    shifts: list[tuple[float, float]] = []
    weakest = 1.0
    for k in range(jogs):
        s.move(**{f"{axis}_um": start_um - (k + 1) * jog_um})
        frame = s.grab(mode)
        du, dv, response = image_shift(prev, frame)
        if response < MIN_RESPONSE:
            pos = s.stage.position()
            raise CalibrationError(step, f"frames {k} and {k + 1} of the {axis.upper()} chain do not match (response "
                                         f"{response:.3f}) near ({pos.x_um / 1000:.3f}, {pos.y_um / 1000:.3f}) mm: glass or "
                                         "too little texture there; choose --at on tissue with a few mm of tissue towards -X and -Y")
        weakest = min(weakest, response)
        moves.append(-jog_um)
        shifts.append((du, dv))
        prev = frame
        s.tell(step, done + k + 1, total)
    return moves, shifts, weakest, prev


def _xy(s: _Session, result: Calibration) -> None:
    plan = s.plan
    x, y = plan.at_um
    fov_w, fov_h = s.fov_um("low")
    jog_x, jog_y = plan.jog_fraction * fov_w, plan.jog_fraction * fov_h
    nx = max(2, math.ceil(plan.x_travel_um / jog_x))
    ny = max(2, math.ceil(plan.y_travel_um / jog_y))
    hw, _ = s.fov_um("high")
    total = nx + ny + plan.reversals * 2 + plan.high_jogs
    x0, y0 = x + nx * jog_x / 2, y + ny * jog_y / 2  # the chains are centred on at_um
    s.move(y_um=y)
    mx, sx, rx, last = _chain(s, "x", x0, jog_x, nx, "low", "xy", 0, total)
    vx = axis_vector(mx, sx)
    bx = _reversals(s, "x", x0 - nx * jog_x, jog_x, vx, last, nx + ny, total)
    s.move(x_um=x)
    my, sy, ry, last = _chain(s, "y", y0, jog_y, ny, "low", "xy", nx, total)
    vy = axis_vector(my, sy)
    by = _reversals(s, "y", y0 - ny * jog_y, jog_y, vy, last, nx + ny + plan.reversals, total)
    result.axes = CameraAxes(vx, vy)
    result.chain_um = (round(nx * jog_x, 1), round(ny * jog_y, 1))
    result.min_response = round(min(rx, ry), 4)
    result.xy_backlash_um = (bx, by)
    if plan.high_jogs > 0:
        s.move(y_um=y)
        jog_h = plan.jog_fraction * hw
        mh, sh, _, _ = _chain(s, "x", x + plan.high_jogs * jog_h / 2, jog_h, plan.high_jogs, "high", "xy",
                              total - plan.high_jogs, total)
        result.high_pixel_size_um = 1.0 / math.hypot(*axis_vector(mh, sh))


def _reversals(s: _Session, axis: str, at_um: float, jog_um: float, vector: tuple[float, float], frame: np.ndarray,
               done: int, total: int) -> float:
    """Lost motion of ``axis``: jogs that reverse the direction each time fall short of
    the jog by it (the stage is at ``at_um``, having come from +)."""
    estimates: list[float] = []
    prev = frame
    pos = at_um
    for k in range(s.plan.reversals):
        sign = 1.0 if k % 2 == 0 else -1.0
        pos += sign * jog_um
        s.move(**{f"{axis}_um": pos})
        f = s.grab()
        du, dv, response = image_shift(prev, f)
        if response >= MIN_RESPONSE:
            estimates.append(jog_um - sign * along(vector, (du, dv)))
        prev = f
        s.tell("xy", done + k + 1, total)
    if not estimates:
        raise CalibrationError("xy", f"no reversal jog of {axis.upper()} could be registered")
    return float(np.mean(estimates))


# --- Z backlash ----------------------------------------------------------------------


def _z_backlash(s: _Session, raw: Any, result: Calibration) -> None:
    plan = s.plan
    half, step = plan.z_range_dof * plan.dof_um, plan.z_step_dof * plan.dof_um
    planes = int(round(2 * half / step)) + 1
    # A sweep goes on past its planned end while its best plane is among the last ones
    # (the lost motion moves the peak: from below it shows up to the take-up later).
    tail = max(3, math.ceil(1.5 * plan.dof_um / step))
    longest = planes + math.ceil(plan.take_up_um / step)
    z0 = result.focus_z_um
    x, y = plan.at_um
    s.move(x_um=x, y_um=y, z_um=z0)
    total = plan.z_repeats * 2 * planes
    done = 0
    runs: list[float] = []
    for _ in range(plan.z_repeats):
        peaks = []
        for direction in (+1, -1):
            first = z0 - direction * half
            raw.move_to(z_um=float(first - direction * plan.take_up_um))
            zs: list[float] = []
            scores: list[float] = []
            while len(zs) < planes or (int(np.argmax(scores)) >= len(zs) - tail and len(zs) < longest):
                z = round(first + direction * step * len(zs), 4)
                raw.move_to(z_um=z)
                zs.append(z)
                scores.append(s.score_fn(measures.gray(s.grab())))
                done += 1
                s.tell("z", min(done, total), total)
            peak = fit_peak(zs, scores)
            if peak is None:
                way = "below" if direction > 0 else "above"
                raise CalibrationError("z", f"no focus peak between z = {min(zs):.2f} and {max(zs):.2f} um approached from {way}")
            peaks.append(peak)
        runs.append(peaks[0] - peaks[1])
    result.z_backlash_runs_um = runs
    result.z_backlash_um = float(np.mean(runs))
    s.move(z_um=z0)


# --- flat field ----------------------------------------------------------------------


def _is_glass(frame: np.ndarray, thresholds: TissueThresholds) -> bool:
    """Glass by the tissue test, or featureless (a lamp that is not white-balanced makes
    glass look stained to the default thresholds, which the blank frame is for)."""
    return tissue_fraction(tissue_mask(frame, thresholds)) < 0.002 or looks_blank(frame)


def _glass_candidates(s: _Session) -> list[tuple[float, float]]:
    if s.plan.glass_um is not None:
        return [s.plan.glass_um]
    x, y = s.plan.at_um
    (x_lo, x_hi), (y_lo, y_hi) = s.stage.limits_um["x"], s.stage.limits_um["y"]
    out = []
    for r in (3000.0, 6000.0, 9000.0, 12000.0, 16000.0, 20000.0, 25000.0):
        for dx, dy in ((r, 0.0), (-r, 0.0), (0.0, r), (0.0, -r)):
            if x_lo + 1000 <= x + dx <= x_hi - 1000 and y_lo + 1000 <= y + dy <= y_hi - 1000:
                out.append((x + dx, y + dy))
    return out


def _flat(s: _Session, result: Calibration) -> None:
    plan = s.plan
    candidates = _glass_candidates(s)
    glass = None
    for i, (gx, gy) in enumerate(candidates):
        s.tell("flat", i, len(candidates) + plan.flat_frames)
        s.move(x_um=gx, y_um=gy)
        if _is_glass(s.grab(), plan.thresholds):
            glass = (gx, gy)
            break
    if glass is None:
        where = "--glass" if plan.glass_um is not None else f"{len(candidates)} places around the tissue"
        raise CalibrationError("flat", f"no blank glass at {where}: give --glass X,Y (mm) on clean glass")
    fov_w, fov_h = s.fov_um("high")
    lows, highs = [], []
    for k in range(plan.flat_frames):
        # Frames a field apart: dirt on the slide moves between them, the light's shading does not.
        dx = (k - (plan.flat_frames - 1) / 2) * 1.05 * fov_w
        s.move(x_um=glass[0] + dx, y_um=glass[1])
        low = s.grab()
        if not _is_glass(low, plan.thresholds):
            continue
        lows.append(low)
        highs.append(s.grab("high"))
        s.tell("flat", len(candidates) + k + 1, len(candidates) + plan.flat_frames)
    if len(highs) < max(1, (plan.flat_frames + 1) // 2):
        raise CalibrationError("flat", f"only {len(highs)} of {plan.flat_frames} frames near "
                                       f"({glass[0] / 1000:g}, {glass[1] / 1000:g}) mm were blank glass")
    result.glass_um = glass
    result.flat = flat_field(highs)
    result.blank = np.median(np.asarray(lows), axis=0).astype(np.uint8)
