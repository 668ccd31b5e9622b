"""``stack``: N planes around the start, the sharpest by a focus measure, parabolic refinement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera.base import Camera
from ..errors import AutofocusError, ConfigError
from ..focus.measures import DEFAULT_MEASURE
from .base import AutofocusResult, FocusContext, FocusStage, Found, Probe, guarded_run
from .fit import refine_peak


@dataclass
class StackAutofocus:
    """Capture ``planes`` planes ``step_um`` apart centred on the start (top to bottom:
    every move goes down, the direction ``Stage.move_to`` finishes focus moves in, so no
    plane needs a backlash overshoot), score each with ``measure``, and refine the best by
    a three-point fit. Fails (stage back at the start) when the sharpest plane is at an
    end of the stack or no peak stands out of the noise (:func:`check_peak`)."""

    planes: int = 13
    step_um: float = 1.0
    measure: str = DEFAULT_MEASURE
    settle_s: float = 0.0
    min_snr: float = 6.0
    roi: float = 1.0
    score_width_px: int = 640
    name: str = "stack"

    def __post_init__(self) -> None:
        if self.planes < 3:
            raise ConfigError("planes", f"a stack needs at least 3 planes, got {self.planes}")
        if not self.step_um > 0:
            raise ConfigError("step_um", f"must be positive, got {self.step_um}")

    def z_planes(self, start_z_um: float) -> np.ndarray:
        half = (self.planes - 1) / 2
        return start_z_um + (half - np.arange(self.planes)) * self.step_um

    def run(
        self, stage: FocusStage, camera: Camera, start_z_um: float, context: FocusContext | None = None
    ) -> AutofocusResult:
        context = context or FocusContext()
        probe = Probe(stage, camera, start_z_um, context, self.measure, self.settle_s, self.roi, self.score_width_px)

        def body(p: Probe) -> Found:
            zs = self.z_planes(p.start_z_um)
            for z in zs:
                p.check(float(z), self.name)  # refuse before moving at all
            scores = [p.sample(float(z), self.name) for z in zs]
            check_peak(self.name, zs, scores, self.min_snr)
            z_peak, i_best = refine_peak(zs, scores)
            return Found(z_peak, score=float(scores[i_best]), details={"step_um": self.step_um})

        return guarded_run(self.name, probe, context, body, self.measure)


def check_peak(strategy: str, z: np.ndarray | list[float], scores: list[float], min_snr: float) -> None:
    """Raise ``AutofocusError`` unless the best score stands out of the curve's noise.

    For a curve sampled evenly over a range wider than the peak (a stack, a sweep): the
    noise is estimated from the differences between neighbouring planes (1.4826 x their
    median absolute value / sqrt 2, robust to the few planes on the peak), the peak
    height as the best score minus the median score. Far from focus, or on glass, the
    curve is camera noise and its best plane a random one: that must not pass as focus.
    With fewer than 8 planes the noise cannot be told from the peak; then the relative
    contrast must reach 10 % (:func:`check_contrast`).
    """
    if len(scores) < 8:
        check_contrast(strategy, list(scores), 0.1)
        return
    order = np.argsort(np.asarray(z, np.float64))
    s = np.asarray(scores, np.float64)[order]
    noise = 1.4826 * float(np.median(np.abs(np.diff(s)))) / np.sqrt(2.0)
    height = float(s.max() - np.median(s))
    snr = height / noise if noise > 0 else (np.inf if height > 0 else 0.0)
    if snr < min_snr:
        raise AutofocusError(strategy, f"no focus peak above the noise (peak/noise {snr:.1f} < {min_snr}); too far from focus, or nothing to focus on")


def check_contrast(strategy: str, scores: list[float], min_contrast: float) -> None:
    """Raise ``AutofocusError`` when (max - min) / |max| of the scores is below ``min_contrast``
    (for searches, whose samples crowd around the peak)."""
    hi, lo = max(scores), min(scores)
    contrast = (hi - lo) / abs(hi) if hi != 0 else 0.0
    if contrast < min_contrast:
        raise AutofocusError(strategy, f"focus curve is flat (contrast {contrast:.3f} < {min_contrast}); too far from focus, or nothing to focus on")
