"""The serial port of a connection: bytes to lines, unsolicited lines noted.

``LinePort`` opens the port (``PortUnavailable`` naming it when it cannot), writes
lines, reads lines with deadlines, and notes what may come at any time: ``ALARM:N``,
``[MSG:...]``, status reports. ``Connection`` (connection.py) builds the protocol on
it. I/O failures become ``ConnectionLost``.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import deque
from dataclasses import replace

import serial

from ..errors import ConnectionLost, FirmwareAlarm, HandshakeError, PortUnavailable
from ..protocol_tables import LINE_MAX
from .replies import Kind, Line, StatusReport, classify, parse_status

log = logging.getLogger("deepaf_host.stage.connection")

#: Longest wait of one read call; deadlines are kept by the connection.
READ_SLICE_S = 0.02
#: How often the handshake sends ``$I`` again when no reply comes.
IDENTIFY_RETRY_S = 1.0
#: Silence that ends a drain of late replies.
QUIET_S = 0.1
_REALTIME_IN_LINE = set("?!~")


def _open_reason(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    hints = {
        errno.ENOENT: "no such device (is the board plugged in? --port sim:// runs the virtual board)",
        errno.EACCES: "permission denied (on Linux, add your user to the 'dialout' group)",
        errno.EBUSY: "the port is busy (another program has it open)",
    }
    if isinstance(code, int) and code in hints:
        return hints[code]
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    return str(exc) or type(exc).__name__


class LinePort:
    """A serial port read and written as protocol lines."""

    def __init__(self, url: str, *, timeout_s: float, baudrate: int) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.last_alarm: int | None = None
        self.last_status: StatusReport | None = None
        self.messages: deque[str] = deque(maxlen=200)
        self._lock = threading.RLock()
        self._rx = bytearray()
        self._pending: deque[str] = deque()
        self._needs_sync = False
        self._needs_reset = False
        self._wco_mm: tuple[float, float, float] | None = None
        try:
            self._serial = serial.serial_for_url(url, baudrate=baudrate, timeout=READ_SLICE_S, write_timeout=timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortUnavailable(url, _open_reason(exc)) from exc

    # --- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass

    @property
    def serial(self) -> serial.SerialBase:
        """The pyserial port (for fault injection in tests)."""
        return self._serial

    # --- raw I/O ------------------------------------------------------------------------

    def _lost(self, exc: BaseException) -> ConnectionLost:
        self._needs_sync = True
        return ConnectionLost(self.url, _open_reason(exc))

    def _write(self, data: bytes) -> None:
        log.debug("%s TX %r", self.url, data)
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from exc

    def _read_chunk(self) -> None:
        try:
            data = self._serial.read(max(1, self._serial.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from exc
        self._rx += data

    def _take_line(self) -> str | None:
        end = self._rx.find(b"\n")
        if end < 0:
            return None
        raw = bytes(self._rx[:end]).rstrip(b"\r")
        del self._rx[: end + 1]
        text = raw.decode("ascii", errors="replace")
        log.debug("%s RX %r", self.url, text)
        return text

    def _read_line(self, deadline: float) -> Line | None:
        """The next line (noted if unsolicited), or None at the deadline."""
        while True:
            text = self._take_line()
            if text is not None:
                line = classify(text)
                self._note(line)
                return line
            if time.monotonic() >= deadline:
                return None
            self._read_chunk()

    def _note(self, line: Line) -> None:
        if line.kind is Kind.ALARM:
            self.last_alarm = line.code
            log.warning("%s: %s", self.url, FirmwareAlarm(line.code))
        elif line.kind is Kind.MESSAGE:
            self.messages.append(line.text)
            if line.text == "[MSG:Reset to continue]":
                self._needs_reset = True
        elif line.kind is Kind.STATUS:
            report = parse_status(line.text)
            if report is not None and report.wco_mm is not None:
                self._wco_mm = report.wco_mm
            if report is not None and report.mpos_mm is None and report.wpos_mm and self._wco_mm:
                # A stock GRBL board reporting work positions sends its offset now and then.
                wpos, wco = report.wpos_mm, self._wco_mm
                report = replace(report, mpos_mm=(wpos[0] + wco[0], wpos[1] + wco[1], wpos[2] + wco[2]))
            self.last_status = report

    def _drain(self) -> None:
        """Take whatever already arrived (alarms, messages) without waiting."""
        while True:
            try:
                waiting = self._serial.in_waiting
            except (serial.SerialException, OSError) as exc:
                raise self._lost(exc) from exc
            if waiting:
                self._read_chunk()
            text = self._take_line()
            if text is None and not waiting:
                return
            if text is not None:
                line = classify(text)
                self._note(line)
                if line.kind in (Kind.OK, Kind.ERROR):
                    log.warning("%s: stray reply %r", self.url, text)

    def _quiet(self, seconds: float = QUIET_S, limit_s: float = 2.0) -> None:
        """Read and note lines until the port has been silent for ``seconds``."""
        end = time.monotonic() + limit_s
        silent_until = time.monotonic() + seconds
        while time.monotonic() < min(silent_until, end):
            before = len(self._rx)
            self._read_chunk()
            arrived = len(self._rx) > before
            while (text := self._take_line()) is not None:
                self._note(classify(text))
            if arrived:
                silent_until = time.monotonic() + seconds

    def _send(self, line: str) -> None:
        self._pending.append(line)
        self._write(line.encode("ascii") + b"\n")

    @staticmethod
    def _check_line(line: str) -> None:
        if not line.isascii() or not line.isprintable() or _REALTIME_IN_LINE & set(line) or len(line) > LINE_MAX:
            raise ValueError(f"not a protocol line (printable ASCII, no ?!~, at most {LINE_MAX} bytes): {line!r}")

    # --- identification ---------------------------------------------------------------

    def _identify(self, timeout_s: float) -> list[str]:
        """Send ``$I`` until its reply comes; return its bracketed lines."""
        deadline = time.monotonic() + timeout_s
        stale = sum(1 for p in self._pending if p.replace(" ", "").upper() == "$I")
        self._pending.clear()
        sent = 0
        while True:
            self._write(b"\n$I\n")
            sent += 1
            retry_at = min(deadline, time.monotonic() + IDENTIFY_RETRY_S)
            found: list[str] | None = None
            while True:
                line = self._read_line(retry_at)
                if line is None or line.kind is Kind.BANNER:
                    break  # silence, or the board just reset: send $I again
                if line.kind is Kind.BRACKET and line.text.startswith("[VER:"):
                    if stale:
                        stale -= 1
                        continue
                    found = [line.text]
                elif found is not None and line.kind in (Kind.BRACKET, Kind.MESSAGE):
                    found.append(line.text)
                elif found is not None and line.kind is Kind.OK:
                    if sent > 1:
                        self._quiet()
                    self._needs_sync = False
                    return found
            if time.monotonic() >= deadline:
                raise HandshakeError(
                    self.url,
                    f"no reply to '$I' within {timeout_s:g} s: is this a DeepAf or GRBL 1.1 board at 115200 baud?",
                )
