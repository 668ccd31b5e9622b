"""Settings of the virtual board (protocol.md section 8) and their EEPROM image.

Values are kept as the firmware keeps them, 32-bit floats, so that ``$$`` prints and
soft-limit comparisons round exactly like the board. The EEPROM is a byte image
(format version, the values, a checksum) that survives resets of the same board; a
blank, foreign or corrupt image loads the defaults and says so after the banner.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .. import codes

E = codes.error_number


def f32(value: float) -> float:
    """``value`` rounded to a 32-bit float, as the AVR stores it."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


@dataclass(frozen=True)
class Spec:
    number: int
    kind: str  # "int" | "float"
    default: float
    low: float
    high: float | None  # None: no upper bound
    low_exclusive: bool = False  # True: "> low" rather than ">= low"


def _axes(base: int, kind: str, defaults: tuple[float, float, float], low: float, high: float | None, excl: bool) -> list[Spec]:
    return [Spec(base + i, kind, defaults[i], low, high, excl) for i in range(3)]


_COMMON: list[Spec] = [
    Spec(0, "int", 4, 2, 20),
    Spec(2, "int", 0, 0, 7),
    Spec(3, "int", 0, 0, 7),
    Spec(4, "int", 0, 0, 1),
    Spec(5, "int", 0, 0, 7),
    Spec(11, "float", 0.01, 0, 1),
    Spec(20, "int", 1, 0, 1),
    Spec(21, "int", 1, 0, 1),
    Spec(22, "int", 1, 0, 1),
    Spec(23, "int", 0, 0, 7),
    Spec(24, "float", 25.0, 0, None, True),
    Spec(25, "float", 300.0, 0, None, True),
    Spec(26, "int", 25, 0, 1000),
    Spec(27, "float", 1.0, 0, 10),
    *_axes(100, "float", (800.0, 800.0, 16000.0), 0, None, True),
    *_axes(110, "float", (600.0, 600.0, 60.0), 0, None, True),
    *_axes(120, "float", (50.0, 50.0, 5.0), 0, None, True),
    *_axes(130, "float", (60.0, 40.0, 8.0), 0, None, True),
]

#: The DeepAf table (protocol.md section 8).
DEEPAF_SPECS: dict[int, Spec] = {
    s.number: s
    for s in [*_COMMON, *_axes(140, "float", (0.0, 0.0, 0.0), 0, 1, False), Spec(150, "int", 60, 0, 65535)]
}

#: What a stock GRBL 1.1 board lists instead: no $140-$150, GRBL's $1/$6/$10/$12/$13/$30-$32.
GRBL_SPECS: dict[int, Spec] = {
    s.number: s
    for s in sorted(
        [
            *_COMMON,
            Spec(1, "int", 25, 0, 255),
            Spec(6, "int", 0, 0, 1),
            Spec(10, "int", 1, 0, 3),
            Spec(12, "float", 0.002, 0, None, True),
            Spec(13, "int", 0, 0, 1),
            Spec(30, "float", 1000.0, 0, None, True),
            Spec(31, "float", 0.0, 0, None),
            Spec(32, "int", 0, 0, 1),
        ],
        key=lambda s: s.number,
    )
}

MAX_STEP_RATE_HZ = 30000.0


class Settings:
    """The live settings of one board, validated the way protocol.md says."""

    def __init__(self, specs: dict[int, Spec]) -> None:
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

    def check(self, number: int, value: float) -> int | None:
        """The error code for ``$number=value`` or None when it may be set."""
        spec = self.specs.get(number)
        if spec is None:
            return E("INVALID_STATEMENT")
        if value < 0:
            return E("NEGATIVE_VALUE")
        if spec.kind == "int" and value != int(value):
            return E("INTEGER_REQUIRED")
        if value < spec.low or (spec.low_exclusive and value <= spec.low):
            return E("VALUE_OUT_OF_RANGE")
        if spec.high is not None and value > spec.high:
            return E("VALUE_OUT_OF_RANGE")
        value = f32(value)
        for axis in range(3):
            spm = value if number == 100 + axis else self.values[100 + axis]
            rate = value if number == 110 + axis else self.values[110 + axis]
            if number in (100 + axis, 110 + axis) and spm * rate / 60.0 > MAX_STEP_RATE_HZ:
                return E("STEP_RATE_TOO_HIGH")
        if number == 20 and value and not self.flag(22):
            return E("SOFT_LIMIT_NEEDS_HOMING")
        return None

    def set(self, number: int, value: float) -> None:
        """Store a value that ``check`` accepted. Turning homing off turns soft limits
        off as well (GRBL does the same)."""
        self.values[number] = f32(value)
        if number == 22 and not value and 20 in self.values:
            self.values[20] = 0.0

    def format(self, number: int, decimals: int) -> str:
        value = self.values[number]
        if self.specs[number].kind == "int":
            return f"${number}={int(value)}"
        return f"${number}={value:.{decimals}f}"

    # --- EEPROM image -------------------------------------------------------------

    def to_eeprom(self, version: int) -> bytes:
        payload = struct.pack(f"<{len(self.specs)}f", *(self.values[n] for n in sorted(self.specs)))
        return bytes([version]) + payload + bytes([_checksum(payload)])

    def from_eeprom(self, image: bytes, version: int) -> str | None:
        """Load the values of an EEPROM image; returns None when it was valid, else the
        message after which the defaults were loaded (the caller writes them back)."""
        size = 4 * len(self.specs)
        if all(b == 0xFF for b in image[: size + 2]):
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
