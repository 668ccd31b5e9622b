"""The board's settings (``$$``, protocol.md section 8) as a typed structure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..protocol_tables import HOMING_LOCATE_MIN_MM, HOMING_LOCATE_PULLOFF_FACTOR, HOMING_SEEK_TRAVEL_FACTOR, SETTINGS
from .replies import parse_setting

Vec3 = tuple[float, float, float]

#: Setting numbers by the firmware's field name (protocol/settings.csv): "homing_seek" -> 25,
#: "steps_per_mm[2]" -> 102.
NUMBER: Mapping[str, int] = MappingProxyType({s.field: s.number for s in SETTINGS if s.field})


def _axes(field: str) -> tuple[int, int, int]:
    return (NUMBER[f"{field}[0]"], NUMBER[f"{field}[1]"], NUMBER[f"{field}[2]"])


#: Settings the host needs from any GRBL 1.1 board (the DeepAf-only ones are optional).
REQUIRED = tuple(
    sorted(
        [NUMBER[f] for f in ("soft_limits", "hard_limits", "homing_enable", "homing_dir")]
        + [NUMBER[f] for f in ("homing_locate", "homing_seek", "homing_debounce", "homing_pulloff")]
        + [n for f in ("steps_per_mm", "max_rate", "acceleration", "max_travel") for n in _axes(f)]
    )
)


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

        def axes(field: str) -> Vec3:
            x, y, z = _axes(field)
            return (values[x], values[y], values[z])

        def value(field: str) -> float:
            return values[NUMBER[field]]

        has_backlash = all(n in values for n in _axes("backlash"))
        return cls(
            values=MappingProxyType(dict(values)),
            steps_per_mm=axes("steps_per_mm"),
            max_rate_mm_min=axes("max_rate"),
            accel_mm_s2=axes("acceleration"),
            max_travel_mm=axes("max_travel"),
            backlash_mm=axes("backlash") if has_backlash else None,
            soft_limits=bool(value("soft_limits")),
            hard_limits=bool(value("hard_limits")),
            homing=bool(value("homing_enable")),
            homing_dir_mask=int(value("homing_dir")),
            homing_locate_mm_min=value("homing_locate"),
            homing_seek_mm_min=value("homing_seek"),
            homing_debounce_ms=value("homing_debounce"),
            homing_pulloff_mm=value("homing_pulloff"),
            idle_release_s=int(value("idle_release")) if NUMBER["idle_release"] in values else None,
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
        search = max(HOMING_LOCATE_PULLOFF_FACTOR * self.homing_pulloff_mm, HOMING_LOCATE_MIN_MM)
        for axis in range(3):
            seek = min(self.homing_seek_mm_min, self.max_rate_mm_min[axis]) / 60.0
            locate = min(self.homing_locate_mm_min, self.max_rate_mm_min[axis]) / 60.0
            accel_s = 2.0 * seek / self.accel_mm_s2[axis]
            total += HOMING_SEEK_TRAVEL_FACTOR * self.max_travel_mm[axis] / seek + 2.0 * search / locate
            total += self.homing_pulloff_mm / seek + 3.0 * accel_s + 2.0 * self.homing_debounce_ms / 1000.0
        return total
