"""Firmware-only checks that need the simulator's view of the pins and the RAM."""

from __future__ import annotations

import pytest

from board_client import FAST_SETTINGS, Board
from firmware_target import FirmwareTarget

F_CPU = 16_000_000


@pytest.mark.firmware
@pytest.mark.parametrize("pulse_us", [2, 4, 10, 20])
def test_step_pulse_and_direction_setup(firmware: FirmwareTarget, board: Board, pulse_us: int) -> None:
    board.configure({**FAST_SETTINGS, 0: str(pulse_us)})
    board.unlock()
    firmware.timing(reset=True)
    board.ok("G1 X-2 Y-1 Z-0.1 F1800")
    board.ok("G1 X-1 Y-2 Z-0.05")
    board.ok("G91 G0 X-0.01 Y0.01 Z0.001")
    board.ok("G4 P0")
    pulse, setup = firmware.timing()
    assert pulse >= pulse_us * F_CPU // 1_000_000, "STEP high for at least $0 us"
    assert pulse < (pulse_us + 20) * F_CPU // 1_000_000
    assert setup >= F_CPU // 5_000_000, "DIR settles >= 200 ns before the STEP edge (A4988)"


@pytest.mark.firmware
def test_stack_stays_clear_of_static_ram(firmware: FirmwareTarget, board: Board) -> None:
    """A demanding session in one power cycle; the canary-painted RAM shows the
    deepest stack use."""
    board.configure({**FAST_SETTINGS, 24: "200", 25: "1000", 26: "5", 27: "0.5", 140: "0.01"})
    steps = firmware.motor_steps()
    for a, axis in enumerate("xyz"):
        firmware.set_switch(axis, steps[a] + (800, 800, 4000)[a], "+")
    board.ok("$H", timeout=60)
    board.settings()
    # Streamed moves, with status reports while the planner is full.
    lines = [f"G1 X-{1 + i % 7}.{i:02d} Y-{i % 5}.5 Z-0.{i % 9}1 F{600 + 20 * i}" for i in range(60)]
    replies = board.stream(lines, realtime={i: b"?" for i in range(0, 60, 3)})
    assert replies == [["ok"]] * 60
    board.write(b"!")
    board.wait_state("Hold:0")
    board.write(b"~")
    board.ok("G4 P0", timeout=60)
    for line in ("G0 X1.2.3", "$100=1e3", "G1 X-1 X-2", "$J=G91 X-1 F100 Q1", "$$", "$#", "$G", "$I"):
        board.send(line)
    board.ok("$J=G91 X-5 F600")
    board.write(b"\x85")
    board.wait_idle()
    deepest, free = firmware.stack()
    assert deepest < 2048 - 1536, f"deepest stack {deepest} B"
    assert free >= 128, f"only {free} bytes of RAM were never used"
