"""Motion (protocol.md 6.4, 5, 9.3): status during motion, hold and resume, reset in
motion, exact step counts, backlash, streaming, jogs, driver release."""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal

import pytest
from deepaf_host.protocol_tables import RX_BUFFER_SIZE

from board_client import DEFAULT_SPM, FAST_SETTINGS, Board, mm_for, steps_for
from firmware_target import FirmwareTarget
from targets import Target

SPM = DEFAULT_SPM  # default steps/mm (protocol.md 8)


def _fast(board: Board) -> None:
    board.configure(FAST_SETTINGS)
    board.unlock()


def test_status_during_motion(board: Board) -> None:
    _fast(board)
    start = board.target.motor_steps()
    board.ok("G1 X-20 F1500")
    seen = []
    while True:
        s = board.status()
        seen.append(s)
        if s.state == "Idle":
            break
        assert s.state == "Run", s
        assert -20 <= s.mpos[0] <= 0 and s.mpos[1:] == (0, 0)
    run = [s for s in seen if s.state == "Run"]
    assert len(run) >= 3, "motion takes long enough to be seen"
    xs = [s.mpos[0] for s in run]
    assert xs == sorted(xs, reverse=True), "MPos follows the motors"
    assert any(0 < s.feed <= 1500 for s in run)
    assert any(-20 < x < 0 for x in xs)
    assert seen[-1].mpos == (Decimal("-20.0000"), 0, 0)
    assert seen[-1].feed == 0
    assert board.steps_delta(start) == (-16000, 0, 0)


def test_hold_and_resume(board: Board) -> None:
    _fast(board)
    start = board.target.motor_steps()
    board.ok("G1 X-20 Y-10 F1200")
    board.wait_state("Run")
    while board.status().mpos[0] > -2:
        pass
    board.write(b"!")
    states = set()
    while True:
        s = board.status()
        states.add(s.state)
        if s.state == "Hold:0":
            break
        assert s.state in ("Hold:1", "Run"), s
    held = board.target.motor_steps()
    assert s.mpos[0] > -20, "held before the end"
    board.wait_seconds(0.3)
    assert board.target.motor_steps() == held, "no step while held"
    s2 = board.status()
    assert s2.state == "Hold:0" and s2.mpos == s.mpos
    assert (steps_for(s.mpos[0], SPM[0]), steps_for(s.mpos[1], SPM[1])) == (
        held[0] - start[0],
        held[1] - start[1],
    ), "reported position is the motors' position"
    board.write(b"~")
    board.wait_idle()
    assert board.status().mpos == (-20, -10, 0)
    assert board.steps_delta(start) == (-16000, -8000, 0)


def test_holds_at_random_moments_always_complete(board: Board) -> None:
    _fast(board)
    rng = random.Random(3)
    start = board.target.motor_steps()
    x = Decimal(0)
    for _ in range(12):
        x -= Decimal(rng.randint(1, 400)) / 100
        t0 = board.target.seconds()
        board.ok(f"G1 X{x} F{rng.randint(300, 2000)}")
        delay = rng.random() * 0.3
        while board.target.seconds() < t0 + delay:
            pass
        board.write(b"!")
        s = board.wait_state("Hold:0", "Idle")
        if s.state == "Hold:0":
            board.write(b"~")
        board.wait_idle()
        assert board.status().mpos[0] == x
    assert board.steps_delta(start)[0] == steps_for(x, 800)


def test_lines_queue_during_hold(board: Board) -> None:
    _fast(board)
    start = board.target.motor_steps()
    board.ok("G1 X-10 F1200")
    board.wait_state("Run")
    board.write(b"!")
    board.wait_state("Hold:0")
    board.ok("G1 X-12")  # queued, not executed
    board.wait_seconds(0.2)
    assert board.status().state == "Hold:0"
    board.write(b"~")
    board.ok("G4 P0")
    assert board.status().mpos[0] == -12
    assert board.steps_delta(start) == (-9600, 0, 0)


def test_soft_reset_during_motion_raises_alarm_3(board: Board) -> None:
    _fast(board)
    board.ok("G1 X-30 F1000")
    while board.status().mpos[0] >= 0:
        pass
    lines = board.soft_reset()
    assert lines[:-1] == ["ALARM:3"], lines
    assert board.readline() == "[MSG:'$H'|'$X' to unlock]"
    stopped = board.target.motor_steps()
    s = board.status()
    assert s.state == "Alarm"
    assert -30 < s.mpos[0] < 0
    board.wait_seconds(0.2)
    assert board.target.motor_steps() == stopped, "motion stopped at once"
    assert board.send("G0 X-1") == ["error:9"]
    assert board.send("$X")[-1] == "ok"
    assert board.status().mpos == s.mpos, "position kept"


def test_soft_reset_when_idle_keeps_position_and_lock_state(board: Board) -> None:
    _fast(board)
    board.ok("G0 X-1.25 Z-0.5")
    board.wait_idle()
    assert board.soft_reset()[:-1] == []
    s = board.status()
    assert s.state == "Idle" and s.mpos == (Decimal("-1.25"), 0, Decimal("-0.5"))
    assert board.send("G1 X-1") == ["error:22"], "parser state reset: no feed rate"


def _random_target(rng: random.Random, current: list[Decimal]) -> list[Decimal]:
    travel = (Decimal(20), Decimal(20), Decimal(2))
    target = list(current)
    axes = rng.choice([[0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]])
    for a in axes:
        while True:
            span = Decimal(3) if a < 2 else Decimal("0.3")
            v = current[a] + Decimal(rng.randint(-30000, 30000)) / 10000 * span
            v = max(-travel[a], min(Decimal(0), v)).quantize(Decimal("0.0001"))
            if (v * SPM[a]) % 1 != Decimal("0.5"):  # no rounding ties
                break
        target[a] = v
    return target


@pytest.mark.slow
def test_commanded_steps_equal_counted_edges(board: Board) -> None:
    _fast(board)
    rng = random.Random(20240601)
    start = board.target.motor_steps()
    current = [Decimal(0)] * 3
    for i in range(200):
        target = _random_target(rng, current)
        words = " ".join(f"{'XYZ'[a]}{target[a]}" for a in range(3) if target[a] != current[a])
        if not words:
            continue
        line = f"G0 {words}" if i % 3 == 0 else f"G1 {words} F{rng.randint(50, 2000)}"
        board.write(f"{line}\nG4 P0\n")
        assert board.reply() == ["ok"], line
        assert board.reply() == ["ok"], line
        expected = tuple(steps_for(target[a], SPM[a]) for a in range(3))
        assert board.steps_delta(start) == expected, f"move {i}: {line}"
        current = target
    assert board.status().mpos == tuple(mm_for(steps_for(current[a], SPM[a]), SPM[a]) for a in range(3))


def test_backlash_taken_on_reversal_and_not_reported(board: Board) -> None:
    _fast(board)
    board.configure({20: "0", 140: "0.0125", 141: "0.025", 142: "0.001"})  # 10, 20, 16 steps
    start = board.target.motor_steps()
    expected = [0, 0, 0]

    def move(line: str, dx: int, dy: int, dz: int) -> None:
        before = board.target.motor_steps()
        board.ok(line)
        board.wait_idle()
        assert board.steps_delta(before) == (dx, dy, dz), line
        for a, d in enumerate((dx, dy, dz)):
            expected[a] += d

    # After a reset the direction is unknown: the first move takes no compensation.
    move("G91 G1 X-1 Y-1 Z-0.1 F600", -800, -800, -1600)
    move("G1 X1 Y0.5 F600", 810, 420, 0)  # X and Y reverse
    move("G1 X0.5 Y0.5", 400, 400, 0)  # same direction: nothing extra
    move("G1 Z0.05 F60", 0, 0, 816)  # Z reverses
    move("G1 X-0.25 Z0.01", -210, 0, 160)  # X reverses, Z does not
    s = board.status()
    assert s.mpos == (Decimal("0.25"), 0, Decimal("-0.04")), "backlash never reported"
    assert board.steps_delta(start) == tuple(expected)
    # Net: X took up its backlash twice in opposite senses, Y and Z once each.
    assert expected == [200, 0 + 20, -640 + 16]
    # A jog is compensated as well.
    move("$J=G91 X0.25 F300", 210, 0, 0)
    assert board.status().mpos[0] == Decimal("0.5")


def test_soft_limit_error_moves_nothing(board: Board) -> None:
    _fast(board)
    board.ok("G0 X-10 Y-5")
    board.ok("G4 P0")
    before = board.target.motor_steps()
    for line, code in (("G0 X0.5", 61), ("G1 X-61 F100", 61), ("$J=G91 Y-36 F100", 15), ("G91 Z-8.5", 61)):
        assert board.error(line) == code, line
    board.wait_seconds(0.1)
    assert board.target.motor_steps() == before
    assert board.send("G0 X-1") == ["ok"], "G91 of the rejected line was not applied"
    board.ok("G4 P0")
    assert board.status().mpos == (-1, -5, 0)


@pytest.mark.slow
def test_streamed_short_moves_arrive_complete(board: Board) -> None:
    _fast(board)
    rng = random.Random(7)
    start = board.target.motor_steps()
    pos = [Decimal(-5), Decimal(-5)]
    lines = ["G1 F1200"]
    for _ in range(1000):
        a = rng.randrange(2)
        pos[a] = min(Decimal(0), max(Decimal(-10), pos[a] + Decimal(rng.choice((-1, 1)) * rng.randint(1, 40)) / 1000))
        lines.append(f"G90 {'XY'[a]}{pos[a]}")
    replies = board.stream(lines)  # character counting (protocol.md 3.4)
    assert replies == [["ok"]] * len(lines)
    board.ok("G4 P0", timeout=60)
    expected = (steps_for(pos[0], 800), steps_for(pos[1], 800), 0)
    assert board.steps_delta(start) == expected
    assert board.status().mpos == (mm_for(expected[0], 800), mm_for(expected[1], 800), 0)


@pytest.fixture
def paced_board(target: Target, request: pytest.FixtureRequest) -> Iterator[Board]:
    """A board whose clock keeps to the wall clock, as a real one does. The shared firmware
    target runs as fast as the machine allows (about 8x real time): a streaming test there
    measures how quickly the host refills the buffer, and a loaded CI machine starves the
    planner. With the clock paced a 0.5 mm move lasts 50 ms of wall time, plenty for the host."""
    if not isinstance(target, FirmwareTarget):
        yield request.getfixturevalue("board")
        return
    paced = FirmwareTarget(speed="realtime")
    try:
        b = Board(paced, paced.open())
        b.boot = b.handshake()
        yield b
    finally:
        paced.close()


def test_streamed_moves_are_joined_without_stopping(paced_board: Board) -> None:
    board = paced_board
    # 50 moves of 0.5 mm along a gentle zigzag at 600 mm/min, default acceleration
    # (50 mm/s^2). Joined, they take about 25 mm / 10 mm/s = 2.5 s; stopping at every
    # junction would take 0.2 s each (accelerate to 5 mm/s and back): 10 s.
    board.unlock()
    lines = ["G91 G1 F600"] + [f"X-0.5 Y{'-' if i % 2 else ''}0.01" for i in range(50)]
    board.ok("$20=0")
    t0 = board.target.seconds()
    assert board.stream(lines) == [["ok"]] * len(lines)
    board.ok("G4 P0")
    took = board.target.seconds() - t0
    assert took < 3.5, f"{took:.2f} s: the moves were not joined"
    assert board.status().mpos[0] == -25


def test_planner_full_blocks_reading_but_not_realtime(board: Board) -> None:
    _fast(board)
    board.ok("G1 F150")  # 0.2 s a move: the board cannot drain the buffer while a loaded host writes
    # Character counting: 12 lines of 10 bytes stay unanswered once the planner is
    # full; they wait in the receive buffer.
    in_flight = 0
    for _ in range(40):
        while in_flight + 10 > RX_BUFFER_SIZE - 1:
            assert board.reply() == ["ok"]
            in_flight -= 10
        board.write("G91 X-0.5\n")
        in_flight += 10
    board.wait_seconds(0.05)
    s = board.status()  # realtime bytes still work
    assert s.state == "Run" and s.blocks <= 1, s
    assert s.rx_bytes <= RX_BUFFER_SIZE - 100, "the unanswered lines wait in the receive buffer"
    while in_flight:
        assert board.reply() == ["ok"]
        in_flight -= 10
    board.ok("G4 P0", timeout=60)
    assert board.status().mpos[0] == -20


def test_jog_and_jog_cancel(board: Board) -> None:
    _fast(board)
    start = board.target.motor_steps()
    board.ok("$J=G91 X-1 F600")
    assert board.status().state == "Jog"
    assert board.send("G0 X-2") == ["error:9"], "G-code is locked out while jogging"
    board.wait_idle()
    assert board.status().mpos[0] == -1
    # G90 in the jog line applies to that line only.
    board.ok("G91")
    board.ok("$J=G90 X-3 F600")
    board.wait_idle()
    assert board.status().mpos[0] == -3
    board.ok("$J=G53 Y-2 F2000")
    board.wait_idle()
    # Cancel a long jog and the queued ones.
    board.ok("$J=G91 X-20 F600")
    board.ok("$J=G91 X-20 F600")
    board.wait_state("Jog")
    board.wait_seconds(0.2)
    board.write(b"\x85")
    s = board.wait_idle()
    assert -23 < s.mpos[0] < -3, s
    board.wait_seconds(0.1)
    steps = board.target.motor_steps()
    assert steps[0] - start[0] == steps_for(s.mpos[0], 800)
    assert board.status().mpos == s.mpos, "stopped, queued jogs discarded"
    # A feed hold cancels a jog too.
    board.ok("$J=G91 X-10 F600")
    board.wait_state("Jog")
    board.write(b"!")
    s = board.wait_idle()
    assert s.mpos[0] > -23 - 10 + Decimal("0.01")


def test_dwell_waits_for_motion_then_sleeps(board: Board) -> None:
    _fast(board)
    t0 = board.target.seconds()
    board.ok("G1 X-6 F1200")
    board.ok("G4 P0.5")
    took = board.target.seconds() - t0
    assert board.status().mpos[0] == -6
    assert took >= 0.3 + 0.5, "the move (0.3 s) and then the dwell"


def test_drivers_released_after_idle_delay(board: Board) -> None:
    _fast(board)
    board.ok("$150=5")
    board.ok("G0 X-0.1")
    board.ok("G4 P0")
    assert "M17" in board.ok("$G")[0]
    board.wait_seconds(6)
    assert "M18" in board.ok("$G")[0]
    board.ok("M17")
    assert "M17" in board.ok("$G")[0]
    board.ok("$150=0")
    board.wait_seconds(6)
    assert "M17" in board.ok("$G")[0], "0: never released"
    board.ok("M18")
    assert "M18" in board.ok("$G")[0]
