"""Settings (protocol.md 8): stored at once, kept over resets, checked on entry, and
an EEPROM that cannot be trusted is replaced by the defaults with a message."""

from __future__ import annotations

import pytest
from deepaf_host.protocol_tables import SETTINGS

from board_client import BANNER_RE, DEFAULT_SETTINGS, Board
from firmware_target import FirmwareTarget

DEFAULTS = DEFAULT_SETTINGS


def _out_of_range() -> list[tuple[str, int]]:
    """For every DeepAf setting, lines just outside its kind's range (protocol/kinds.csv)
    and the error each must get: above the highest value, below the lowest one, 0 (or a
    value reading 0 at 4 decimals) for a "> 0" setting, a fraction for an integer one."""
    lines: list[tuple[str, int]] = []
    for s in SETTINGS:
        if "deepaf" not in s.dialects:
            continue
        n, kind = s.number, s.kind
        if kind.integer:
            lines += [(f"${n}={int(kind.high) + 1}", 62), (f"${n}={int(kind.low)}.5", 23)]
            if kind.low > 0:
                lines.append((f"${n}={int(kind.low) - 1}", 62))
        else:
            if kind.high < 1e9:
                lines.append((f"${n}={kind.high:g}.0001", 62))
            if kind.low_exclusive:
                lines += [(f"${n}=0", 62), (f"${n}=0.00004", 62)]
        lines.append((f"${n}=-1", 4))
    return lines


def test_every_setting_refuses_values_outside_its_range(board: Board) -> None:
    lines = _out_of_range()
    assert {line.split("=")[0] for line, _ in lines} == {f"${n}" for n in DEFAULTS}
    got = [(line, board.error(line)) for line, _ in lines]
    assert got == lines
    assert board.settings() == DEFAULTS

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
        ("$0=-4", 4),
        ("$0=4.5", 23),
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
    """Lines refused for what they are, not for their range (that is the test above)."""
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
