"""The protocol state machine of the virtual board (protocol.md, sections 3-10).

``Machine`` is told the time by its caller (``advance(t)``, ``receive(data)`` at the
current time) and answers with bytes in ``out`` and the time of its next event. It
holds the real state: settings and their EEPROM image, lock and homed flags, alarms,
the G-code modal state (positions in 1e-4 mm, as the firmware keeps them), the receive
buffer, the line being executed and the motors.

The line being executed is a generator, like the firmware's main loop that waits
inside a line: it yields what it waits for -- ``("room",)`` two free planner slots,
``("idle",)`` the end of all motion, ``("until", t)`` a time -- and returns its reply
code (None: no reply). An alarm ends the wait and the line answers ``error:9``; a
reset drops the line without a reply.
"""

from __future__ import annotations

from collections.abc import Generator

from .. import codes
from .fixed import e4_to_steps, f32, format_e4, lround, report_e4, steps_to_e4
from .gcode import MAX_AXIS_MM, GBlock, clean, parse, parse_number, validate_gcode, validate_jog
from .homing import HOMING_ORDER, home_axis
from .lines import CYCLE_START, FEED_HOLD, JOG_CANCEL, REALTIME, SOFT_RESET, STATUS, LineAssembler
from .motion import Block, make_block
from .motors import Motors, Vec
from .reports import BANNER, BUILD_INFO, EEPROM_VERSION, HELP, PLANNER_BLOCKS, RX_BUFFER_BYTES, UNLOCK_HINT
from .settings import DEEPAF_SPECS, GRBL_SPECS, Settings

E = codes.error_number
A = codes.alarm_number
OK = 0
LOCKED = E("SYSTEM_LOCKED")
Task = Generator[tuple, None, "int | None"]


class Machine:
    def __init__(
        self,
        dialect: str = "deepaf",
        boot_s: float = 0.3,
        play_steps: Vec = (0, 0, 0),
        switches: list[tuple[int, str]] | None = None,
    ) -> None:
        if dialect not in ("deepaf", "grbl"):
            raise ValueError(f"unknown dialect {dialect!r} (deepaf or grbl)")
        self.dialect = dialect
        self.deepaf = dialect == "deepaf"
        self.decimals = 4 if self.deepaf else 3
        self.boot_s = boot_s
        self.settings = Settings(DEEPAF_SPECS if self.deepaf else GRBL_SPECS)
        self.eeprom = bytearray(b"\xff" * 1024)
        self.motors = Motors(play_steps)
        if switches is not None:
            self.motors.switches = list(switches)
        self.t = 0.0
        self.out = bytearray()
        self.rx = bytearray()
        self.assembler = LineAssembler()
        self.locked = False
        self.critical = False  # stock GRBL: an alarm that waits for a reset
        self.homing = False
        self.homed = [False, False, False]
        self.task: Task | None = None
        self.task_wait: tuple | None = None
        self.booting_until: float | None = None
        self.drivers = False
        self.idle_since = 0.0
        self.jog_cancel = False
        self.corrupt_next = False
        self._reset_gcode()
        self.power_reset(0.0)

    # --- time ---------------------------------------------------------------------

    def next_event(self) -> float | None:
        times = [self.booting_until, self.motors.next_event(), self._release_time()]
        if self.task_wait is not None and self.task_wait[0] == "until":
            times.append(self.task_wait[1])
        due = [x for x in times if x is not None]
        return min(due) if due else None

    def advance(self, t: float) -> None:
        """Run every event due up to time ``t``."""
        while True:
            due = self.next_event()
            if due is None or due > t:
                break
            self.t = max(self.t, due)
            self._fire()
        self.t = max(self.t, t)

    def _fire(self) -> None:
        t = self.t
        if self.booting_until is not None and self.booting_until <= t:
            self._boot_done()
        elif (due := self.motors.next_event()) is not None and due <= t:
            self._motion_event()
        elif (due := self._release_time()) is not None and due <= t:
            self.drivers = False
        self._service()

    def _busy(self) -> bool:
        return self.motors.busy or self.task_wait is not None or self.state() not in ("Idle", "Alarm")

    def _release_time(self) -> float | None:
        """When the idle drivers are released ($150 s of idleness; 0: never)."""
        delay = self.settings[150] if self.deepaf else 0.0
        if not self.drivers or not delay or self._busy():
            return None
        return self.idle_since + delay

    # --- bytes in, bytes out ------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Bytes arriving now. The main loop keeps pace with the UART when nothing
        blocks it, so each byte is taken before the next arrives."""
        for byte in data:
            if self.booting_until is not None:
                continue  # the bootloader has the UART
            if byte in REALTIME:
                self._realtime(byte)
            elif len(self.rx) < RX_BUFFER_BYTES - 1:
                self.rx.append(byte)  # a full ring drops the byte
            self._service()

    def _emit(self, line: str) -> None:
        self.out += line.encode("ascii") + b"\r\n"

    def _reply(self, code: int) -> None:
        if self.corrupt_next:
            self.corrupt_next = False
            self.out += b"o\xffk\r\n"
            return
        self._emit("ok" if code == OK else f"error:{code}")

    def _service(self) -> None:
        """The main loop: run the waiting line, then take new lines from the buffer."""
        while True:
            self._resume()
            if self.task is not None or self.critical or self.booting_until is not None or not self.rx:
                break
            line = self.assembler.push(self.rx.pop(0))
            if line is not None:
                self._start(self._line(line))
        if self._busy():
            self.idle_since = self.t

    def _start(self, task: Task) -> None:
        self.task, self.task_wait = task, None
        self._resume()

    def _resume(self) -> None:
        while self.task is not None:
            if self.task_wait is not None and not self._ready(self.task_wait):
                return
            try:
                self.task_wait = self.task.send(None)
            except StopIteration as stop:
                self.task, self.task_wait = None, None
                if stop.value is not None:
                    self._reply(stop.value)

    def _ready(self, wait: tuple) -> bool:
        if self._aborted():
            return True
        if wait[0] == "room":
            return self.motors.free_blocks(PLANNER_BLOCKS) >= 2
        if wait[0] == "idle":
            return not self.motors.busy
        return self.t >= wait[1]

    def _aborted(self) -> bool:
        """A wait inside a line ends when an alarm locked the board."""
        return self.locked and not self.homing

    # --- state --------------------------------------------------------------------

    def state(self) -> str:
        if self.homing:
            return "Home"
        if self.locked or self.critical:
            return "Alarm"
        if self.jog_cancel:
            return "Jog"
        if self.motors.holding:
            return "Hold:0" if self.motors.stopped_in_hold else "Hold:1"
        if self.motors.busy:
            return "Jog" if self.motors.running_kind() == "jog" else "Run"
        return "Idle"

    def _pos(self, v: int) -> str:
        return format_e4(v, self.decimals)

    def status(self) -> str:
        spm = self.settings.axis(100)
        pos = self.motors.position(self.t)
        mpos = ",".join(self._pos(report_e4(pos[i], spm[i])) for i in range(3))
        free = self.motors.free_blocks(PLANNER_BLOCKS)
        feed = lround(self.motors.speed(self.t) * 60.0)
        text = f"<{self.state()}|MPos:{mpos}|Bf:{free},{RX_BUFFER_BYTES - len(self.rx)}|FS:{feed},0"
        pins = "".join("XYZ"[i] for i in self.motors.closed_axes(self.t))
        if pins:
            text += f"|Pn:{pins}"
        if any(self.g92):
            text += "|WCO:" + ",".join(self._pos(v) for v in self.g92)
        return text + ">"

    # --- resets and alarms ----------------------------------------------------------

    def _reset_gcode(self) -> None:
        self.motion, self.absolute, self.feed = 0, True, 0.0
        self.g92 = [0, 0, 0]  # 1e-4 mm
        self.gc_pos = [0, 0, 0]  # 1e-4 mm

    def _sync_gcode_position(self) -> None:
        spm = self.settings.axis(100)
        self.gc_pos = [steps_to_e4(self.motors.planned[i], spm[i]) for i in range(3)]

    def _apply_settings(self) -> None:
        self.motors.invert_mask = int(self.settings[5])
        self.motors.hard_limits = self.settings.flag(21) and not self.homing
        self.motors.deviation_mm = self.settings[11]

    def _save_settings(self) -> None:
        image = self.settings.to_eeprom(EEPROM_VERSION[self.dialect])
        self.eeprom[: len(image)] = image

    def power_reset(self, t: float) -> None:
        """Power-up or DTR reset: everything restarts except the motors' true positions
        and the EEPROM."""
        self.motors.stop_now(t, keep_dirs=False)
        for axis in range(3):
            self.motors.set_position(axis, 0)
        self.task, self.task_wait = None, None
        self.homing = self.critical = self.jog_cancel = False
        self.rx.clear()
        self.out.clear()
        self.assembler.reset()
        self._reset_gcode()
        self.homed = [False, False, False]
        self.drivers = False
        self.booting_until = t + self.boot_s
        self.t = max(self.t, t)
        if self.boot_s <= 0:
            self._boot_done()

    def _boot_done(self) -> None:
        self.booting_until = None
        message = self.settings.from_eeprom(bytes(self.eeprom), EEPROM_VERSION[self.dialect])
        if message:
            self._save_settings()
        self._apply_settings()
        self._sync_gcode_position()
        self.locked = self.settings.flag(22)
        self.idle_since = self.t
        self._emit(BANNER[self.dialect])
        if message:
            self._emit(f"[MSG:{message}]")
        if self.locked:
            self._emit(UNLOCK_HINT)

    def soft_reset(self) -> None:
        """Ctrl-X: stop at once, drop the line and the buffer, re-initialise."""
        if self.booting_until is not None:
            return
        alarm = A("HOMING_FAIL_RESET") if self.homing else None
        moving = self.motors.stop_now(self.t, keep_dirs=False)
        if alarm is None and moving:
            alarm = A("ABORT_CYCLE")
        self.task, self.task_wait = None, None
        self.homing = self.critical = self.jog_cancel = False
        self.rx.clear()
        self.assembler.reset()
        self._reset_gcode()
        self._sync_gcode_position()
        self._apply_settings()
        self.homed = [False, False, False]
        if alarm is not None:
            self._alarm(alarm)
        self._emit(BANNER[self.dialect])
        if self.locked:
            self._emit(UNLOCK_HINT)

    def _alarm(self, code: int) -> None:
        """Stop everything, lock, report (the firmware's system_alarm)."""
        self.motors.stop_now(self.t)
        self.jog_cancel = False
        self._sync_gcode_position()
        self.locked = True
        self.homed = [False, False, False]
        self._emit(f"ALARM:{code}")

    def hard_limit(self) -> None:
        """A limit switch closed outside homing (motors already stopped at its step)."""
        if not self.deepaf:
            self._critical_alarm(A("HARD_LIMIT"))
            return
        self._alarm(A("HARD_LIMIT"))
        self._service()

    def _critical_alarm(self, code: int) -> None:
        """Stock GRBL: hard and soft limit alarms wait for a reset; the line being
        executed gets no reply."""
        self._alarm(code)
        self.task, self.task_wait = None, None
        self.critical = True
        self._emit("[MSG:Reset to continue]")

    # --- realtime bytes -----------------------------------------------------------------

    def _realtime(self, byte: int) -> None:
        state = self.state()
        if byte == STATUS:
            self._emit(self.status())
        elif byte == SOFT_RESET:
            self.soft_reset()
        elif byte == FEED_HOLD and state == "Run":
            self.motors.hold(self.t)
        elif byte in (FEED_HOLD, JOG_CANCEL) and state == "Jog" and not self.jog_cancel:
            self.jog_cancel = True
            self.motors.hold(self.t)
            self._finish_jog_cancel()
        elif byte == CYCLE_START and state.startswith("Hold"):
            self.motors.resume(self.t)

    def _finish_jog_cancel(self) -> None:
        if self.jog_cancel and (self.motors.stopped_in_hold or not self.motors.busy):
            self.motors.flush(keep_dirs=True)
            self.jog_cancel = False
            self._sync_gcode_position()

    # --- motion -----------------------------------------------------------------------

    def _motion_event(self) -> None:
        event = self.motors.on_event(self.t)
        if event.kind == "limit" and not self.homing:
            self.hard_limit()
            return
        if event.kind == "end":
            self.motors.start_next(self.t)
        self._finish_jog_cancel()

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
            block = make_block(tuple(vec), spm, rate, rates, accels, kind, reported=reported)  # type: ignore[arg-type]
            if block is not None:
                blocks.append(block)
        return blocks

    def _queue_move(self, target: list[int], steps: list[int], feed: float, kind: str) -> None:
        for block in self._plan(steps, feed, kind):
            self.motors.queue_block(block)
        self.gc_pos = list(target)
        if self.motors.busy:
            self.drivers = True
        self.motors.start_next(self.t)

    def _target(self, block: GBlock, absolute: bool, soft_limit_error: int) -> tuple[list[int], list[int]] | int:
        """Machine target (1e-4 mm) and steps of a move, or the error code."""
        spm = self.settings.axis(100)
        target, steps = [0, 0, 0], [0, 0, 0]
        for a in range(3):
            t = self.gc_pos[a]
            if a in block.axes:
                value = block.axes[a]
                if block.nonmodal == "G53":
                    t = value
                elif absolute:
                    t = value + self.g92[a]
                else:
                    t = self.gc_pos[a] + value
            if abs(t) > MAX_AXIS_MM * 10000:
                return E("VALUE_OUT_OF_RANGE")
            target[a], steps[a] = t, e4_to_steps(t, spm[a])
        if self.settings.flag(20):
            travel = self.settings.axis(130)
            for a in range(3):
                if target[a] > 0 or target[a] < -lround(f32(travel[a] * 10000.0)):
                    return soft_limit_error
        return target, steps

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
        block = parse(text)
        if isinstance(block, int):
            return block
        error = validate_gcode(block)
        if error is not None:
            return error
        motion = block.motion if block.motion is not None else self.motion
        absolute = block.absolute if block.absolute is not None else self.absolute
        feed = block.f if block.f is not None else self.feed
        moving = bool(block.axes) and block.nonmodal != "G92"
        offset = list(self.g92)
        target: list[int] = []
        steps: list[int] = []
        if moving:
            if motion == 1 and feed <= 0:
                return E("UNDEFINED_FEED_RATE")
            result = self._target(block, absolute, E("SOFT_LIMIT") if self.deepaf else -2)
            if result == -2:
                self._critical_alarm(2)
                return None
            if isinstance(result, int):
                return result
            target, steps = result
        if block.nonmodal == "G92":
            for a, value in block.axes.items():
                offset[a] = self.gc_pos[a] - value
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
        if moving:
            self._queue_move(target, steps, 0.0 if motion == 0 else feed, "line")
        if block.m == 18:
            yield ("idle",)
            if self._aborted():
                return LOCKED
            self.drivers = False
        return OK

    def _jog(self, text: str) -> Task:
        block = parse(text, jog=True)
        if isinstance(block, int):
            return block
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
        self._queue_move(result[0], result[1], block.f or 0.0, "jog")
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
            self._emit(f"[GC:G{self.motion} G54 G17 G21 G{90 if self.absolute else 91} G94 {drivers} F{lround(self.feed)}]")
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
