"""Homing, hard limits and the lock (protocol.md 7, 9.1, 9.2)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from board_client import DEFAULT_SPM, FAST_SETTINGS, Board, mm_for, steps_for
from targets import FAR

SPM = DEFAULT_SPM  # default steps/mm (protocol.md 8)
# Quick homing: short travels, fast seek and locate, short debounce and pull-off.
HOMING_SETTINGS = {
    **FAST_SETTINGS,
    24: "200",  # locate, mm/min
    25: "1000",  # seek, mm/min (limited to each axis' maximum rate)
    26: "5",  # debounce, ms
    27: "0.5",  # pull-off, mm
    130: "10",
    131: "10",
    132: "2",
}


def _place_switches(board: Board, ahead_mm: tuple[float, float, float]) -> tuple[int, int, int]:
    """Puts each switch ahead (towards +) of the motors; returns their steps."""
    steps = board.target.motor_steps()
    switch = tuple(steps[a] + steps_for(ahead_mm[a], SPM[a]) for a in range(3))
    for a, axis in enumerate("xyz"):
        board.target.set_switch(axis, switch[a], "+")
    return switch  # type: ignore[return-value]


def _zero_motor_steps(board: Board) -> tuple[int, ...]:
    """Motor step at which each axis reads machine 0."""
    s = board.status()
    steps = board.target.motor_steps()
    return tuple(steps[a] - steps_for(s.mpos[a], SPM[a]) for a in range(3))


def test_homing_sets_zero_at_the_switch_step(board: Board) -> None:
    board.configure(HOMING_SETTINGS)
    switch = _place_switches(board, (3.0, 2.0, 0.4))
    assert board.status().state == "Alarm", "boots locked"
    assert board.send("$H") == ["ok"]
    s = board.status()
    assert s.state == "Idle", "homing every axis unlocks"
    assert s.mpos == (mm_for(-400, 800), mm_for(-400, 800), mm_for(-8000, 16000)), "pulled off $27"
    assert _zero_motor_steps(board) == switch
    assert s.pins == "", "switches open after the pull-off"


def test_homing_order_is_z_x_y(board: Board) -> None:
    board.configure(HOMING_SETTINGS)
    start = board.target.motor_steps()
    _place_switches(board, (1.0, 1.0, 0.3))
    board.write("$H\n")
    order: list[str] = []
    while len(order) < 3:
        steps = board.target.motor_steps()
        for a, axis in enumerate("XYZ"):
            if steps[a] != start[a] and axis not in order:
                order.append(axis)
    assert order == ["Z", "X", "Y"]
    assert board.reply(timeout=60) == ["ok"]


@pytest.mark.slow
def test_twenty_homings_from_random_starts_give_the_same_zero(board: Board) -> None:
    board.configure(HOMING_SETTINGS)
    switch = _place_switches(board, (1.0, 1.0, 0.2))
    rng = random.Random(99)
    board.ok("$H")
    zeros = {_zero_motor_steps(board)}
    for _ in range(19):
        x, y = Decimal(-rng.randint(5000, 45000)) / 10000, Decimal(-rng.randint(5000, 45000)) / 10000
        z = Decimal(-rng.randint(5000, 10000)) / 10000
        board.ok(f"G90 G1 X{x} Y{y} Z{z} F{rng.randint(100, 2000)}")
        board.ok("G4 P0")
        board.ok("$H")
        zeros.add(_zero_motor_steps(board))
    assert zeros == {switch}


def test_single_axis_homing_and_lock(board: Board) -> None:
    board.configure(HOMING_SETTINGS)
    switch = _place_switches(board, (1.0, 1.0, 0.2))
    board.ok("$HX")
    assert board.status().state == "Alarm", "still locked: Y and Z not homed"
    assert board.send("G0 X-1") == ["error:9"]
    board.ok("$HZ")
    board.ok("$HY")
    s = board.status()
    assert s.state == "Idle"
    assert _zero_motor_steps(board) == switch
    # Homing towards - ($23): the latched step becomes -max_travel.
    board.ok("$23=1")
    steps = board.target.motor_steps()
    board.target.set_switch("x", steps[0] - 800, "-")
    board.ok("$HX")
    s = board.status()
    assert s.mpos[0] == -10 + mm_for(400, 800)
    assert board.target.motor_steps()[0] - steps_for(s.mpos[0], 800) == steps[0] - 800 + 8000


def test_homing_disabled(board: Board) -> None:
    board.ok("$20=0")
    board.ok("$22=0")
    assert board.send("$H") == ["error:5"]
    assert board.send("$HZ") == ["error:5"]
    assert board.soft_reset()[:-1] == []
    assert board.status().state == "Alarm", "a soft reset keeps the lock"
    fresh = Board(board.target, board.target.open())
    assert "[MSG:'$H'|'$X' to unlock]" not in fresh.handshake()
    assert fresh.status().state == "Idle", "homing disabled: boots unlocked"


def test_homing_fails_when_the_switch_is_never_found(board: Board) -> None:
    board.configure(HOMING_SETTINGS)
    before = board.target.motor_steps()
    board.target.set_switch("x", before[0] + FAR, "+")
    lines = board.send("$HX", timeout=60)
    assert lines == ["ALARM:9", "error:63"]
    travelled = board.target.motor_steps()[0] - before[0]
    assert travelled == steps_for(1.5 * 10, 800), "searched 1.5 x max travel"
    assert board.status().state == "Alarm"


def test_homing_fails_when_the_switch_stays_closed(board: Board) -> None:
    board.configure({**HOMING_SETTINGS, 21: "0"})
    steps = board.target.motor_steps()
    board.target.set_switch("y", steps[1] + FAR, "-")  # always closed
    assert board.send("$HY", timeout=60) == ["ALARM:8", "error:63"]
    assert board.status().state == "Alarm"


def test_reset_during_homing_gives_alarm_6(board: Board) -> None:
    board.configure(HOMING_SETTINGS)
    steps = board.target.motor_steps()
    board.target.set_switch("z", steps[2] + FAR, "+")
    board.write("$H\n")
    board.wait_state("Home")
    lines = board.soft_reset()
    assert lines[:-1] == ["ALARM:6"], "no reply to the $H line: the reset discarded it"
    assert board.readline() == "[MSG:'$H'|'$X' to unlock]"
    assert board.status().state == "Alarm"
    assert board.send("G4 P0") == ["error:9"]


def test_status_reports_home_during_homing(board: Board) -> None:
    board.configure(HOMING_SETTINGS)
    _place_switches(board, (2.0, 2.0, 0.5))
    board.write("$H\n")
    assert board.wait_state("Home").state == "Home"
    assert board.reply(timeout=60) == ["ok"]


def test_hard_limit_stops_at_once_and_locks(board: Board) -> None:
    board.configure({**FAST_SETTINGS, 20: "0"})
    board.unlock()
    steps = board.target.motor_steps()
    switch = steps[0] + 400
    board.target.set_switch("x", switch, "+")
    assert board.send("G1 X2 F1000") == ["ok"]
    assert board.readline() == "ALARM:1"
    stopped = board.target.motor_steps()
    assert switch <= stopped[0] <= switch + 1, "stopped at the switch, no deceleration"
    s = board.status()
    assert s.state == "Alarm" and s.pins == "X"
    board.wait_seconds(0.1)
    assert board.target.motor_steps() == stopped
    assert board.send("G0 X0") == ["error:9"]
    assert board.send("$J=G91 X-1 F100") == ["error:8"]
    board.unlock()  # at the host's own risk
    board.ok("G0 X-1")
    board.ok("G4 P0")
    assert board.status().pins == ""


def test_hard_limit_discards_queue_and_answers_waiting_line(board: Board) -> None:
    board.configure({**FAST_SETTINGS, 20: "0"})
    board.unlock()
    steps = board.target.motor_steps()
    board.target.set_switch("y", steps[1] - 800, "-")
    board.write("G1 Y-5 F600\nG4 P0\n")
    assert board.reply() == ["ok"]
    assert board.reply() == ["ALARM:1", "error:9"], "the dwell waiting for the motion is answered"
    board.wait_seconds(0.1)
    assert board.target.motor_steps()[1] - steps[1] in (-800, -801)
