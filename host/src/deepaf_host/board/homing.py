"""The homing cycle of the virtual board (protocol.md 9.1), one axis after another.

Each axis: seek the switch, back off until it opens, locate it again slowly (the step
at which it closes is latched exactly), pull off, and set the position so that the
latched step is machine 0 (homing towards +) or -max_travel (towards -). The cycle
runs its moves on the board's motors and tells the board when it is done or failed.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import codes
from .motion import make_block
from .motors import Event, Motors
from .settings import Settings

A = codes.alarm_number
HOMING_ORDER = (2, 0, 1)  # Z, then X, then Y


def _lround(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


class HomingCycle:
    """Homes ``axes`` in order. ``finish(alarm)`` is called once: alarm None on success."""

    def __init__(
        self,
        axes: list[int],
        motors: Motors,
        settings: Settings,
        backlash: bool,
        finish: Callable[[int | None], None],
    ) -> None:
        self.axes = list(axes)
        self.motors = motors
        self.settings = settings
        self.backlash = backlash
        self.finish = finish
        self.homed: list[int] = []
        self.axis = -1
        self.phase = ""
        self.wait_until: float | None = None
        self.latched = 0

    # --- helpers -------------------------------------------------------------------

    def _direction(self, axis: int) -> int:
        return -1 if int(self.settings[23]) >> axis & 1 else 1

    def _steps(self, axis: int, mm: float) -> int:
        return _lround(mm * self.settings[100 + axis])

    def _move(self, axis: int, steps: int, rate: float, stop_on: tuple[str, int] | None, t: float) -> None:
        vec = [0, 0, 0]
        vec[axis] = steps
        block = make_block(
            tuple(vec),  # type: ignore[arg-type]
            self.settings.axis(100),
            min(rate, self.settings[110 + axis]),
            self.settings.axis(110),
            self.settings.axis(120),
            kind="homing",
        )
        if block is None:
            self._phase_done(t)
            return
        block.stop_on = stop_on
        self.motors.queue_block(block)
        self.motors.start_next(t)

    def _search(self, axis: int) -> float:
        return max(5.0 * self.settings[27], 1.0)

    # --- the cycle -------------------------------------------------------------------

    def start(self, t: float) -> None:
        self._next_axis(t)

    def _next_axis(self, t: float) -> None:
        if not self.axes:
            self.finish(None)
            return
        self.axis = self.axes.pop(0)
        axis, d = self.axis, self._direction(self.axis)
        self.phase = "seek"
        seek = self._steps(axis, 1.5 * self.settings[130 + axis])
        self._move(axis, d * seek, self.settings[25], ("close", axis), t)

    def next_event(self) -> float | None:
        return self.wait_until

    def on_timer(self, t: float) -> None:
        self.wait_until = None
        axis, d = self.axis, self._direction(self.axis)
        if self.phase == "backoff":
            self._move(axis, -d * self._steps(axis, self._search(axis)), self.settings[24], ("open", axis), t)
        elif self.phase == "locate":
            self._move(axis, d * self._steps(axis, self._search(axis)), self.settings[24], ("close", axis), t)

    def on_motion(self, event: Event, t: float) -> None:
        if event.kind == "end" and self.motors.busy:
            self.motors.start_next(t)  # the pull-off after its backlash block
            return
        if self.phase == "seek":
            if event.kind != "stop":
                self._fail(A("HOMING_FAIL_APPROACH"))
                return
            self.phase, self.wait_until = "backoff", t + self.settings[26] / 1000.0
        elif self.phase == "backoff":
            if event.kind != "stop":
                self._fail(A("HOMING_FAIL_PULLOFF"))
                return
            self.phase, self.wait_until = "locate", t + self.settings[26] / 1000.0
        elif self.phase == "locate":
            if event.kind != "stop":
                self._fail(A("HOMING_FAIL_APPROACH"))
                return
            self.latched = self.motors.motor[self.axis]
            self._pull_off(t)
        elif self.phase == "pulloff":
            self._phase_done(t)

    def _pull_off(self, t: float) -> None:
        axis, d = self.axis, self._direction(self.axis)
        self.phase = "pulloff"
        backlash = self._steps(axis, self.settings[140 + axis]) if self.backlash else 0
        if backlash > 0:
            vec = [0, 0, 0]
            vec[axis] = -d * backlash
            block = make_block(
                tuple(vec),  # type: ignore[arg-type]
                self.settings.axis(100),
                self.settings[25],
                self.settings.axis(110),
                self.settings.axis(120),
                kind="backlash",
                reported=False,
            )
            if block is not None:
                self.motors.queue_block(block)
        self._move(axis, -d * self._steps(axis, self.settings[27]), self.settings[25], None, t)

    def _phase_done(self, t: float) -> None:
        if self.phase != "pulloff":
            return
        axis, d = self.axis, self._direction(self.axis)
        if self.motors.closed(axis, self.motors.motor[axis]):
            self._fail(A("HOMING_FAIL_PULLOFF"))
            return
        zero = 0 if d > 0 else -self._steps(axis, self.settings[130 + axis])
        self.motors.set_position(axis, zero - d * self._steps(axis, self.settings[27]))
        self.motors.planned_dir[axis] = self.motors.moved_dir[axis] = -d
        self.homed.append(axis)
        self._next_axis(t)

    def _fail(self, alarm: int) -> None:
        self.motors.flush()
        self.finish(alarm)
