"""Error and alarm codes of the stage protocol (protocol.md, section 10).

The rows are kept once, in protocol/errors.csv and protocol/alarms.csv, and reach this
module through the generated ``protocol_tables``; this module only looks them up (and
the settings table's defaults, for the host's own defaults that follow the board's).
"""

from __future__ import annotations

from .protocol_tables import ALARMS as _ALARM_ROWS
from .protocol_tables import ERRORS as _ERROR_ROWS
from .protocol_tables import SETTINGS, Code

__all__ = ["ALARMS", "ERRORS", "Code", "alarm_number", "alarm_text", "default_setting", "error_number", "error_text"]

#: The codes a DeepAf board sends (protocol.md's tables), by number.
ERRORS: dict[int, Code] = {c.number: c for c in _ERROR_ROWS if "deepaf" in c.dialects}
ALARMS: dict[int, Code] = {c.number: c for c in _ALARM_ROWS if "deepaf" in c.dialects}

# Codes a stock GRBL 1.1 board may send that the DeepAf dialect never does.
_GRBL_ONLY_ALARMS: dict[int, Code] = {c.number: c for c in _ALARM_ROWS if "deepaf" not in c.dialects}


def error_text(number: int) -> str:
    code = ERRORS.get(number)
    return code.text if code else f"Unknown error code {number}"


def alarm_text(number: int) -> str:
    code = ALARMS.get(number) or _GRBL_ONLY_ALARMS.get(number)
    return code.text if code else f"Unknown alarm code {number}"


def error_number(name: str) -> int:
    """The number of the error called ``name`` (e.g. ``"SOFT_LIMIT"`` -> 61)."""
    for code in ERRORS.values():
        if code.name == name:
            return code.number
    raise KeyError(name)


def alarm_number(name: str, dialect: str = "deepaf") -> int:
    """The number of the alarm called ``name`` that a ``dialect`` board sends (stock GRBL's
    ``SOFT_LIMIT`` is 2; a DeepAf board has none)."""
    for code in _ALARM_ROWS:
        if code.name == name and dialect in code.dialects:
            return code.number
    raise KeyError(name)


def default_setting(number: int) -> float:
    """The default value of setting ``$number`` (protocol/settings.csv)."""
    for s in SETTINGS:
        if s.number == number:
            return s.default
    raise KeyError(f"no setting ${number} in the protocol's table")
