"""Settings (protocol.md 8): stored at once, kept over resets, checked on entry, and
an EEPROM that cannot be trusted is replaced by the defaults with a message."""

from __future__ import annotations

import pytest

from board_client import BANNER_RE, DEFAULT_SETTINGS, Board
from firmware_target import FirmwareTarget

DEFAULTS = DEFAULT_SETTINGS

CHANGED = {0: "10", 5: "5", 11: "0.0250", 26: "100", 102: "12800.0000", 111: "1234.5000", 141: "0.0125", 150: "600"}


def test_defaults(board: Board) -> None:
    assert board.settings() == DEFAULTS


def test_settings_survive_resets(board: Board) -> None:
    for number, value in CHANGED.items():
        board.ok(f"${number}={value}")
    expected = {**DEFAULTS, **CHANGED}
    assert board.settings() == expected
    board.soft_reset()
    board.expect("[MSG:'$H'|'$X' to unlock]")
    assert board.settings() == expected
    fresh = Board(board.target, board.target.open())  # power / DTR reset
    fresh.handshake()
    assert fresh.settings() == expected
    fresh.ok("$RST=$")
    assert fresh.settings() == DEFAULTS


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("$0=1", 62),
        ("$0=21", 62),
        ("$0=-4", 4),
        ("$0=4.5", 23),
        ("$2=8", 62),
        ("$4=2", 62),
        ("$11=1.5", 62),
        ("$24=0", 62),
        ("$26=1001", 62),
        ("$27=10.5", 62),
        ("$100=0", 62),
        ("$140=1.01", 62),
        ("$150=65536", 62),
        ("$150=1.5", 23),
        ("$110=2251", 12),  # 800 steps/mm x 2251 mm/min / 60 > 30 kHz
        ("$102=30001", 12),  # 30001 x 60 / 60
        ("$1=25", 3),
        ("$10=1", 3),
        ("$32=0", 3),
        ("$143=0", 3),
        ("$100=1.2.3", 2),
        ("$100=", 2),
    ],
)
def test_bad_setting_values_change_nothing(board: Board, line: str, code: int) -> None:
    assert board.error(line) == code
    assert board.settings() == DEFAULTS


def test_step_rate_limit_boundary(board: Board) -> None:
    board.ok("$110=2250")  # exactly 30 kHz
    assert board.error("$100=800.1") == 12
    board.ok("$100=400")
    board.ok("$110=4500")


def test_soft_limits_need_homing(board: Board) -> None:
    board.ok("$20=0")
    board.ok("$22=0")
    assert board.error("$20=1") == 10
    board.ok("$22=1")
    board.ok("$20=1")


def test_settings_need_idle_or_alarm(board: Board) -> None:
    board.configure({110: "2000", 120: "1000"})
    board.unlock()
    board.ok("G1 X-20 F1000")
    board.wait_state("Run")
    assert board.error("$110=500") == 8
    assert board.error("$$") == 8
    assert board.error("$RST=$") == 8
    assert board.error("$H") == 8
    assert board.error("$X") == 8
    board.ok("$I")  # any state
    board.ok("$G")
    board.ok("$#")
    board.wait_idle()
    assert board.settings()[110] == "2000.0000"


def _boot_lines(firmware: FirmwareTarget, board: Board) -> list[str]:
    firmware.power_cycle()
    lines = []
    while True:
        line = board.readline()
        if BANNER_RE.match(line) or lines:
            lines.append(line)
        if lines and line == "[MSG:'$H'|'$X' to unlock]":
            return lines


@pytest.mark.firmware
def test_eeprom_blank_corrupt_or_old_loads_defaults(firmware: FirmwareTarget, board: Board) -> None:
    board.ok("$110=500")
    assert _boot_lines(firmware, board)[1:] == ["[MSG:'$H'|'$X' to unlock]"], "a good EEPROM loads quietly"
    assert board.settings()[110] == "500.0000"

    firmware.eeprom_erase()
    assert _boot_lines(firmware, board)[1:] == [
        "[MSG:EEPROM blank, defaults loaded]",
        "[MSG:'$H'|'$X' to unlock]",
    ]
    assert board.settings() == DEFAULTS
    assert _boot_lines(firmware, board)[1:] == ["[MSG:'$H'|'$X' to unlock]"], "defaults were written back"

    board.ok("$110=500")
    firmware.eeprom_write(5, firmware.eeprom_read(5) ^ 0x10)  # one flipped bit
    assert _boot_lines(firmware, board)[1] == "[MSG:EEPROM checksum error, defaults loaded]"
    assert board.settings() == DEFAULTS

    firmware.eeprom_write(0, 0x7E)  # another format version
    assert _boot_lines(firmware, board)[1] == "[MSG:EEPROM version changed, defaults loaded]"
    assert board.settings() == DEFAULTS
