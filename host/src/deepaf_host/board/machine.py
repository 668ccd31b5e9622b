"""The line handlers of the virtual board: G-code, jogs, ``$`` commands, homing.

``Machine`` adds to ``MachineCore`` (core.py, the state and main loop) what the
firmware's gcode.c / system.c do: parse, validate everything, then execute. Each line
runs as a generator (see core.py): it yields what it waits for and returns its reply
code.
"""

from __future__ import annotations

from .. import codes
from .core import OK, MachineCore, Task
from .fixed import f32, lround, report_e4
from .gcode import (
    MAX_AXIS_MM,
    GBlock,
    clean,
    parse,
    parse_number,
    validate_gcode,
    validate_jog,
)
from .homing import HOMING_ORDER, home_axis
from .motion import Block, make_block, vec3
from .reports import BUILD_INFO, HELP

E = codes.error_number
LOCKED = E("SYSTEM_LOCKED")
#: What ``_target`` returns on a stock GRBL board for a soft-limit violation: ALARM:2.
GRBL_SOFT_LIMIT = -2


class Machine(MachineCore):
    """The virtual board's protocol machine: ``MachineCore`` and the line handlers."""

    def _plan(self, steps: list[int], feed: float, kind: str) -> list[Block]:
        """The blocks of a move to ``steps``: a backlash take-up block first when an
        axis reverses (DeepAf only), then the move."""
        spm = self.settings.axis(100)
        rates, accels = self.settings.axis(110), self.settings.axis(120)
        rate = feed if feed > 0 else None
        delta = [steps[i] - self.motors.planned[i] for i in range(3)]
        take_up = [0, 0, 0]
        for i in range(3):
            direction = (delta[i] > 0) - (delta[i] < 0)
            last = self.motors.planned_dir[i]
            if self.deepaf and direction and last and direction != last:
                take_up[i] = direction * lround(f32(self.settings[140 + i] * spm[i]))
        blocks = []
        for vec, reported in ((take_up, False), (delta, True)):
            block = make_block(vec3(vec), spm, rate, rates, accels, kind, reported=reported)
            if block is not None:
                blocks.append(block)
        return blocks

    def _queue_move(self, steps: list[int], feed: float, kind: str) -> None:
        for block in self._plan(steps, feed, kind):
            self.motors.queue_block(block, self.t)
        self.gc_pos = list(steps)
        if self.motors.busy:
            self.drivers = True
        self.motors.start_next(self.t)

    def _target(self, block: GBlock, absolute: bool, soft_limit_error: int) -> list[int] | int:
        """Steps of a move, or the error code (the firmware's compute_target, float for
        float). A relative move adds its own rounded steps to the last target, so
        whole-step moves never drift."""
        spm = self.settings.axis(100)
        steps = [0, 0, 0]
        for a in range(3):
            s = f32(float(self.gc_pos[a]))  # the target, for the range check
            v = 0.0  # steps of the axis word
            relative = False
            if a in block.axes_mm:
                v = f32(block.axes_mm[a] * spm[a])
                relative = block.nonmodal != "G53" and not absolute
                if block.nonmodal != "G53" and absolute:
                    v = f32(v + f32(f32(f32(float(self.g92[a])) * spm[a]) / 10000.0))
                s = f32(s + v) if relative else v
            if abs(s) > 2.0e9 or abs(f32(s / spm[a])) > MAX_AXIS_MM:
                return E("VALUE_OUT_OF_RANGE")
            if a not in block.axes_mm:
                steps[a] = self.gc_pos[a]
            elif relative:
                steps[a] = self.gc_pos[a] + lround(v)
            else:
                steps[a] = lround(v)
        if self.settings.flag(20):
            travel = self.settings.axis(130)
            for a in range(3):
                if steps[a] > 0 or steps[a] < -lround(f32(travel[a] * spm[a])):
                    return soft_limit_error
        return steps

    # --- lines --------------------------------------------------------------------------

    def _line(self, line: str | int) -> Task:
        if isinstance(line, int):
            return line
        text = clean(line)
        if not text:
            return OK
        if text[0] == "$":
            return (yield from self._system(text[1:]))
        return (yield from self._gcode(text))

    def _gcode(self, text: str) -> Task:
        if self.locked or self.state() == "Jog":
            return LOCKED
        block = parse(text, grbl=not self.deepaf)
        if isinstance(block, int):
            return block
        error = validate_gcode(block)
        if error is not None:
            return error
        inches = block.inches if block.inches is not None else self.inches
        if inches:  # stock GRBL in G20: every value of the line is in inches
            _to_mm(block)
        motion = block.motion if block.motion is not None else self.motion
        absolute = block.absolute if block.absolute is not None else self.absolute
        feed = block.f if block.f is not None else self.feed
        moving = bool(block.axes) and block.nonmodal != "G92"
        offset = list(self.g92)
        steps: list[int] = []
        if moving:
            if motion == 1 and feed <= 0:
                return E("UNDEFINED_FEED_RATE")
            result = self._target(block, absolute, E("SOFT_LIMIT") if self.deepaf else GRBL_SOFT_LIMIT)
            if result == GRBL_SOFT_LIMIT:
                self._critical_alarm(codes.alarm_number("SOFT_LIMIT", "grbl"))
                return None
            if isinstance(result, int):
                return result
            steps = result
        if block.nonmodal == "G92":
            for a, value in block.axes.items():
                offset[a] = report_e4(self.gc_pos[a], self.settings[100 + a]) - value
                if abs(offset[a]) > MAX_AXIS_MM * 10000:
                    return E("VALUE_OUT_OF_RANGE")
        elif block.nonmodal == "G92.1":
            offset = [0, 0, 0]
        # Every check passed: execute.
        if moving:
            yield ("room",)
            if self._aborted():
                return LOCKED
        if block.m == 17:
            self.drivers = True
            self.idle_since = self.t  # enabled now: idle from now on
        if block.nonmodal == "G4":
            yield ("idle",)
            if not self._aborted():
                yield ("until", self.t + lround(f32((block.p or 0.0) * 1000.0)) / 1000.0)
            if self._aborted():
                return LOCKED
        self.feed, self.motion, self.absolute, self.g92 = feed, motion, absolute, offset
        self.inches = inches
        if moving:
            self._queue_move(steps, 0.0 if motion == 0 else feed, "line")
        if block.m == 18:
            yield ("idle",)
            if self._aborted():
                return LOCKED
            self.drivers = False
        return OK

    def _jog(self, text: str) -> Task:
        block = parse(text, jog=True, grbl=not self.deepaf)
        if isinstance(block, int):
            return block
        if block.inches if block.inches is not None else self.inches:
            _to_mm(block)  # as stock GRBL: the jog takes the line's or the modal units
        error = validate_jog(block)
        if error is not None:
            return error
        absolute = block.absolute if block.absolute is not None else self.absolute
        result = self._target(block, absolute, E("JOG_TRAVEL_EXCEEDED"))
        if isinstance(result, int):
            return result
        yield ("room",)
        if self._aborted():
            return LOCKED
        self._queue_move(result, block.f or 0.0, "jog")
        return OK

    def _system(self, cmd: str) -> Task:
        idle = self.state() in ("Idle", "Alarm")
        if cmd == "":
            self._emit(HELP[self.dialect])
            return OK
        if cmd.startswith("J="):
            if self.state() not in ("Idle", "Jog"):
                return E("NOT_IDLE")
            return (yield from self._jog(cmd[2:]))
        if cmd == "I":
            for line in BUILD_INFO[self.dialect]:
                self._emit(line)
            return OK
        if cmd == "G":
            drivers = ("M17" if self.drivers else "M18") if self.deepaf else "M5 M9 T0"
            self._emit(f"[GC:G{self.motion} G54 G17 G{20 if self.inches else 21} G{90 if self.absolute else 91} G94 {drivers} F{lround(self.feed)}]")
            return OK
        if cmd == "#":
            self._emit("[G92:" + ",".join(self._pos(v) for v in self.g92) + "]")
            return OK
        if cmd[:1].isdigit():
            return self._setting(cmd, idle)
        axes = {"H": list(HOMING_ORDER), "HX": [0], "HY": [1], "HZ": [2]}.get(cmd)
        if axes is None and cmd not in ("$", "X", "RST=$"):
            return E("INVALID_STATEMENT")
        if not idle:
            return E("NOT_IDLE")
        if axes is not None:
            if not self.settings.flag(22):
                return E("HOMING_DISABLED")
            return (yield from self._home(axes))
        if cmd == "$":
            for number in sorted(self.settings.specs):
                self._emit(self.settings.format(number, self.decimals))
        elif cmd == "X":
            if self.locked:
                self._emit("[MSG:Caution: Unlocked]")
                self.locked = False
        else:
            self.settings.restore_defaults()
            self._save_settings()
            self._emit("[MSG:Restoring defaults]")
            self._apply_settings()
            self._sync_gcode_position()
        return OK

    def _setting(self, cmd: str, idle: bool) -> int:
        digits = len(cmd) - len(cmd.lstrip("0123456789"))
        number = int(cmd[:digits])
        if number > 999 or cmd[digits : digits + 1] != "=":
            return E("INVALID_STATEMENT")
        if not idle:
            return E("NOT_IDLE")
        value = parse_number(cmd[digits + 1 :])
        if value is None:
            return E("BAD_NUMBER_FORMAT")
        error = self.settings.assign(number, value)
        if error is not None:
            return error
        self._save_settings()
        self._apply_settings()
        self._sync_gcode_position()
        return OK

    def _home(self, axes: list[int]) -> Task:
        self.homing = True
        self._apply_settings()
        self.drivers = True
        alarm = None
        for axis in HOMING_ORDER:
            if axis in axes:
                alarm = yield from home_axis(self, axis)
                if alarm is not None:
                    break
                self.homed[axis] = True
        self.homing = False
        self._apply_settings()
        self._sync_gcode_position()
        if alarm is not None:
            self._alarm(alarm)
            return E("HOMING_FAILED") if self.deepaf else OK
        if all(self.homed):
            self.locked = False
        return OK


def _to_mm(block: GBlock) -> None:
    """A stock GRBL line in G20: its axis values and feed from inches to mm."""
    for a in block.axes_mm:
        block.axes_mm[a] = f32(block.axes_mm[a] * 25.4)
        block.axes[a] = lround(block.axes[a] * 25.4)
    if block.f is not None:
        block.f = f32(block.f * 25.4)
