"""Byte classes and line assembly of the virtual board (protocol.md 3.1, 3.2)."""

from __future__ import annotations

from .. import codes
from ..protocol_tables import LINE_MAX

STATUS = 0x3F  # ?
FEED_HOLD = 0x21  # !
CYCLE_START = 0x7E  # ~
SOFT_RESET = 0x18
JOG_CANCEL = 0x85
#: GRBL 1.1 override, door, coolant and debug bytes: accepted and ignored.
IGNORED_REALTIME = frozenset({0x84, 0x87, *range(0x90, 0x9F), 0xA0, 0xA1})
REALTIME = frozenset({STATUS, FEED_HOLD, CYCLE_START, SOFT_RESET, JOG_CANCEL}) | IGNORED_REALTIME

MAX_LINE = LINE_MAX


class LineAssembler:
    """Turns the stream of non-realtime bytes into lines.

    ``push`` returns None until a terminator arrives, then the line's text, or the
    error code of a line that was too long (11) or held a bad byte (60)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False
        self._bad = False
        self._after_cr = False

    def reset(self) -> None:
        self._buf.clear()
        self._overflow = self._bad = self._after_cr = False

    def push(self, byte: int) -> str | int | None:
        after_cr, self._after_cr = self._after_cr, byte == 0x0D
        if byte == 0x0A and after_cr:
            return None
        if byte in (0x0A, 0x0D):
            if self._overflow:
                result: str | int = codes.error_number("LINE_OVERFLOW")
            elif self._bad:
                result = codes.error_number("INVALID_CHARACTER")
            else:
                result = self._buf.decode("ascii")
            self._buf.clear()
            self._overflow = self._bad = False
            return result
        if self._overflow:
            return None
        if len(self._buf) >= MAX_LINE:
            self._overflow = True
            return None
        if not (0x20 <= byte <= 0x7E or byte == 0x09):
            self._bad = True
            byte = 0x20
        self._buf.append(byte)
        return None
