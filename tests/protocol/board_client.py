"""A small protocol.md client for the contract suite: lines, replies, status reports.

Only protocol.md (its tables as the generated ``deepaf_host.protocol_tables``) and the
``Target`` interface are used here, so every test built on it runs unchanged against
the firmware in simavr and against the virtual board.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import serial
from deepaf_host.protocol_tables import GRBL_DIALECT, RX_BUFFER_SIZE, SETTINGS

from targets import Target

TIMEOUT_S = 20.0
BANNER_RE = re.compile(rf"^Grbl {re.escape(GRBL_DIALECT)} \[DeepAf (\d+\.\d+\.\d+) protocol (\d+)\] \['\$' for help\]$")
_NUM = r"-?\d+\.\d{4}"
STATUS_RE = re.compile(
    rf"^<(?P<state>Idle|Run|Hold:[01]|Jog|Home|Alarm)"
    rf"\|MPos:(?P<mpos>{_NUM},{_NUM},{_NUM})"
    rf"\|Bf:(?P<blocks>\d+),(?P<rx>\d+)"
    rf"\|FS:(?P<feed>\d+),0"
    rf"(?:\|Pn:(?P<pins>X?Y?Z?))?"
    rf"(?:\|WCO:(?P<wco>{_NUM},{_NUM},{_NUM}))?>$"
)
REPLY_RE = re.compile(r"^(ok|error:\d+)$")

#: What ``$$`` lists after ``$RST=$`` (protocol.md 8): every DeepAf setting in increasing
#: number, integers as integers and floats with 4 decimals.
DEFAULT_SETTINGS: dict[int, str] = {
    s.number: str(int(s.default)) if s.kind.integer else f"{s.default:.4f}" for s in SETTINGS if "deepaf" in s.dialects
}
#: The default steps/mm of X, Y and Z ($100-$102), as integers.
_X_SPM, _Y_SPM, _Z_SPM = (int(s.default) for s in SETTINGS if s.number in (100, 101, 102))
DEFAULT_SPM = (_X_SPM, _Y_SPM, _Z_SPM)

# Settings that keep simulated time short: faster rates and accelerations, all
# within the 30 kHz step-rate limit at the default steps/mm.
FAST_SETTINGS = {
    110: "2000",
    111: "2000",
    112: "100",
    120: "1000",
    121: "1000",
    122: "100",
}


@dataclass(frozen=True)
class Status:
    state: str
    mpos: tuple[Decimal, Decimal, Decimal]
    blocks: int
    rx_bytes: int
    feed: int
    pins: str
    wco: tuple[Decimal, Decimal, Decimal] | None

    @classmethod
    def parse(cls, line: str) -> Status:
        m = STATUS_RE.match(line)
        if not m:
            raise AssertionError(f"not a protocol.md status report: {line!r}")
        wco = m.group("wco")
        return cls(
            state=m.group("state"),
            mpos=tuple(Decimal(v) for v in m.group("mpos").split(",")),  # type: ignore[arg-type]
            blocks=int(m.group("blocks")),
            rx_bytes=int(m.group("rx")),
            feed=int(m.group("feed")),
            pins=m.group("pins") or "",
            wco=tuple(Decimal(v) for v in wco.split(",")) if wco else None,  # type: ignore[arg-type]
        )


def steps_for(mm: Decimal | str | float, steps_per_mm: Decimal | str | int) -> int:
    """Steps of a machine position: mm x steps/mm rounded half away from zero."""
    v = Decimal(str(mm)) * Decimal(str(steps_per_mm))
    r = abs(v).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(r if v >= 0 else -r)


def mm_for(steps: int, steps_per_mm: Decimal | str | int) -> Decimal:
    """The MPos of a step count: steps / steps/mm with 4 decimals (half away from 0)."""
    v = Decimal(steps) / Decimal(str(steps_per_mm))
    r = abs(v).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return r if v >= 0 else -r


class Board:
    """One open connection to a target."""

    def __init__(self, target: Target, port: serial.Serial) -> None:
        self.target = target
        self.port = port
        self._buf = bytearray()
        self._held: deque[str] = deque()  # lines read ahead of a status report
        self.log: list[str] = []

    # --- bytes and lines --------------------------------------------------------------

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("ascii")
        self.log.append(f"> {data!r}")
        self.port.write(data)
        self.port.flush()

    def _read_raw_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            chunk = self.port.read(max(1, self.port.in_waiting))
            self._buf += chunk
            if not chunk and time.monotonic() > deadline:
                raise TimeoutError(f"no line within {timeout} s; partial {bytes(self._buf)!r}; log {self.log[-12:]}")
        raw, _, rest = bytes(self._buf).partition(b"\n")
        self._buf = bytearray(rest)
        if not raw.endswith(b"\r"):
            raise AssertionError(f"line not ended by CR LF: {raw!r}")
        line = raw[:-1].decode("ascii")
        self.log.append(f"< {line}")
        return line

    def readline(self, timeout: float = TIMEOUT_S) -> str:
        if self._held:
            return self._held.popleft()
        return self._read_raw_line(timeout)

    def reply(self, timeout: float = TIMEOUT_S) -> list[str]:
        """Lines up to and including the next ok / error:N."""
        lines = []
        while True:
            line = self.readline(timeout)
            lines.append(line)
            if REPLY_RE.match(line):
                return lines

    def send(self, line: str, timeout: float = TIMEOUT_S) -> list[str]:
        self.write(line + "\n")
        return self.reply(timeout)

    def ok(self, line: str, timeout: float = TIMEOUT_S) -> list[str]:
        """Sends a line that must be answered ok; returns the lines before the ok."""
        lines = self.send(line, timeout)
        assert lines[-1] == "ok", f"{line!r} -> {lines}"
        return lines[:-1]

    def error(self, line: str, timeout: float = TIMEOUT_S) -> int:
        """Sends a line that must be answered error:N; returns N."""
        lines = self.send(line, timeout)
        assert lines[-1].startswith("error:"), f"{line!r} -> {lines}"
        return int(lines[-1][6:])

    def expect(self, line: str, timeout: float = TIMEOUT_S) -> None:
        got = self.readline(timeout)
        assert got == line, f"expected {line!r}, got {got!r}"

    # --- higher level -------------------------------------------------------------------

    def handshake(self) -> list[str]:
        """An empty line gets ok: returns what came before it (boot messages)."""
        return self.ok("")

    def status(self, timeout: float = TIMEOUT_S) -> Status:
        self.write(b"?")
        held = []
        while True:
            line = self._read_raw_line(timeout) if not self._held else self._held.popleft()
            if line.startswith("<"):
                self._held.extendleft(reversed(held))
                return Status.parse(line)
            held.append(line)

    def wait_state(self, *states: str, timeout: float = TIMEOUT_S) -> Status:
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if s.state in states:
                return s
            if time.monotonic() > deadline:
                raise TimeoutError(f"state {s.state}, waiting for {states}")
            time.sleep(0.002)

    def wait_idle(self, timeout: float = TIMEOUT_S) -> Status:
        return self.wait_state("Idle", timeout=timeout)

    def soft_reset(self, timeout: float = TIMEOUT_S) -> list[str]:
        """Sends 0x18; returns the lines up to and including the banner."""
        self.write(b"\x18")
        lines = []
        while True:
            line = self.readline(timeout)
            lines.append(line)
            if BANNER_RE.match(line):
                return lines

    def stream(self, lines: list[str], realtime: dict[int, bytes] | None = None) -> list[list[str]]:
        """Sends lines with character counting (protocol.md 3.4): at most 127 bytes (RX_BUFFER_SIZE - 1)
        unanswered. realtime: bytes to send right after line i. Returns each line's
        reply lines (messages before the ok/error included; status reports left out)."""
        in_flight: deque[int] = deque()
        replies: list[list[str]] = []

        def take() -> None:
            replies.append([x for x in self.reply() if not x.startswith("<")])
            in_flight.popleft()

        for i, text in enumerate(lines):
            size = len(text) + 1
            while in_flight and sum(in_flight) + size > RX_BUFFER_SIZE - 1:
                take()
            self.write(text + "\n")
            in_flight.append(size)
            if realtime and i in realtime:
                self.write(realtime[i])
        while in_flight:
            take()
        return replies

    def settings(self) -> dict[int, str]:
        out = {}
        for line in self.ok("$$"):
            m = re.fullmatch(r"\$(\d+)=(.*)", line)
            assert m, line
            out[int(m.group(1))] = m.group(2)
        return out

    def configure(self, values: dict[int, str]) -> None:
        for number, value in values.items():
            self.ok(f"${number}={value}")

    def unlock(self) -> None:
        self.ok("$X")

    def wait_seconds(self, seconds: float, timeout: float = TIMEOUT_S) -> None:
        """Waits until the target's simulated clock has advanced by seconds."""
        end = self.target.seconds() + seconds
        deadline = time.monotonic() + timeout
        while self.target.seconds() < end:
            if time.monotonic() > deadline:
                raise TimeoutError("simulated time does not advance")
            time.sleep(0.002)

    def steps_delta(self, before: tuple[int, int, int]) -> tuple[int, int, int]:
        now = self.target.motor_steps()
        return (now[0] - before[0], now[1] - before[1], now[2] - before[2])
