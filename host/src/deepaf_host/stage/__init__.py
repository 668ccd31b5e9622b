"""The motorised stage: the serial connection to the board and the Stage API on top.

    from deepaf_host.stage import Connection, Stage

    with Connection("/dev/ttyACM0") as conn:      # or "sim://?speed=max"
        stage = Stage(conn, z_min_um=-7500)
        stage.home()
        stage.move_to(x_um=-20000, y_um=-15000, z_um=-4000)
        print(stage.position())

The emulators' URLs (``sim://``, ``simavr://``) open like any port: the package
registers them (``deepaf_host.sim``); this package does not know they exist.
"""

from __future__ import annotations

from .connection import Connection, Reply
from .info import BoardInfo
from .replies import StatusReport
from .settings import BoardSettings
from .stage import Position, Stage

__all__ = [
    "BoardInfo",
    "BoardSettings",
    "Connection",
    "Position",
    "Reply",
    "Stage",
    "StatusReport",
]
