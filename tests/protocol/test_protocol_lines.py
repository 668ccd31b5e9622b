"""Bytes and lines (protocol.md 3): realtime bytes, terminators, limits, one reply
per line, the status report format."""

from __future__ import annotations

from deepaf_host.protocol_tables import DEEPAF_PROTOCOL_VERSION, GRBL_DIALECT, LINE_MAX, N_AXIS, RX_BUFFER_SIZE

from board_client import BANNER_RE, Board, Status


def test_soft_reset_prints_banner(board: Board) -> None:
    lines = board.soft_reset()
    assert BANNER_RE.match(lines[-1])
    assert BANNER_RE.match(lines[-1]).group(2) == str(DEEPAF_PROTOCOL_VERSION)  # type: ignore[union-attr]
    assert lines[:-1] == [], "nothing but the banner when idle"


def test_build_info(board: Board) -> None:
    lines = board.ok("$I")
    assert lines[0] == f"[VER:{GRBL_DIALECT}.DeepAf:]"
    opt = lines[1]
    assert opt.startswith("[OPT:HL,") and opt.endswith(f",{RX_BUFFER_SIZE}]"), opt
    assert int(opt.split(",")[1]) >= 8, "the planner holds at least 8 blocks"
    assert lines[2].startswith("[DEEPAF:FW=") and lines[2].endswith(f",PROTO={DEEPAF_PROTOCOL_VERSION},AXES={N_AXIS}]"), lines[2]
    assert len(lines) == 3


def test_status_report_when_idle(board: Board) -> None:
    s = board.status()
    assert s.state == "Alarm"  # homing enabled: boots locked
    assert s.mpos == (0, 0, 0)
    assert s.rx_bytes == RX_BUFFER_SIZE
    assert s.feed == 0
    assert s.pins == "" and s.wco is None
    board.unlock()
    assert board.status().state == "Idle"


def test_status_shows_closed_switches_and_offset(board: Board) -> None:
    steps = board.target.motor_steps()
    board.target.set_switch("y", steps[1], "+")  # closed now
    board.target.set_switch("z", steps[2] - 1, "+")
    assert board.status().pins == "YZ"
    board.target.set_switch("y", steps[1] + 1, "+")  # open again
    assert board.status().pins == "Z"
    board.target.set_switch("z", steps[2] + 5, "+")
    board.ok("$21=0")
    board.unlock()
    board.ok("G92 X1.5 Z-0.25")
    s = board.status()
    assert s.wco == (-1.5, 0, 0.25)
    assert s.pins == ""


def test_terminators(board: Board) -> None:
    # CR, LF and CR LF each end exactly one line; LF CR is two (empty) lines.
    board.unlock()
    board.write(b"$I\r$I\n$I\r\n\n\r")
    replies = [line for line in (board.readline() for _ in range(3 * 4 + 2)) if not line.startswith("[")]
    assert replies == ["ok"] * 5
    board.ok("G4 P0")  # nothing left over


def test_realtime_bytes_never_enter_a_line(board: Board) -> None:
    board.unlock()
    board.write(b"G4 ?P0 (a ? in a comment)\n")
    first = board.readline()
    assert first.startswith("<"), first
    assert board.readline().startswith("<")
    assert board.readline() == "ok"
    # GRBL override bytes are accepted and ignored.
    board.write(bytes([0x90, 0x91, 0x9E, 0x84, 0x87, 0xA0, 0xA1]) + b"G4P0\n")
    assert board.reply() == ["ok"]
    # ~ and ! when nothing moves, 0x85 when not jogging: no effect, no reply.
    board.write(b"~!\x85G4P0\n")
    assert board.reply() == ["ok"]
    assert board.status().state == "Idle"


def test_line_length_limit(board: Board) -> None:
    board.unlock()
    longest = "G4 P0 (" + "x" * (LINE_MAX - 8) + ")"
    assert len(longest) == LINE_MAX
    assert board.send(longest) == ["ok"]
    assert board.send(longest + " ") == ["error:11"]
    # A very long line is discarded up to its terminator: one error, then normal.
    board.write(b"G0 X" + b"9" * 300 + b"\n")
    assert board.reply() == ["error:11"]
    assert board.send("G4 P0") == ["ok"]
    # Bytes outside printable ASCII (TAB allowed) make the line bad.
    assert board.send("G4\tP0") == ["ok"]
    for bad in (b"\x00", b"\x7f", b"\x1b", b"\xff", b"\x80"):
        board.write(b"G4 P0 " + bad + b"\n")
        assert board.reply() == ["error:60"], bad


def test_case_spaces_and_comments(board: Board) -> None:
    board.unlock()
    for line in ("g4 p0", "  G 4 P 0  ", "G4P0;trailing", "(only a comment)", "", ";", "G4 (x) P0 (y)"):
        assert board.send(line) == ["ok"], line


def test_one_reply_per_line_in_order(board: Board) -> None:
    board.unlock()
    lines = [("G1 X-0.01", "error:22")]  # no feed rate since the reset
    lines += [
        ("G4 P0", "ok"),
        ("G0 X1", "error:61"),
        ("", "ok"),
        ("Q1", "error:20"),
        ("(comment)", "ok"),
        ("G91 G0 X-0.01", "ok"),
        ("G1 X-0.01 F100", "ok"),
        ("$ZZ", "error:3"),
        ("G90", "ok"),
        ("X-0.05", "ok"),
        ("G4 P0", "ok"),
        ("X", "error:2"),
        ("$G", "ok"),
        ("M17", "ok"),
        ("G4 P0.01", "ok"),
    ] * 3
    # Streamed with character counting (protocol.md 3.4).
    replies = [r[-1] for r in board.stream([text for text, _ in lines])]
    assert replies == [expected for _, expected in lines]


def test_status_parse_rejects_other_formats() -> None:
    for bad in ("<Idle|MPos:0.000,0.000,0.000|Bf:15,128|FS:0,0>", "<Idle|WPos:0.0000,0.0000,0.0000>", "ok"):
        try:
            Status.parse(bad)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {bad!r}")
