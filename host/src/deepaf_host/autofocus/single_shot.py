"""``single-shot``: one low-res frame -> a model predicts the signed distance to focus -> one Z move.

This module holds the strategy's logic (seed 000): take up to K tissue patches of the
low-res frame, predict the defocus of each, move by the MEDIAN, and report the spread
as a confidence; when the spread is too large or the prediction is outside the model's
trained range, fall back to another strategy (``search`` by default).

The model itself is not here: a :class:`DefocusPredictor` does the inference. The
scanner's is the int8 TFLite runtime, ``deepaf_host.model.runtime.load_predictor``,
which :func:`deepaf_host.autofocus.make_strategy` loads when ``single-shot`` is asked
for (tests hand it a ``predictor`` instead).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..camera.base import Camera
from ..errors import AutofocusError
from ..focus.measures import DEFAULT_MEASURE
from ..optics.presets import get_objective
from ..tissue import DEFAULT_THRESHOLDS, TissueThresholds, select_patches, tissue_mask
from .base import (
    AutofocusResult,
    FocusContext,
    FocusStage,
    Found,
    Probe,
    Strategy,
    guarded_run,
)


@runtime_checkable
class DefocusPredictor(Protocol):
    """A model that predicts the signed distance to focus from image patches.

    ``predict`` takes ``(K, patch_size, patch_size, 3)`` RGB ``uint8`` patches and
    returns ``(K,)`` float distances in micrometres, ``dz = z_focus - z_now`` (the
    focal-stack convention of DESIGN.md: move Z by +dz to reach focus).
    """

    #: Identifies the model in the manifest (file name and sha256 prefix, say).
    name: str
    #: Side of the square patches the model takes.
    patch_size: int
    #: (min, max) of the dz the model was trained on, in um.
    range_um: tuple[float, float]

    def predict(self, patches: np.ndarray) -> np.ndarray: ...


#: Depth of field of the 20x/0.75 preset (0.96 um): the scale of the thresholds for a
#: predictor without a model card.
_DOF_20X_UM = get_objective("20x").depth_of_field_um()


@dataclass
class SingleShotAutofocus:
    """Predict dz on up to ``patches`` tissue patches of one frame, move by the median.

    ``max_spread_dof``: the largest spread (1.4826 x the median absolute deviation of
    the patch predictions) trusted, in depths of field (1.5 um at 20x/0.75; a 10x
    model's patches disagree by as many microns per depth of field); beyond it, or
    with a median outside the model's range, or with no tissue patch, the ``fallback`` strategy runs from the start (None:
    fail, stage back at the start). ``shots`` > 1 repeats predict-and-move from the new
    plane while the last correction was larger than ``repeat_above_um``.

    ``verify`` (on by default): after the move, a second low-res frame must confirm the
    focus: the model's residual on it within ``dof_um / 2`` (the model card's depth of
    field when None) and its focus measure not more than ``verify_tolerance`` below the
    start frame's. Otherwise the fallback runs from the better of the two planes (by
    the focus measure). A model that is confidently wrong (every patch agreeing on the
    wrong side of focus) passes the spread check but rarely both of these.

    ``learn_offset``: a model's error near focus is mostly an offset that depends on the
    slide and the lab (stain, lamp, condenser), and a second frame at the same plane
    cannot see it (the residual carries the same offset). So the first
    ``learn_offset`` tissue tiles of a scan are focused by the fallback, and every
    fallback that finds focus teaches the offset: the model's prediction at the start
    minus the correction the fallback made. Predictions and residuals are corrected by
    the median of the last ``offset_window`` such samples. 0 switches this off.
    """

    predictor: DefocusPredictor
    patches: int = 8
    min_patch_tissue: float = 0.5
    max_spread_dof: float = 1.5 / _DOF_20X_UM
    shots: int = 1
    repeat_above_um: float = 1.0
    fallback: Strategy | None = None
    verify: bool = True
    dof_um: float | None = None
    verify_tolerance: float = 0.05
    learn_offset: int = 2
    offset_window: int = 9
    thresholds: TissueThresholds = DEFAULT_THRESHOLDS
    name: str = "single-shot"
    measure: str | None = field(default=None, init=False)
    #: Samples of the model's offset on this slide (um), newest last.
    offsets: list[float] = field(default_factory=list, init=False, repr=False)

    @property
    def offset_um(self) -> float:
        """The model's current offset estimate (0 until a fallback has taught it)."""
        return float(np.median(self.offsets[-self.offset_window :])) if self.offsets else 0.0

    def run(
        self, stage: FocusStage, camera: Camera, start_z_um: float, context: FocusContext | None = None
    ) -> AutofocusResult:
        context = context or FocusContext()
        probe = Probe(stage, camera, start_z_um, context, DEFAULT_MEASURE)  # the measure is unused here
        shots: list[dict[str, Any]] = []
        verify: dict[str, Any] = {}
        better_z = float(start_z_um)
        offset = self.offset_um

        def predict(frame: np.ndarray, mask: np.ndarray) -> tuple[float, float, dict[str, Any]]:
            chosen = select_patches(mask, self.predictor.patch_size, self.patches, self.min_patch_tissue)
            if not chosen:
                raise _Fallback("no tissue patch in the frame")
            batch = np.stack([c.crop(frame) for c in chosen])
            t0 = time.perf_counter()
            dz = np.asarray(self.predictor.predict(batch), np.float64).reshape(-1)
            inference_s = time.perf_counter() - t0
            median = float(np.median(dz))
            spread = float(1.4826 * np.median(np.abs(dz - median)))
            return median, spread, {"dz_um": [float(v) for v in dz], "median_um": median, "spread_um": spread,
                                    "inference_s": inference_s, "patches": len(chosen)}

        def body(p: Probe) -> Found:
            nonlocal better_z
            z = p.start_z_um
            first_frame: np.ndarray | None = None
            for shot in range(self.shots):
                frame = p.frame()
                first_frame = frame if first_frame is None else first_frame
                mask = context.tissue_mask if shot == 0 and context.tissue_mask is not None else tissue_mask(frame, self.thresholds)
                median, spread, record = predict(frame, mask)
                shots.append({"z_um": z, **record, "offset_um": offset})
                if shot == 0 and self.fallback is not None and len(self.offsets) < self.learn_offset:
                    raise _Fallback(f"learning the model's offset on this slide ({len(self.offsets) + 1} of {self.learn_offset})")
                lo, hi = self.predictor.range_um
                max_spread = self.max_spread_dof * self._dof_um()
                if spread > max_spread:
                    raise _Fallback(f"patch predictions disagree (spread {spread:.2f} um > {max_spread:.2f} um)")
                if not lo <= median <= hi:
                    raise _Fallback(f"predicted dz {median:.2f} um is outside the model's range [{lo}, {hi}] um")
                z = z + median - offset
                if shot + 1 < self.shots and abs(median) > self.repeat_above_um:
                    p.move_z(z, self.name)
                else:
                    break
            if self.verify and first_frame is not None:
                self._verify(p, first_frame, z, predict, verify, offset)
                if not verify["passed"]:
                    better_z = z if verify["score_after"] > verify["score_start"] else p.start_z_um
                    raise _Fallback(f"not confirmed: {verify['reason']}")
            return Found(z, details=self._details(shots, verify))

        result = guarded_run(self.name, probe, context, body, None)
        if result.ok or not result.reason.startswith(_Fallback.PREFIX):
            return result
        reason = result.reason[len(_Fallback.PREFIX) :]
        if self.fallback is None:
            result.reason = reason
            result.details.update(self._details(shots, verify))
            return result
        # The stage is back at the start: let the fallback strategy find focus from the
        # better plane seen (the start, or the predicted plane when it was sharper).
        fb = self.fallback.run(stage, camera, better_z, FocusContext(None, None, context.clock, context.sleep, context.limits))
        fb.start_z_um = float(start_z_um)
        if not fb.ok:
            fb.z_um = stage.position().z_um
        fb.details = {**fb.details, **self._details(shots, verify), "fallback_from": self.name,
                      "fallback_reason": reason, "fallback_start_z_um": better_z}
        fb.frames += result.frames
        fb.seconds += result.seconds
        fb.strategy = f"{self.name}>{fb.strategy}"
        if fb.ok and shots:
            # What the model predicted at the start against the correction that was right.
            self.offsets.append(shots[0]["median_um"] - (fb.z_um - shots[0]["z_um"]))
            fb.details["offset_learnt_um"] = self.offset_um
        return fb

    def _verify(
        self, p: Probe, start_frame: np.ndarray, z: float,
        predict: Callable[[np.ndarray, np.ndarray], tuple[float, float, dict[str, Any]]], out: dict[str, Any],
        offset: float = 0.0,
    ) -> None:
        """Move to ``z``, grab a second frame and fill ``out`` with the verdict."""
        half = 0.5 * self._dof_um()
        p.move_z(z, self.name)
        frame = p.frame()
        score_start, score_after = p.score(start_frame), p.score(frame)
        out.update(z_um=z, score_start=score_start, score_after=score_after, half_dof_um=half)
        try:
            residual, spread, record = predict(frame, tissue_mask(frame, self.thresholds))
        except _Fallback as exc:
            out.update(passed=False, residual_um=None, reason=exc.reason[len(_Fallback.PREFIX):])
            return
        residual -= offset
        out.update(residual_um=residual, residual_spread_um=spread, inference_s=record["inference_s"], offset_um=offset)
        if abs(residual) > half:
            out.update(passed=False, reason=f"residual {residual:+.2f} um after the move, beyond DoF/2 = {half:.2f} um")
        elif score_after < score_start * (1 - self.verify_tolerance):
            out.update(passed=False, reason=f"the focus measure fell from {score_start:.4g} to {score_after:.4g}")
        else:
            out.update(passed=True, reason="")

    def _dof_um(self) -> float:
        """The depth of field the thresholds scale with: ``dof_um``, else the model
        card's, else the 20x/0.75 preset's."""
        dof = self.dof_um if self.dof_um is not None else getattr(getattr(self.predictor, "card", None), "dof_um", None)
        return float(dof) if dof else _DOF_20X_UM

    def _details(self, shots: list[dict[str, Any]], verify: dict[str, Any] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.predictor.name,
            "shots": shots,
            "inference_s": sum(s["inference_s"] for s in shots) + float((verify or {}).get("inference_s") or 0.0),
            "spread_um": shots[-1]["spread_um"] if shots else None,
        }
        if verify:
            d["verify"] = verify
        return d


class _Fallback(AutofocusError):
    """The prediction is not to be trusted; the fallback strategy should run."""

    PREFIX = "fallback: "

    def __init__(self, reason: str) -> None:
        super().__init__("single-shot", self.PREFIX + reason)
