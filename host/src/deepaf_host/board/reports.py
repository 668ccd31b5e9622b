"""Texts the virtual board sends: banner, ``$I``, numbers with fixed decimals."""

from __future__ import annotations

from fractions import Fraction

from ..protocol_tables import (
    DEEPAF_FIRMWARE_VERSION,
    DEEPAF_PROTOCOL_VERSION,
    GRBL_DIALECT,
    N_AXIS,
    PLANNER_BUFFER_SIZE,
    RX_BUFFER_SIZE,
    SETTINGS_FORMAT_VERSION,
)

PROTOCOL_VERSION = DEEPAF_PROTOCOL_VERSION
FIRMWARE_VERSION = DEEPAF_FIRMWARE_VERSION
GRBL_VERSION = GRBL_DIALECT
PLANNER_BLOCKS = PLANNER_BUFFER_SIZE - 1  # one slot of the ring stays empty
RX_BUFFER_BYTES = RX_BUFFER_SIZE

BANNER = {
    "deepaf": f"Grbl {GRBL_VERSION} [DeepAf {FIRMWARE_VERSION} protocol {PROTOCOL_VERSION}] ['$' for help]",
    "grbl": f"Grbl {GRBL_VERSION} ['$' for help]",
}
BUILD_INFO = {
    "deepaf": [
        f"[VER:{GRBL_VERSION}.DeepAf:]",
        f"[OPT:HL,{PLANNER_BLOCKS},{RX_BUFFER_BYTES}]",
        f"[DEEPAF:FW={FIRMWARE_VERSION},PROTO={PROTOCOL_VERSION},AXES={N_AXIS}]",
    ],
    "grbl": [f"[VER:{GRBL_VERSION}.20190830:]", f"[OPT:V,{PLANNER_BLOCKS},{RX_BUFFER_BYTES}]"],
}
HELP = {
    "deepaf": "[HLP:$$ $# $G $I $N=V $H $HX $HY $HZ $X $J=line $RST=$ ~ ! ? ctrl-x]",
    "grbl": "[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]",
}
UNLOCK_HINT = "[MSG:'$H'|'$X' to unlock]"
#: EEPROM format version of each dialect's settings image.
EEPROM_VERSION = {"deepaf": SETTINGS_FORMAT_VERSION, "grbl": 10}


def fixed(value: Fraction | float, decimals: int) -> str:
    """``value`` with ``decimals`` decimals, rounded half away from zero, no "-0"."""
    scaled = Fraction(value) * 10**decimals
    units = int(abs(scaled) + Fraction(1, 2))
    sign = "-" if scaled < 0 and units else ""
    text = str(units).rjust(decimals + 1, "0")
    return f"{sign}{text[:-decimals]}.{text[-decimals:]}" if decimals else f"{sign}{text}"


def steps_mm(steps: int, steps_per_mm: float) -> Fraction:
    """A step count in millimetres, exactly."""
    return Fraction(steps) / Fraction(steps_per_mm)
