"""G-code words of the virtual board: cleaning, tokenising and validating one line.

Pure functions (protocol.md 3.2, 6.1, 6.2 and the jog of 7): they return a parsed block
or the number of the ``error:N`` that the line gets. Numbers are kept as written
(mantissa and decimals); axis values become fixed-point 1e-4 mm (for G92 and the
range checks) and 32-bit floats (from which a move's steps are computed), as in the
firmware, so both round alike. What needs the machine state (the lock, the feed rate
since reset, soft limits) is checked by the board.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import codes
from ..protocol_tables import MAX_AXIS_VALUE_MM, MAX_DWELL_S as _MAX_DWELL_S
from .fixed import f32

E = codes.error_number

ACCEPTED_LETTERS = "GMXYZFPN"
AXIS_LETTERS = "XYZ"
MAX_AXIS_MM = MAX_AXIS_VALUE_MM
MAX_DIGITS = 9
MAX_DWELL_S = float(_MAX_DWELL_S)
_NUMBER_CHARS = "0123456789.+-"


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


@dataclass(frozen=True)
class Num:
    """A number as written: ``mant / 10**dec``."""

    mant: int
    dec: int

    def as_float(self) -> float:
        return f32(f32(float(self.mant)) / f32(float(10**self.dec)))

    def is_integer(self) -> bool:
        return self.mant % 10**self.dec == 0

    def as_int(self) -> int:
        """The value of an integer number (``is_integer()``)."""
        return self.mant // 10**self.dec

    def rounds_to_zero(self) -> bool:
        """Reads 0 at 4 decimals (rounded as ``e4``): 0 for every "> 0" check, as in
        the firmware's ``decnum_rounds_to_zero``."""
        if self.dec <= 4:
            return self.mant == 0
        return abs(self.mant) < 10 ** (self.dec - 4) // 2

    def e4(self) -> int | None:
        """In 1e-4 units (rounding further decimals); None beyond 100000."""
        m = abs(self.mant)
        if self.dec <= 4:
            if m > MAX_AXIS_MM * 10**self.dec:
                return None
            v = m * 10 ** (4 - self.dec)
        else:
            d = 10 ** (self.dec - 4)
            v = (m + d // 2) // d
        return -v if self.mant < 0 else v


def read_number(text: str, i: int) -> tuple[Num | None, int]:
    """The number starting at ``text[i]``: the whole run of number characters is
    taken and judged ("1.2.3", "--1", "1-2" are malformed), and an exponent after it
    ("1e3") is malformed too. Returns (None, end) for a malformed number."""
    negative = bad = point = False
    digits = decimals = mant = 0
    first = True
    while i < len(text) and text[i] in _NUMBER_CHARS:
        c = text[i]
        if c in "+-":
            bad |= not first
            negative = c == "-"
        elif c == ".":
            bad |= point
            point = True
        else:
            digits += 1
            if digits > MAX_DIGITS:
                bad = True
            else:
                mant = mant * 10 + int(c)
                if point:
                    decimals += 1
        first = False
        i += 1
    if i < len(text) and text[i] == "E":
        bad = True
    if bad or digits == 0:
        return None, i
    return Num(-mant if negative else mant, decimals), i


def parse_number(text: str) -> Num | None:
    """``text`` as one whole number, or None."""
    num, end = read_number(text, 0)
    return num if num is not None and end == len(text) else None


def _code_x10(v: Num) -> int | None:
    """G/M number times ten (G92.1 -> 921); None when not of that form."""
    mant, dec = v.mant, v.dec
    while dec > 1 and mant % 10 == 0:
        mant //= 10
        dec -= 1
    if mant < 0 or dec > 1 or mant > 9999:
        return None
    return mant if dec else mant * 10


_G_GROUPS: dict[int, str] = {
    0: "motion",
    10: "motion",
    40: "nonmodal",
    530: "nonmodal",
    920: "nonmodal",
    921: "nonmodal",
    900: "distance",
    910: "distance",
    200: "units",
    210: "units",
    170: "plane",
    540: "coord",
    940: "feedmode",
}
_NONMODAL = {40: "G4", 530: "G53", 920: "G92", 921: "G92.1"}
_JOG_G = (530, 900, 910, 210)


@dataclass
class GBlock:
    """A parsed line: its words (axis values in 1e-4 mm)."""

    motion: int | None = None  # 0 / 1 when the line has G0 / G1
    nonmodal: str | None = None  # "G4" | "G53" | "G92" | "G92.1"
    absolute: bool | None = None  # G90 True, G91 False, None: not on the line
    m: int | None = None  # 17 / 18
    inches: bool | None = None  # G20 True, G21 False (G20: stock GRBL only)
    axes: dict[int, int] = field(default_factory=dict)  # 1e-4 mm (G92, range)
    axes_mm: dict[int, float] = field(default_factory=dict)  # unrounded: a move's steps
    f: float | None = None
    p: float | None = None


def parse(text: str, jog: bool = False, grbl: bool = False) -> GBlock | int:
    """Tokenise a cleaned line into a block, or the error code of the first bad word.
    ``jog``: the words after ``$J=`` (only G53/G90/G91/G21/X/Y/Z/F). ``grbl``: stock
    GRBL 1.1, which takes G20 (inches) and has no M17/M18."""
    bad_word = E("INVALID_JOG_COMMAND") if jog else E("UNSUPPORTED_COMMAND")
    block = GBlock()
    groups: set[str] = set()
    words: set[str] = set()
    i = 0
    while i < len(text):
        letter = text[i]
        if not ("A" <= letter <= "Z"):
            if i > 0 and letter in _NUMBER_CHARS:
                return E("BAD_NUMBER_FORMAT")
            return E("EXPECTED_COMMAND_LETTER")
        if letter not in ACCEPTED_LETTERS:
            return bad_word
        value, i = read_number(text, i + 1)
        if value is None:
            return E("BAD_NUMBER_FORMAT")
        group = word = ""
        if letter == "G":
            code = _code_x10(value)
            if jog and code not in _JOG_G:
                return bad_word
            group = _G_GROUPS.get(code, "") if code is not None else ""
            if code is None or not group or (code == 200 and not grbl):
                return E("UNSUPPORTED_COMMAND")
            if group == "motion":
                block.motion = code // 10
            elif group == "nonmodal":
                block.nonmodal = _NONMODAL[code]
            elif group == "distance":
                block.absolute = code == 900
            elif group == "units":
                block.inches = code == 200
        elif letter == "M":
            if jog:
                return bad_word
            code = _code_x10(value)
            if code is None or code not in (170, 180) or grbl:
                return E("UNSUPPORTED_COMMAND")
            group = "M"
            block.m = code // 10
        elif letter in AXIS_LETTERS:
            word = letter
            if word in words:
                return E("REPEATED_WORD")
            e4 = value.e4()
            if e4 is None:
                return E("VALUE_OUT_OF_RANGE")
            block.axes[AXIS_LETTERS.index(letter)] = e4
            block.axes_mm[AXIS_LETTERS.index(letter)] = value.as_float()
        else:  # F, P, N
            if jog and letter != "F":
                return bad_word
            word = letter
            if word in words:
                return E("REPEATED_WORD")
            if value.mant < 0:
                return E("NEGATIVE_VALUE")
            if letter == "F":
                # A feed that reads 0 at 4 decimals is 0: rejected by validation (62).
                block.f = 0.0 if value.rounds_to_zero() else value.as_float()
            elif letter == "P":
                block.p = value.as_float()
            elif not value.is_integer():
                return E("INTEGER_REQUIRED")
        if group:
            if group in groups:
                return E("MODAL_GROUP_VIOLATION")
            groups.add(group)
        if word:
            words.add(word)
    return block


def validate_gcode(block: GBlock) -> int | None:
    """The checks of a G-code line that need no machine state (in the firmware's
    order); None when it passes."""
    if block.nonmodal == "G53" and block.motion is None:
        return E("G53_INVALID_MOTION_MODE")
    if block.p is not None and block.nonmodal != "G4":
        return E("UNUSED_VALUE_WORDS")
    if block.nonmodal == "G4" and block.p is None:
        return E("UNSUPPORTED_COMMAND")  # G4 needs its P, as in the firmware
    if block.axes and (block.nonmodal in ("G4", "G92.1") or (block.m is not None and block.nonmodal != "G92")):
        return E("UNUSED_AXIS_WORDS")
    if block.nonmodal == "G92":
        if not block.axes:
            return E("NO_AXIS_WORDS")
        if block.motion is not None:
            return E("MODAL_GROUP_VIOLATION")
    if block.f is not None and block.f <= 0:
        return E("VALUE_OUT_OF_RANGE")
    if block.nonmodal == "G4" and (block.p or 0.0) > MAX_DWELL_S:
        return E("VALUE_OUT_OF_RANGE")
    return None


def validate_jog(block: GBlock) -> int | None:
    if block.f is None:
        return E("INVALID_JOG_COMMAND")
    if not block.axes:
        return E("NO_AXIS_WORDS")
    if block.f <= 0:
        return E("VALUE_OUT_OF_RANGE")
    return None
