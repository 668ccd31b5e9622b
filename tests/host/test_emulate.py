"""Boards on pseudo-terminals: the virtual board's pty server, ``deepaf-host emulate``
(virtual and ``--firmware``), and ``simavr://`` with its ground truth."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deepaf_host.board import VirtualBoard
from deepaf_host.board.pty import PtyServer
from deepaf_host.stage import Connection, Position, Stage
from deepaf_host.sim import simulated_board

ROOT = Path(__file__).resolve().parents[2]
ELF = ROOT / "firmware" / "build" / "deepaf.elf"
SIM = ROOT / "firmware" / "build" / "deepaf-sim"
needs_firmware = pytest.mark.skipif(
    not (ELF.exists() and SIM.exists()), reason="firmware not built (make -C firmware all sim)"
)


@pytest.fixture
def served() -> Iterator[tuple[VirtualBoard, PtyServer]]:
    board = VirtualBoard(speed=50.0)
    server = PtyServer(board)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield board, server
    finally:
        server.stop()
        thread.join(timeout=5)
        server.close()


def test_pty_server_serves_the_board(served: tuple[VirtualBoard, PtyServer]) -> None:
    board, server = served
    path = server.path
    with Connection(path) as conn:
        assert conn.info.is_deepaf
        assert simulated_board(conn) is None, "a pty is hardware to the host"
        stage = Stage(conn)
        assert stage.home() == Position(-1000.0, -1000.0, -1000.0)
        stage.move_to(x_um=-2500.0, z_um=-1500.0)
        assert board.true_position_um() == pytest.approx((-2500.0, -1000.0, -1500.0))
    # Opening the terminal again resets the board, as an Uno's DTR does.
    deadline = time.monotonic() + 5
    while server.connected and time.monotonic() < deadline:
        time.sleep(0.005)
    with Connection(path) as conn:
        assert conn.status().state == "Alarm"
        assert board.motor_steps() != (0, 0, 0), "the motors did not move in the reset"


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from deepaf_host.cli import main; main()", "emulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and
        # children inherit that: give the CLI the Ctrl-C a terminal would deliver.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    path = proc.stdout.readline().strip()
    assert path.startswith("/dev/"), proc.stderr.read() if proc.stderr else path
    return proc, path


def _stop_cli(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err


def test_emulate_cli_prints_the_device_and_stops_on_ctrl_c() -> None:
    proc, path = _start_cli("--speed", "50")
    try:
        with Connection(path) as conn:
            assert conn.info.is_deepaf
            assert conn.command("$I").lines[0] == "[VER:1.1h.DeepAf:]"
    finally:
        _stop_cli(proc)


def test_emulate_cli_refuses_a_bad_speed() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from deepaf_host.cli import main; main()", "emulate", "--speed", "max"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "speed" in result.stderr


@needs_firmware
@pytest.mark.firmware
def test_simavr_url_runs_the_firmware_with_ground_truth() -> None:
    with Connection(f"simavr://{ELF}?speed=fast") as conn:
        assert conn.info.is_deepaf and conn.info.firmware_version == "0.1.0"
        sim = simulated_board(conn)
        assert sim is not None
        stage = Stage(conn)
        stage.home(timeout_s=120)
        stage.move_to(x_um=-2000.0, y_um=-1500.0, z_um=-2500.0)
        assert stage.position() == Position(-2000.0, -1500.0, -2500.0)
        assert sim.true_position_um() == pytest.approx((-2000.0, -1500.0, -2500.0))
        assert sim.seconds() > 0


@needs_firmware
@pytest.mark.firmware
def test_emulate_cli_serves_the_firmware() -> None:
    proc, path = _start_cli("--firmware", str(ELF), "--speed", "fast")
    try:
        with Connection(path) as conn:
            assert conn.info.is_deepaf
            assert conn.status().state == "Alarm"
    finally:
        _stop_cli(proc)
