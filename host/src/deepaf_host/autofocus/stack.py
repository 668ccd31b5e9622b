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
    end of the stack or the curve is flat (``min_contrast``: (max - min) / |max|)."""

    planes: int = 13
    step_um: float = 1.0
    measure: str = DEFAULT_MEASURE
    settle_s: float = 0.0
    min_contrast: float = 0.02
    roi: float = 1.0
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
        probe = Probe(stage, camera, start_z_um, context, self.measure, self.settle_s, self.roi)

        def body(p: Probe) -> Found:
            zs = self.z_planes(p.start_z_um)
            for z in zs:
                p.check(float(z), self.name)  # refuse before moving at all
            scores = [p.sample(float(z), self.name) for z in zs]
            check_contrast(self.name, scores, self.min_contrast)
            z_peak, i_best = refine_peak(zs, scores)
            return Found(z_peak, score=float(scores[i_best]), details={"step_um": self.step_um})

        return guarded_run(self.name, probe, context, body, self.measure)


def check_contrast(strategy: str, scores: list[float], min_contrast: float) -> None:
    """Raise ``AutofocusError`` when a focus curve is too flat to trust."""
    hi, lo = max(scores), min(scores)
    contrast = (hi - lo) / abs(hi) if hi != 0 else 0.0
    if contrast < min_contrast:
        raise AutofocusError(strategy, f"focus curve is flat (contrast {contrast:.4f} < {min_contrast}); no structure to focus on")
