"""Stage errors of the virtual microscope (issue 14 item 6): repeatability, backlash,
axis skew on the board (``sim://?...``), camera rotation on the virtual camera; off unless
asked for, so the board lands exactly where it is sent by default."""

from __future__ import annotations

import math

import numpy as np
import pytest
import serial
from deepaf_host.board import VirtualBoard
from deepaf_host.board.board import STAGE_ERRORS
from deepaf_host.board.urlhandler.protocol_sim import parse_url
from deepaf_host.calibrate.measure import image_shift
from deepaf_host.camera.virtual import VirtualCamera
from deepaf_host.stage import Connection, Stage
from deepaf_host.sim import simulated_board


def _stage(url: str) -> tuple[Stage, VirtualBoard]:
    conn = Connection(url)
    stage = Stage(conn)
    stage.home()
    board = simulated_board(conn)
    assert isinstance(board, VirtualBoard)
    return stage, board


def test_without_options_the_stage_lands_exactly_where_it_is_sent() -> None:
    stage, board = _stage("sim://?speed=max")
    for x in (-20000.0, -20100.0, -19950.0):
        stage.move_to(x_um=x, y_um=-15000.0)
        tx, ty, _ = board.true_position_um()
        assert (tx, ty) == pytest.approx((x, -15000.0), abs=1e-6)
    stage.connection.close()


def test_repeatability_draws_a_new_error_per_move_and_keeps_it_while_still() -> None:
    stage, board = _stage("sim://?speed=max&repeat_um=2,2,0&error_seed=5")
    errors = []
    for k in range(60):
        x = -20000.0 - 100.0 * (k % 7)
        stage.move_to(x_um=x)
        first = board.true_position_um()[0] - x
        assert board.true_position_um()[0] - x == first  # no move, no new error
        errors.append(first)
    e = np.asarray(errors)
    assert 1.4 < e.std() < 2.7 and abs(e.mean()) < 1.0
    stage.connection.close()
    # the same seed gives the same errors
    stage2, board2 = _stage("sim://?speed=max&repeat_um=2,2,0&error_seed=5")
    stage2.move_to(x_um=-20000.0)
    again = board2.true_position_um()[0] + 20000.0
    stage2.connection.close()
    assert again == pytest.approx(errors[0], abs=1e-9) and again != 0.0


def test_skew_carries_a_y_move_towards_minus_x() -> None:
    stage, board = _stage("sim://?speed=max&skew_deg=0.5")
    stage.move_to(x_um=-20000.0, y_um=-10000.0)
    a = board.true_position_um()
    stage.move_to(y_um=-12000.0)
    b = board.true_position_um()
    s = math.radians(0.5)
    assert b[0] - a[0] == pytest.approx(2000.0 * math.sin(s), abs=1e-3)  # -2 mm in Y: +X by 2000 sin s
    assert b[1] - a[1] == pytest.approx(-2000.0 * math.cos(s), abs=1e-3)
    stage.connection.close()


def test_the_leadscrew_set_and_its_overrides() -> None:
    board, _ = parse_url("sim://?errors=leadscrew&play_um=5")
    assert board.play_um == (5.0, 5.0, 5.0)
    assert board.repeat_um == STAGE_ERRORS["leadscrew"]["repeat_um"]
    assert board.skew_deg == STAGE_ERRORS["leadscrew"]["skew_deg"]
    for bad in ("sim://?errors=granite", "sim://?repeat_um=1,2", "sim://?skew_deg=60", "sim://?repeat_um=-1"):
        with pytest.raises(serial.SerialException):
            parse_url(bad)


class _Pose:
    def __init__(self, x: float, y: float, z: float) -> None:
        self.pose = (x, y, z)

    def true_position_um(self) -> tuple[float, float, float]:
        return self.pose


@pytest.mark.parametrize("angle", [0.0, 2.0])
def test_a_turned_camera_sees_an_x_move_at_its_angle(angle: float) -> None:
    pose = _Pose(-30000.0, -19500.0, -4038.3)
    cam = VirtualCamera.from_url(f"sim://20x?low=320x180&noise=0&rotation_deg={angle}", pose)
    a = cam.grab("low")
    pose.pose = (-30000.0 + 60.0, -19500.0, -4038.3)
    b = cam.grab("low")
    du, dv, response = image_shift(a, b)
    assert response > 0.1
    assert math.degrees(math.atan2(dv, du)) == pytest.approx(angle, abs=0.15)
    assert math.hypot(du, dv) * cam.pixel_size_um("low") == pytest.approx(60.0, rel=0.01)
    with pytest.raises(Exception, match="rotation_deg"):
        VirtualCamera.from_url("sim://20x?rotation_deg=90", pose)
