"""Settings of the virtual board (protocol.md section 8) and their EEPROM image.

Values are kept as the firmware keeps them, 32-bit floats and small integers, so that
``$$`` prints and the step arithmetic round exactly like the board. The EEPROM is a
byte image (format version, the values, a checksum) that survives resets of the same
board; a blank, foreign or corrupt image loads the defaults and says so after the
banner.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .. import codes
from ..protocol_tables import MAX_STEP_RATE, SETTINGS, Setting
from .fixed import f32, float_e4, format_e4

if TYPE_CHECKING:
    from .gcode import Num

E = codes.error_number

#: The DeepAf table (protocol.md section 8; protocol/settings.csv).
DEEPAF_SPECS: dict[int, Setting] = {s.number: s for s in SETTINGS if "deepaf" in s.dialects}

#: What a stock GRBL 1.1 board lists instead: no $140-$150, GRBL's $1/$6/$10/$12/$13/$30-$32.
GRBL_SPECS: dict[int, Setting] = {s.number: s for s in SETTINGS if "grbl" in s.dialects}

MAX_STEP_RATE_HZ = MAX_STEP_RATE


class Settings:
    """The live settings of one board, validated the way protocol.md says."""

    def __init__(self, specs: dict[int, Setting]) -> None:
        self.specs = specs
        self.values: dict[int, float] = {}
        self.restore_defaults()

    def restore_defaults(self) -> None:
        self.values = {n: f32(s.default) for n, s in self.specs.items()}

    def __getitem__(self, number: int) -> float:
        return self.values[number]

    def axis(self, base: int) -> tuple[float, float, float]:
        return (self.values[base], self.values[base + 1], self.values[base + 2])

    def flag(self, number: int) -> bool:
        return self.values[number] != 0

    def assign(self, number: int, value: Num) -> int | None:
        """``$number=value``: stores it, or returns the error code and changes nothing."""
        spec = self.specs.get(number)
        if spec is None:
            return E("INVALID_STATEMENT")
        if value.mant < 0:
            return E("NEGATIVE_VALUE")
        kind = spec.kind
        low, high = kind.low, kind.high
        if kind.integer:
            if not value.is_integer():
                return E("INTEGER_REQUIRED")
            new = float(value.as_int())
            if not low <= new <= high:
                return E("VALUE_OUT_OF_RANGE")
        else:
            new = value.as_float()
            # Kept and printed at 4 decimals: a value that reads 0 there is 0 for a
            # "> 0" setting and unrepresentable for the others (62 either way).
            if (kind.low_exclusive or value.mant != 0) and value.rounds_to_zero():
                return E("VALUE_OUT_OF_RANGE")
            if new > high:
                return E("VALUE_OUT_OF_RANGE")
        old = self.values[number]
        self.values[number] = new
        error = None
        if number == 20 and new and not self.flag(22):
            error = E("SOFT_LIMIT_NEEDS_HOMING")
        for axis in range(3):
            if f32(f32(self.values[100 + axis] * self.values[110 + axis]) / 60.0) > MAX_STEP_RATE_HZ:
                error = E("STEP_RATE_TOO_HIGH")
        if error is not None:
            self.values[number] = old
            return error
        if not self.flag(22) and 20 in self.values:
            self.values[20] = 0.0  # as GRBL: soft limits need homing
        return None

    def format(self, number: int, decimals: int = 4) -> str:
        value = self.values[number]
        if self.specs[number].kind.integer:
            return f"${number}={int(value)}"
        return f"${number}={format_e4(float_e4(value), decimals)}"

    # --- EEPROM image -------------------------------------------------------------

    def to_eeprom(self, version: int) -> bytes:
        payload = struct.pack(f"<{len(self.specs)}f", *(self.values[n] for n in sorted(self.specs)))
        return bytes([version]) + payload + bytes([_checksum(payload)])

    def from_eeprom(self, image: bytes, version: int) -> str | None:
        """Load the values of an EEPROM image; returns None when it was valid, else the
        message after which the defaults were loaded (the caller writes them back)."""
        size = 4 * len(self.specs)
        if image[0] == 0xFF:
            reason = "EEPROM blank, defaults loaded"
        elif image[0] != version:
            reason = "EEPROM version changed, defaults loaded"
        else:
            payload = image[1 : 1 + size]
            if _checksum(payload) != image[1 + size]:
                reason = "EEPROM checksum error, defaults loaded"
            else:
                values = struct.unpack(f"<{len(self.specs)}f", payload)
                self.values = dict(zip(sorted(self.specs), (float(v) for v in values)))
                return None
        self.restore_defaults()
        return reason


def _checksum(payload: bytes) -> int:
    checksum = 0
    for byte in payload:
        checksum = ((checksum << 1) | (checksum >> 7)) & 0xFF
        checksum = (checksum + byte) & 0xFF
    return checksum
