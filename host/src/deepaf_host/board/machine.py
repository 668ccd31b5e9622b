"""The protocol state machine of the virtual board (protocol.md, sections 3-10).

``Machine`` is told the time by its caller (``advance(t)``, ``receive(data)`` at the
current time) and answers with bytes in ``out`` and the time of its next event. It
holds the real state: settings and their EEPROM image, lock and homed flags, alarms,
the G-code modal state, the receive buffer and the line being executed, the motors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import codes
from .gcode import JogBlock, clean, parse_gcode, parse_jog, parse_number
from .homing import HOMING_ORDER, HomingCycle, _lround
from .lines import CYCLE_START, FEED_HOLD, JOG_CANCEL, REALTIME, SOFT_RESET, STATUS, LineAssembler
from .motion import Block, make_block
from .motors import Motors, Vec
from .reports import (
    BANNER,
    BUILD_INFO,
    EEPROM_VERSION,
    HELP,
    PLANNER_BLOCKS,
    RX_BUFFER_BYTES,
    UNLOCK_HINT,
    fixed,
    steps_mm,
)
from .settings import DEEPAF_SPECS, GRBL_SPECS, Settings, f32

E = codes.error_number
A = codes.alarm_number
OK = 0
_SETTING = re.compile(r"(\d+)=(.*)")


@dataclass
class _Wait:
    """What the line being executed waits for: a planner slot for its ``blocks``, the
    end of motion (``sync``, then ``then``), or the end of a dwell (``until``)."""

    kind: str  # slot | sync | dwell
    blocks: list[Block] = field(default_factory=list)
    then: str = ""  # dwell | release
    seconds: float = 0.0
    until: float = 0.0


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
        self.homed = [False, False, False]
        self.wait: _Wait | None = None
        self.homing: HomingCycle | None = None
        self.booting_until: float | None = None
        self.release_at: float | None = None
        self.drivers = False
        self.jog_cancel = False
        self.corrupt_next = False
        self._reset_gcode()
        self.power_reset(0.0)

    # --- time ---------------------------------------------------------------------

    def next_event(self) -> float | None:
        times = [self.booting_until, self.motors.next_event(), self.release_at]
        if self.wait is not None and self.wait.kind == "dwell":
            times.append(self.wait.until)
        if self.homing is not None:
            times.append(self.homing.next_event())
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
        elif self.wait is not None and self.wait.kind == "dwell" and self.wait.until <= t:
            self.wait = None
            self._reply(OK)
        elif self.homing is not None and (due := self.homing.next_event()) is not None and due <= t:
            self.homing.on_timer(t)
        elif self.release_at is not None and self.release_at <= t:
            self.drivers, self.release_at = False, None
        self._service()

    # --- bytes in, bytes out ------------------------------------------------------

    def receive(self, data: bytes) -> None:
        for byte in data:
            if self.booting_until is not None:
                continue  # the bootloader has the UART
            if byte in REALTIME:
                self._service()
                self._realtime(byte)
            elif len(self.rx) < RX_BUFFER_BYTES:
                self.rx.append(byte)
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
        """The main loop: take lines from the receive buffer while nothing blocks it."""
        while self.rx and self.wait is None and self.homing is None and not self.critical:
            if self.booting_until is not None:
                return
            byte = self.rx.pop(0)
            line = self.assembler.push(byte)
            if line is not None:
                self._execute(line)

    # --- state --------------------------------------------------------------------

    def state(self) -> str:
        if self.homing is not None:
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

    def status(self) -> str:
        spm = self.settings.axis(100)
        pos = self.motors.position(self.t)
        mpos = ",".join(fixed(steps_mm(pos[i], spm[i]), self.decimals) for i in range(3))
        free = PLANNER_BLOCKS - self.motors.visible_blocks()
        feed = round(self.motors.speed(self.t) * 60.0)
        text = f"<{self.state()}|MPos:{mpos}|Bf:{free},{RX_BUFFER_BYTES - len(self.rx)}|FS:{feed},0"
        pins = "".join("XYZ"[i] for i in self.motors.closed_axes(self.t))
        if pins:
            text += f"|Pn:{pins}"
        if any(self.g92):
            text += "|WCO:" + ",".join(fixed(v, self.decimals) for v in self.g92)
        return text + ">"

    # --- resets and alarms ----------------------------------------------------------

    def _reset_gcode(self) -> None:
        self.motion, self.distance, self.feed = 0, 90, None
        self.g92 = [0.0, 0.0, 0.0]
        self.gc_pos = [0.0, 0.0, 0.0]

    def _sync_gcode_position(self) -> None:
        spm = self.settings.axis(100)
        self.gc_pos = [f32(self.motors.planned[i] / spm[i]) for i in range(3)]

    def _apply_settings(self) -> None:
        self.motors.invert_mask = int(self.settings[5])
        self.motors.hard_limits = self.settings.flag(21) and self.homing is None
        self.motors.deviation_mm = self.settings[11]

    def _save_settings(self) -> None:
        image = self.settings.to_eeprom(EEPROM_VERSION[self.dialect])
        self.eeprom[: len(image)] = image

    def power_reset(self, t: float) -> None:
        """Power-up or DTR reset: everything restarts except the motors' true positions
        and the EEPROM."""
        self.motors.stop_now(t)
        for axis in range(3):
            self.motors.set_position(axis, 0)
            self.motors.planned_dir[axis] = self.motors.moved_dir[axis] = 0
        self.homing, self.wait, self.critical, self.jog_cancel = None, None, False, False
        self.rx.clear()
        self.out.clear()
        self.assembler.reset()
        self._reset_gcode()
        self.homed = [False, False, False]
        self.drivers, self.release_at = False, None
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
        self._emit(BANNER[self.dialect])
        if message:
            self._emit(f"[MSG:{message}]")
        if self.locked:
            self._emit(UNLOCK_HINT)

    def soft_reset(self) -> None:
        was_homing = self.homing is not None
        moving = self.motors.stop_now(self.t)
        self.homing, self.wait, self.critical, self.jog_cancel = None, None, False, False
        self.rx.clear()
        self.assembler.reset()
        self._reset_gcode()
        self._sync_gcode_position()
        self._apply_settings()
        if was_homing:
            self._alarm(A("HOMING_FAIL_RESET"))
        elif moving:
            self._alarm(A("ABORT_CYCLE"))
        self._emit(BANNER[self.dialect])
        if self.locked:
            self._emit(UNLOCK_HINT)

    def _alarm(self, code: int) -> None:
        self._emit(f"ALARM:{code}")
        self.locked = True
        self.homed = [False, False, False]

    def _critical_alarm(self, code: int) -> None:
        """Stock GRBL: hard and soft limit alarms wait for a reset (no reply to the line)."""
        self._alarm(code)
        self.critical = True
        self._emit("[MSG:Reset to continue]")

    def hard_limit(self) -> None:
        self.motors.flush()
        self.jog_cancel = False
        waiting, self.wait = self.wait, None
        self._sync_gcode_position()
        if not self.deepaf:
            self._critical_alarm(A("HARD_LIMIT"))
            return
        self._alarm(A("HARD_LIMIT"))
        if waiting is not None:
            self._reply(E("SYSTEM_LOCKED"))

    # --- realtime bytes -----------------------------------------------------------------

    def _realtime(self, byte: int) -> None:
        if byte == STATUS:
            self._emit(self.status())
        elif byte == SOFT_RESET:
            self.soft_reset()
        elif self.homing is not None or self.locked or self.critical:
            return
        elif byte == FEED_HOLD:
            if self.motors.running_kind() == "jog":
                self._cancel_jog()
            else:
                self.motors.hold(self.t)
        elif byte == CYCLE_START:
            if self.motors.stopped_in_hold and not self.jog_cancel:
                self.motors.resume(self.t)
        elif byte == JOG_CANCEL and self.motors.running_kind() == "jog":
            self._cancel_jog()

    def _cancel_jog(self) -> None:
        self.jog_cancel = True
        self.motors.hold(self.t)
        if self.wait is not None and self.wait.kind == "slot":
            self.wait = None
            self._reply(OK)
        self._finish_jog_cancel()

    def _finish_jog_cancel(self) -> None:
        if self.jog_cancel and self.motors.stopped_in_hold:
            self.motors.flush()
            self.jog_cancel = False
            self._sync_gcode_position()
            self._motion_done()

    # --- motion -----------------------------------------------------------------------

    def _motion_event(self) -> None:
        event = self.motors.on_event(self.t)
        if self.homing is not None:
            self.homing.on_motion(event, self.t)
            return
        if event.kind == "limit":
            self.hard_limit()
            return
        if event.kind == "end":
            self.motors.start_next(self.t)
        self._finish_jog_cancel()
        if self.wait is not None and self.wait.kind == "slot" and self._room():
            blocks, self.wait = self.wait.blocks, None
            self._queue(blocks)
            self._reply(OK)
        if not self.motors.busy:
            self._motion_done()

    def _motion_done(self) -> None:
        if self.wait is not None and self.wait.kind == "sync" and not self.motors.busy:
            wait, self.wait = self.wait, None
            if wait.then == "dwell":
                self.wait = _Wait("dwell", until=self.t + wait.seconds)
                if wait.seconds <= 0:
                    self.wait = None
                    self._reply(OK)
            else:
                self.drivers, self.release_at = False, None
                self._reply(OK)
        if self.drivers and not self.motors.busy and self.settings[150 if self.deepaf else 1] > 0:
            delay = self.settings[150] if self.deepaf else self.settings[1] / 1000.0
            self.release_at = self.t + delay

    def _room(self) -> bool:
        return self.motors.visible_blocks() < PLANNER_BLOCKS

    def _queue(self, blocks: list[Block]) -> None:
        for block in blocks:
            self.motors.queue_block(block)
        self.drivers, self.release_at = True, None
        self.motors.start_next(self.t)

    def _plan(self, target_mm: list[float], rate: float | None, kind: str) -> list[Block]:
        spm = self.settings.axis(100)
        rates, accels = self.settings.axis(110), self.settings.axis(120)
        delta = [_lround(target_mm[i] * spm[i]) - self.motors.planned[i] for i in range(3)]
        blocks: list[Block] = []
        if self.deepaf:
            take_up = [0, 0, 0]
            for i in range(3):
                direction = (delta[i] > 0) - (delta[i] < 0)
                if direction and self.motors.planned_dir[i] and direction != self.motors.planned_dir[i]:
                    take_up[i] = direction * _lround(self.settings[140 + i] * spm[i])
            backlash = make_block(tuple(take_up), spm, None, rates, accels, "backlash", reported=False)  # type: ignore[arg-type]
            if backlash is not None:
                blocks.append(backlash)
        block = make_block(tuple(delta), spm, rate, rates, accels, kind)  # type: ignore[arg-type]
        if block is not None:
            blocks.append(block)
        return blocks

    def _submit(self, blocks: list[Block]) -> None:
        """Queue a validated motion line's blocks and answer it (when there is room)."""
        if blocks and not self._room():
            self.wait = _Wait("slot", blocks=blocks)
            return
        self._queue(blocks)
        self._reply(OK)

    def _outside_travel(self, target: list[float]) -> bool:
        if not self.settings.flag(20):
            return False
        travel = self.settings.axis(130)
        return any(target[i] > 0 or target[i] < -travel[i] for i in range(3))

    # --- lines --------------------------------------------------------------------------

    def _execute(self, line: str | int) -> None:
        if isinstance(line, int):
            self._reply(line)
            return
        text = clean(line)
        if not text:
            self._reply(OK)
        elif text[0] == "$":
            self._system(text[1:])
        else:
            self._gcode(text)

    def _gcode(self, text: str) -> None:
        if self.locked or self.state() == "Jog":
            self._reply(E("SYSTEM_LOCKED"))
            return
        block = parse_gcode(text)
        if isinstance(block, int):
            self._reply(block)
            return
        feed = block.f if block.f is not None else self.feed
        motion = block.motion if block.motion is not None else self.motion
        distance = block.distance or self.distance
        moves = bool(block.axes) and block.nonmodal != "G92"
        if moves and motion == 1 and feed is None:
            self._reply(E("UNDEFINED_FEED_RATE"))
            return
        target = list(self.gc_pos)
        for i, value in block.axes.items():
            if block.nonmodal == "G53":
                target[i] = value
            elif distance == 91:
                target[i] = f32(self.gc_pos[i] + value)
            else:
                target[i] = f32(value + self.g92[i])
        if moves and self._outside_travel(target):
            if self.deepaf:
                self._reply(E("SOFT_LIMIT"))
            else:
                self._critical_alarm(2)
            return
        # Everything is valid: apply the line.
        self.motion, self.distance = motion, distance
        if block.f is not None:
            self.feed = block.f
        if block.m == 17:
            self.drivers = True
            self._motion_done()
        if block.nonmodal == "G92":
            for i, value in block.axes.items():
                self.g92[i] = f32(self.gc_pos[i] - value)
        elif block.nonmodal == "G92.1":
            self.g92 = [0.0, 0.0, 0.0]
        if block.nonmodal == "G4":
            self.wait = _Wait("sync", then="dwell", seconds=block.p or 0.0)
            self._motion_done()
        elif block.m == 18:
            self.wait = _Wait("sync", then="release")
            self._motion_done()
        elif moves:
            blocks = self._plan(target, None if motion == 0 else feed, "line")
            self.gc_pos = target
            self._submit(blocks)
        else:
            self._reply(OK)

    def _system(self, cmd: str) -> None:
        idle = self.state() in ("Idle", "Alarm")
        if cmd == "":
            self._emit(HELP[self.dialect])
        elif cmd == "I":
            for line in BUILD_INFO[self.dialect]:
                self._emit(line)
        elif cmd == "G":
            feed = int(self.feed + 0.5) if self.feed else 0
            drivers = ("M17" if self.drivers else "M18") if self.deepaf else "M5 M9 T0"
            self._emit(f"[GC:G{self.motion} G54 G17 G21 G{self.distance} G94 {drivers} F{feed}]")
        elif cmd == "#":
            self._emit("[G92:" + ",".join(fixed(v, self.decimals) for v in self.g92) + "]")
        elif cmd == "$":
            if not idle:
                return self._reply(E("NOT_IDLE"))
            for number in sorted(self.settings.specs):
                self._emit(self.settings.format(number, self.decimals))
        elif cmd in ("H", "HX", "HY", "HZ"):
            if not idle:
                return self._reply(E("NOT_IDLE"))
            if not self.settings.flag(22):
                return self._reply(E("HOMING_DISABLED"))
            return self._start_homing(list(HOMING_ORDER) if cmd == "H" else ["XYZ".index(cmd[1])])
        elif cmd == "X":
            if not idle:
                return self._reply(E("NOT_IDLE"))
            if self.locked:
                self._emit("[MSG:Caution: Unlocked]")
                self.locked = False
        elif cmd.startswith("J="):
            if self.state() not in ("Idle", "Jog"):
                return self._reply(E("NOT_IDLE"))
            return self._jog(cmd[2:])
        elif cmd == "RST=$":
            if not idle:
                return self._reply(E("NOT_IDLE"))
            self.settings.restore_defaults()
            self._save_settings()
            self._apply_settings()
            self._emit("[MSG:Restoring defaults]")
        elif (match := _SETTING.fullmatch(cmd)) is not None:
            if not idle:
                return self._reply(E("NOT_IDLE"))
            return self._reply(self._set(int(match.group(1)), match.group(2)))
        else:
            return self._reply(E("INVALID_STATEMENT"))
        self._reply(OK)

    def _set(self, number: int, text: str) -> int:
        value = parse_number(text)
        if value is None:
            return E("BAD_NUMBER_FORMAT")
        error = self.settings.check(number, value)
        if error is not None:
            return error
        self.settings.set(number, value)
        self._save_settings()
        self._apply_settings()
        if 100 <= number <= 102:
            self._sync_gcode_position()
        return OK

    def _jog(self, text: str) -> None:
        jog: JogBlock | int = parse_jog(text)
        if isinstance(jog, int):
            self._reply(jog)
            return
        target = list(self.gc_pos)
        distance = jog.distance or self.distance
        for i, value in jog.axes.items():
            if jog.machine:
                target[i] = value
            elif distance == 91:
                target[i] = f32(self.gc_pos[i] + value)
            else:
                target[i] = f32(value + self.g92[i])
        if self._outside_travel(target):
            self._reply(E("JOG_TRAVEL_EXCEEDED"))
            return
        blocks = self._plan(target, jog.f, "jog")
        self.gc_pos = target
        self._submit(blocks)

    # --- homing -------------------------------------------------------------------------

    def _start_homing(self, axes: list[int]) -> None:
        self.homing = HomingCycle(axes, self.motors, self.settings, self.deepaf, self._homing_done)
        self._apply_settings()
        self.drivers, self.release_at = True, None
        self.homing.start(self.t)

    def _homing_done(self, alarm: int | None) -> None:
        cycle, self.homing = self.homing, None
        self._apply_settings()
        self._sync_gcode_position()
        if alarm is not None:
            self._alarm(alarm)
            self._reply(E("HOMING_FAILED") if self.deepaf else OK)
        else:
            for axis in cycle.homed if cycle else []:
                self.homed[axis] = True
            if all(self.homed):
                self.locked = False
            self._reply(OK)
        self._motion_done()
