"""The Stage API: micrometres, machine coordinates, validated before any motion.

This is what the scan loop uses::

    stage = Stage(connection, z_min_um=-7500.0)   # reads $$ once for the travel
    stage.home()                                   # $H; the board is locked until then
    stage.move_to(x_um=-20000.0, y_um=-15000.0)    # blocks until the move is done
    stage.move_by(dz_um=+3.5)                      # ends moving down (backlash-free)
    p = stage.position()                           # Position(x_um, y_um, z_um)
    stage.move_to(z_um=-4000.0, speed_um_s=50.0, wait=False)   # a slow sweep...
    while stage.status().state == "Run": ...       # ...sampled while it runs
    stage.wait_idle()
    stage.release()                                # motors off (M18; stock GRBL: its $1)

**Coordinates** are GRBL machine coordinates in micrometres (protocol.md 6.3): after
homing towards +, every axis lives in ``[-max_travel, 0]``; Z up is +. ``limits_um``
gives the travel of each axis from the board's ``$130``-``$132``.

**Validation before any I/O**: ``move_to`` checks every target against the travel
(``StageLimitError(axis, requested_um, limit_um)``) and Z against the user's safety
limit ``z_min_um`` (``StageLimitError(..., reason="z safety")``) before a byte is sent,
so a rejected move moves nothing. A move on a locked board raises ``NotHomedError``
(from the board's state, or its ``error:9``).

**Backlash-free approach**: every Z move ends moving down (towards -Z, the safe
direction: the overshoot goes up, away from the specimen). A move that would end
going up goes ``approach_um`` (plus the Z backlash given) above the target, then down
to it. Axes given a ``backlash_um`` (host-side backlash, for stock GRBL boards that
have no $140-$142) get the same treatment in X and Y. This works on DeepAf and stock
GRBL boards alike.

**What the stage knows** is what the board reports: ``position()`` and ``status()``
ask the board each time; ``is_homed`` is True once ``home()`` succeeded and the
board has not been locked (alarm, reset) since.

The API:

- ``Stage(connection, *, z_min_um=None, approach_um=20.0, backlash_um=(0, 0, 0))``
- ``home(*, timeout_s=None) -> Position``
- ``move_to(x_um=None, y_um=None, z_um=None, *, speed_um_s=None, wait=True,
  timeout_s=None)``: None leaves an axis where it is; ``speed_um_s`` None is rapid.
- ``move_by(dx_um=0.0, dy_um=0.0, dz_um=0.0, *, speed_um_s=None, wait=True,
  timeout_s=None)``: relative to where the board says the stage is.
- ``wait_idle(*, timeout_s=None)``: until every queued move is done.
- ``position() -> Position``; ``status() -> StatusReport`` (``state``, ``mpos_mm``...).
- ``release()``: motors off (M18) after the queued moves.
- ``stop(*, timeout_s=10.0) -> Position``: feed hold, then a soft reset that forgets
  the queued moves and keeps the position (no alarm).
- ``limits_um`` ({axis: (min, max)}), ``z_min_um``, ``is_homed``, ``is_locked``,
  ``dialect`` ("deepaf" | "grbl"), ``settings`` (``BoardSettings``), ``connection``.

Errors: ``StageLimitError``, ``NotHomedError``, ``ConfigError`` (bad constructor
values), and from the connection ``FirmwareError``, ``FirmwareAlarm``,
``ProtocolTimeout``, ``GarbledReply``, ``ConnectionLost``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from ..errors import (
    ConfigError,
    FirmwareAlarm,
    FirmwareError,
    NotHomedError,
    StageLimitError,
)
from .approach import plan_legs
from .connection import Connection
from .replies import StatusReport

log = logging.getLogger(__name__)

AXES = "xyz"
SYSTEM_LOCKED = 9
#: Stock GRBL's $1 (step idle delay, ms): 255 keeps the motors energised.
GRBL_STEP_IDLE_DELAY = 1
GRBL_KEEP_ENERGISED = 255
#: Most digits a protocol number may have (protocol.md 6.1).
MAX_DIGITS = 9
#: Time allowed for motion on top of the estimate from rates and accelerations.
MOTION_MARGIN_S = 10.0
WAIT_IDLE_DEFAULT_S = 300.0


@dataclass(frozen=True)
class Position:
    """A stage position in micrometres, machine coordinates."""

    x_um: float
    y_um: float
    z_um: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.x_um, self.y_um, self.z_um)


class Stage:
    """The X/Y stage and the Z focus of one board.

    Args:
        connection: an open ``Connection``.
        z_min_um: the lowest Z the host will ever send the objective to (None: the
            bottom of the travel).
        approach_um: how far above a Z target a rising move overshoots before coming
            down to it.
        backlash_um: host-side backlash per axis (x, y, z): added to the overshoot; an
            X or Y axis with backlash is approached from above too.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        z_min_um: float | None = None,
        approach_um: float = 20.0,
        backlash_um: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> None:
        self.connection = connection
        self.settings = connection.settings()
        self._limits = {a: (-self.settings.max_travel_mm[i] * 1000.0, 0.0) for i, a in enumerate(AXES)}
        if not approach_um >= 0 or not math.isfinite(approach_um):
            raise ConfigError("approach_um", f"must be >= 0, not {approach_um!r}")
        if len(backlash_um) != 3 or not all(b >= 0 and math.isfinite(b) for b in backlash_um):
            raise ConfigError("backlash_um", f"must be three values >= 0, not {backlash_um!r}")
        if z_min_um is not None:
            low, high = self._limits["z"]
            if not (math.isfinite(z_min_um) and low <= z_min_um <= high):
                raise ConfigError("z_min_um", f"{z_min_um!r} is outside the Z travel [{low:g}, {high:g}] um")
        self._z_min_um = z_min_um
        self.approach_um = approach_um
        self.backlash_um = tuple(float(b) for b in backlash_um)
        self._homed = False
        self._settled = [False, False, False]
        # Where the host last sent each axis (um), or None when unknown. The reports
        # have 3 (stock GRBL) or 4 decimals; moves relative to this, not to the
        # rounded report, keep sub-micrometre steps from being lost or doubled.
        self._commanded: list[float | None] = [None, None, None]
        idle_delay = self.settings.values.get(GRBL_STEP_IDLE_DELAY)
        if self.dialect == "grbl" and idle_delay is not None and idle_delay != GRBL_KEEP_ENERGISED:
            log.warning(
                "%s: stock GRBL $1=%g de-energises the motors %g ms after every move, so the "
                "focus (and the stage) may drift while the board is idle; send $1=255 to keep "
                "them energised",
                connection.url,
                idle_delay,
                idle_delay,
            )

    # --- what the board says ---------------------------------------------------------

    @property
    def dialect(self) -> str:
        """``"deepaf"`` or ``"grbl"`` (stock GRBL 1.1)."""
        return self.connection.info.dialect

    @property
    def limits_um(self) -> dict[str, tuple[float, float]]:
        """Travel per axis, (min, max) in micrometres of machine coordinates."""
        return dict(self._limits)

    @property
    def z_min_um(self) -> float | None:
        """The user's Z safety limit (None: the bottom of the travel)."""
        return self._z_min_um

    def status(self) -> StatusReport:
        return self.connection.status()

    @property
    def is_locked(self) -> bool:
        """The board is in Alarm (locked until homed or unlocked)."""
        return self.status().base_state == "Alarm"

    @property
    def is_homed(self) -> bool:
        """``home()`` succeeded and the board has not been locked since."""
        if self._homed and self.is_locked:
            self._homed = False
        return self._homed

    def position(self) -> Position:
        """Where the board says the stage is now (its step counters, not a target).
        When the board is idle at the target the host last sent (within the report's
        rounding and a step), the position is that target: within half a step of the
        motors, finer than the 3 or 4 decimals of the report."""
        report = self.status()
        if report.base_state != "Idle":
            return Position(*self._position_of(report))
        return Position(*self._start_of(report))

    # --- motion ----------------------------------------------------------------------

    def home(self, *, timeout_s: float | None = None) -> Position:
        """Home every axis (``$H``) and return the position after the pull-off."""
        timeout = timeout_s or 1.5 * self.settings.homing_time_s() + MOTION_MARGIN_S
        self._homed = False
        self._settled = [False, False, False]
        self._commanded = [None, None, None]
        self.connection.command("$H", timeout_s=timeout)
        self._homed = True
        # Homing towards + ends with a pull-off downwards: the approach is settled.
        self._settled = [not (self.settings.homing_dir_mask >> i & 1) for i in range(3)]
        return self.position()

    def _check_target(self, axis: str, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"{axis}_um must be a finite number, not {value!r}")
        low, high = self._limits[axis]
        if value < low:
            raise StageLimitError(axis, value, low)
        if value > high:
            raise StageLimitError(axis, value, high)
        if axis == "z" and self._z_min_um is not None and value < self._z_min_um:
            raise StageLimitError("z", value, self._z_min_um, reason="z safety")

    def move_to(
        self,
        x_um: float | None = None,
        y_um: float | None = None,
        z_um: float | None = None,
        *,
        speed_um_s: float | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
    ) -> None:
        """Move to the given coordinates (None: that axis stays).

        ``speed_um_s`` None is a rapid move (each axis' maximum rate); a speed makes a
        straight G1 move at that speed (a focus sweep). ``wait=False`` returns once the
        move is queued (``wait_idle()`` waits for it). Raises ``StageLimitError`` or
        ``NotHomedError`` before anything moves."""
        requested = {"x": x_um, "y": y_um, "z": z_um}
        for axis, value in requested.items():
            if value is not None:
                self._check_target(axis, float(value))
        if speed_um_s is not None and not (math.isfinite(speed_um_s) and speed_um_s * 0.06 >= 0.001):
            raise ValueError(f"speed_um_s must be at least 1/60 um/s, not {speed_um_s!r}")
        if all(v is None for v in requested.values()):
            return
        report = self.status()
        if report.base_state not in ("Idle", "Alarm"):
            self.wait_idle(timeout_s=timeout_s)
            report = self.status()
        if report.base_state == "Alarm":
            self._homed = False
            raise NotHomedError("move")
        start = self._start_of(report)
        tx, ty, tz = (start[i] if v is None else float(v) for i, v in enumerate(requested[a] for a in AXES))
        target = (tx, ty, tz)
        sx, sy, sz = self._settled
        legs = plan_legs(start, target, self._overshoot_um(), self._uppers_um(), (sx, sy, sz))
        lines: list[str] = []
        previous = start
        for leg in legs:
            words = [f"{a.upper()}{_mm(leg[i] / 1000.0)}" for i, a in enumerate(AXES) if leg[i] != previous[i]]
            if words:
                # G21 on every line: a board left in inches (G20, or a stock GRBL startup
                # block) must not move 25.4 times too far.
                if speed_um_s is None:
                    lines.append("G21 G53 G90 G0 " + " ".join(words))
                else:
                    lines.append("G21 G53 G90 G1 " + " ".join(words) + f" F{_number(speed_um_s * 0.06)}")
            previous = leg
        if not lines:
            return
        estimate = self._motion_time_s(start, legs, speed_um_s)
        if wait:
            lines.append("G4 P0")
        self._commanded = [None, None, None]  # unknown until the lines are taken
        self._run(lines, "move", timeout_s or estimate + MOTION_MARGIN_S)
        self._commanded = list(target)
        for i in range(3):
            if target[i] != start[i]:
                self._settled[i] = True

    def move_by(
        self,
        dx_um: float = 0.0,
        dy_um: float = 0.0,
        dz_um: float = 0.0,
        *,
        speed_um_s: float | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
    ) -> None:
        """Move relative to the current position: the board is asked where that is,
        and where it agrees with the target last sent (within its report's rounding)
        the move is relative to that target, so ten moves of -0.3 um move -3 um even
        on a board that reports whole micrometres."""
        for name, value in (("dx_um", dx_um), ("dy_um", dy_um), ("dz_um", dz_um)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, not {value!r}")
        report = self.status()
        if report.base_state not in ("Idle", "Alarm"):
            self.wait_idle(timeout_s=timeout_s)
            report = self.status()
        start = self._start_of(report)
        deltas = (dx_um, dy_um, dz_um)
        target = [None if deltas[i] == 0 else round(start[i] + deltas[i], 4) for i in range(3)]
        self.move_to(*target, speed_um_s=speed_um_s, wait=wait, timeout_s=timeout_s)

    def wait_idle(self, *, timeout_s: float | None = None) -> None:
        """Wait until every queued move is done (``G4 P0``)."""
        timeout = timeout_s or WAIT_IDLE_DEFAULT_S
        try:
            self.connection.command("G4 P0", timeout_s=timeout)
        except FirmwareError as exc:
            if exc.code != SYSTEM_LOCKED:
                raise
            # Locked (nothing moves) or jogging (wait for the jog to end).
            deadline = time.monotonic() + timeout
            while self.status().base_state not in ("Idle", "Alarm"):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def release(self) -> None:
        """Release the motors (``M18``, after the queued moves). A locked board cannot
        take ``M18``; it releases them itself after ``$150`` seconds idle. Stock GRBL
        has no ``M18`` (it answers ``error:20``): there the queued moves are waited for
        and the motors follow its ``$1`` (released after each move unless ``$1=255``)."""
        if self.dialect == "grbl":
            self.wait_idle()
            log.info("%s: stock GRBL has no M18; its $1 decides when the motors are released", self.connection.url)
            return
        try:
            self.connection.command("M18", timeout_s=WAIT_IDLE_DEFAULT_S)
        except FirmwareError as exc:
            if exc.code != SYSTEM_LOCKED:
                raise

    def stop(self, *, timeout_s: float = 10.0) -> Position:
        """Stop now and forget queued moves, keeping the position: feed hold, wait for
        the stop, then a soft reset (which then raises no alarm)."""
        self.connection.realtime(b"!")
        deadline = time.monotonic() + timeout_s
        while self.status().state not in ("Hold:0", "Idle", "Alarm") and time.monotonic() < deadline:
            time.sleep(0.005)
        if self.connection.soft_reset() is not None:
            self._homed = False
        self._settled = [False, False, False]
        self._commanded = [None, None, None]
        return self.position()

    # --- helpers -----------------------------------------------------------------------

    def _overshoot_um(self) -> tuple[float, float, float]:
        """How far above its target each axis goes before its final, downward leg: Z
        always, X and Y when they were given a host-side backlash."""
        x, y, z = (b + self.approach_um if b > 0 or i == 2 else 0.0 for i, b in enumerate(self.backlash_um))
        return (x, y, z)

    def _uppers_um(self) -> tuple[float, float, float]:
        x, y, z = (self._limits[a][1] for a in AXES)
        return (x, y, z)

    def _start_of(self, report: StatusReport) -> tuple[float, float, float]:
        """Where a move starts: per axis, the target last sent when the report agrees
        with it within the report's rounding and a step, else the reported position."""
        reported = self._position_of(report)
        half_digit_um = 0.5 if self.dialect == "grbl" else 0.05
        out: list[float] = []
        for i in range(3):
            step_um = 1000.0 / self.settings.steps_per_mm[i]
            target = self._commanded[i]
            if target is not None and abs(target - reported[i]) <= half_digit_um + step_um + 1e-9:
                out.append(target)
            else:
                out.append(reported[i])
        x, y, z = out
        return (x, y, z)

    @staticmethod
    def _position_of(report: StatusReport) -> tuple[float, float, float]:
        if report.mpos_mm is None:
            raise ValueError(f"the status report has no machine position: {report.text!r}")
        x, y, z = (round(v * 1000.0, 4) for v in report.mpos_mm)
        return (x, y, z)

    def _motion_time_s(self, start: tuple[float, ...], legs: list[tuple[float, float, float]], speed_um_s: float | None) -> float:
        total = 0.0
        previous = start
        for leg in legs:
            slowest = 0.0
            for i in range(3):
                distance_mm = abs(leg[i] - previous[i]) / 1000.0
                if distance_mm == 0:
                    continue
                rate = self.settings.max_rate_mm_min[i] / 60.0
                if speed_um_s is not None:
                    rate = min(rate, speed_um_s / 1000.0)
                slowest = max(slowest, distance_mm / rate + 2.0 * rate / self.settings.accel_mm_s2[i])
            total += slowest
            previous = leg
        return 2.0 * total

    def _run(self, lines: list[str], action: str, timeout_s: float) -> None:
        try:
            self.connection.stream(lines, timeout_s=timeout_s)
        except FirmwareError as exc:
            if exc.code == SYSTEM_LOCKED:
                self._homed = False
                raise NotHomedError(action) from exc
            raise
        except FirmwareAlarm:
            self._homed = False
            self._settled = [False, False, False]
            self._commanded = [None, None, None]
            raise


def _number(value: float) -> str:
    """``value`` with at most 4 decimals and no trailing zeros (a protocol number)."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _mm(value: float) -> str:
    """A position in mm with as many decimals as the 9 digits of a protocol number
    allow (at most 7: 0.1 nm), no trailing zeros; a step of 0.0625 um is sent exactly."""
    whole = len(str(int(abs(value))))
    decimals = max(0, min(7, MAX_DIGITS - whole))
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
