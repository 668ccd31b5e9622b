"""``search``: Brent's bounded search on a focus measure, as Micro-Manager's OughtaFocus.

OughtaFocus (used by seed 002 for its ~40 s/mm^2 reference) runs Brent's method on a
focus measure over ``SearchRange`` around the current z to a ``tolerance``; seed 002
used a 10 um range and 0.1 um tolerance at 20x/0.75. The defaults here are a 12 um
range (+-6 um around the neighbouring tile's focus) and 0.2 um, well inside the depth
of field (about 1 um at 20x/0.75).
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.optimize import minimize_scalar

from ..camera.base import Camera
from ..errors import AutofocusError, ConfigError
from ..focus.measures import DEFAULT_MEASURE
from .base import AutofocusResult, FocusContext, FocusStage, Found, Probe, guarded_run
from .stack import check_contrast


@dataclass
class SearchAutofocus:
    """Brent's bounded minimisation of ``-measure(z)`` over ``start +- range_um / 2``."""

    range_um: float = 12.0
    tolerance_um: float = 0.2
    max_frames: int = 40
    measure: str = DEFAULT_MEASURE
    settle_s: float = 0.0
    min_contrast: float = 0.1
    roi: float = 1.0
    score_width_px: int = 640
    name: str = "search"

    def __post_init__(self) -> None:
        if not self.range_um > 0 or not self.tolerance_um > 0:
            raise ConfigError("range_um", f"range and tolerance must be positive, got {self.range_um}, {self.tolerance_um}")

    def run(
        self, stage: FocusStage, camera: Camera, start_z_um: float, context: FocusContext | None = None
    ) -> AutofocusResult:
        context = context or FocusContext()
        probe = Probe(stage, camera, start_z_um, context, self.measure, self.settle_s, self.roi, self.score_width_px)

        def body(p: Probe) -> Found:
            lo, hi = p.start_z_um - self.range_um / 2, p.start_z_um + self.range_um / 2
            p.check(lo, self.name)
            p.check(hi, self.name)
            cache: dict[float, float] = {}

            def cost(z: float) -> float:
                key = round(float(z), 4)
                if key not in cache:
                    if p.frames >= self.max_frames:
                        raise AutofocusError(self.name, f"no convergence within {self.max_frames} frames")
                    cache[key] = p.sample(key, self.name)
                return -cache[key]

            res = minimize_scalar(cost, bounds=(lo, hi), method="bounded", options={"xatol": self.tolerance_um})
            check_contrast(self.name, p.scores, self.min_contrast)
            z_best = round(float(res.x), 4)
            edge = 2 * self.tolerance_um
            if z_best - lo < edge or hi - z_best < edge:
                raise AutofocusError(self.name, f"best focus z = {z_best:.2f} um is at the edge of the search range [{lo:.2f}, {hi:.2f}]")
            return Found(z_best, score=-cost(z_best) if z_best in cache else None, details={"iterations": int(res.nfev)})

        return guarded_run(self.name, probe, context, body, self.measure)
