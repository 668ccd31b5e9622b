"""Error and alarm codes of the stage protocol (protocol.md, section 10).

protocol.md holds the normative table; this module mirrors it for the host, and
``tests/test_codes.py`` fails when protocol.md, this module and ``firmware/codes.h``
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    number: int
    name: str
    text: str


def _table(rows: list[tuple[int, str, str]]) -> dict[int, Code]:
    return {n: Code(n, name, text) for n, name, text in rows}


ERRORS: dict[int, Code] = _table(
    [
        (1, "EXPECTED_COMMAND_LETTER", "G-code words consist of a letter and a value; the letter was not found"),
        (2, "BAD_NUMBER_FORMAT", "Missing or malformed number"),
        (3, "INVALID_STATEMENT", "Unknown or invalid $ command"),
        (4, "NEGATIVE_VALUE", "Negative value where a positive one is required"),
        (5, "HOMING_DISABLED", "Homing is not enabled ($22=0)"),
        (8, "NOT_IDLE", "$ command is only valid when Idle or in Alarm"),
        (9, "SYSTEM_LOCKED", "G-code is locked out during an alarm or a jog; home ($H) or unlock ($X) first"),
        (10, "SOFT_LIMIT_NEEDS_HOMING", "Soft limits cannot be enabled without homing"),
        (11, "LINE_OVERFLOW", "Line longer than 80 characters"),
        (12, "STEP_RATE_TOO_HIGH", "Setting would need a step rate above 30 kHz"),
        (15, "JOG_TRAVEL_EXCEEDED", "Jog target exceeds machine travel; nothing moved"),
        (16, "INVALID_JOG_COMMAND", "Jog command has a word other than G53/G90/G91/G21/X/Y/Z/F, or no F"),
        (20, "UNSUPPORTED_COMMAND", "Unsupported or invalid G-code command or word"),
        (21, "MODAL_GROUP_VIOLATION", "More than one command of the same modal group in a line"),
        (22, "UNDEFINED_FEED_RATE", "Feed rate has not been set"),
        (23, "INTEGER_REQUIRED", "Value must be an integer"),
        (25, "REPEATED_WORD", "Same word repeated in a line"),
        (26, "NO_AXIS_WORDS", "Command needs at least one axis word"),
        (30, "G53_INVALID_MOTION_MODE", "G53 is only allowed with G0 or G1"),
        (31, "UNUSED_AXIS_WORDS", "Axis words found on a line whose command does not use them"),
        (36, "UNUSED_VALUE_WORDS", "Value words found on a line whose command does not use them"),
        (60, "INVALID_CHARACTER", "Non-ASCII or control byte in the line"),
        (61, "SOFT_LIMIT", "Target exceeds machine travel (soft limit); nothing moved"),
        (62, "VALUE_OUT_OF_RANGE", "Value out of the allowed range"),
        (63, "HOMING_FAILED", "Homing failed; see the ALARM before this reply"),
    ]
)

ALARMS: dict[int, Code] = _table(
    [
        (1, "HARD_LIMIT", "Hard limit triggered; motion stopped at once, position lost, home again"),
        (3, "ABORT_CYCLE", "Reset while in motion; position may be lost, home again"),
        (6, "HOMING_FAIL_RESET", "Homing failed: reset during the homing cycle"),
        (8, "HOMING_FAIL_PULLOFF", "Homing failed: the limit switch is still closed after pulling off"),
        (9, "HOMING_FAIL_APPROACH", "Homing failed: the limit switch was not found within the search distance"),
    ]
)

# Codes a stock GRBL 1.1 board may send that the DeepAf dialect never does.
_GRBL_ONLY_ALARMS = _table(
    [
        (2, "SOFT_LIMIT", "Soft limit: target exceeds machine travel (stock GRBL)"),
        (4, "PROBE_FAIL_INITIAL", "Probe fail (stock GRBL)"),
        (5, "PROBE_FAIL_CONTACT", "Probe fail (stock GRBL)"),
        (7, "HOMING_FAIL_DOOR", "Homing failed: safety door opened (stock GRBL)"),
    ]
)


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


def alarm_number(name: str) -> int:
    for code in ALARMS.values():
        if code.name == name:
            return code.number
    raise KeyError(name)
