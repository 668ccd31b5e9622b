"""The real firmware in simavr: ``firmware/build/deepaf-sim`` running ``deepaf.elf``.

One simulator process serves a whole test session; every ``open()`` opens its
pseudo-terminal afresh, which resets the AVR like the Uno's DTR line. The ground truth
comes from the simulator's stdin commands (``pos``, ``limit``; see
``firmware/sim/deepaf-sim.c``).
"""

from __future__ import annotations

import time
from pathlib import Path

import serial
from deepaf_host.board.simavr import FirmwareSim

from targets import AXES, Target, has_banner_line

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "firmware" / "build"
SIM = BUILD / "deepaf-sim"
ELF = BUILD / "deepaf.elf"
READ_TIMEOUT_S = 0.2
BOOT_TIMEOUT_S = 5.0


class FirmwareTarget(Target):
    """The firmware ELF in deepaf-sim (``--speed fast``), through the host's
    ``FirmwareSim`` client, started without limit switches (tests place them)."""

    name = "firmware"

    def __init__(self, sim: Path = SIM, elf: Path = ELF, speed: str = "fast") -> None:
        self._sim = FirmwareSim(elf, sim=sim, speed=speed, switches=())
        self._port: serial.Serial | None = None
        self.pty = self._sim.pty_path

    # --- simulator commands ---------------------------------------------------------

    def stderr_tail(self) -> str:
        return self._sim.stderr_tail()

    def command(self, line: str) -> str:
        """Sends one stdin command to deepaf-sim and returns its reply line."""
        return self._sim.command(line)

    # --- Target ------------------------------------------------------------------------

    def open(self) -> serial.Serial:
        if self._port is not None:
            self._port.close()
            self._port = None
        # The reset happens when the simulator sees the pty go from closed to open:
        # make sure it saw the previous connection close.
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while self.command("pty") != "PTYSTATE closed":
            if time.monotonic() > deadline:
                raise TimeoutError("deepaf-sim still sees the pty open")
            time.sleep(0.001)
        port = serial.Serial(self.pty, 115200, timeout=READ_TIMEOUT_S)
        # deepaf-sim holds the AVR in reset for 30 ms after the open, so the banner
        # arrives after pyserial's open() has flushed its input. Wait for it: then the
        # firmware is up and takes lines. Later boot messages stay unread. A read may
        # return part of a line (its timeout ran out mid-line on a loaded machine), so
        # the whole banner line is looked for in everything read.
        got: list[bytes] = []
        while not has_banner_line(b"".join(got)):
            got.append(port.read_until(b"\n"))
            if time.monotonic() > deadline:
                port.close()
                raise TimeoutError(f"no banner after opening {self.pty}: {got!r}")
        self._port = port
        return port

    def motor_steps(self) -> tuple[int, int, int]:
        return self._sim.motor_steps()

    def set_switch(self, axis: str, step: int, side: str = "+") -> None:
        if axis not in AXES or side not in "+-" or len(side) != 1:
            raise ValueError(f"bad switch {axis!r} {side!r}")
        self.command(f"limit {axis} {int(step)} {side}")

    def seconds(self) -> float:
        return self._sim.seconds()

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None
        self._sim.close()

    # --- firmware only ---------------------------------------------------------------

    def power_cycle(self) -> None:
        """Power-on reset of the AVR with the port left open (EEPROM kept)."""
        self.command("reset")

    def eeprom_erase(self) -> None:
        self.command("eeprom erase")

    def eeprom_read(self, address: int) -> int:
        return int(self.command(f"eeprom read {address}").split()[1])

    def eeprom_write(self, address: int, value: int) -> None:
        self.command(f"eeprom write {address} {value}")

    def timing(self, reset: bool = False) -> tuple[int, int]:
        """Shortest STEP pulse and shortest DIR-to-STEP setup, in CPU cycles."""
        fields = self.command("timing reset" if reset else "timing").split()
        return int(fields[1]), int(fields[2])

    def stack(self) -> tuple[int, int]:
        """Deepest stack use since power-up and RAM never touched, in bytes."""
        fields = self.command("stack").split()
        return int(fields[1]), int(fields[2])
