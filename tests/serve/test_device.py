"""The page's device: a virtual board the page and its scans share, the live camera size."""

from __future__ import annotations

from deepaf_host.board import VirtualBoard, find_board
from deepaf_host.serve.device import Microscope, live_camera_spec, shared_sim_port


def test_unnamed_virtual_board_is_named_and_reopened_by_name() -> None:
    port = shared_sim_port("sim://?speed=max", "serve-device-test")
    assert port == "sim://serve-device-test?speed=max"
    m = Microscope(port, "sim://20x?low=320x180")
    m.open()
    try:
        assert m.port == "sim://serve-device-test"  # board options only when it is created
        m.home()
        m.jog({"x": -300.0, "z": -20.0})
        m.stage.wait_idle()
        board = find_board("serve-device-test")
        assert board is not None
        steps = board.motor_steps()
        m.close()  # a scan takes the port ...
        m.open()  # ... and gives it back: the same board, where it was
        assert find_board("serve-device-test") is board and board.motor_steps() == steps
        assert m.state()["locked"]  # reopening the port resets the board, as a real Uno's does
    finally:
        m.close()


def test_a_scan_borrows_the_connection_and_the_board_keeps_its_position() -> None:
    board = VirtualBoard(name="serve-device-lend", speed="max")
    m = Microscope(board.url, "sim://20x?low=320x180")
    m.open()
    try:
        m.home()
        m.jog({"x": -700.0, "y": -300.0, "z": -40.0})
        m.stage.wait_idle()
        here = m.state()["position_um"]
        connection = m.lend()
        assert connection is m.connection and m.stage is None and m.camera is None
        m.take_back(homed=True)
        state = m.state()
        assert state["position_um"] == here and not state["locked"] and state["homed"]
        assert m.connection is connection and m.camera is not None
    finally:
        m.close()


def test_other_ports_are_left_as_given() -> None:
    assert shared_sim_port("/dev/ttyACM0", "x") == "/dev/ttyACM0"
    assert shared_sim_port("sim://mine?speed=2", "x") == "sim://mine?speed=2"
    assert shared_sim_port("simavr:///tmp/fw.elf", "x") == "simavr:///tmp/fw.elf"


def test_live_view_size() -> None:
    assert live_camera_spec("sim://20x", "sim://") == "sim://20x?low=480x270"
    assert live_camera_spec("sim://20x?high=256x192", "sim://") == "sim://20x?high=256x192&low=480x270"
    assert live_camera_spec("sim://20x?low=640x360", "sim://") == "sim://20x?low=640x360"
    assert live_camera_spec(None, "sim://") == "sim://?low=480x270"
    assert live_camera_spec("0", "/dev/ttyACM0") == "0"
    assert live_camera_spec(None, "/dev/ttyACM0") is None
