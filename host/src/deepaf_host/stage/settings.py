"""The board's settings (``$$``, protocol.md section 8) as a typed structure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .replies import parse_setting

Vec3 = tuple[float, float, float]

#: Settings the host needs from any GRBL 1.1 board.
REQUIRED = (20, 21, 22, 23, 24, 25, 26, 27, 100, 101, 102, 110, 111, 112, 120, 121, 122, 130, 131, 132)


class MissingSettings(ValueError):
    def __init__(self, missing: list[int]) -> None:
        self.missing = missing
        super().__init__("the board did not list " + ", ".join(f"${n}" for n in missing))


@dataclass(frozen=True)
class BoardSettings:
    """What ``$$`` said, with typed views of the settings the host uses.

    ``backlash_mm`` and ``idle_release_s`` are None on a stock GRBL board (it has no
    $140-$142 and $150)."""

    values: Mapping[int, float]
    steps_per_mm: Vec3
    max_rate_mm_min: Vec3
    accel_mm_s2: Vec3
    max_travel_mm: Vec3
    backlash_mm: Vec3 | None
    soft_limits: bool
    hard_limits: bool
    homing: bool
    homing_dir_mask: int
    homing_locate_mm_min: float
    homing_seek_mm_min: float
    homing_debounce_ms: float
    homing_pulloff_mm: float
    idle_release_s: int | None

    def __getitem__(self, number: int) -> float:
        return self.values[number]

    @classmethod
    def from_values(cls, values: Mapping[int, float]) -> BoardSettings:
        missing = [n for n in REQUIRED if n not in values]
        if missing:
            raise MissingSettings(missing)

        def axes(base: int) -> Vec3:
            return (values[base], values[base + 1], values[base + 2])

        has_backlash = all(n in values for n in (140, 141, 142))
        return cls(
            values=MappingProxyType(dict(values)),
            steps_per_mm=axes(100),
            max_rate_mm_min=axes(110),
            accel_mm_s2=axes(120),
            max_travel_mm=axes(130),
            backlash_mm=axes(140) if has_backlash else None,
            soft_limits=bool(values[20]),
            hard_limits=bool(values[21]),
            homing=bool(values[22]),
            homing_dir_mask=int(values[23]),
            homing_locate_mm_min=values[24],
            homing_seek_mm_min=values[25],
            homing_debounce_ms=values[26],
            homing_pulloff_mm=values[27],
            idle_release_s=int(values[150]) if 150 in values else None,
        )

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> BoardSettings:
        """From the ``$N=V`` lines of a ``$$`` reply (other lines are ignored)."""
        values: dict[int, float] = {}
        for line in lines:
            parsed = parse_setting(line)
            if parsed is not None:
                values[parsed[0]] = parsed[1]
        return cls.from_values(values)

    def homing_time_s(self) -> float:
        """A generous upper bound of a full ``$H`` (for its timeout)."""
        total = 0.0
        search = max(5.0 * self.homing_pulloff_mm, 1.0)
        for axis in range(3):
            seek = min(self.homing_seek_mm_min, self.max_rate_mm_min[axis]) / 60.0
            locate = min(self.homing_locate_mm_min, self.max_rate_mm_min[axis]) / 60.0
            accel_s = 2.0 * seek / self.accel_mm_s2[axis]
            total += 1.5 * self.max_travel_mm[axis] / seek + 2.0 * search / locate
            total += self.homing_pulloff_mm / seek + 3.0 * accel_s + 2.0 * self.homing_debounce_ms / 1000.0
        return total
