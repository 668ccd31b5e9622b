"""The motorised stage: the serial connection to the board and the Stage API on top.

    from deepaf_host.stage import Connection, Stage

    with Connection("/dev/ttyACM0") as conn:      # or "sim://?speed=max"
        stage = Stage(conn, z_min_um=-7500)
        stage.home()
        stage.move_to(x_um=-20000, y_um=-15000, z_um=-4000)
        print(stage.position())

Importing this package registers the ``sim://`` and ``simavr://`` pyserial URL
handlers (``deepaf_host.board.urlhandler``).
"""

from __future__ import annotations

import serial

_HANDLERS = "deepaf_host.board.urlhandler"


def register_url_handlers() -> None:
    """Let ``serial.serial_for_url`` open ``sim://`` and ``simavr://`` URLs."""
    if _HANDLERS not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(_HANDLERS)


register_url_handlers()

from .connection import Connection, Reply  # noqa: E402
from .info import BoardInfo  # noqa: E402
from .replies import StatusReport  # noqa: E402
from .settings import BoardSettings  # noqa: E402
from .stage import Position, Stage  # noqa: E402

__all__ = [
    "BoardInfo",
    "BoardSettings",
    "Connection",
    "Position",
    "Reply",
    "Stage",
    "StatusReport",
    "register_url_handlers",
]
