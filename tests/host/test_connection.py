"""The stage connection: handshake and dialects, replies, errors, timeouts, resync."""

from __future__ import annotations

import time

import pytest
from deepaf_host import codes
from deepaf_host.board import VirtualBoard
from deepaf_host.board import machine as board_machine
from deepaf_host.errors import (
    ConfigError,
    ConnectionLost,
    FirmwareAlarm,
    FirmwareError,
    GarbledReply,
    HandshakeError,
    PortUnavailable,
    ProtocolTimeout,
)
from deepaf_host.stage import Connection
from deepaf_host.stage.replies import Kind, classify, parse_status
from deepaf_host.sim import simulated_board


@pytest.fixture
def board() -> VirtualBoard:
    return VirtualBoard(speed="max")


def test_handshake_reads_the_deepaf_dialect(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        assert conn.info.dialect == "deepaf" and conn.info.is_deepaf
        assert (conn.info.firmware_version, conn.info.protocol_version, conn.info.axes) == ("0.1.0", 1, 3)
        assert (conn.info.planner_blocks, conn.info.rx_buffer_bytes) == (15, 128)
        assert simulated_board(conn) is board
        # The boot messages came after pyserial's open(): they were taken in stride.
        assert "[MSG:'$H'|'$X' to unlock]" in conn.messages


def test_handshake_recognises_a_stock_grbl_board() -> None:
    board = VirtualBoard(speed="max", dialect="grbl")
    with Connection(board.url) as conn:
        assert conn.info.dialect == "grbl" and not conn.info.is_deepaf
        assert conn.info.protocol_version is None and conn.info.grbl_version == "1.1h"
        settings = conn.settings()
        assert settings.backlash_mm is None and settings.max_travel_mm == (60.0, 40.0, 8.0)
        with pytest.raises(ConfigError):
            conn.set_setting(140, 0.01)  # a stock board has no such setting: never sent


def test_stock_grbl_soft_limit_alarm_is_error_61() -> None:
    board = VirtualBoard(speed="max", dialect="grbl")
    with Connection(board.url) as conn:
        conn.command("$H", timeout_s=60)
        conn.command("G0 X-2")
        conn.command("G4 P0")
        t0 = time.monotonic()
        with pytest.raises(FirmwareError) as info:
            conn.command("G0 X5")  # ALARM:2 and "[MSG:Reset to continue]" on a stock board
        assert info.value.code == codes.error_number("SOFT_LIMIT") and info.value.line == "G0 X5"
        assert time.monotonic() - t0 < 0.5, "no reply will come: the message says so"
        # Reset and unlocked by the connection: nothing moved, the position holds.
        conn.command("G4 P0")
        report = conn.status()
        assert report.state == "Idle" and report.mpos_mm == (-2.0, -1.0, -1.0)


def test_handshake_refuses_another_protocol_version(board: VirtualBoard, monkeypatch: pytest.MonkeyPatch) -> None:
    info = dict(board_machine.BUILD_INFO)
    info["deepaf"] = [line.replace("PROTO=1", "PROTO=2") for line in info["deepaf"]]
    monkeypatch.setattr(board_machine, "BUILD_INFO", info)
    with pytest.raises(HandshakeError, match="protocol 2"):
        Connection(board.url)


def test_handshake_survives_a_slow_boot() -> None:
    # Bytes sent during the 2 s boot are lost; the banner triggers a new $I.
    board = VirtualBoard(speed="max", boot_s=2.0)
    with Connection(board.url) as conn:
        assert conn.info.is_deepaf


def test_handshake_fails_clearly_when_nothing_answers() -> None:
    board = VirtualBoard(speed="max", boot_s=1e6)  # never boots
    t0 = time.monotonic()
    with pytest.raises(HandshakeError, match="no reply to '\\$I'"):
        Connection(board.url, handshake_timeout_s=0.5)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "url, reason",
    [
        ("/dev/ttyDEEPAF-NOT-THERE", "no such device"),
        ("nosuchscheme://board", "nosuchscheme"),
        ("sim://?colour=red", "unknown option"),
    ],
)
def test_bad_port_is_port_unavailable_naming_it(url: str, reason: str) -> None:
    with pytest.raises(PortUnavailable) as info:
        Connection(url)
    assert info.value.port == url
    assert url in str(info.value) and reason in str(info.value)


def test_error_reply_carries_code_and_line(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        with pytest.raises(FirmwareError) as info:
            conn.command("G0 X-1")  # locked until homed
        assert info.value.code == 9 and info.value.line == "G0 X-1"
        assert info.value.text == codes.error_text(9)
        conn.command("$X")
        with pytest.raises(FirmwareError) as info:
            conn.command("G1 X-1")  # no feed rate yet
        assert info.value.code == 22
        assert conn.command("$I").lines[0].startswith("[VER:"), "still in step after errors"


def test_alarm_during_a_command_is_firmware_alarm() -> None:
    board = VirtualBoard(speed="max", switches=((10**9, "+"),) * 3)  # homing finds nothing
    with Connection(board.url) as conn:
        with pytest.raises(FirmwareAlarm) as info:
            conn.command("$H", timeout_s=60)
        assert info.value.code == codes.alarm_number("HOMING_FAIL_APPROACH") and info.value.line == "$H"
        assert conn.last_alarm == 9
        assert conn.status().state == "Alarm"


def test_unsolicited_alarm_is_recorded(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        conn.command("$H", timeout_s=60)
        conn.command("G0 X-10")
        board.sleep(0.2)
        board.set_switch("x", board.motor_steps()[0] - 50, "-")  # closes 50 steps further
        board.sleep(0.1)
        assert conn.status().state == "Alarm"
        assert conn.last_alarm == codes.alarm_number("HARD_LIMIT")


def test_garbled_reply_to_a_query_is_retried_after_resync(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        conn.serial.corrupt_next_reply()
        reply = conn.command("$G")
        assert reply.lines == ("[GC:G0 G54 G17 G21 G90 G94 M18 F0]",)


def test_garbled_reply_to_a_motion_line_raises_and_resyncs(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        conn.command("$X")
        conn.serial.corrupt_next_reply()
        with pytest.raises(GarbledReply) as info:
            conn.command("G0 X-1.5")
        assert info.value.line == "G0 X-1.5" and "k" in info.value.received
        # Back in step: the next exchanges pair up as they should.
        conn.command("G4 P0")
        assert conn.status().mpos_mm == (-1.5, 0.0, 0.0)
        assert conn.command("$#").lines == ("[G92:0.0000,0.0000,0.0000]",)


def test_timeout_then_resync() -> None:
    board = VirtualBoard(speed=1.0, boot_s=0.0)
    with Connection(board.url) as conn:
        conn.command("$X")
        t0 = time.monotonic()
        with pytest.raises(ProtocolTimeout) as info:
            conn.command("G4 P0.6", timeout_s=0.15)
        assert info.value.line == "G4 P0.6" and info.value.seconds == 0.15
        assert time.monotonic() - t0 < 0.5
        # The late ok of the dwell is discarded by the resync, not taken for this reply.
        assert conn.command("$G").lines[0].startswith("[GC:")
        assert conn.command("$#").lines == ("[G92:0.0000,0.0000,0.0000]",)


def test_disconnect_is_connection_lost(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        conn.serial.inject_disconnect()
        with pytest.raises(ConnectionLost) as info:
            conn.command("$I")
        assert info.value.port == board.url
        with pytest.raises(ConnectionLost):
            conn.status()


def test_disconnect_after_lines_url_option() -> None:
    with Connection("sim://?speed=max&disconnect_after_lines=5") as conn:
        with pytest.raises(ConnectionLost):
            for _ in range(10):
                conn.command("$G")


def test_stream_keeps_the_receive_buffer_within_bounds(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        conn.command("$X")
        lines = [f"G1 X-{i * 0.01:.2f} F3000" for i in range(1, 120)] + ["G4 P0"]
        replies = conn.stream(lines)
        assert len(replies) == len(lines)
        # Had more than 127 bytes been in flight, the board would have dropped bytes
        # and lines would have been lost or merged.
        assert conn.status().mpos_mm == (-1.19, 0.0, 0.0)


def test_stream_stops_at_the_first_error(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        conn.command("$X")
        with pytest.raises(FirmwareError) as info:
            conn.stream(["G0 X-1", "G0 X5", "G0 X-2", "G4 P0"])
        assert info.value.code == codes.error_number("SOFT_LIMIT") and info.value.line == "G0 X5"
        conn.command("G4 P0")
        assert conn.status().mpos_mm[0] in (-1.0, -2.0)  # X-2 may have been in flight


def test_settings_are_typed(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        s = conn.settings()
        assert s.steps_per_mm == (800.0, 800.0, 16000.0)
        assert s.max_travel_mm == (60.0, 40.0, 8.0)
        assert s.backlash_mm == (0.0, 0.0, 0.0) and s.idle_release_s == 60
        assert s.soft_limits and s.hard_limits and s.homing and s.homing_dir_mask == 0
        conn.set_setting(142, 0.0025)
        assert conn.settings().backlash_mm == (0.0, 0.0, 0.0025)
        with pytest.raises(FirmwareError) as info:
            conn.set_setting(0, 1)
        assert info.value.code == codes.error_number("VALUE_OUT_OF_RANGE")


def test_soft_reset_during_motion_reports_alarm_3(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        conn.command("$X")
        conn.command("G0 X-20")
        board.sleep(0.5)
        assert conn.soft_reset() == codes.alarm_number("ABORT_CYCLE")
        assert conn.status().state == "Alarm"
        conn.command("$X")
        assert conn.soft_reset() is None


def test_lines_with_realtime_characters_are_refused(board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        for bad in ("G0 X1?", "G0\nX1", "x" * 81, "G0 X1 ; \u00b5m"):
            with pytest.raises(ValueError):
                conn.command(bad)


def test_classify_and_parse_status() -> None:
    assert classify("ok").kind is Kind.OK
    assert classify("error:22").code == 22
    assert classify("ALARM:1").kind is Kind.ALARM
    assert classify("o\ufffdk").kind is Kind.GARBLED
    assert classify("<Idle|MPos:0.000|Bf:15,128>").kind is Kind.GARBLED  # truncated
    deepaf = parse_status("<Hold:1|MPos:-1.2500,-3.0000,-0.0625|Bf:14,100|FS:600,0|Pn:XZ|WCO:1.0000,0.0000,0.0000>")
    assert deepaf is not None
    assert deepaf.state == "Hold:1" and deepaf.base_state == "Hold"
    assert deepaf.mpos_mm == (-1.25, -3.0, -0.0625) and deepaf.pins == "XZ"
    assert (deepaf.planner_free, deepaf.rx_free, deepaf.feed_mm_min) == (14, 100, 600.0)
    grbl = parse_status("<Idle|WPos:1.000,2.000,3.000|FS:0,0|WCO:-1.000,-1.000,-1.000>")
    assert grbl is not None and grbl.mpos_mm == (0.0, 1.0, 2.0)
