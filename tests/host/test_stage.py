"""The Stage API on the virtual board: validation before I/O, safety limits, homing,
the backlash-free approach (checked against the board's true position), stock GRBL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from deepaf_host.board import VirtualBoard
from deepaf_host.errors import ConfigError, FirmwareError, NotHomedError, StageLimitError
from deepaf_host.stage import Connection, Position, Stage
from deepaf_host.stage.approach import plan_legs

Z_STEP_UM = 1000.0 / 16000  # one Z step


class Wire:
    """Counts the bytes the host writes to the port."""

    def __init__(self, conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[bytes] = []
        port = conn.serial
        original = port.write

        def write(data: bytes) -> int:
            self.sent.append(bytes(data))
            return original(data)

        monkeypatch.setattr(port, "write", write)


@pytest.fixture
def board() -> VirtualBoard:
    return VirtualBoard(speed="max")


@pytest.fixture
def conn(board: VirtualBoard) -> Iterator[Connection]:
    with Connection(board.url) as c:
        yield c


def test_home_and_positions(board: VirtualBoard, conn: Connection) -> None:
    stage = Stage(conn)
    assert not stage.is_homed and stage.is_locked
    assert stage.home() == Position(-1000.0, -1000.0, -1000.0)
    assert stage.is_homed and not stage.is_locked
    assert stage.limits_um == {"x": (-60000.0, 0.0), "y": (-40000.0, 0.0), "z": (-8000.0, 0.0)}
    stage.move_to(x_um=-12345.0, y_um=-2500.0, z_um=-3210.5)
    assert stage.position() == Position(-12345.0, -2500.0, -3210.5)
    assert board.true_position_um() == pytest.approx((-12345.0, -2500.0, -3210.5), abs=Z_STEP_UM)
    stage.move_by(dz_um=1.5)
    assert stage.position().z_um == -3209.0
    stage.move_by(dx_um=-5.0, dz_um=-0.3)
    assert stage.position() == Position(-12350.0, -2500.0, -3209.3)


@pytest.mark.parametrize(
    "target, axis, limit",
    [
        ({"x_um": 10.0}, "x", 0.0),
        ({"x_um": -60000.1}, "x", -60000.0),
        ({"y_um": -40001.0}, "y", -40000.0),
        ({"z_um": 0.5}, "z", 0.0),
        ({"z_um": -9000.0}, "z", -8000.0),
    ],
)
def test_travel_limits_raise_before_any_byte(
    board: VirtualBoard, conn: Connection, monkeypatch: pytest.MonkeyPatch, target: dict[str, float], axis: str, limit: float
) -> None:
    stage = Stage(conn)
    stage.home()
    wire = Wire(conn, monkeypatch)
    steps = board.motor_steps()
    with pytest.raises(StageLimitError) as info:
        stage.move_to(**target)
    assert (info.value.axis, info.value.requested_um, info.value.limit_um) == (axis, target[f"{axis}_um"], limit)
    assert info.value.reason == "travel"
    assert wire.sent == [], "validation happens before any I/O"
    board.sleep(1.0)
    assert board.motor_steps() == steps, "nothing moved"


def test_z_safety_limit(board: VirtualBoard, conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = Stage(conn, z_min_um=-5000.0)
    stage.home()
    stage.move_to(z_um=-5000.0)  # at the limit is allowed
    wire = Wire(conn, monkeypatch)
    steps = board.motor_steps()
    with pytest.raises(StageLimitError) as info:
        stage.move_to(x_um=-100.0, z_um=-5000.5)
    assert (info.value.axis, info.value.limit_um, info.value.reason) == ("z", -5000.0, "z safety")
    assert wire.sent == [] and board.motor_steps() == steps
    with pytest.raises(ConfigError):
        Stage(conn, z_min_um=-9000.0)  # outside the travel: a configuration error


def test_locked_board_is_not_homed_error_and_nothing_moves(board: VirtualBoard, conn: Connection) -> None:
    stage = Stage(conn)
    steps = board.motor_steps()
    with pytest.raises(NotHomedError):
        stage.move_to(x_um=-1000.0)
    with pytest.raises(NotHomedError):
        stage.move_by(dz_um=-10.0)
    assert board.motor_steps() == steps


def test_error_9_maps_to_not_homed(board: VirtualBoard, conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = Stage(conn)
    stage.home()
    conn.command("G0 X-20")  # moving...
    board.sleep(0.05)
    conn.soft_reset()  # ...reset in motion: ALARM:3, locked
    report = stage.status()
    assert report.state == "Alarm"
    # Even when the host's view of the state is stale, the board's error:9 is mapped.
    monkeypatch.setattr(stage, "status", lambda: type(report)(**{**report.__dict__, "state": "Idle"}))
    with pytest.raises(NotHomedError):
        stage.move_to(x_um=-2000.0)


@pytest.mark.parametrize(
    "dialect, deltas",
    [
        ("deepaf", (+5.0, +0.5, -2.0, +12.0, -1.5, +30.0, -7.5)),
        ("grbl", (+5.0, +1.0, -2.0, +12.0, -1.0, +30.0, -7.0)),  # GRBL reports whole micrometres
    ],
)
def test_focus_moves_end_downwards_so_play_is_taken_up(dialect: str, deltas: tuple[float, ...]) -> None:
    # 6 um of play in the focus: a move that ends going up would leave the stage 6 um low.
    board = VirtualBoard(speed="max", dialect=dialect, play_um=(0.0, 0.0, 6.0))
    with Connection(board.url) as conn:
        stage = Stage(conn, approach_um=10.0)
        stage.home()
        z = -3000.0
        stage.move_to(z_um=z)
        for dz in deltas:
            z += dz
            stage.move_by(dz_um=dz)
            assert stage.position().z_um == pytest.approx(z, abs=0.1)
            assert board.true_position_um()[2] == pytest.approx(z, abs=Z_STEP_UM), f"after {dz:+}"
        # Without the approach the same rising move lands low by the play.
        careless = Stage(conn, approach_um=0.0)
        careless.move_to(z_um=z + 20.0)
        assert board.true_position_um()[2] == pytest.approx(z + 20.0 - 6.0, abs=Z_STEP_UM)


def test_host_side_backlash_on_x_for_stock_grbl() -> None:
    board = VirtualBoard(speed="max", dialect="grbl", play_um=(15.0, 0.0, 0.0))
    with Connection(board.url) as conn:
        stage = Stage(conn, backlash_um=(15.0, 0.0, 0.0), approach_um=5.0)
        stage.home()
        for x in (-5000.0, -4000.0, -4000.5, -6000.0, -5999.0):
            stage.move_to(x_um=x)
            assert board.true_position_um()[0] == pytest.approx(x, abs=1.25), x


def test_sweep_speed_and_wait(board: VirtualBoard, conn: Connection) -> None:
    stage = Stage(conn)
    stage.home()
    stage.move_to(z_um=-2000.0)
    t0 = board.seconds()
    stage.move_to(z_um=-2100.0, speed_um_s=50.0, wait=False)  # downwards: one leg
    assert stage.status().state == "Run"
    stage.wait_idle()
    assert board.seconds() - t0 == pytest.approx(100.0 / 50.0, abs=0.05)
    assert stage.position().z_um == -2100.0


def test_release_and_stop(board: VirtualBoard, conn: Connection) -> None:
    stage = Stage(conn)
    stage.home()
    stage.release()
    assert conn.command("$G").lines[0].endswith("M18 F0]")
    stage.move_to(x_um=-30000.0, wait=False)
    board.sleep(0.5)
    stopped = stage.stop()
    assert -30000.0 < stopped.x_um < -1000.0
    board.sleep(1.0)
    assert stage.position() == stopped, "stopped for good, the queue is gone"
    assert stage.is_homed, "a stop after a hold raises no alarm: the position holds"


def test_plan_legs() -> None:
    top = (0.0, 0.0, 0.0)
    over = (0.0, 0.0, 10.0)
    assert plan_legs((0, 0, -100.0), (0, 0, -150.0), over, top) == [(0, 0, -150.0)]
    assert plan_legs((0, 0, -100.0), (-5.0, 0, -50.0), over, top) == [(-5.0, 0, -40.0), (-5.0, 0, -50.0)]
    assert plan_legs((0, 0, -100.0), (0, 0, -5.0), over, top) == [(0, 0, 0.0), (0, 0, -5.0)], "clamped to the top"
    assert plan_legs((0, 0, -100.0), (0, 0, 0.0), over, top) == [(0, 0, 0.0)]
    # Not settled (direction unknown) and a short way down: approach from above too.
    assert plan_legs((0, 0, -100.0), (0, 0, -104.0), over, top, (True, True, False)) == [(0, 0, -94.0), (0, 0, -104.0)]


# --- stock GRBL 1.1 (the virtual board's ``grbl`` dialect): issue 18 -------------------


@pytest.mark.parametrize("dialect", ["grbl", "deepaf"])
def test_sub_micrometre_moves_add_up(dialect: str) -> None:
    # Stock GRBL reports whole micrometres: relative moves must not start from the
    # rounded report (ten -0.3 um moves used to move 0 um, ten +0.4 um +0.69 um).
    board = VirtualBoard(speed="max", dialect=dialect)
    with Connection(board.url) as conn:
        stage = Stage(conn)
        stage.home()
        stage.move_to(z_um=-3000.0)
        start = board.true_position_um()[2]
        for _ in range(10):
            stage.move_by(dz_um=-0.3)
        assert board.true_position_um()[2] - start == pytest.approx(-3.0, abs=Z_STEP_UM)
        assert stage.position().z_um == pytest.approx(-3003.0, abs=Z_STEP_UM)
        for _ in range(10):
            stage.move_by(dz_um=+0.4)
        assert board.true_position_um()[2] - start == pytest.approx(+1.0, abs=Z_STEP_UM)
        for _ in range(8):  # single steps, sent exactly (7 decimals of mm)
            stage.move_by(dz_um=-Z_STEP_UM)
        assert board.true_position_um()[2] - start == pytest.approx(1.0 - 8 * Z_STEP_UM, abs=1e-9)


def test_a_board_left_in_inches_moves_in_millimetres() -> None:
    board = VirtualBoard(speed="max", dialect="grbl")
    with Connection(board.url) as conn:
        stage = Stage(conn)
        stage.home()
        conn.command("G20")  # a sender, or a $N0=G20 startup block, left it in inches
        stage.move_to(x_um=-2000.0, z_um=-100.0)
        assert board.true_position_um()[0] == pytest.approx(-2000.0, abs=1.25)
        assert board.true_position_um()[2] == pytest.approx(-100.0, abs=Z_STEP_UM)
        stage.move_to(z_um=-50.0, speed_um_s=500.0)
        assert board.true_position_um()[2] == pytest.approx(-50.0, abs=Z_STEP_UM)


def test_release_on_stock_grbl_sends_no_m18(monkeypatch: pytest.MonkeyPatch) -> None:
    board = VirtualBoard(speed="max", dialect="grbl")
    with Connection(board.url) as conn:
        stage = Stage(conn)
        stage.home()
        with pytest.raises(FirmwareError) as refused:
            conn.command("M18")  # stock GRBL has no M18
        assert refused.value.code == 20
        stage.move_to(x_um=-1000.0, wait=False)
        wire = Wire(conn, monkeypatch)
        stage.release()  # no error:20
        assert not any(b"M18" in data for data in wire.sent)
        assert stage.status().state == "Idle", "release waits for the queued moves"


def test_stock_grbl_motor_release_delay_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    board = VirtualBoard(speed="max", dialect="grbl")
    with Connection(board.url) as conn:
        with caplog.at_level("WARNING", logger="deepaf_host.stage.stage"):
            Stage(conn)
        assert "$1=255" in caplog.text
        caplog.clear()
        conn.set_setting(1, 255)
        with caplog.at_level("WARNING", logger="deepaf_host.stage.stage"):
            Stage(conn)
        assert "$1" not in caplog.text
