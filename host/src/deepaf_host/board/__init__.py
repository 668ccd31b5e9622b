"""The virtual board: protocol.md implemented in Python, with real state.

``VirtualBoard`` (board.py) is a complete DeepAf board -- settings with an EEPROM,
motors counted in steps, limit switches, homing, alarms, motion that takes the time
its rates and accelerations say -- and, with ``dialect="grbl"``, enough of a stock
GRBL 1.1 board for the host's dialect handling. Reach it as the pyserial URL
``sim://`` (``serial.serial_for_url("sim://?speed=max")``) or on a pseudo-terminal
(``deepaf-host emulate``). ``FirmwareSim`` (simavr.py) runs the real firmware in simavr
with the same ground-truth interface.
"""

from __future__ import annotations

from .board import DEFAULT_SWITCHES, REFERENCE_STEPS_PER_MM, VirtualBoard, find_board
from .urlhandler import register

register()

__all__ = ["DEFAULT_SWITCHES", "REFERENCE_STEPS_PER_MM", "VirtualBoard", "find_board", "register"]
