"""The virtual board: protocol.md in Python, with a clock and ground truth.

``VirtualBoard`` wraps the protocol machine (``machine.py``) with a clock and a lock,
so that a serial port object (``sim://``, see ``urlhandler/protocol_sim.py``), a
pseudo-terminal server (``pty.py``) and a virtual camera (through
``true_position_um()``) can share it from several threads.

Clock: ``speed=1.0`` runs in real time, ``speed=N`` N times faster, ``speed="max"``
is event driven: nothing sleeps; when a reader waits for bytes the clock jumps to the
board's next event (end of a move, of a dwell, of the boot...). ``jump=True`` adds
those jumps to a running clock (``speed=N``), like a simulator that runs as fast as it
can. With jumps, every byte on the wire also takes its 115200-baud transmission time,
so polling advances the clock as it would on a real line.

Ground truth (what the protocol cannot tell): ``motor_steps()``, ``set_switch()``,
``seconds()``, ``true_position_um()``.

Stage errors (all off by default, so that the stage lands exactly where it is sent):
``play_um`` (backlash: lost motion when an axis reverses), ``repeat_um`` (repeatability:
every move of an axis leaves it off by a fresh Gaussian error of this standard
deviation) and ``skew_deg`` (the Y axis is not square to X). They act only on
``true_position_um()`` -- what the camera sees -- never on what the board reports.
``STAGE_ERRORS["leadscrew"]`` holds values typical of a GRBL stage with lead screws
(``sim://?errors=leadscrew``); host/docs/calibrate/README.md says where they come from.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import weakref
from typing import Any

import numpy as np

from ..protocol_tables import BAUD_RATE, SETTINGS
from .machine import Machine
from .motion import vec3

BAUD = BAUD_RATE
BYTE_S = 10.0 / BAUD
_DEFAULT = {s.field: s.default for s in SETTINGS if s.field}  # the DeepAf defaults by firmware field
#: Physical steps per mm of the reference build (protocol.md section 8 defaults).
REFERENCE_STEPS_PER_MM = (_DEFAULT["steps_per_mm[0]"], _DEFAULT["steps_per_mm[1]"], _DEFAULT["steps_per_mm[2]"])
#: Travel of the reference build (the $130-$132 defaults).
REFERENCE_TRAVEL_MM = (_DEFAULT["max_travel[0]"], _DEFAULT["max_travel[1]"], _DEFAULT["max_travel[2]"])
#: Default limit switches (motor steps from power-up, towards +): homing from power-up
#: finds them after 10 mm (X, Y) and 2 mm (Z).
DEFAULT_SWITCHES = ((8000, "+"), (8000, "+"), (32000, "+"))

#: Named sets of stage errors (``VirtualBoard`` keywords), ``sim://?errors=NAME``.
#: "leadscrew": a manual microscope stage driven through couplers by GRBL steppers on
#: lead screws with anti-backlash nuts, the fine-focus knob through a belt: 20 um of
#: play in X and Y, 4 um in Z; 2 um (X, Y) and 0.2 um (Z) repeatability (one standard
#: deviation, one direction of approach); Y 0.3 degrees off square to X.
STAGE_ERRORS: dict[str, dict[str, Any]] = {
    "none": {"play_um": (0.0, 0.0, 0.0), "repeat_um": (0.0, 0.0, 0.0), "skew_deg": 0.0},
    "leadscrew": {"play_um": (20.0, 20.0, 4.0), "repeat_um": (2.0, 2.0, 0.2), "skew_deg": 0.3},
}

_registry: weakref.WeakValueDictionary[str, VirtualBoard] = weakref.WeakValueDictionary()
_names = itertools.count(1)


def find_board(name: str) -> VirtualBoard | None:
    """The live board called ``name`` (the NAME of ``sim://NAME``), if any."""
    return _registry.get(name)


class VirtualBoard:
    """A virtual DeepAf board (or, with ``dialect="grbl"``, a stock GRBL 1.1 one).

    Args:
        speed: 1.0 = real time, N = N times faster, "max" = event driven.
        jump: with a numeric speed, also jump to the next event when a reader waits.
        dialect: "deepaf" or "grbl" (stock GRBL 1.1 banner, ``$I`` and settings; no
            DeepAf extensions, no firmware backlash).
        boot_s: time from a reset to the banner; bytes sent meanwhile are lost, as with
            the Uno's bootloader.
        switches: per axis (motor step, side); the switch reads closed at or beyond the
            step towards the side.
        play_um: mechanical backlash (lost motion) between each motor and the stage, in
            micrometres; only ``true_position_um()`` sees it.
        steps_per_mm: the physical steps per mm of the mechanics (the board's $100-$102
            are what the firmware believes).
        repeat_um: repeatability per axis (x, y, z), micrometres: the standard deviation of
            the error each move of an axis leaves (a new draw per move, from
            ``error_seed``); only ``true_position_um()`` sees it.
        skew_deg: the Y axis is this many degrees off square to X (towards -X): a move
            of +d in Y carries the stage by (-d sin, d cos); only ``true_position_um()``.
        error_seed: seed of the repeatability errors.
        name: registers the board as ``sim://NAME``; a name is made up when omitted.
    """

    def __init__(
        self,
        *,
        speed: float | str = 1.0,
        jump: bool = False,
        dialect: str = "deepaf",
        boot_s: float = 0.3,
        switches: tuple[tuple[int, str], ...] = DEFAULT_SWITCHES,
        play_um: tuple[float, float, float] = (0.0, 0.0, 0.0),
        steps_per_mm: tuple[float, float, float] = REFERENCE_STEPS_PER_MM,
        repeat_um: tuple[float, float, float] = (0.0, 0.0, 0.0),
        skew_deg: float = 0.0,
        error_seed: int = 0,
        name: str | None = None,
    ) -> None:
        if speed != "max" and (isinstance(speed, str) or not speed > 0):
            raise ValueError(f"speed must be a positive number or 'max', not {speed!r}")
        if boot_s < 0:
            raise ValueError(f"boot_s must be >= 0, not {boot_s!r}")
        for label, values in (("play_um", play_um), ("repeat_um", repeat_um)):
            if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values):
                raise ValueError(f"{label} must be three values >= 0 (x, y, z), not {values!r}")
        if not (math.isfinite(skew_deg) and abs(skew_deg) < 45):
            raise ValueError(f"skew_deg must be within +-45 degrees, not {skew_deg!r}")
        self.name = name or f"board-{next(_names)}"
        if self.name in _registry:
            raise ValueError(f"a virtual board called {self.name!r} exists already")
        self.speed = speed
        self.dialect = dialect
        self.steps_per_mm = tuple(float(s) for s in steps_per_mm)
        play = vec3(round(p / 1000.0 * s) for p, s in zip(play_um, self.steps_per_mm))
        self._cond = threading.Condition(threading.RLock())
        self._rate = 0.0 if speed == "max" else float(speed)
        self._jump = speed == "max" or jump
        self._offset = 0.0
        self._t0 = time.monotonic()
        self._machine = Machine(dialect, boot_s, play, list(switches))
        self.play_um = tuple(float(p) for p in play_um)
        self.repeat_um = tuple(float(r) for r in repeat_um)
        self.skew_deg = float(skew_deg)
        self.error_seed = int(error_seed)
        self._errors: dict[tuple[int, int], float] = {}
        _registry[self.name] = self

    @property
    def url(self) -> str:
        """The pyserial URL that opens this board (``sim://NAME``)."""
        return f"sim://{self.name}"

    # --- clock --------------------------------------------------------------------

    def _now(self) -> float:
        return self._offset + (time.monotonic() - self._t0) * self._rate

    def _skip_to(self, t: float) -> None:
        now = self._now()
        if t > now:
            self._offset += t - now

    def _sync(self) -> Machine:
        machine = self._machine
        machine.advance(self._now())
        return machine

    def seconds(self) -> float:
        """Board time since it was created, in seconds."""
        with self._cond:
            return self._sync().t

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of board time pass (for a camera's exposure, a settle time)."""
        if self._jump:
            with self._cond:
                self._skip_to(self._now() + seconds)
                self._sync()
                self._cond.notify_all()
        else:
            time.sleep(seconds / self._rate)

    # --- the wire -----------------------------------------------------------------

    def reset(self) -> None:
        """A DTR reset, as opening the Uno's port does."""
        with self._cond:
            machine = self._sync()
            machine.power_reset(machine.t)
            self._cond.notify_all()

    def write(self, data: bytes) -> None:
        with self._cond:
            if self._jump:
                self._skip_to(self._now() + len(data) * BYTE_S)
            self._sync().receive(bytes(data))
            self._cond.notify_all()

    def in_waiting(self) -> int:
        with self._cond:
            return len(self._sync().out)

    def read(self, size: int, timeout_s: float | None) -> bytes:
        """Up to ``size`` bytes; waits at most ``timeout_s`` (None: forever) for the
        first one. Under the event-driven clock the wait is board time."""
        with self._cond:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            goal = None if timeout_s is None else self._now() + timeout_s
            while True:
                machine = self._sync()
                if machine.out:
                    break
                due = machine.next_event()
                if self._jump and due is not None and (goal is None or due <= goal):
                    self._skip_to(due)
                    continue
                if self._rate == 0.0:
                    if goal is None:
                        self._cond.wait()
                        continue
                    # Nothing happens before the goal: let the time pass at once. When
                    # nothing is pending at all, give other threads a moment.
                    self._skip_to(goal)
                    if due is None and not self._sync().out:
                        self._cond.wait(min(timeout_s or 0.0, 0.001))
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                wait = remaining
                if due is not None:
                    until_due = max(0.0, (due - self._now()) / self._rate)
                    wait = until_due if wait is None else min(wait, until_due)
                self._cond.wait(wait)
            machine = self._sync()
            data = bytes(machine.out[:size])
            del machine.out[:size]
            if self._jump:
                self._skip_to(self._now() + len(data) * BYTE_S)
            return data

    def discard_output(self) -> None:
        with self._cond:
            self._sync().out.clear()

    def corrupt_next_reply(self) -> None:
        """Line noise: the next ``ok``/``error:N`` the board sends arrives garbled."""
        with self._cond:
            self._machine.corrupt_next = True

    # --- ground truth -------------------------------------------------------------

    def motor_steps(self) -> tuple[int, int, int]:
        """True motor positions in steps, backlash steps included."""
        with self._cond:
            motor, _, _ = self._sync().motors.live(self._machine.t)
            return motor

    def set_switch(self, axis: str, step: int, side: str = "+") -> None:
        """Place the limit switch of ``axis`` ("x", "y", "z"): closed while the motor is
        at or beyond ``step`` towards ``side`` ("+" or "-")."""
        if axis not in ("x", "y", "z") or side not in ("+", "-"):
            raise ValueError(f"bad switch {axis!r} {side!r}")
        index = "xyz".index(axis)
        with self._cond:
            machine = self._sync()
            motors = machine.motors
            was_closed = index in motors.closed_axes(machine.t)
            motors.switches[index] = (int(step), side)
            motors.switches_changed(machine.t)
            closes = not was_closed and index in motors.closed_axes(machine.t)
            # The pin-change interrupt: a hard limit unless homing, locked or booting.
            quiet = machine.homing or machine.locked or machine.critical or machine.booting_until is not None
            if closes and motors.hard_limits and not quiet:
                motors.stop_now(machine.t)
                machine.hard_limit()
            self._cond.notify_all()

    def switches(self) -> list[tuple[int, str]]:
        with self._cond:
            return list(self._machine.motors.switches)

    def true_position_um(self) -> tuple[float, float, float]:
        """Where the stage truly is, in micrometres of machine coordinates: relative to
        the machine zero that homing sets from the limit switches, through the
        mechanical play. This is the PoseSource the virtual camera follows."""
        with self._cond:
            machine = self._sync()
            _, stage, _ = machine.motors.live(machine.t)
            out = []
            for i in range(3):
                step, _ = machine.motors.switches[i]
                mm = (stage[i] - step) / self.steps_per_mm[i]
                if int(machine.settings[23]) >> i & 1:
                    mm -= machine.settings[130 + i]
                out.append(mm * 1000.0)
            if self.skew_deg:
                s = math.radians(self.skew_deg)
                out[0], out[1] = out[0] - out[1] * math.sin(s), out[1] * math.cos(s)
            for i in range(3):
                if self.repeat_um[i]:
                    out[i] += self.repeat_um[i] * self._unit_error(i, machine.motors.moves[i])
            return (round(out[0], 6), round(out[1], 6), round(out[2], 6))

    def _unit_error(self, axis: int, move: int) -> float:
        """The standard normal repeatability draw of ``axis`` after its ``move``-th move."""
        key = (axis, move)
        e = self._errors.get(key)
        if e is None:
            if len(self._errors) > 4096:
                self._errors.clear()
            e = self._errors[key] = float(np.random.default_rng([self.error_seed, axis, move]).standard_normal())
        return e

    def state(self) -> str:
        """The state a status report would show now (Idle, Run, Alarm, ...)."""
        with self._cond:
            return self._sync().state()

    def settings(self) -> dict[int, float]:
        with self._cond:
            return dict(self._machine.settings.values)

    def eeprom(self) -> bytearray:
        """The EEPROM image (mutable: tests corrupt it to check the boot messages)."""
        return self._machine.eeprom
