"""Helpers of the flashing tests: the Uno's bootloader (Optiboot) in simavr, and
firmware builds.

``BootSim`` runs ``firmware/build/deepaf-sim --bootloader build/optiboot_atmega328.hex``
in real time (avrdude's timeouts are wall-clock ones, and so must the bootloader's be),
with or without an application already in flash. Tests that need it are marked
``firmware`` and FAIL when the harness or Optiboot is not built (``make -C firmware
all sim optiboot``): a missing build must not look like a pass.
"""

from __future__ import annotations

import select
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
BUILD = FIRMWARE / "build"
SIM = BUILD / "deepaf-sim"
OPTIBOOT = BUILD / "optiboot_atmega328.hex"
REPLY_TIMEOUT_S = 10.0


class BootSim:
    """A running ``deepaf-sim`` with Optiboot in the boot section."""

    def __init__(self, app: Path | None = None, *, bootloader: Path = OPTIBOOT) -> None:
        args = [str(SIM), "--bootloader", str(bootloader)] + ([str(app)] if app is not None else [])
        self._stderr = tempfile.TemporaryFile()  # a pipe could fill up and stop the simulator
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1
        )
        first = self._line().split()
        if len(first) != 2 or first[0] != "PTY":
            self.proc.wait(timeout=5)
            message = f"deepaf-sim did not start: {first!r} {self.stderr()}"
            self.close()
            raise RuntimeError(message)
        self.pty = first[1]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], REPLY_TIMEOUT_S)
        if not ready:
            raise TimeoutError("deepaf-sim did not answer")
        return self.proc.stdout.readline().strip()

    def command(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self._line()
        if not reply or reply.startswith("ERR"):
            raise RuntimeError(f"deepaf-sim: {line!r} -> {reply!r} {self.stderr()}")
        return reply

    def numbers(self, line: str) -> list[int]:
        return [int(v, 0) for v in self.command(line).split()[1:] if v[0].isdigit()]

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


def build_firmware(out: Path, *defs: str) -> Path:
    """``make -C firmware`` into ``out`` (with ``FW_DEFS``); returns the .hex."""
    out.mkdir(parents=True, exist_ok=True)
    args = ["make", "-s", "-C", str(FIRMWARE), f"BUILD={out}", f"{out}/deepaf.hex"]
    if defs:
        args.append("FW_DEFS=" + " ".join(defs))
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "deepaf.hex"
