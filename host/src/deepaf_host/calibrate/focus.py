"""Finding the specimen's focus from a rough guess (calibrate and collect).

A broad stack first (25 planes five depths of field apart, on a broad focus measure),
in windows further and further from the guess until one holds a peak, then Brent's
search around it: the same two stages a scan's first tissue tile goes through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..autofocus import FocusContext, FocusLimits, FocusStage, SearchAutofocus, StackAutofocus
from ..camera.base import Camera
from ..errors import AutofocusError
from ..focus.measures import BROAD_MEASURE


def find_focus(
    stage: FocusStage,
    camera: Camera,
    z_guess_um: float,
    dof_um: float,
    *,
    windows: int = 3,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[float, int]:
    """The focus z near ``z_guess_um`` at the stage's XY, and the frames it took. The
    stage is left there. Raises ``AutofocusError`` when no window of the broad stack
    (the guess, then ``windows`` more above and below it) holds a peak."""
    step = 5.0 * dof_um
    planes = 25
    span = (planes - 1) * step
    broad = StackAutofocus(planes=planes, step_um=step, measure=BROAD_MEASURE, name="broad-stack")
    fine = SearchAutofocus(range_um=max(12.0, 8.0 * dof_um), tolerance_um=max(0.05, dof_um / 5.0))
    context = FocusContext()
    if sleep is not None:
        context = replace(context, sleep=sleep)
    if clock is not None:
        context = replace(context, clock=clock)
    frames = 0
    centres = [z_guess_um]
    for k in range(1, windows + 1):
        centres += [z_guess_um + k * span, z_guess_um - k * span]
    z_min = getattr(stage, "z_min_um", None)
    found = None
    for centre in centres:
        if z_min is not None and centre - span / 2 < z_min:
            continue
        result = broad.run(stage, camera, centre, replace(context, limits=FocusLimits(span)))
        frames += result.frames
        if result.ok:
            found = result.z_um
            break
    if found is None:
        raise AutofocusError("broad-stack", f"no focus peak within {len(centres) * span:.0f} um around z = {z_guess_um:.1f} um")
    result = fine.run(stage, camera, found, replace(context, limits=FocusLimits(fine.range_um)))
    frames += result.frames
    return (result.z_um if result.ok else found), frames
