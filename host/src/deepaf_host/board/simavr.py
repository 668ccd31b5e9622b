"""The real firmware in simavr: ``deepaf-sim`` with the same ground truth as the
virtual board.

``FirmwareSim(elf)`` starts ``firmware/build/deepaf-sim`` (next to the ELF) with a
limit switch per axis, reads its pseudo-terminal from the first stdout line
(``PTY <path>``) and answers ``motor_steps()``, ``set_switch()``, ``seconds()`` and
``true_position_um()`` from its stdin commands (``pos``, ``limit``). It is the
PoseSource of the virtual camera when the stage is the firmware in simavr, and the
``board`` of a ``simavr://`` port (``urlhandler/protocol_simavr.py``).

deepaf-sim's command line: ``deepaf-sim [--limit AXIS=STEP[:+|-] ...] [--speed
realtime|fast] FIRMWARE.elf``; stdin: ``pos`` -> ``POS <x> <y> <z> <cycle>``, ``limit
<axis> <step> [+|-]`` -> ``OK``, ``quit``.
"""

from __future__ import annotations

import os
import select
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .board import DEFAULT_SWITCHES, REFERENCE_STEPS_PER_MM, REFERENCE_TRAVEL_MM

F_CPU = 16_000_000
START_TIMEOUT_S = 10.0


class FirmwareSim:
    """A running ``deepaf-sim``.

    Args:
        elf: the firmware ELF (``firmware/build/deepaf.elf``).
        sim: the simulator binary; default ``deepaf-sim`` next to the ELF.
        speed: ``"realtime"`` or ``"fast"`` (as fast as simavr runs).
        switches: per axis (motor step, side), as for ``VirtualBoard``.
    """

    def __init__(
        self,
        elf: str | os.PathLike[str],
        *,
        sim: str | os.PathLike[str] | None = None,
        speed: str = "realtime",
        switches: tuple[tuple[int, str], ...] = DEFAULT_SWITCHES,
        steps_per_mm: tuple[float, float, float] = REFERENCE_STEPS_PER_MM,
        travel_mm: tuple[float, float, float] = REFERENCE_TRAVEL_MM,
    ) -> None:
        elf_path = Path(elf)
        sim_path = Path(sim) if sim is not None else elf_path.with_name("deepaf-sim")
        missing = [str(p) for p in (elf_path, sim_path) if not p.exists()]
        if missing:
            raise FileNotFoundError(f"not built: {', '.join(missing)} (run `make -C firmware all sim`)")
        if speed not in ("realtime", "fast"):
            raise ValueError(f"deepaf-sim runs at 'realtime' or 'fast', not {speed!r}")
        self.speed = speed
        self.steps_per_mm = steps_per_mm
        self.travel_mm = travel_mm
        self.switches = list(switches)
        args = [str(sim_path), "--speed", speed]
        for axis, (step, side) in zip("xyz", switches):
            args += ["--limit", f"{axis}={int(step)}:{side}"]
        args.append(str(elf_path))
        self._stderr = tempfile.TemporaryFile()
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1
        )
        try:
            first = self._readline(START_TIMEOUT_S).split()
            if len(first) != 2 or first[0] != "PTY":
                raise RuntimeError(f"deepaf-sim did not start: {first!r} {self.stderr_tail()}")
        except BaseException:
            self.close()
            raise
        self.pty_path = first[1]

    def _readline(self, timeout_s: float) -> str:
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout_s)
        if not ready:
            raise TimeoutError(f"no answer from deepaf-sim within {timeout_s} s {self.stderr_tail()}")
        return self._proc.stdout.readline()

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def command(self, line: str) -> str:
        """One stdin command and its reply line."""
        with self._lock:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(line + "\n")
                self._proc.stdin.flush()
                reply = self._readline(START_TIMEOUT_S).strip()
            except (BrokenPipeError, ValueError):
                reply = ""
        if not reply:
            raise RuntimeError(f"deepaf-sim has exited: {self.stderr_tail()}")
        if reply.startswith("ERR"):
            raise RuntimeError(f"deepaf-sim: {line!r} -> {reply}")
        return reply

    def _pos(self) -> list[int]:
        fields = self.command("pos").split()
        if fields[0] != "POS" or len(fields) != 5:
            raise RuntimeError(f"deepaf-sim: unexpected reply to 'pos': {fields!r}")
        return [int(v) for v in fields[1:]]

    # --- ground truth ---------------------------------------------------------------

    def motor_steps(self) -> tuple[int, int, int]:
        x, y, z, _ = self._pos()
        return (x, y, z)

    def set_switch(self, axis: str, step: int, side: str = "+") -> None:
        if axis not in ("x", "y", "z") or side not in ("+", "-"):
            raise ValueError(f"bad switch {axis!r} {side!r}")
        self.command(f"limit {axis} {int(step)} {side}")
        self.switches["xyz".index(axis)] = (int(step), side)

    def seconds(self) -> float:
        """Simulated time (AVR cycles / 16 MHz)."""
        return self._pos()[3] / F_CPU

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass."""
        end = self.seconds() + seconds
        while self.seconds() < end:
            time.sleep(0.001)

    def true_position_um(self) -> tuple[float, float, float]:
        """The stage position in micrometres of machine coordinates: relative to the
        machine zero that homing sets from each switch (towards + for a "+" switch)."""
        motor = self.motor_steps()
        out = []
        for i in range(3):
            step, side = self.switches[i]
            mm = (motor[i] - step) / self.steps_per_mm[i]
            if side == "-":
                mm -= self.travel_mm[i]
            out.append(round(mm * 1000.0, 6))
        return (out[0], out[1], out[2])

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()

    def __enter__(self) -> FirmwareSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
