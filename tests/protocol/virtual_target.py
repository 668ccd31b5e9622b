"""The host's virtual board (``deepaf_host.board``) as a contract-suite target.

The board runs like ``deepaf-sim --speed fast``: its clock runs freely (faster than
real time) and jumps ahead when a reader waits for bytes, so the suite's waits are
short. Every ``open()`` opens ``sim://NAME`` afresh, which resets the board as the
Uno's DTR does (EEPROM and motor steps survive).
"""

from __future__ import annotations

import time

import serial

from deepaf_host.board import VirtualBoard
from targets import AXES, Target, has_banner_line

READ_TIMEOUT_S = 0.2
BOOT_TIMEOUT_S = 5.0
#: Board seconds per wall second while nobody waits.
SPEED = 25.0


class VirtualTarget(Target):
    name = "virtual"

    def __init__(self, speed: float = SPEED) -> None:
        self.board = VirtualBoard(speed=speed, jump=True)
        self._port: serial.SerialBase | None = None

    def open(self) -> serial.SerialBase:
        if self._port is not None:
            self._port.close()
            self._port = None
        port = serial.serial_for_url(self.board.url, timeout=READ_TIMEOUT_S)
        # As with the firmware target: the banner is read here, later boot messages
        # stay for the test.
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        got = b""
        while not has_banner_line(got):
            got += port.read_until(b"\n")
            if time.monotonic() > deadline:
                port.close()
                raise TimeoutError(f"no banner from {self.board.url}: {got!r}")
        self._port = port
        return port

    def motor_steps(self) -> tuple[int, int, int]:
        return self.board.motor_steps()

    def set_switch(self, axis: str, step: int, side: str = "+") -> None:
        if axis not in AXES:
            raise ValueError(f"bad axis {axis!r}")
        self.board.set_switch(axis, step, side)

    def seconds(self) -> float:
        return self.board.seconds()

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None
