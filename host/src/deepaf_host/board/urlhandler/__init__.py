"""pyserial protocol handlers of the virtual hardware: ``sim://`` (the virtual board)
and ``simavr://`` (the real firmware in simavr through ``deepaf-sim``).

pyserial finds a handler ``protocol_<scheme>`` in the packages listed in
``serial.protocol_handler_packages``; ``register()`` adds this package there (importing
``deepaf_host.stage`` or ``deepaf_host.board`` does it).
"""

from __future__ import annotations

import serial

PACKAGE = __name__


def register() -> None:
    """Make ``serial.serial_for_url`` know ``sim://`` and ``simavr://``."""
    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)
