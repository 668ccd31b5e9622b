"""The serial connection to a DeepAf (or stock GRBL 1.1) board.

``Connection(url)`` opens ``url`` with ``serial.serial_for_url`` -- ``/dev/ttyACM0``,
``COM3``, ``sim://`` (the virtual board), ``simavr://firmware/build/deepaf.elf`` (the
firmware in simavr), any pyserial URL -- and speaks protocol.md to it:

- **Handshake**: sends ``$I`` (never relies on the boot banner, which pyserial's
  ``open()`` may flush; a banner or ``[MSG:...]`` arriving later because opening reset
  the board is taken in stride, and ``$I`` is sent again after it). A
  ``[DEEPAF:FW=..,PROTO=..,AXES=..]`` line means the DeepAf firmware (another protocol
  version is a ``HandshakeError``); no such line but a GRBL 1.1 ``[VER:...]`` means a
  stock GRBL board, which works too (``info.dialect == "grbl"``). A DeepAf firmware
  older than the image this host ships is logged as a warning that names
  ``deepaf-host flash`` (``firmware/image.py``).
- **One reply per line**: ``command()`` sends one line and returns its ``ok`` with the
  bracketed/``$N=V`` lines that came before it, or raises ``FirmwareError(code, line)``
  for ``error:N``. ``stream()`` sends many lines with character counting (protocol.md
  3.4: at most rx_buffer-1 bytes unanswered).
- **Unsolicited lines** anywhere in the stream: ``ALARM:N`` (an alarm during a command
  raises ``FirmwareAlarm`` once its reply came, or after a grace period), ``[MSG:..]``
  (kept in ``messages``), status reports (kept in ``last_status``).
- **Typed errors**: ``PortUnavailable`` (cannot open, naming the port),
  ``ConnectionLost`` (I/O failed: unplugged, emulator gone, board reset under us),
  ``ProtocolTimeout`` (no reply in time), ``GarbledReply`` (a reply that is neither
  ``ok`` nor ``error:N`` -- after resynchronising: queries are retried once, other
  lines raise because their effect is unknown), ``HandshakeError``.
- **Resynchronisation** after a timeout or a garbled reply: ``\\n$I\\n`` is sent and
  everything up to its reply is discarded.

One lock serialises every exchange, so a connection can be shared between threads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from .. import codes
from ..errors import (
    ConfigError,
    ConnectionLost,
    FirmwareAlarm,
    FirmwareError,
    GarbledReply,
    HandshakeError,
    ProtocolTimeout,
)
from ..protocol_tables import BAUD_RATE, SETTINGS
from .info import BoardInfo, parse_build_info
from .port import LinePort, log
from .replies import Kind, StatusReport
from .settings import BoardSettings, MissingSettings

#: After an ALARM, how long the reply to the line being executed may still take.
ALARM_GRACE_S = 1.0
#: Lines that change nothing: sent again once after a garbled reply.
QUERIES = frozenset({"$", "$I", "$$", "$G", "$#"})
#: Stock GRBL's soft-limit alarm (not in protocol.md's table: a DeepAf board answers error:61).
GRBL_SOFT_LIMIT_ALARM = codes.alarm_number("SOFT_LIMIT", "grbl")
#: Settings a stock GRBL board does not have (protocol/settings.csv's dialects).
DEEPAF_ONLY_SETTINGS = frozenset(s.number for s in SETTINGS if "grbl" not in s.dialects)


@dataclass(frozen=True)
class Reply:
    """The ``ok`` to ``line`` and the ``[...]``/``$N=V`` lines that came before it."""

    line: str
    lines: tuple[str, ...] = ()


class _Garbled(Exception):
    def __init__(self, text: str) -> None:
        self.text = text


class Connection(LinePort):
    """A connection to one board. See the module docstring for the protocol handling.

    Args:
        url: a serial port or pyserial URL.
        timeout_s: default time allowed for the reply to one line.
        handshake_timeout_s: time allowed for the board to boot and answer ``$I``.
        warn_outdated: log a warning when the board's DeepAf firmware is older than the
            image this host ships (``deepaf-host flash`` updates it).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        handshake_timeout_s: float = 10.0,
        baudrate: int = BAUD_RATE,
        warn_outdated: bool = True,
    ) -> None:
        super().__init__(url, timeout_s=timeout_s, baudrate=baudrate)
        try:
            self.info = self._handshake(handshake_timeout_s)
        except BaseException:
            self.close()
            raise
        info = self.info
        log.info(
            "%s: %s board, firmware %s, protocol %s (every line sent and received is logged at DEBUG)",
            self.url, info.dialect, info.firmware_version or info.grbl_version, info.protocol_version or "-",
        )
        if warn_outdated:
            from ..firmware.image import outdated_hint

            hint = outdated_hint(self.url, info)
            if hint is not None:
                log.warning("%s", hint)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- handshake and resynchronisation ------------------------------------------------

    def _handshake(self, timeout_s: float) -> BoardInfo:
        with self._lock:
            lines = self._identify(timeout_s)
        return parse_build_info(self.url, lines)

    def resync(self, timeout_s: float | None = None) -> None:
        """Discard everything up to the reply of a fresh ``$I`` (after a timeout or a
        garbled reply, when the replies in flight are unknown)."""
        with self._lock:
            self._identify(timeout_s or self.timeout_s)

    def _prepare(self) -> None:
        if self._needs_reset:
            self.soft_reset()
        elif self._needs_sync:
            self.resync()
        self._drain()

    # --- lines --------------------------------------------------------------------------

    def _await_reply(self, line: str, timeout_s: float) -> tuple[int, list[str], int | None]:
        """Wait for the reply to the oldest line in flight (``line``)."""
        try:
            return self._await_reply_unguarded(line, timeout_s)
        except BaseException:
            # Whatever cut the wait short (Ctrl-C included), the reply may still come:
            # the next command first resynchronises rather than take it for its own.
            self._needs_sync = True
            raise

    def _await_reply_unguarded(self, line: str, timeout_s: float) -> tuple[int, list[str], int | None]:
        deadline = time.monotonic() + timeout_s
        collected: list[str] = []
        alarm: int | None = None
        while True:
            got = self._read_line(deadline)
            if got is None:
                self._needs_sync = True
                if alarm is not None:
                    raise FirmwareAlarm(alarm, line)
                raise ProtocolTimeout(line, timeout_s)
            if got.kind in (Kind.OK, Kind.ERROR):
                if self._pending:
                    self._pending.popleft()
                return (got.code if got.kind is Kind.ERROR else 0), collected, alarm
            if got.kind in (Kind.BRACKET, Kind.MESSAGE, Kind.SETTING):
                collected.append(got.text)
                if alarm is not None and self._needs_reset:
                    # Stock GRBL: a critical alarm; the line gets no reply until a reset.
                    self._pending.clear()
                    raise FirmwareAlarm(alarm, line)
            elif got.kind is Kind.ALARM:
                alarm = got.code
                deadline = min(deadline, time.monotonic() + ALARM_GRACE_S)
            elif got.kind is Kind.BANNER:
                self._pending.clear()
                self._needs_sync = True
                if alarm is not None:
                    raise FirmwareAlarm(alarm, line)
                raise ConnectionLost(self.url, f"the board reset while {line!r} was waiting for its reply")
            elif got.kind is Kind.GARBLED:
                self._needs_sync = True
                raise _Garbled(got.text)

    def command(self, line: str, *, timeout_s: float | None = None) -> Reply:
        """Send one line and wait for its reply.

        Raises ``FirmwareError`` for ``error:N``, ``FirmwareAlarm`` when an alarm came
        during the line, ``ProtocolTimeout``, ``GarbledReply``, ``ConnectionLost``."""
        self._check_line(line)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            for attempt in (1, 2):
                self._prepare()
                self._send(line)
                try:
                    code, lines, alarm = self._await_reply(line, timeout)
                except _Garbled as garbled:
                    self.resync()
                    if attempt == 1 and line.replace(" ", "").upper() in QUERIES:
                        continue
                    raise GarbledReply(line, garbled.text) from None
                except FirmwareAlarm as exc:
                    raise self._alarm_error(exc.code, line) from None
                if alarm is not None:
                    raise self._alarm_error(alarm, line)
                if code:
                    raise FirmwareError(code, line)
                return Reply(line, tuple(lines))
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(self, lines: Iterable[str], *, timeout_s: float | None = None) -> list[Reply]:
        """Send ``lines`` with character counting and return their replies.

        At the first ``error:N`` (or alarm) no further line is sent; the lines in flight
        are answered, then the error is raised. ``timeout_s`` bounds the wait for each
        reply (a motion line is answered when the planner has room for it)."""
        todo = list(lines)
        for line in todo:
            self._check_line(line)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        replies: list[Reply] = []
        failure: Exception | None = None
        with self._lock:
            self._prepare()
            budget = self.info.rx_buffer_bytes - 1
            index = 0
            while self._pending or (index < len(todo) and failure is None):
                while index < len(todo) and failure is None:
                    in_flight = sum(len(p) + 1 for p in self._pending)
                    if self._pending and in_flight + len(todo[index]) + 1 > budget:
                        break
                    self._send(todo[index])
                    index += 1
                line = self._pending[0]
                try:
                    code, got, alarm = self._await_reply(line, timeout)
                except _Garbled as garbled:
                    self.resync()
                    raise GarbledReply(line, garbled.text) from None
                except FirmwareAlarm as exc:
                    raise self._alarm_error(exc.code, line) from None
                if failure is None and alarm is not None:
                    failure = self._alarm_error(alarm, line)
                elif failure is None and code:
                    failure = FirmwareError(code, line)
                elif failure is None:
                    replies.append(Reply(line, tuple(got)))
        if failure is not None:
            raise failure
        return replies

    def _alarm_error(self, alarm: int, line: str) -> Exception:
        """The error for an alarm raised during ``line``. On a stock GRBL board a soft
        limit is ``ALARM:2`` where the DeepAf firmware answers ``error:61``
        (protocol.md 12): nothing moved, so the board is reset and unlocked and the
        line fails as ``FirmwareError(61)``."""
        if alarm == GRBL_SOFT_LIMIT_ALARM and not self.info.is_deepaf:
            self.soft_reset()
            self.command("$X")
            return FirmwareError(codes.error_number("SOFT_LIMIT"), line)
        return FirmwareAlarm(alarm, line)

    # --- realtime -------------------------------------------------------------------------

    def status(self, *, timeout_s: float | None = None) -> StatusReport:
        """Send ``?`` and return the status report."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._prepare()
            for _ in range(3):
                self._write(b"?")
                deadline = time.monotonic() + timeout
                while (line := self._read_line(deadline)) is not None:
                    if line.kind is Kind.STATUS and self.last_status is not None:
                        return self.last_status
                    if line.kind in (Kind.GARBLED, Kind.BANNER):
                        break  # ask again
                    if line.kind in (Kind.OK, Kind.ERROR):
                        log.warning("%s: stray reply %r", self.url, line.text)
                if line is None:
                    raise ProtocolTimeout("?", timeout)
            raise ProtocolTimeout("?", timeout)

    def realtime(self, byte: bytes) -> None:
        """Send a realtime byte (``!`` feed hold, ``~`` cycle start, ``b"\\x85"`` jog cancel)."""
        if byte not in (b"!", b"~", b"\x85"):
            raise ValueError(f"not a realtime command this method sends: {byte!r} (use soft_reset() or status())")
        with self._lock:
            self._write(byte)

    def soft_reset(self, *, timeout_s: float | None = None) -> int | None:
        """Ctrl-X: stop at once and discard everything queued; returns the alarm the
        reset raised (3 when it stopped motion, 6 during homing) or None."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._write(b"\x18")
            self._pending.clear()
            deadline = time.monotonic() + timeout
            alarm: int | None = None
            while True:
                line = self._read_line(deadline)
                if line is None:
                    raise ProtocolTimeout("<soft reset>", timeout)
                if line.kind is Kind.ALARM:
                    alarm = line.code
                if line.kind is Kind.BANNER:
                    break
            self._needs_reset = False
            self._identify(timeout)
            return alarm

    # --- settings -------------------------------------------------------------------------

    def settings(self) -> BoardSettings:
        """Read ``$$`` into a typed structure."""
        reply = self.command("$$")
        try:
            return BoardSettings.from_lines(reply.lines)
        except MissingSettings as exc:
            raise HandshakeError(self.url, str(exc)) from exc

    def set_setting(self, number: int, value: float) -> None:
        """``$N=V``. On a stock GRBL board the DeepAf-only settings ($140+) are refused
        here rather than sent (protocol.md 12)."""
        if not self.info.is_deepaf and number in DEEPAF_ONLY_SETTINGS:
            raise ConfigError(f"${number}", "a stock GRBL board has no such setting")
        text = f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
        self.command(f"${number}={text}")
