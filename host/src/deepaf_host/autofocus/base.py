"""One interface and one result record for every autofocus strategy.

A strategy is an object with a ``name`` and a ``run`` method::

    result = strategy.run(stage, camera, start_z_um, context=FocusContext(...))

``run`` centres its work on ``start_z_um`` (the neighbouring tile's focus during a
scan), leaves the stage at the focus it found and returns an :class:`AutofocusResult`.
It never raises for a focus it could not find: it returns ``ok=False`` with a
``reason`` and the stage back where it was when ``run`` was called (never "back to
0"). Errors of the hardware (a lost connection, an alarm) propagate after one attempt
to put the stage back; Ctrl-C propagates at once (the scan's cleanup lifts Z).

Safety, enforced here for every strategy: no Z target further than
``FocusLimits.max_correction_um`` from ``start_z_um`` is ever sent to the stage (the
stage itself enforces its Z safety limit and travel).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..camera.base import Camera
from ..errors import AutofocusError, ConfigError
from ..focus import measures

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class _Position(Protocol):
    @property
    def x_um(self) -> float: ...
    @property
    def y_um(self) -> float: ...
    @property
    def z_um(self) -> float: ...


class FocusStage(Protocol):
    """What autofocus needs of a stage (``deepaf_host.stage.Stage`` provides it).

    ``move_to`` finishes focus moves in the same direction (backlash-free approach) and
    returns when the stage is there.
    """

    def position(self) -> _Position: ...

    def move_to(self, x_um: float | None = None, y_um: float | None = None, z_um: float | None = None) -> None: ...

    def wait_idle(self) -> None: ...


@dataclass
class AutofocusResult:
    """What one autofocus did. ``to_dict()`` is the manifest's ``autofocus`` object.

    ``z_um`` is where the strategy left the stage: the focus when ``ok``, the starting
    position when not. ``frames`` counts every camera frame the strategy used (a frame
    handed in through :class:`FocusContext` counts too). ``seconds`` is the time spent,
    on the scan's clock (simulated time on the virtual microscope). ``measure`` names the
    focus measure (None for single-shot); ``score`` is its value at the chosen plane when
    known. ``details`` holds what is particular to the strategy (sampled z and scores,
    the prediction and its spread, a fallback), JSON-serialisable.
    """

    strategy: str
    z_um: float
    start_z_um: float
    ok: bool
    reason: str = ""
    frames: int = 0
    seconds: float = 0.0
    measure: str | None = None
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def correction_um(self) -> float:
        return self.z_um - self.start_z_um

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["correction_um"] = self.correction_um
        return d


@dataclass(frozen=True)
class FocusLimits:
    """Safety limits of one autofocus."""

    #: The furthest any strategy may take Z from the start, either way (um).
    max_correction_um: float = 30.0

    def __post_init__(self) -> None:
        if not self.max_correction_um > 0:
            raise ConfigError("max_correction_um", f"must be positive, got {self.max_correction_um}")


@dataclass
class FocusContext:
    """What the caller already knows when it asks for focus.

    ``frame`` is a low-res frame taken at ``start_z_um`` (the scan's tissue-detection
    frame), which strategies reuse instead of grabbing it again; ``tissue_mask`` its
    tissue mask. ``clock`` measures ``AutofocusResult.seconds``; ``sleep`` waits on that
    clock (settling); both default to real time.
    """

    frame: np.ndarray | None = None
    tissue_mask: np.ndarray | None = None
    clock: Clock = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    limits: FocusLimits = field(default_factory=FocusLimits)


@runtime_checkable
class Strategy(Protocol):
    """An autofocus strategy (stack, search, sweep, single-shot)."""

    name: str

    def run(
        self, stage: FocusStage, camera: Camera, start_z_um: float, context: FocusContext | None = None
    ) -> AutofocusResult: ...


class Probe:
    """Moves Z and scores frames for a strategy, and keeps the books: frames used, every
    (z, score) sampled, the limits. One probe serves one ``run``."""

    def __init__(
        self,
        stage: FocusStage,
        camera: Camera,
        start_z_um: float,
        context: FocusContext,
        measure: str,
        settle_s: float = 0.0,
        roi: float = 1.0,
        score_width_px: int = 640,
    ) -> None:
        self.stage = stage
        self.camera = camera
        self.start_z_um = float(start_z_um)
        self.context = context
        self.measure_name = measure
        self.measure = measures.get(measure)
        self.settle_s = settle_s
        if not 0 < roi <= 1:
            raise ConfigError("roi", f"fraction of the frame must be in (0, 1], got {roi}")
        self.roi = roi
        if score_width_px < 16:
            raise ConfigError("score_width_px", f"must be at least 16, got {score_width_px}")
        self.score_width_px = score_width_px
        pos = stage.position()
        self.x_um, self.y_um = float(pos.x_um), float(pos.y_um)
        self.frames = 0
        #: Wall-clock seconds spent computing focus measures (host work).
        self.compute_s = 0.0
        self.z_samples: list[float] = []
        self.scores: list[float] = []
        self._frame_at_start = context.frame
        self._at_z: float | None = float(pos.z_um)

    # --- limits ----------------------------------------------------------------------

    @property
    def z_lo(self) -> float:
        return self.start_z_um - self.context.limits.max_correction_um

    @property
    def z_hi(self) -> float:
        return self.start_z_um + self.context.limits.max_correction_um

    def check(self, z_um: float, strategy: str) -> None:
        """Refuse (``AutofocusError``, nothing moves) a z beyond the maximum correction or
        below the stage's Z safety limit."""
        z_min = getattr(self.stage, "z_min_um", None)
        if z_min is not None and z_um < z_min:
            raise AutofocusError(strategy, f"z = {z_um:.2f} um is below the Z safety limit {z_min:.2f} um")
        if not self.z_lo - 1e-6 <= z_um <= self.z_hi + 1e-6:
            raise AutofocusError(
                strategy,
                f"z = {z_um:.2f} um is {abs(z_um - self.start_z_um):.2f} um from the start "
                f"{self.start_z_um:.2f} um, beyond the maximum correction {self.context.limits.max_correction_um:g} um",
            )

    # --- moves and frames ------------------------------------------------------------

    def move_z(self, z_um: float, strategy: str) -> None:
        self.check(z_um, strategy)
        self.stage.move_to(self.x_um, self.y_um, z_um)
        self._at_z = z_um
        if self.settle_s > 0:
            self.context.sleep(self.settle_s)

    def frame(self) -> np.ndarray:
        """A low-res frame here; the context's frame when the stage is still at the start."""
        if self._frame_at_start is not None and self._at_z is not None and abs(self._at_z - self.start_z_um) < 1e-6:
            frame, self._frame_at_start = self._frame_at_start, None
        else:
            frame = self.camera.grab("low")
        self.frames += 1
        return frame

    def score(self, frame: np.ndarray) -> float:
        """The focus measure of ``frame``: gray, binned k x k to about ``score_width_px``
        wide (camera noise averages out k-fold while the detail the measure needs stays
        when the frame samples finer than the optics resolve), cropped to ``roi``."""
        t0 = time.perf_counter()
        try:
            return self._score(frame)
        finally:
            self.compute_s += time.perf_counter() - t0

    def _score(self, frame: np.ndarray) -> float:
        g = measures.gray(frame)
        k = max(1, g.shape[1] // self.score_width_px)
        if k > 1:
            h, w = (g.shape[0] // k) * k, (g.shape[1] // k) * k
            g = g[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
        if self.roi < 1:
            h, w = g.shape
            dh, dw = int(h * (1 - self.roi) / 2), int(w * (1 - self.roi) / 2)
            g = g[dh : h - dh, dw : w - dw]
        return self.measure(g)

    def sample(self, z_um: float, strategy: str) -> float:
        """Move to ``z_um``, grab, score, record; returns the score."""
        self.move_z(z_um, strategy)
        s = self.score(self.frame())
        self.z_samples.append(float(z_um))
        self.scores.append(float(s))
        return s

    def restore(self) -> None:
        """Put the stage back at the position ``run`` started from."""
        self.stage.move_to(self.x_um, self.y_um, self.start_z_um)
        self._at_z = self.start_z_um


@dataclass
class Found:
    """A strategy body's answer: the focus z, its score, and details for the record."""

    z_um: float
    score: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def guarded_run(
    name: str,
    probe: Probe,
    context: FocusContext,
    body: Callable[[Probe], Found],
    measure: str | None,
) -> AutofocusResult:
    """Run a strategy body with the safety rules of this module.

    The body samples through ``probe`` and returns where the focus is; this moves the
    stage there (the backlash-free approach of ``Stage.move_to``). A body that raises
    ``AutofocusError`` (or ``ValueError`` from the peak fit) gives ``ok=False`` with the
    stage put back; any other exception puts the stage back if it can and propagates.
    """
    t0 = context.clock()

    def result(ok: bool, z: float, reason: str = "", score: float | None = None, details: dict[str, Any] | None = None) -> AutofocusResult:
        d: dict[str, Any] = {"z_um": probe.z_samples, "scores": probe.scores, "compute_s": probe.compute_s}
        d.update(details or {})
        return AutofocusResult(
            strategy=name, z_um=z, start_z_um=probe.start_z_um, ok=ok, reason=reason,
            frames=probe.frames, seconds=context.clock() - t0, measure=measure, score=score, details=d,
        )

    try:
        found = body(probe)
        probe.check(found.z_um, name)
        probe.move_z(found.z_um, name)
        return result(True, found.z_um, score=found.score, details=found.details)
    except (AutofocusError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, AutofocusError) else str(exc)
        log.info("autofocus %s failed at z=%.2f: %s; stage back at the start", name, probe.start_z_um, reason)
        probe.restore()
        return result(False, probe.start_z_um, reason=reason)
    except KeyboardInterrupt:
        raise  # Ctrl-C: the scan's cleanup parks the stage (lifts Z) at once
    except BaseException:
        # Hardware error: try once to leave the stage where it was.
        try:
            probe.restore()
        except Exception as restore_exc:  # noqa: BLE001 - the connection may be gone; the first error is the one to raise
            log.warning("could not put the stage back after an autofocus error: %s", restore_exc)
        raise
