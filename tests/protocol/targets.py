"""Implementations of protocol.md that the contract suite runs against.

The suite in this folder is written once and runs against every target: the real
firmware in simavr (``FirmwareTarget``) and the host's virtual board
(``VirtualTarget``). A target gives the suite a serial port and the ground truth that
the protocol itself cannot tell: the true motor step counts and the limit switches.
"""

from __future__ import annotations

import abc

import serial

AXES = "xyz"
#: A limit switch this far away (steps) never closes.
FAR = 10**12


class Target(abc.ABC):
    """One implementation of protocol.md, with its ground truth."""

    name: str

    @abc.abstractmethod
    def open(self) -> serial.Serial:
        """A fresh connection. Opening resets the board, as the Uno's DTR does.

        EEPROM contents (settings) survive; motor step counters do not change.
        Returns a pyserial object with a read timeout set.
        """

    @abc.abstractmethod
    def motor_steps(self) -> tuple[int, int, int]:
        """True motor positions in steps (every STEP edge counted with its DIR),
        backlash steps included."""

    @abc.abstractmethod
    def set_switch(self, axis: str, step: int, side: str = "+") -> None:
        """Place the limit switch of ``axis``: it reads closed while the motor is at or
        beyond ``step`` towards ``side`` ("+": steps >= step, "-": steps <= step)."""

    @abc.abstractmethod
    def seconds(self) -> float:
        """Simulated time since the target started, in seconds."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the target and free its resources."""


def has_banner_line(data: bytes) -> bool:
    """Whether ``data`` holds a whole line (up to its LF) that starts with the banner."""
    start = (b"\n" + data).find(b"\nGrbl ")
    return start >= 0 and data.find(b"\n", start) >= 0
