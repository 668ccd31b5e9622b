"""Numbers as the AVR firmware computes them: 32-bit floats, positions in steps,
reports in 1e-4 mm.

The virtual board rounds like the firmware so that both print the same positions and
reach the same steps for the same lines.
"""

from __future__ import annotations

import struct


def f32(value: float) -> float:
    """``value`` rounded to a 32-bit float."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def lround(x: float) -> int:
    """Round half away from zero (C's lroundf)."""
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def report_e4(steps: int, steps_per_mm: float) -> int:
    """A step count as 1e-4 mm, as the status report prints it."""
    return lround(f32(f32(f32(float(steps)) / steps_per_mm) * 10000.0))


def float_e4(value: float) -> int:
    """A setting value as 1e-4 units, as ``$$`` prints it."""
    return lround(f32(value * 10000.0))


def format_e4(v: int, decimals: int = 4) -> str:
    """1e-4 units as a decimal number with ``decimals`` (4, or 3 for stock GRBL)."""
    sign = "-" if v < 0 else ""
    m = abs(v)
    if decimals == 3:
        m = (m + 5) // 10
        return f"{sign}{m // 1000}.{m % 1000:03d}"
    return f"{sign}{m // 10000}.{m % 10000:04d}"
