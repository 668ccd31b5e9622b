"""Opening the microscope for the commands that drive it outside a scan (calibrate, collect)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ..errors import DeepAfError, OptionError
from . import BadInput


def open_homed(
    stack: contextlib.ExitStack, setup: Any, no_home: bool, *, high_size: tuple[int, int] | None = None,
) -> tuple[Any, Any, Callable[[], float], Callable[[float], None]]:
    """Open ``setup``'s stage and camera inside ``stack`` and home the stage (under
    ``--no-home``: check it is homed). Returns ``(stage, camera, clock, sleep)``; any
    refusal is one line for the user (:class:`BadInput`, exit status 2)."""
    from ..scan.session import open_microscope

    try:
        stage, camera, clock, sleep, _ = stack.enter_context(open_microscope(
            setup.port, setup.camera, z_min_um=setup.z_min_um, objective=setup.objective,
            pixel_size_um=setup.pixel_size_um, low_size=setup.low_size, high_size=high_size,
        ))
        if no_home:
            if stage.is_locked:
                raise OptionError("--no-home", "the stage is not homed: leave --no-home out")
        else:
            stage.home()
    except DeepAfError as exc:
        raise BadInput(str(exc)) from None
    return stage, camera, clock, sleep
