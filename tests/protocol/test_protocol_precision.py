"""Numbers at the edge of the board's resolution (protocol.md 5, 6.1, 8).

A value that reads 0 at 4 decimals is 0: a feed or a "> 0" setting of that size is
`error:62`, and the board stays Idle and responsive (it used to accept it and then sit
in Run or Home forever). Positions are kept in steps, so a relative move of a whole
number of steps moves exactly that many steps, however fine the steps are (Z: 16000
steps/mm, one step 0.0625 um, finer than the 0.1 um of 4 decimals).
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from board_client import DEFAULT_SPM, FAST_SETTINGS, Board, mm_for

SPM = DEFAULT_SPM  # default steps/mm (protocol.md 8)
TINY = "0.00000001"


def _fast(board: Board) -> None:
    board.configure(FAST_SETTINGS)
    board.unlock()


def _step_mm(steps: int, spm: int) -> str:
    """A whole number of steps in mm, written exactly (at most 9 digits)."""
    text = format(Decimal(steps) / Decimal(spm), "f")
    assert len(text.replace("-", "").replace(".", "").lstrip("0")) <= 9, text
    return text


def test_feed_that_reads_zero_is_rejected_and_nothing_moves(board: Board) -> None:
    _fast(board)
    start = board.target.motor_steps()
    assert board.error(f"F{TINY}") == 62
    assert board.error(f"G1 X-1.5 F{TINY}") == 62
    assert board.error(f"$J=G91 X-1 F{TINY}") == 62
    assert board.error("G1 X-1.5") == 22, "no feed was taken"
    assert board.error("G1 X-1.5 F0.00004") == 62  # 0.0000 at 4 decimals
    s = board.status()
    assert s.state == "Idle" and s.mpos == (0, 0, 0)
    assert board.steps_delta(start) == (0, 0, 0)
    board.ok("F0.00005")  # 0.0001 at 4 decimals: a feed (a slow one)


@pytest.mark.parametrize(
    "number",
    [11, 24, 25, 27, 100, 102, 110, 112, 120, 122, 130, 132, 140],
)
def test_setting_that_reads_zero_is_rejected(board: Board, number: int) -> None:
    before = board.settings()
    assert board.error(f"${number}={TINY}") == 62
    assert board.error(f"${number}=0.00004999") == 62
    assert board.settings() == before, "an error changes nothing"
    assert board.status().state in ("Alarm", "Idle")


def test_zero_still_allowed_where_the_range_starts_at_zero(board: Board) -> None:
    board.ok("$11=0")
    board.ok("$27=0.00000")
    board.ok("$140=0.00005")  # 0.0001 at 4 decimals
    assert board.settings()[11] == "0.0000"
    assert board.settings()[140] == "0.0001"


def test_random_whole_step_relative_moves_land_exactly(board: Board) -> None:
    _fast(board)
    board.ok("G1 X-30 Y-20 Z-4 F3000")  # room on every side
    board.wait_idle(timeout=60)
    start = board.target.motor_steps()
    board.ok("G91")
    rng = random.Random(18)
    total = [0, 0, 0]
    for _ in range(30):
        move = [rng.randint(-800, 800), rng.randint(-800, 800), rng.randint(-1999, 1999)]
        words = " ".join(f"{'XYZ'[a]}{_step_mm(move[a], SPM[a])}" for a in range(3))
        board.ok(f"G1 {words} F3000")
        board.wait_idle(timeout=30)
        total = [total[a] + move[a] for a in range(3)]
        assert board.steps_delta(start) == tuple(total), words
    s = board.status()
    begin = (-24000, -16000, -64000)
    assert s.mpos == tuple(mm_for(begin[a] + total[a], SPM[a]) for a in range(3))


def test_repeated_one_step_jogs_step_one_at_a_time(board: Board) -> None:
    _fast(board)
    board.ok("G1 Z-1 F100")
    board.wait_idle(timeout=30)
    one = _step_mm(-1, SPM[2])  # -0.0000625
    for n in range(1, 9):
        before = board.target.motor_steps()
        board.ok(f"$J=G91 Z{one} F50")
        board.wait_idle()
        assert board.steps_delta(before) == (0, 0, -1), f"jog {n}"
        assert board.status().mpos[2] == mm_for(-16000 - n, SPM[2])
    for n in range(1, 9):
        before = board.target.motor_steps()
        board.ok(f"G91 G1 Z{one[1:]} F50")
        board.wait_idle()
        assert board.steps_delta(before) == (0, 0, 1), f"line {n}"


def test_absolute_moves_and_g92_keep_step_precision(board: Board) -> None:
    _fast(board)
    start = board.target.motor_steps()
    board.ok("G1 Z-0.0000625 F100")
    board.wait_idle()
    assert board.steps_delta(start) == (0, 0, -1)
    board.ok("G1 Z-0.000125")
    board.wait_idle()
    assert board.steps_delta(start) == (0, 0, -2)
    board.ok("G92 Z0")  # the work offset is the reported position, 4 decimals
    assert board.status().wco == (0, 0, Decimal("-0.0001"))
    board.ok("G90 G1 Z0")
    board.wait_idle()
    assert board.steps_delta(start) == (0, 0, -2), "G92 Z0 then Z0: no motion"
