"""The state and main loop of the virtual board (protocol.md, sections 3-10).

``MachineCore`` holds the state and the main loop; ``Machine`` (machine.py) adds the
line handlers. The machine is told the time by its caller (``advance(t)``, ``receive(data)`` at the
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
from .fixed import format_e4, lround, report_e4
from .lines import (
    CYCLE_START,
    FEED_HOLD,
    JOG_CANCEL,
    REALTIME,
    SOFT_RESET,
    STATUS,
    LineAssembler,
)
from .motors import Motors, Vec
from .reports import (
    BANNER,
    EEPROM_VERSION,
    PLANNER_BLOCKS,
    RX_BUFFER_BYTES,
    UNLOCK_HINT,
)
from .settings import DEEPAF_SPECS, GRBL_SPECS, Settings

A = codes.alarm_number
OK = 0
Task = Generator[tuple, None, "int | None"]


class MachineCore:
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
        if self._busy():
            self.idle_since = t  # busy until this event at least
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

    def _line(self, line: str | int) -> Task:
        """The task that executes one received line (machine.py)."""
        raise NotImplementedError

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
        self.inches = False  # G20 (stock GRBL only; the DeepAf firmware has no G20)
        self.g92 = [0, 0, 0]  # 1e-4 mm
        self.gc_pos = [0, 0, 0]  # steps: the target of the last move

    def _sync_gcode_position(self) -> None:
        self.gc_pos = list(self.motors.planned)

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
