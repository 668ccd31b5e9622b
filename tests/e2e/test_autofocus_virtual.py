"""Every autofocus strategy lands within half the depth of field of the true focus on
tissue fields of the virtual microscope, starting a few micrometres off."""

from __future__ import annotations

import pytest
from conftest import CAMERA
from deepaf_host.autofocus import FocusContext, make_strategy
from deepaf_host.board import VirtualBoard
from deepaf_host.camera.open import open_camera
from deepaf_host.scan.timing import TimedCamera
from deepaf_host.stage import Connection, Stage

# Tissue fields of the default virtual slide (seed 0) and the start offsets from focus.
FIELDS = [(-30000.0, -20000.0, +2.4), (-28500.0, -21200.0, -1.7), (-31700.0, -18600.0, +0.8)]


@pytest.mark.parametrize("strategy", ["stack", "search", "sweep"])
def test_strategy_lands_within_half_the_depth_of_field(strategy: str, board: VirtualBoard) -> None:
    with Connection(board.url) as conn:
        stage = Stage(conn)
        stage.home()
        virtual = open_camera(CAMERA, pose_source=board)
        cam = TimedCamera(virtual, board.sleep)
        half_dof = virtual.objective.depth_of_field_um() / 2  # 0.49 um at 20x/0.75
        af = make_strategy(strategy)
        for x, y, offset in FIELDS:
            focus = virtual.true_focus_z_um(x, y)
            start = round(focus + offset, 1)
            stage.move_to(x, y, start)
            ctx = FocusContext(clock=board.seconds, sleep=board.sleep)
            result = af.run(stage, cam, start, ctx)
            assert result.ok, result.reason
            true_z = board.true_position_um()[2]
            assert abs(result.z_um - focus) <= half_dof, (strategy, x, y, result.z_um - focus)
            # The stage is where the record says (0.1 um: the status report's resolution).
            assert abs(true_z - result.z_um) <= 0.1
            assert result.frames >= 3 and result.seconds > 0


def test_failure_leaves_the_stage_where_it_was(board: VirtualBoard) -> None:
    """Far from focus the stack sees no peak: the stage goes back to the start z."""
    with Connection(board.url) as conn:
        stage = Stage(conn)
        stage.home()
        virtual = open_camera(CAMERA, pose_source=board)
        cam = TimedCamera(virtual, board.sleep)
        x, y = -30000.0, -20000.0
        start = round(virtual.true_focus_z_um(x, y) + 25.0, 1)
        stage.move_to(x, y, start)
        result = make_strategy("stack").run(stage, cam, start, FocusContext(clock=board.seconds, sleep=board.sleep))
        assert not result.ok
        assert result.z_um == start
        assert abs(board.true_position_um()[2] - start) <= 0.1
        assert stage.position().x_um == x and stage.position().y_um == y
