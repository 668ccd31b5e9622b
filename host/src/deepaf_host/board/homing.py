"""The homing cycle of the virtual board (protocol.md 9.1), one axis at a time.

Each axis: seek the switch, back off until it opens, locate it again slowly (the step
at which it closes is latched exactly), pull off measured from the latched step, and
set the position so that the latched step is machine 0 (homing towards +) or
-max_travel (towards -). Homing moves take no backlash compensation; afterwards the
axis' last direction is the pull-off's.

``home_axis`` is a generator run by the board: it yields what it waits for
(``("idle",)``: the move to end or stop at the switch; ``("until", t)``: a debounce)
and returns None or the alarm code.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Protocol

from .. import codes
from .. import protocol_tables as _tables
from .fixed import f32, lround
from .motion import make_block, vec3
from .motors import Motors
from .settings import Settings

A = codes.alarm_number
HOMING_ORDER = _tables.HOMING_ORDER  # Z, then X, then Y: the objective leaves the slide first
SEEK_TRAVEL_FACTOR = _tables.HOMING_SEEK_TRAVEL_FACTOR
LOCATE_PULLOFF_FACTOR = _tables.HOMING_LOCATE_PULLOFF_FACTOR
LOCATE_MIN_MM = _tables.HOMING_LOCATE_MIN_MM

Wait = tuple


class HomingBoard(Protocol):
    motors: Motors
    settings: Settings
    t: float


def _mm_to_steps(board: HomingBoard, axis: int, mm: float) -> int:
    return lround(f32(mm * board.settings[100 + axis]))


def _move(board: HomingBoard, axis: int, delta: int, rate: float, until: str | None) -> Generator[Wait, None, bool]:
    """One homing move; returns whether the switch condition stopped it."""
    vec = [0, 0, 0]
    vec[axis] = delta
    s = board.settings
    block = make_block(vec3(vec), s.axis(100), rate, s.axis(110), s.axis(120), kind="homing")
    if block is None:
        return False
    if until is not None:
        block.stop_on = (until, axis)
    board.motors.last_event = None
    board.motors.queue_block(block)
    board.motors.start_next(board.t)
    yield ("idle",)
    event = board.motors.last_event
    board.motors.flush(keep_dirs=True)
    return event is not None and event.kind == "stop"


def home_axis(board: HomingBoard, axis: int) -> Generator[Wait, None, int | None]:
    s = board.settings
    direction = -1 if int(s[23]) >> axis & 1 else 1
    max_rate = s[110 + axis]
    seek, locate = min(s[25], max_rate), min(s[24], max_rate)
    search = _mm_to_steps(board, axis, max(f32(s[27] * LOCATE_PULLOFF_FACTOR), LOCATE_MIN_MM))
    debounce_s = s[26] / 1000.0

    seek_steps = _mm_to_steps(board, axis, f32(SEEK_TRAVEL_FACTOR * s[130 + axis]))
    if not (yield from _move(board, axis, direction * seek_steps, seek, "close")):
        return A("HOMING_FAIL_APPROACH")
    yield ("until", board.t + debounce_s)
    if not (yield from _move(board, axis, -direction * search, locate, "open")):
        return A("HOMING_FAIL_PULLOFF")
    yield ("until", board.t + debounce_s)
    if not (yield from _move(board, axis, direction * search, locate, "close")):
        return A("HOMING_FAIL_APPROACH")
    latch = board.motors.position(board.t)[axis]

    pulloff = _mm_to_steps(board, axis, s[27])
    here = board.motors.position(board.t)[axis]
    yield from _move(board, axis, latch - direction * pulloff - here, seek, None)
    zero = 0 if direction > 0 else -_mm_to_steps(board, axis, s[130 + axis])
    here = board.motors.position(board.t)[axis]
    board.motors.set_position(axis, here - latch + zero)
    board.motors.planned_dir[axis] = -direction
    yield ("until", board.t + debounce_s)
    if board.motors.closed(axis, board.motors.motor[axis]):
        return A("HOMING_FAIL_PULLOFF")
    return None
