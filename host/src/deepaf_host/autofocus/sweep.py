"""``sweep``: one continuous Z sweep, frames stamped with the z the board reports.

As OpenFlexure's fast autofocus: go to the top of the range, start ONE slow move to
the bottom (downwards, the direction in which ``Stage.move_to`` finishes every focus
move, so the backlash is taken up along the sweep), and grab frames as fast as the camera gives them while the stage moves; each
frame is stamped with the z the board reports (the status report's MPos comes from the
step counters, so it is where the motor really is), read just before and just after
the grab and interpolated in time to the middle of the frame's exposure. When the
camera tells when that is (an attribute ``frame_delay_s``: seconds from the grab call
to the middle of the exposure of the frame it returns; half the exposure for a
triggered camera, negative for a free-running stream that hands out a frame exposed
before the call), the stamp uses it; otherwise the middle of the grab. At the sweep's
speed an error of 10 ms in that delay is 0.15 um of focus. The sharpest region of the sweep is refined by a least-squares
parabola, then the stage goes to that z with the stage's backlash-free approach.

The sweep speed is chosen so that frames fall ``spacing_um`` apart: ``speed =
spacing_um / frame_time``, the frame time measured on the first frame at the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

from ..camera.base import Camera
from ..errors import AutofocusError, ConfigError
from ..focus.measures import DEFAULT_MEASURE
from .base import AutofocusResult, FocusContext, FocusStage, Found, Probe, guarded_run
from .fit import quadratic_peak, refine_peak
from .stack import check_peak


class _Report(Protocol):
    @property
    def base_state(self) -> str: ...


class SweepStage(FocusStage, Protocol):
    """A stage that moves at a set speed without waiting and reports its state
    (``deepaf_host.stage.Stage``)."""

    def move_to(
        self, x_um: float | None = None, y_um: float | None = None, z_um: float | None = None,
        *, speed_um_s: float | None = None, wait: bool = True,
    ) -> None: ...

    def status(self) -> _Report: ...


@dataclass
class SweepAutofocus:
    """One sweep over ``start +- range_um / 2``; frames about ``spacing_um`` apart."""

    range_um: float = 20.0
    spacing_um: float = 0.5
    max_speed_um_s: float = 200.0
    max_frames: int = 400
    fit_half_width_um: float = 2.0
    measure: str = DEFAULT_MEASURE
    settle_s: float = 0.0
    min_snr: float = 6.0
    roi: float = 1.0
    score_width_px: int = 640
    name: str = "sweep"

    def __post_init__(self) -> None:
        if not self.range_um > 0 or not self.spacing_um > 0 or not self.max_speed_um_s > 0:
            raise ConfigError("sweep", f"range, spacing and speed must be positive, got {self.range_um}, {self.spacing_um}, {self.max_speed_um_s}")

    def run(
        self, stage: FocusStage, camera: Camera, start_z_um: float, context: FocusContext | None = None
    ) -> AutofocusResult:
        context = context or FocusContext()
        if not hasattr(stage, "status"):
            raise ConfigError("autofocus", f"the sweep needs a stage that reports its state while moving; {type(stage).__name__} cannot")
        sweep_stage = cast(SweepStage, stage)  # it has status(), checked above
        probe = Probe(stage, camera, start_z_um, context, self.measure, self.settle_s, self.roi, self.score_width_px)

        def body(p: Probe) -> Found:
            lo, hi = p.start_z_um - self.range_um / 2, p.start_z_um + self.range_um / 2
            p.check(lo, self.name)
            p.check(hi, self.name)
            p.move_z(hi, self.name)
            t0 = context.clock()
            p.z_samples.append(hi)
            p.scores.append(p.score(p.frame()))
            frame_s = max(context.clock() - t0, 1e-4)
            speed = min(self.max_speed_um_s, self.spacing_um / frame_s)
            sweep_stage.move_to(p.x_um, p.y_um, lo, speed_um_s=speed, wait=False)
            p._at_z = None  # moving: the context's frame is no longer ours
            delay_s = getattr(camera, "frame_delay_s", None)
            while True:
                idle_before = sweep_stage.status().base_state in ("Idle", "Alarm")
                za, ta = float(stage.position().z_um), context.clock()
                frame = p.frame()
                zb, tb = float(stage.position().z_um), context.clock()
                if delay_s is None or tb <= ta:
                    p.z_samples.append((za + zb) / 2)
                else:
                    p.z_samples.append(za + (zb - za) * float(delay_s) / (tb - ta))
                p.scores.append(p.score(frame))
                if idle_before:
                    break
                if p.frames >= self.max_frames:
                    stage.wait_idle()
                    raise AutofocusError(self.name, f"sweep took more than {self.max_frames} frames")
            p._at_z = lo
            check_peak(self.name, p.z_samples, p.scores, self.min_snr)
            z_best, i_best = refine_peak(p.z_samples, p.scores)  # raises when the peak is at an end
            z_fit = quadratic_peak(p.z_samples, p.scores, self.fit_half_width_um)
            z = z_fit if z_fit is not None else z_best
            return Found(z, score=p.scores[i_best], details={"speed_um_s": speed, "frame_s": frame_s})

        return guarded_run(self.name, probe, context, body, self.measure)
