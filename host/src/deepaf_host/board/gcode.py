"""G-code words of the virtual board: cleaning, tokenising and validating one line.

Pure functions (protocol.md 3.2, 6.1, 6.2, 7 jog): they return a parsed block or the
number of the ``error:N`` that the line gets. What needs the machine state (the lock,
soft limits, the feed rate since reset) is checked by the board.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import codes
from .settings import f32

E = codes.error_number

ACCEPTED_LETTERS = "GMXYZFPN"
AXIS_LETTERS = "XYZ"
MAX_AXIS_MM = 100000.0
MAX_DWELL_S = 3600.0

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")

# G number x 10 -> modal group
_G_GROUPS: dict[int, str] = {
    0: "motion",
    10: "motion",
    40: "nonmodal",
    530: "nonmodal",
    920: "nonmodal",
    921: "nonmodal",
    170: "plane",
    210: "units",
    540: "coord",
    900: "distance",
    910: "distance",
    940: "feedmode",
}


def clean(line: str) -> str:
    """Upper-case ``line`` with spaces, TABs and comments removed."""
    out: list[str] = []
    in_paren = False
    for ch in line:
        if in_paren:
            if ch == ")":
                in_paren = False
            continue
        if ch == "(":
            in_paren = True
        elif ch == ";":
            break
        elif ch not in " \t":
            out.append(ch.upper())
    return "".join(out)


def parse_number(token: str) -> float | None:
    """A protocol number (sign, digits, one point, 1-9 digits) as a 32-bit float."""
    if not _NUMBER.fullmatch(token) or sum(c.isdigit() for c in token) > 9:
        return None
    return f32(float(token))


@dataclass(frozen=True)
class Word:
    letter: str
    value: float


def words(text: str) -> list[Word] | int:
    """Tokenise a cleaned line into words, or the error code of the first bad one."""
    out: list[Word] = []
    i, n = 0, len(text)
    while i < n:
        letter = text[i]
        if not ("A" <= letter <= "Z"):
            return E("EXPECTED_COMMAND_LETTER") if i == 0 else E("BAD_NUMBER_FORMAT")
        j = i + 1
        if j < n and text[j] in "+-":
            j += 1
        while j < n and (text[j].isdigit() or text[j] == "."):
            j += 1
        token = text[i + 1 : j]
        if letter not in ACCEPTED_LETTERS:
            return E("UNSUPPORTED_COMMAND")
        value = parse_number(token)
        exponent = j + 1 < n and text[j] == "E" and (text[j + 1].isdigit() or text[j + 1] in "+-")
        if value is None or exponent:
            return E("BAD_NUMBER_FORMAT")
        out.append(Word(letter, value))
        i = j
    return out


@dataclass
class GBlock:
    """A validated G-code line (its words; the board applies it)."""

    motion: int | None = None  # 0 / 1 when the line has G0 / G1
    nonmodal: str | None = None  # "G4" | "G53" | "G92" | "G92.1"
    distance: int | None = None  # 90 / 91
    m: int | None = None  # 17 / 18
    axes: dict[int, float] = field(default_factory=dict)
    f: float | None = None
    p: float | None = None


def parse_gcode(text: str) -> GBlock | int:
    """Parse and validate a cleaned, non-empty G-code line."""
    tokens = words(text)
    if isinstance(tokens, int):
        return tokens
    block = GBlock()
    groups: set[str] = set()
    seen: set[str] = set()
    for word in tokens:
        if word.letter == "G":
            tenths = round(word.value * 10)
            if abs(word.value * 10 - tenths) > 1e-3 or (tenths % 10 and tenths != 921):
                return E("UNSUPPORTED_COMMAND")
            group = _G_GROUPS.get(tenths)
            if group is None:
                return E("UNSUPPORTED_COMMAND")
            if group in groups:
                return E("MODAL_GROUP_VIOLATION")
            groups.add(group)
            if group == "motion":
                block.motion = tenths // 10
            elif group == "nonmodal":
                block.nonmodal = "G92.1" if tenths == 921 else f"G{tenths // 10}"
            elif group == "distance":
                block.distance = tenths // 10
        elif word.letter == "M":
            if word.value not in (17.0, 18.0):
                return E("UNSUPPORTED_COMMAND")
            if "M" in groups:
                return E("MODAL_GROUP_VIOLATION")
            groups.add("M")
            block.m = int(word.value)
        else:
            if word.letter in seen:
                return E("REPEATED_WORD")
            seen.add(word.letter)
            if word.letter in AXIS_LETTERS:
                block.axes[AXIS_LETTERS.index(word.letter)] = word.value
            elif word.letter == "F":
                block.f = word.value
            elif word.letter == "P":
                block.p = word.value
    return _validate(block)


def _validate(block: GBlock) -> GBlock | int:
    if block.f is not None:
        if block.f < 0:
            return E("NEGATIVE_VALUE")
        if block.f == 0:
            return E("VALUE_OUT_OF_RANGE")
    if block.p is not None:
        if block.p < 0:
            return E("NEGATIVE_VALUE")
        if block.p > MAX_DWELL_S:
            return E("VALUE_OUT_OF_RANGE")
    if any(abs(v) > MAX_AXIS_MM for v in block.axes.values()):
        return E("VALUE_OUT_OF_RANGE")
    if block.p is not None and block.nonmodal != "G4":
        return E("UNUSED_VALUE_WORDS")
    if block.nonmodal == "G4":
        if block.axes:
            return E("UNUSED_AXIS_WORDS")
        if block.p is None:
            return E("UNSUPPORTED_COMMAND")
    if block.nonmodal == "G53" and block.motion is None:
        return E("G53_INVALID_MOTION_MODE")
    if block.nonmodal == "G92" and not block.axes:
        return E("NO_AXIS_WORDS")
    if block.nonmodal == "G92.1" and block.axes:
        return E("UNUSED_AXIS_WORDS")
    if block.m is not None and block.axes and block.nonmodal != "G92":
        return E("UNUSED_AXIS_WORDS")
    return block


@dataclass
class JogBlock:
    axes: dict[int, float]
    f: float
    machine: bool  # G53
    distance: int | None  # 90 / 91 for this line only


def parse_jog(text: str) -> JogBlock | int:
    """Parse and validate the words after ``$J=`` (cleaned)."""
    tokens = words(text)
    if isinstance(tokens, int):
        return E("INVALID_JOG_COMMAND") if tokens == E("UNSUPPORTED_COMMAND") else tokens
    axes: dict[int, float] = {}
    f: float | None = None
    machine = False
    distance: int | None = None
    seen: set[str] = set()
    groups: set[str] = set()
    for word in tokens:
        if word.letter == "G":
            tenths = round(word.value * 10)
            group = {530: "nonmodal", 900: "distance", 910: "distance", 210: "units"}.get(tenths)
            if group is None or abs(word.value * 10 - tenths) > 1e-3:
                return E("INVALID_JOG_COMMAND")
            if group in groups:
                return E("MODAL_GROUP_VIOLATION")
            groups.add(group)
            if tenths == 530:
                machine = True
            elif group == "distance":
                distance = tenths // 10
        elif word.letter in AXIS_LETTERS or word.letter == "F":
            if word.letter in seen:
                return E("REPEATED_WORD")
            seen.add(word.letter)
            if word.letter == "F":
                f = word.value
            else:
                axes[AXIS_LETTERS.index(word.letter)] = word.value
        else:
            return E("INVALID_JOG_COMMAND")
    if f is None:
        return E("INVALID_JOG_COMMAND")
    if f < 0:
        return E("NEGATIVE_VALUE")
    if f == 0:
        return E("VALUE_OUT_OF_RANGE")
    if not axes:
        return E("NO_AXIS_WORDS")
    if any(abs(v) > MAX_AXIS_MM for v in axes.values()):
        return E("VALUE_OUT_OF_RANGE")
    return JogBlock(axes, f, machine, distance)
