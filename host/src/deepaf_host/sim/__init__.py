"""The one place where the hardware path meets the emulators.

The stage, the scan session and the scan runner talk to a board and a camera; they do
not know whether these are real. What only a simulation has comes from here:

- ``register_url_handlers``: pyserial opens ``sim://`` (the virtual board) and
  ``simavr://`` (the real firmware in simavr) URLs through
  ``deepaf_host.board.urlhandler``. The package registers them when it is imported
  (``deepaf_host/__init__.py``), as a plug-in, so any ``Connection`` can open them.
- ``simulated_board(connection)``: the emulator behind a connection (the virtual board
  or the ``FirmwareSim``), or None for real hardware.
- ``open_virtual_camera(spec, connection)``: a ``sim://`` camera that follows that
  emulator's true stage position.
- ``board_clock(connection)``: the clock motion and exposures run on. A real board (or
  one emulated in real time) runs on the host's clock; a virtual board at another
  speed keeps simulated seconds.
- ``Truth`` / ``truth_of(camera)``: the simulator's ground truth (where the focus truly
  is, where the stage truly is), which a scan records next to what it measured. A real
  camera has none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..camera.base import Camera, PoseSource

_HANDLERS = "deepaf_host.board.urlhandler"


def register_url_handlers() -> None:
    """Let ``serial.serial_for_url`` open ``sim://`` and ``simavr://`` URLs."""
    import serial

    if _HANDLERS not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(_HANDLERS)


def simulated_board(connection: Any) -> PoseSource | None:
    """The emulator behind an open connection (it knows where the stage truly is), or
    None when the connection is to hardware."""
    port = getattr(connection, "serial", None)
    return getattr(port, "board", None)


def open_virtual_camera(spec: str, connection: Any) -> Camera:
    """The virtual camera ``spec`` (``sim://...``) on the emulated stage of ``connection``."""
    from ..camera.open import open_camera
    from ..errors import CameraError

    board = simulated_board(connection)
    if board is None:
        raise CameraError(spec, f"the virtual camera follows a virtual board; {getattr(connection, 'url', '?')!r} is not one "
                                "(use --port sim://)")
    return open_camera(spec, pose_source=board)


@dataclass(frozen=True)
class BoardClock:
    """The clock a session times motion and exposures on."""

    seconds: Callable[[], float]
    sleep: Callable[[float], None]
    #: True when time is simulated (a virtual board at a speed other than real time).
    simulated: bool
    #: True when simulated time only moves when something waits (``speed=max``): frames
    #: then take no time unless a camera timing model adds it.
    event_driven: bool


def board_clock(connection: Any) -> BoardClock:
    """The board's own clock when it is emulated, else the host's."""
    board = simulated_board(connection)
    speed = getattr(board, "speed", 1.0)
    if board is not None and hasattr(board, "seconds") and hasattr(board, "sleep"):
        return BoardClock(board.seconds, board.sleep, speed != 1.0, speed == "max")
    return BoardClock(time.monotonic, time.sleep, False, False)


@runtime_checkable
class Truth(Protocol):
    """The simulator's ground truth about a camera's view."""

    def true_focus_z_um(self, x_um: float, y_um: float) -> float:
        """The stage z at which the slide point (x, y) is in focus."""
        ...

    def true_xy_um(self) -> tuple[float, float]:
        """Where the stage truly is in x and y (backlash and lead-screw errors included)."""
        ...

    def true_defocus_um(self) -> float:
        """How far the stage truly is from focus at its true position (z - focus)."""
        ...


def truth_of(camera: Camera) -> Truth | None:
    """The ground truth behind ``camera`` (unwrapping cameras that wrap another), or None
    for a real camera."""
    seen = 0
    current: object = camera
    while current is not None and seen < 8:
        if isinstance(current, Truth):
            return current
        current = getattr(current, "inner", None) or getattr(current, "camera", None)
        seen += 1
    return None


__all__ = [
    "BoardClock",
    "Truth",
    "board_clock",
    "open_virtual_camera",
    "register_url_handlers",
    "simulated_board",
    "truth_of",
]
