"""``deepaf-host flash`` without the simulator: the avrdude command, every refusal
before anything is written (exit 2), and the check after writing (exit 1), with a
stand-in avrdude on PATH and the virtual board on a pseudo-terminal."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from deepaf_host.board import VirtualBoard
from deepaf_host.board.pty import PtyServer
from deepaf_host.cli import main
from deepaf_host.firmware import flash as flashing
from deepaf_host.firmware.image import shipped_dir, shipped_image


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["flash", *args])


def one_line(result: Result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture
def fake_avrdude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """An ``avrdude`` on PATH that records its arguments and prints ``output.txt``
    and exits with ``status.txt`` (0 when absent). Yields (its folder, the record)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls.txt"
    script = bindir / "avrdude"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{calls}"\n'
        f'[ -f "{bindir}/output.txt" ] && cat "{bindir}/output.txt" >&2\n'
        f'exit $(cat "{bindir}/status.txt" 2>/dev/null || echo 0)\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setattr(flashing, "BEFORE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(flashing, "AFTER_TIMEOUT_S", 5.0)
    monkeypatch.setattr(flashing, "SETTLE_S", 0.02)
    yield bindir, calls


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A pseudo-terminal with nothing behind it (nobody else holds its device)."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    yield path
    os.close(master)


@pytest.fixture
def virtual_port() -> Iterator[str]:
    """The virtual board on a pseudo-terminal: it answers $I as the DeepAf firmware."""
    server = PtyServer(VirtualBoard(speed=50.0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.path
    server.close()
    thread.join(timeout=5)


def hex_with(tmp_path: Path, payload: bytes) -> Path:
    """A small Intel HEX image holding ``payload`` at address 0."""
    lines = []
    for at in range(0, len(payload), 16):
        chunk = payload[at : at + 16]
        body = bytes([len(chunk), at >> 8, at & 0xFF, 0]) + chunk
        lines.append(":" + (body + bytes([(-sum(body)) & 0xFF])).hex().upper())
    path = tmp_path / "image.hex"
    path.write_text("\n".join(lines + [":00000001FF"]) + "\n")
    return path


def test_dry_run_prints_exactly_the_avrdude_command(fake_avrdude: tuple[Path, Path]) -> None:
    result = run("--port", "/dev/ttyACM0", "--dry-run")
    assert result.exit_code == 0, result.output
    hex_path = shipped_dir() / "deepaf.hex"
    assert result.output == (
        f"avrdude -p atmega328p -c arduino -P /dev/ttyACM0 -b 115200 -D -U flash:w:{hex_path}:i\n"
    )
    assert shlex.split(result.output) == flashing.avrdude_command("/dev/ttyACM0", hex_path)
    assert not fake_avrdude[1].exists(), "a dry run runs nothing"


def test_a_corrupted_hex_is_refused_before_avrdude_runs(
    fake_avrdude: tuple[Path, Path], tmp_path: Path, silent_port: str
) -> None:
    lines = (shipped_dir() / "deepaf.hex").read_text().splitlines()
    lines[99] = lines[99][:-2] + ("00" if lines[99][-2:] != "00" else "01")  # one bad checksum
    bad = tmp_path / "bad.hex"
    bad.write_text("\n".join(lines) + "\n")
    for extra in ((), ("--dry-run",)):
        result = run("--port", silent_port, "--hex", str(bad), *extra)
        assert result.exit_code == 2
        line = one_line(result)
        assert f"{bad} line 100 bad checksum" in line and "nothing was written" in line
    assert not fake_avrdude[1].exists(), "avrdude never ran"


def test_missing_avrdude_is_one_line_and_exit_2(tmp_path: Path, silent_port: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run("--port", silent_port)
    assert result.exit_code == 2
    assert "avrdude not found on PATH: install it (Debian/Ubuntu: sudo apt install avrdude" in one_line(result)


@pytest.mark.parametrize(
    ("port", "reason"),
    [
        ("sim://", "a URL, not a serial device"),
        ("simavr://firmware/build/deepaf.elf", "a URL, not a serial device"),
        ("/dev/no-such-uno", "no such device"),
    ],
)
def test_ports_without_a_bootloader_are_refused(fake_avrdude: tuple[Path, Path], port: str, reason: str) -> None:
    result = run("--port", port)
    assert result.exit_code == 2
    assert f"--port {port}: {reason}" in one_line(result)
    assert not fake_avrdude[1].exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the holders of a port in /proc")
def test_a_port_another_program_holds_is_refused_as_busy(fake_avrdude: tuple[Path, Path], silent_port: str) -> None:
    with open(silent_port, "rb") as held:
        holder = subprocess.Popen(["sleep", "30"], stdin=held)
    try:
        result = run("--port", silent_port)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    assert f"busy: process {holder.pid} (sleep 30) has it open" in one_line(result)
    assert not fake_avrdude[1].exists()


@pytest.mark.parametrize(
    ("output", "code", "message"),
    [
        (
            "avrdude: stk500_getsync() attempt 10 of 10: not in sync: resp=0x00\n"
            "avrdude error: unable to open programmer arduino on port /dev/pts/9\n",
            2,
            "no Uno bootloader answered (STK500v1 at 115200 baud after the DTR reset): is it an Arduino Uno, with "
            "Optiboot? (avrdude: avrdude: stk500_getsync() attempt 10 of 10: not in sync: resp=0x00)",
        ),
        (
            "avrdude: device signature = 0x1e9587\navrdude error: expected signature for ATmega328P is 1E 95 0F\n",
            2,
            "the chip is not an ATmega328P",
        ),
        (
            "avrdude: writing 20204 bytes flash ...\navrdude: verification mismatch at 0x0100\n",
            1,
            "avrdude failed while writing or verifying",
        ),
    ],
)
def test_avrdude_failures_say_whether_anything_was_written(
    fake_avrdude: tuple[Path, Path], silent_port: str, output: str, code: int, message: str
) -> None:
    bindir, calls = fake_avrdude
    (bindir / "output.txt").write_text(output)
    (bindir / "status.txt").write_text("1")
    result = run("--port", silent_port)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert calls.read_text().split() == flashing.avrdude_command(silent_port, shipped_dir() / "deepaf.hex")[1:]


def test_after_writing_the_board_must_report_the_version_just_written(
    fake_avrdude: tuple[Path, Path], virtual_port: str, tmp_path: Path
) -> None:
    # The virtual board reports the shipped version: writing it "succeeds" ...
    (fake_avrdude[0] / "output.txt").write_text("avrdude: 20204 bytes of flash verified\n")
    result = run("--port", virtual_port)
    version = shipped_image().firmware_version
    assert result.exit_code == 0, result.output
    assert f"the board runs DeepAf firmware {version} (protocol 1); 30 settings read" in result.output
    assert f"the board answers $I: DeepAf firmware {version} (protocol 1), the version just written" in result.output
    assert "settings: kept -- the 30 values read before flashing are unchanged." in result.output
    # ... an image of another version does not: the board did not take it.
    other = hex_with(tmp_path, b"\x0c\x94\x00\x00[DEEPAF:FW=0.0.7,PROTO=1,AXES=3]")
    result = run("--port", virtual_port, "--hex", str(other))
    assert result.exit_code == 1
    assert f"the board reports DeepAf firmware {version} (protocol 1), not the 0.0.7 just written" in result.output
