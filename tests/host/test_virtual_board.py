"""The virtual board beyond the contract suite: its clock, URL options, ground truth,
EEPROM, the stock-GRBL dialect and the mechanical backlash model."""

from __future__ import annotations

import time

import pytest
import serial
from deepaf_host.board import VirtualBoard
from deepaf_host.board.motion import Profile


def _open(board: VirtualBoard, timeout: float = 30.0) -> serial.SerialBase:
    return serial.serial_for_url(board.url, timeout=timeout)


def _lines_until(port: serial.SerialBase, last: bytes) -> list[str]:
    out = []
    while True:
        line = port.readline()
        assert line, f"timeout; got {out}"
        out.append(line.decode().rstrip("\r\n"))
        if line.rstrip(b"\r\n") == last or line.startswith(b"error:"):
            return out


def _cmd(port: serial.SerialBase, line: str) -> list[str]:
    port.write(line.encode() + b"\n")
    out = []
    while True:
        got = port.readline().decode().rstrip("\r\n")
        assert got, f"no reply to {line!r}; got {out}"
        out.append(got)
        if got == "ok" or got.startswith("error:"):
            return out


def _status(port: serial.SerialBase) -> str:
    port.write(b"?")
    while True:
        line = port.readline().decode().strip()
        if line.startswith("<"):
            return line


def test_boot_messages_and_eeprom_persistence() -> None:
    board = VirtualBoard(speed="max")
    port = _open(board)
    boot = _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    assert boot[0].startswith("Grbl 1.1h [DeepAf 0.1.0 protocol 1]")
    assert "[MSG:EEPROM blank, defaults loaded]" in boot
    assert _cmd(port, "$132=6.5") == ["ok"]
    port.close()
    # Reopening resets the board; the EEPROM keeps the setting and is valid now.
    port = _open(board)
    boot = _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    assert not any("EEPROM" in line for line in boot)
    assert "$132=6.5000" in _cmd(port, "$$")
    port.close()
    board.eeprom()[5] ^= 0xFF
    port = _open(board)
    assert "[MSG:EEPROM checksum error, defaults loaded]" in _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    assert "$132=8.0000" in _cmd(port, "$$")
    port.close()


def test_bytes_sent_while_booting_are_lost() -> None:
    board = VirtualBoard(speed="max", boot_s=0.5)
    port = _open(board)
    port.write(b"$I\n")  # the bootloader has the UART: this line never arrives
    boot = _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    assert not any(line.startswith("[VER:") for line in boot)
    assert _cmd(port, "$I")[-1] == "ok"


def test_named_board_reopens_with_its_state_and_refuses_new_options() -> None:
    board = VirtualBoard(speed="max", name="test-reopen")
    port = _open(board)
    _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    _cmd(port, "$H")
    steps = board.motor_steps()
    port.close()
    port = serial.serial_for_url("sim://test-reopen", timeout=5)
    assert port.board is board
    assert board.motor_steps() == steps, "a reset does not move the motors"
    port.close()
    with pytest.raises(serial.SerialException, match="exists already"):
        serial.serial_for_url("sim://test-reopen?speed=2")


@pytest.mark.parametrize("url", ["sim://?speed=0", "sim://?speed=fast", "sim://?colour=red", "sim://?switch_z=5:x", "sim://?play_um=1,2"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(serial.SerialException):
        serial.serial_for_url(url)


def test_homing_latches_the_switch_step_from_any_start() -> None:
    board = VirtualBoard(speed="max", switches=((5000, "+"), (7000, "+"), (40001, "+")))
    port = _open(board)
    _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    for start in ("G53 G0 X-3 Y-1 Z-0.7", "G53 G0 X-0.4 Y-12 Z-4.3"):
        assert _cmd(port, "$H") == ["ok"]
        # Pull-off 1 mm (800 / 16000 steps) below the switch, whatever the start.
        assert board.motor_steps() == (5000 - 800, 7000 - 800, 40001 - 16000)
        assert "MPos:-1.0000,-1.0000,-1.0000" in _status(port)
        assert board.true_position_um() == (-1000.0, -1000.0, -1000.0)
        _cmd(port, start)
        _cmd(port, "G4 P0")


def test_motion_takes_the_time_of_its_trapezoid() -> None:
    board = VirtualBoard(speed="max")
    port = _open(board)
    _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    _cmd(port, "$X")
    t0 = board.seconds()
    _cmd(port, "G1 X-10 F300")  # 5 mm/s, 50 mm/s^2: 2 s + 0.1 s for the ramps
    _cmd(port, "G4 P0")
    took = board.seconds() - t0
    assert took == pytest.approx(10 / 5 + 5 / 50, abs=0.01)
    # Z is slow: 60 mm/min and 5 mm/s^2.
    t0 = board.seconds()
    _cmd(port, "G0 Z-2")
    _cmd(port, "G4 P0.25")
    assert board.seconds() - t0 == pytest.approx(2 / 1 + 1 / 5 + 0.25, abs=0.01)


def test_status_shows_intermediate_positions_while_moving() -> None:
    board = VirtualBoard(speed="max")
    port = _open(board)
    _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    _cmd(port, "$X")
    _cmd(port, "G1 X-10 F600")
    board.sleep(0.5)  # 0.1 s ramp, then 10 mm/s
    report = _status(port)
    assert report.startswith("<Run|MPos:-4.")
    assert "FS:600,0" in report
    board.sleep(2.0)
    assert _status(port).startswith("<Idle|MPos:-10.0000,")


def test_real_time_clock_runs_at_its_speed() -> None:
    # Bracket each reading of the board's clock between two wall-clock readings: the
    # simulated interval is then 20 x a wall interval that lies between the inner and
    # the outer bracket, however long the process waits for a CPU (no ratio to flake).
    board = VirtualBoard(speed=20.0)
    outer0 = time.monotonic()
    t0 = board.seconds()
    inner0 = time.monotonic()
    time.sleep(0.1)
    inner1 = time.monotonic()
    t1 = board.seconds()
    outer1 = time.monotonic()
    assert 20.0 * (inner1 - inner0) - 1e-6 <= t1 - t0 <= 20.0 * (outer1 - outer0) + 1e-6


def test_trapezoid_profile_reaches_the_length() -> None:
    p = Profile.trapezoid(10.0, 0.0, 5.0, 0.0, 50.0)
    assert p.duration == pytest.approx(2.1)
    assert p.distance(p.duration) == pytest.approx(10.0)
    assert p.time_at(5.0) == pytest.approx(1.05)
    short = Profile.trapezoid(0.1, 0.0, 5.0, 0.0, 50.0)  # never reaches 5 mm/s
    assert short.duration == pytest.approx(2 * (0.05 * 2 / 50) ** 0.5)
    stop = Profile.stop(10.0, 50.0, 100.0)
    assert stop.duration == pytest.approx(0.2) and stop.end_distance == pytest.approx(1.0)


def test_mechanical_play_is_seen_by_the_true_position_only() -> None:
    board = VirtualBoard(speed="max", play_um=(0.0, 0.0, 5.0))
    port = _open(board)
    _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    _cmd(port, "$H")
    _cmd(port, "G0 Z-2")
    _cmd(port, "G4 P0")
    assert board.true_position_um()[2] == pytest.approx(-2000.0)  # came down: no lag
    _cmd(port, "G0 Z-1.5")
    _cmd(port, "G4 P0")
    assert "MPos:-1.0000,-1.0000,-1.5000" in _status(port)
    assert board.true_position_um()[2] == pytest.approx(-1505.0), "coming up, the stage lags by the play"
    # The firmware's backlash compensation ($142) takes the play up on reversals
    # (homing again: the lag left by the uncompensated reversal is a real offset).
    _cmd(port, "$142=0.005")
    _cmd(port, "$H")
    for z, true_z in (("-2", -2000.0), ("-1.5", -1500.0), ("-1.7", -1700.0), ("-1.2", -1200.0)):
        _cmd(port, f"G0 Z{z}")
        _cmd(port, "G4 P0")
        assert board.true_position_um()[2] == pytest.approx(true_z)
    assert "MPos:-1.0000,-1.0000,-1.2000" in _status(port), "backlash steps are never reported"


def test_stock_grbl_dialect() -> None:
    board = VirtualBoard(speed="max", dialect="grbl")
    port = _open(board)
    boot = _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    assert boot[0] == "Grbl 1.1h ['$' for help]"
    info = _cmd(port, "$I")
    assert info[0].startswith("[VER:1.1h.") and not any("DEEPAF" in line for line in info)
    assert _cmd(port, "$140=0.01") == ["error:3"]
    settings = _cmd(port, "$$")
    assert "$10=1" in settings and "$100=800.000" in settings
    _cmd(port, "$H")
    assert "MPos:-1.000,-1.000,-1.000" in _status(port)
    # A soft-limit violation is ALARM:2 and waits for a reset; the line gets no reply.
    port.write(b"G0 X5\n")
    assert port.readline() == b"ALARM:2\r\n"
    assert port.readline() == b"[MSG:Reset to continue]\r\n"
    port.write(b"\x18")
    assert port.readline().startswith(b"Grbl 1.1h")


def test_disconnect_after_lines_breaks_the_port() -> None:
    port = serial.serial_for_url("sim://?speed=max&disconnect_after_lines=2", timeout=5)
    port.write(b"$I\n")
    with pytest.raises(serial.SerialException):
        port.write(b"$G\n$#\n")
    with pytest.raises(serial.SerialException):
        port.read(1)
    port.close()  # closing a broken port is quiet
    assert not port.is_open


def test_set_switch_closing_is_a_hard_limit() -> None:
    board = VirtualBoard(speed="max")
    port = _open(board)
    _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    _cmd(port, "$H")
    _cmd(port, "G0 X-10")
    board.sleep(0.3)
    board.set_switch("x", board.motor_steps()[0] - 100, "-")  # moving towards -: it closes
    assert port.readline() == b"ALARM:1\r\n"
    assert "<Alarm|" in _status(port)
    assert _cmd(port, "G0 X-1") == ["error:9"]


def test_a_switch_placed_at_the_motor_closes_at_once() -> None:
    board = VirtualBoard(speed="max")
    port = _open(board)
    _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    board.set_switch("y", board.motor_steps()[1], "+")  # locked: no hard limit
    assert "|Pn:Y>" in _status(port)
    board.set_switch("y", 10**9, "+")
    _cmd(port, "$X")
    board.set_switch("z", board.motor_steps()[2], "-")  # idle and unlocked: ALARM:1
    assert port.readline() == b"ALARM:1\r\n"
    assert _status(port).startswith("<Alarm|")


def test_drivers_are_released_after_the_idle_delay_counted_from_the_end_of_motion() -> None:
    board = VirtualBoard(speed="max")
    port = _open(board)
    _lines_until(port, b"[MSG:'$H'|'$X' to unlock]")
    _cmd(port, "$X")
    _cmd(port, "$150=2")
    _cmd(port, "G1 X-10 F300")  # 2.1 s of motion
    board.sleep(2.1 + 1.5)
    assert "M17" in _cmd(port, "$G")[0], "idle for 1.5 s only"
    board.sleep(1.0)
    assert "M18" in _cmd(port, "$G")[0]
