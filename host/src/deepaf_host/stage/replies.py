"""What the board sends, line by line: classification and status-report parsing.

Pure functions on text (protocol.md sections 3.3, 4, 5), shared by the connection and
its tests. They accept both dialects: the DeepAf firmware (4 decimals) and a stock
GRBL 1.1 board (3 decimals, ``WPos`` instead of ``MPos`` when its ``$10`` says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    OK = "ok"
    ERROR = "error"
    ALARM = "alarm"
    STATUS = "status"
    MESSAGE = "message"  # [MSG:...]
    BRACKET = "bracket"  # any other [...] line
    SETTING = "setting"  # $N=V
    BANNER = "banner"  # Grbl ... after a reset
    EMPTY = "empty"
    GARBLED = "garbled"


@dataclass(frozen=True)
class Line:
    kind: Kind
    text: str
    code: int = 0  # error / alarm number


_ERROR = re.compile(r"error:(\d+)")
_ALARM = re.compile(r"ALARM:(\d+)")
_SETTING = re.compile(r"\$(\d+)=(-?\d+(?:\.\d*)?)")


def classify(text: str) -> Line:
    """What one received line (without its CR LF) is."""
    if text == "ok":
        return Line(Kind.OK, text)
    if not text:
        return Line(Kind.EMPTY, text)
    if (m := _ERROR.fullmatch(text)) is not None:
        return Line(Kind.ERROR, text, int(m.group(1)))
    if (m := _ALARM.fullmatch(text)) is not None:
        return Line(Kind.ALARM, text, int(m.group(1)))
    if text.startswith("<") and text.endswith(">") and parse_status(text) is not None:
        return Line(Kind.STATUS, text)
    if text.startswith("[MSG:") and text.endswith("]"):
        return Line(Kind.MESSAGE, text)
    if text.startswith("[") and text.endswith("]") and text.isprintable():
        return Line(Kind.BRACKET, text)
    if _SETTING.fullmatch(text):
        return Line(Kind.SETTING, text)
    if text.startswith("Grbl ") and text.isprintable():
        return Line(Kind.BANNER, text)
    return Line(Kind.GARBLED, text)


def parse_setting(text: str) -> tuple[int, float] | None:
    m = _SETTING.fullmatch(text)
    return (int(m.group(1)), float(m.group(2))) if m else None


Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class StatusReport:
    """A parsed ``<...>`` status report.

    ``mpos_mm`` is the machine position (``WPos + WCO`` when the board reports work
    positions and the offset is known; None when it cannot be known from this report).
    """

    state: str  # Idle, Run, Hold:0, Hold:1, Jog, Home, Alarm (stock GRBL: also Door, Check, Sleep)
    mpos_mm: Vec3 | None
    wpos_mm: Vec3 | None
    wco_mm: Vec3 | None
    planner_free: int | None
    rx_free: int | None
    feed_mm_min: float
    pins: str
    text: str

    @property
    def base_state(self) -> str:
        """The state without its sub-state (``Hold:1`` -> ``Hold``)."""
        return self.state.split(":", 1)[0]


def _vec(text: str) -> Vec3 | None:
    parts = text.split(",")
    if len(parts) < 3:
        return None
    try:
        x, y, z = (float(p) for p in parts[:3])
    except ValueError:
        return None
    return (x, y, z)


_STATES = ("Idle", "Run", "Hold", "Jog", "Home", "Alarm", "Door", "Check", "Sleep")


def parse_status(text: str) -> StatusReport | None:
    """Parse a status report; None when it is not a well-formed one."""
    if not (text.startswith("<") and text.endswith(">")):
        return None
    fields = text[1:-1].split("|")
    state = fields[0]
    if state.split(":", 1)[0] not in _STATES:
        return None
    values: dict[str, str] = {}
    for item in fields[1:]:
        key, sep, value = item.partition(":")
        if not sep:
            return None
        values[key] = value
    mpos = _vec(values["MPos"]) if "MPos" in values else None
    wpos = _vec(values["WPos"]) if "WPos" in values else None
    wco = _vec(values["WCO"]) if "WCO" in values else None
    if mpos is None and wpos is None:
        return None
    if mpos is None and wpos is not None and wco is not None:
        mpos = (wpos[0] + wco[0], wpos[1] + wco[1], wpos[2] + wco[2])
    planner_free = rx_free = None
    if "Bf" in values:
        try:
            planner_free, rx_free = (int(v) for v in values["Bf"].split(",")[:2])
        except ValueError:
            return None
    feed = 0.0
    rate = values.get("FS", values.get("F"))
    if rate:
        try:
            feed = float(rate.split(",")[0])
        except ValueError:
            return None
    return StatusReport(
        state=state,
        mpos_mm=mpos,
        wpos_mm=wpos,
        wco_mm=wco,
        planner_free=planner_free,
        rx_free=rx_free,
        feed_mm_min=feed,
        pins=values.get("Pn", ""),
        text=text,
    )
