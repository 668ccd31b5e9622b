"""The scan loop. ONE runner owns it (as pymmcore-plus's MDARunner): home, then for
each tile move, settle, grab the low-res frame, skip empty glass, autofocus from the
nearest focused tile, grab the high-res frame, write it; cleanup in ``finally`` (park
and release the motors, close the manifest, write the report), on success, on any
error and on Ctrl-C alike.

Events
------
Pass a :class:`ScanEvents` subclass to follow a scan; every method is called in the
scan's thread, in this order:

- ``scan_started(plan, done)``: after homing; ``done`` = tiles already in the manifest
  (resume).
- ``tile_resumed(tile, record)``: a tile found in the manifest; it is not imaged again.
- ``tile_started(tile)``: before the move to the tile.
- ``tile_finished(tile, record)``: after the tile's manifest line is on disk.
- ``scan_finished(report)``: always, last, with ``report["status"]`` one of
  ``complete`` (every tissue tile passed its focus QC), ``complete_with_defects`` (all
  tiles done, some suspect or failed: ``report["qc"]["suspect_tiles"]``),
  ``interrupted`` (Ctrl-C) or ``failed`` (an error; ``report["error"]``).

A listener that raises is logged and ignored: a progress bar never stops a scan.

Trust
-----
Every tissue tile gets a ``qc`` verdict (:mod:`deepaf_host.scan.qc`); one that is not
``ok`` is refocused once with ``ScanConfig.refocus`` (a classical search) and judged
again. Only tiles whose QC is ``ok`` pass their z on to their neighbours. The first
tissue tile's coarse focus search widens window by window (``initial_search_um``,
within the Z travel and the safety limit) and, when no window shows a focus peak that
repeats, stops the scan with :class:`~deepaf_host.errors.ScanFocusError` before any
tile is written: a camera whose frames do not change with Z stops it there too.

Clocks
------
``timings_s`` of a tile are seconds per phase. Motion and camera phases (``move``,
``settle``, ``low_capture``, ``autofocus``, ``high_capture``) are measured on the scan
clock: real time on hardware, SIMULATED time on the virtual microscope, where the
board's clock runs the motion and the camera model its exposure. Host computation
(``tissue`` detection, model ``inference``, image encoding and ``write``, and focus
measures inside ``autofocus``) is measured in wall-clock seconds on this machine and
added in, so ``total`` is what the tile would take on a machine as fast as this one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .. import __version__
from ..autofocus import FocusContext, FocusLimits, SearchAutofocus, StackAutofocus, Strategy
from ..autofocus.base import AutofocusResult, FocusStage
from ..camera.base import Camera
from ..autofocus.base import Probe
from ..errors import ConfigError, ScanFocusError, StageLimitError
from ..focus.measures import BROAD_MEASURE
from ..tissue import DEFAULT_THRESHOLDS, TissueThresholds, tissue_fraction, tissue_mask
from .manifest import IMAGE_FORMATS, REPORT, Manifest, second_shot_name, tile_image_name, write_report
from .plan import Plan, Tile
from .qc import QCRules, Sharpness, image_sharpness, judge

if TYPE_CHECKING:
    from ..sim import Truth

log = logging.getLogger(__name__)


class ScanStage(FocusStage, Protocol):
    """What the runner needs of a stage (``deepaf_host.stage.Stage``)."""

    def home(self) -> None: ...

    def release(self) -> None: ...


class ScanEvents:
    """Callbacks of a scan; override the ones you need (see the module docstring)."""

    def scan_started(self, plan: Plan, done: int) -> None:
        """After homing; ``done`` tiles are already in the manifest."""

    def tile_resumed(self, tile: Tile, record: dict[str, Any]) -> None:
        """A tile already in the manifest (resume); it is not imaged again."""

    def tile_started(self, tile: Tile) -> None:
        """Before the move to ``tile``."""

    def tile_finished(self, tile: Tile, record: dict[str, Any]) -> None:
        """After ``tile``'s manifest line is on disk."""

    def scan_finished(self, report: dict[str, Any]) -> None:
        """Always called last, with the report that was written."""


@dataclass
class ScanConfig:
    """Settings of the scan loop (the CLI fills these from its options)."""

    #: The autofocus of every tissue tile.
    autofocus: Strategy = field(default_factory=StackAutofocus)
    #: Z (um) where the specimen is roughly in focus; the first tissue tile focuses from here.
    z_start_um: float = -4000.0
    #: Autofocus used once, at the first tissue tile, before ``autofocus`` (None: none).
    #: A coarse stack (+-60 um in 5 um steps, on the broad NVAR measure) copes with a
    #: ``z_start_um`` tens of micrometres off, as a slide put on the stage by hand is.
    initial_focus: Strategy | None = field(
        default_factory=lambda: StackAutofocus(planes=25, step_um=5.0, measure=BROAD_MEASURE, name="initial-stack")
    )
    #: Maximum correction of the initial focus (must hold its whole range).
    initial_max_correction_um: float = 65.0
    #: When the initial focus finds no peak around ``z_start_um``, it tries windows
    #: further up, then down, out to this distance from ``z_start_um`` (within the
    #: Z travel and the safety limit); then the scan stops.
    initial_search_um: float = 250.0
    #: A tile whose QC is not ``ok`` is refocused once with this (None: never).
    refocus: Strategy | None = field(default_factory=lambda: SearchAutofocus(range_um=24.0, name="refocus-search"))
    #: Depth of field of the objective (um): the QC's and the single-shot check's scale.
    dof_um: float = 0.96
    #: After an autofocus with a focus measure, a frame where the stage stopped must
    #: score this share of the score found, else Z is approached again (up to
    #: ``confirm_retries`` times; -1: no check).
    confirm_ratio: float = 0.95
    confirm_retries: int = 2
    confirm_lift_um: float = 5.0
    #: Thresholds of the image check of the QC.
    qc_min_detail_ratio: float = 0.4
    qc_min_contrast_ratio: float = 0.1
    #: Safety limits of every other autofocus.
    limits: FocusLimits = field(default_factory=FocusLimits)
    #: A tile with less tissue than this (fraction of the low-res frame) is empty glass:
    #: no autofocus, no high-res image.
    empty_below: float = 0.02
    #: A tile with less tissue than this is imaged at the nearest focused tile's z
    #: without autofocus (too little structure to focus on).
    autofocus_min_tissue: float = 0.05
    thresholds: TissueThresholds = DEFAULT_THRESHOLDS
    #: Wait after each XY move, for vibrations to die down.
    settle_s: float = 0.2
    image_format: str = "jpg"
    jpeg_quality: int = 95
    #: How far Z goes up (+Z, away from the specimen) when the scan ends, before release.
    park_lift_um: float = 500.0
    #: Upper end of Z travel (machine coordinates); parking never goes past it.
    z_max_um: float = 0.0
    home: bool = True
    #: A tissue tile whose final QC is not ``ok`` gets a second high-res shot this far
    #: above it (+Z), written as ``<tile>.shot2.<ext>`` for the two-shot refocus
    #: (``deepaf-host refocus --two-shot``, seed 003); None: no second shot.
    two_shot_um: float | None = None

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError("format", f"unknown image format {self.image_format!r}; known: {', '.join(IMAGE_FORMATS)}")
        if not 0 <= self.empty_below <= self.autofocus_min_tissue <= 1:
            raise ConfigError("empty_below", f"need 0 <= empty_below <= autofocus_min_tissue <= 1, got {self.empty_below}, {self.autofocus_min_tissue}")
        if self.settle_s < 0 or self.park_lift_um < 0:
            raise ConfigError("settle_s", "settle time and park lift must not be negative")
        if not self.dof_um > 0 or self.initial_search_um < 0:
            raise ConfigError("dof_um", "depth of field must be positive and the initial search range not negative")
        if self.two_shot_um is not None and not 0 < self.two_shot_um <= 10:
            raise ConfigError("two_shot_um", f"the second shot must be 0 to 10 um above the tile, got {self.two_shot_um}")

    @property
    def qc_rules(self) -> QCRules:
        return QCRules(self.dof_um, self.qc_min_detail_ratio, self.qc_min_contrast_ratio)


class ScanRunner:
    """Runs one scan of ``plan`` into ``out_dir``."""

    def __init__(
        self,
        stage: ScanStage,
        camera: Camera,
        plan: Plan,
        out_dir: str | Path,
        config: ScanConfig | None = None,
        *,
        resume: bool = False,
        events: ScanEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        simulated_clock: bool = False,
        metadata: dict[str, Any] | None = None,
        truth: Truth | None = None,
    ) -> None:
        self.stage = stage
        self.camera = camera
        self.plan = plan
        self.out_dir = Path(out_dir)
        self.config = config or ScanConfig()
        self.resume = resume
        self.events = events or ScanEvents()
        self.clock = clock
        self.sleep = sleep
        self.simulated_clock = simulated_clock
        self.metadata = metadata or {}
        #: A simulator's ground truth (``deepaf_host.sim.truth_of``): recorded beside what
        #: the scan measured; None on a real microscope.
        self.truth = truth

    # --- the loop ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Scan; returns the report (also written to ``out_dir/report.json``).

        Raises what stopped the scan (after cleanup); Ctrl-C raises ``KeyboardInterrupt``.
        """
        self._check_z_start()  # before the folder is touched
        manifest = Manifest.open(self.out_dir, self.resume)  # refuses a used folder before any motion
        try:
            self._check_same_plan()
        except BaseException:
            manifest.close()
            raise
        started = datetime.now(timezone.utc)
        t0_wall = time.perf_counter()
        t0_clock = self.clock()
        status, error = "failed", None
        records_before = len(manifest.records)
        try:
            if self.config.home:
                self.stage.home()
            self._emit("scan_started", self.plan, records_before)
            for tile in self.plan.tiles:
                if tile.index in manifest.records:
                    self._emit("tile_resumed", tile, manifest.records[tile.index])
                    continue
                self._emit("tile_started", tile)
                record = self._scan_tile(tile, manifest)
                manifest.append(record)
                self._emit("tile_finished", tile, record)
            status = "complete" if not _defects(manifest) else "complete_with_defects"
        except KeyboardInterrupt:
            status, error = "interrupted", "interrupted by the user (Ctrl-C)"
            raise
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if not status.startswith("complete"):
                self._resync()
            parked = self._park_and_release()
            manifest.close()
            report = self._report(manifest, status, error, started, time.perf_counter() - t0_wall, self.clock() - t0_clock, records_before, parked)
            try:
                write_report(self.out_dir, report)
            except Exception:
                if error is None:
                    raise
                # The error that stopped the scan is the one the user must see.
                log.exception("could not write the report to %s", self.out_dir)
            self._emit("scan_finished", report)
        return report

    def _emit(self, event: str, *args: Any) -> None:
        """Call a listener; one that raises is logged, never fatal (nor hides an error)."""
        try:
            getattr(self.events, event)(*args)
        except Exception:
            log.exception("scan event listener %s.%s failed (ignored)", type(self.events).__name__, event)

    def _check_same_plan(self) -> None:
        """A resumed scan must have the plan it started with (tile indices are its keys)."""
        previous = self.out_dir / REPORT
        if not self.resume or not previous.exists():
            return
        try:
            old = json.loads(previous.read_text())["plan"]
        except (OSError, ValueError, KeyError, TypeError):
            return  # no readable report: the manifest alone decides
        new = json.loads(json.dumps(self.plan.to_dict()))
        if old != new:
            raise ConfigError(
                "resume", f"{self.out_dir} was planned as {old}, this scan as {new}: use the same --area, --overlap and camera"
            )

    def _check_z_start(self) -> None:
        """The start z must respect the stage's Z safety limit: refuse before homing."""
        z_min = getattr(self.stage, "z_min_um", None)
        if z_min is not None and self.config.z_start_um < z_min:
            raise StageLimitError("z", self.config.z_start_um, z_min, reason="z safety (scan start z)")

    def _scan_tile(self, tile: Tile, manifest: Manifest) -> dict[str, Any]:
        cfg = self.config
        timings: dict[str, float] = {}
        z_guess, source = self._neighbour_focus(tile, manifest)

        t = self.clock()
        self.stage.move_to(tile.x_um, tile.y_um, z_guess)
        timings["move"] = self.clock() - t
        t = self.clock()
        if cfg.settle_s > 0:
            self.sleep(cfg.settle_s)
        timings["settle"] = self.clock() - t
        t = self.clock()
        low = self.camera.grab("low")
        timings["low_capture"] = self.clock() - t
        w = time.perf_counter()
        mask = tissue_mask(low, cfg.thresholds)
        fraction = tissue_fraction(mask)
        timings["tissue"] = time.perf_counter() - w

        record: dict[str, Any] = {
            "tile": tile.index, "row": tile.row, "col": tile.col,
            "x_um": tile.x_um, "y_um": tile.y_um, "z_um": z_guess,
            "tissue_fraction": round(fraction, 5), "empty": fraction < cfg.empty_below,
            "image": None, "focus_source": "none", "autofocus": None,
        }
        z = z_guess
        frame: np.ndarray | None = low
        frame_mask: np.ndarray | None = mask
        if not record["empty"]:
            result: AutofocusResult | None = None
            timings["autofocus"] = timings["inference"] = 0.0
            if fraction >= cfg.autofocus_min_tissue:
                if source == "start" and cfg.initial_focus is not None:  # no tile focused yet
                    z_guess, initial = self._initial_focus(tile, z_guess, frame, frame_mask, timings)
                    record["initial_focus"] = initial
                    frame, frame_mask = None, None  # the low-res frame was taken elsewhere
                result = self._autofocus(cfg.autofocus, z_guess, frame, frame_mask, cfg.limits, timings)
                record["autofocus"] = result.to_dict()
            if result is not None and result.ok:
                z, record["focus_source"] = result.z_um, "autofocus"
                record["confirm"] = self._confirm(tile, result, timings)
            else:
                # Autofocus failed (stage back at its start) or too little tissue.
                z, record["focus_source"] = z_guess, source
                self._back_to(tile, z_guess)
            high, qc = self._capture_and_judge(tile, record, result.to_dict() if result else None, manifest, timings)
            confirm = record.get("confirm")
            if confirm is not None and not confirm["ok"] and qc["verdict"] == "ok":
                qc["verdict"] = "suspect"
                qc["reason"] = f"the stage did not return to the focus found (score {confirm['ratios'][-1]:.2f} of it after {confirm['frames']} approaches)"
            unverified = self._unverified(record, qc)  # focus found under an LED
            if qc["verdict"] != "ok" and cfg.refocus is not None and not unverified:
                # Once, with the classical strategy, from the better plane we have.
                refocus = self._autofocus(cfg.refocus, z, None, None, cfg.limits, timings)
                record["refocus"] = refocus.to_dict()
                if refocus.ok:
                    agrees = result is not None and result.ok and abs(refocus.z_um - z) <= cfg.dof_um / 2
                    z, record["focus_source"] = refocus.z_um, "autofocus"
                    high, qc = self._capture_and_judge(tile, record, refocus.to_dict(), manifest, timings)
                    if qc["verdict"] != "ok" and agrees:
                        qc["verdict"] = "ok"
                        qc["reason"] = f"two autofocus runs agree within DoF/2 ({qc['reason']})"
                    self._unverified(record, qc)  # the refocus looked at the same light
                else:
                    self._back_to(tile, z)
                qc["refocused"] = True
            record["qc"] = qc
            record["z_um"] = z
            w = time.perf_counter()
            name = tile_image_name(tile.index, tile.row, tile.col, cfg.image_format)
            manifest.write_image(name, high, cfg.image_format, cfg.jpeg_quality)
            timings["write"] = time.perf_counter() - w
            record["image"] = name
            if cfg.two_shot_um is not None and qc["verdict"] != "ok":
                record["shot2"] = self._second_shot(tile, z, name, manifest, timings)
            log.debug(
                "tile %d (row %d, col %d): tissue %.0f%%, z %.2f um by %s, QC %s%s", tile.index, tile.row, tile.col,
                100 * fraction, z, record["focus_source"], qc["verdict"], f" ({qc['reason']})" if qc["reason"] else "",
            )
        if self.truth is not None:
            true_z = float(self.truth.true_focus_z_um(tile.x_um, tile.y_um))
            record["true_focus_z_um"] = true_z
            # The high-res capture measured it where the stage truly was (a simulated
            # stage's backlash and repeatability); a tile without one: the commanded z.
            record.setdefault("focus_error_um", z - true_z)
        timings["total"] = sum(timings.values())
        record["timings_s"] = {k: round(v, 6) for k, v in timings.items()}
        return record

    def _unverified(self, record: dict[str, Any], qc: dict[str, Any]) -> bool:
        """Focus found on frames under an LED (seed 001) is not where the condenser image
        is sharpest: on the virtual microscope a 3 x 3 scan under it stood 0.5-0.8 um off
        (7 of 9 tiles beyond DoF/2) with every check passing. Until the checks can look at
        the condenser image, such a tile is never called ok (``qc`` is made suspect), and
        a refocus under the same light would not tell more. True when that is the case."""
        unverified = self.camera.illumination != "koehler" and record["focus_source"] == "autofocus"
        if unverified and qc["verdict"] == "ok":
            qc["verdict"] = "suspect"
            qc["reason"] = f"focus found on frames under {self.camera.illumination} light, not checked on the condenser image"
        return unverified

    def _second_shot(self, tile: Tile, z_um: float, name: str, manifest: Manifest, timings: dict[str, float]) -> dict[str, Any]:
        """A second high-res frame ``two_shot_um`` above the tile's (+Z: away from the
        specimen, within the travel), after the scan's settle time, for the two-shot
        refocus (seed 003)."""
        cfg = self.config
        delta = float(cfg.two_shot_um or 0.0)
        z2 = min(z_um + delta, cfg.z_max_um)
        t = self.clock()
        self.stage.move_to(tile.x_um, tile.y_um, z2)
        if cfg.settle_s > 0:
            self.sleep(cfg.settle_s)
        high = self.camera.grab("high")
        timings["two_shot"] = self.clock() - t
        shot: dict[str, Any] = {"image": second_shot_name(name), "delta_um": round(z2 - z_um, 4), "z_um": z2}
        if self.truth is not None:
            shot["focus_error_um"] = float(self.truth.true_defocus_um())
        manifest.write_image(shot["image"], high, cfg.image_format, cfg.jpeg_quality)
        return shot

    def _back_to(self, tile: Tile, z_um: float) -> None:
        if abs(z_um - self.stage.position().z_um) > 0.1:
            self.stage.move_to(tile.x_um, tile.y_um, z_um)

    def _confirm(self, tile: Tile, result: AutofocusResult, timings: dict[str, float]) -> dict[str, Any] | None:
        """Check that the stage really is where the autofocus found focus.

        A Z drive does not return to a position exactly (a leadscrew stage: about 0.2 um
        each move), so the plane the autofocus scored and the plane the stage reached
        can differ by half a depth of field. One frame where the stage now is must
        score at least ``confirm_ratio`` of the score found; otherwise Z is approached
        again (up, then down onto the same target), up to ``confirm_retries`` times.
        Strategies without a focus measure (single-shot) verify themselves.
        """
        cfg = self.config
        if result.measure is None or not result.score or cfg.confirm_retries < 0:
            return None
        strategy = cfg.autofocus
        t = self.clock()
        tries: list[float] = []
        for attempt in range(cfg.confirm_retries + 1):
            if attempt:
                self.stage.move_to(tile.x_um, tile.y_um, result.z_um + cfg.confirm_lift_um)
                self.stage.move_to(tile.x_um, tile.y_um, result.z_um)
            tries.append(self._score_here(strategy, result.z_um, result.measure, cfg.limits) / result.score)
            if tries[-1] >= cfg.confirm_ratio:
                break
        timings["autofocus"] += self.clock() - t
        return {"ratios": [round(r, 4) for r in tries], "ok": tries[-1] >= cfg.confirm_ratio, "frames": len(tries)}

    def _score_here(self, strategy: Strategy, z_um: float, measure: str, limits: FocusLimits) -> float:
        """One low-res frame where the stage is, scored as ``strategy`` scores its frames."""
        probe = Probe(self.stage, self.camera, z_um, FocusContext(clock=self.clock, sleep=self.sleep, limits=limits), measure,
                      roi=float(getattr(strategy, "roi", 1.0)), score_width_px=int(getattr(strategy, "score_width_px", 640)))
        return probe.score(probe.frame())

    def _capture_and_judge(
        self, tile: Tile, record: dict[str, Any], autofocus: dict[str, Any] | None, manifest: Manifest,
        timings: dict[str, float],
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Grab the high-res frame here and judge its focus (:func:`deepaf_host.scan.qc.judge`)."""
        t = self.clock()
        high = self.camera.grab("high")
        timings["high_capture"] = timings.get("high_capture", 0.0) + self.clock() - t
        if self.truth is not None:
            # Where the tile truly is (stitching's truth), and how far the stage truly is
            # from the focus there.
            record["true_x_um"], record["true_y_um"] = (round(v, 3) for v in self.truth.true_xy_um())
            record["focus_error_um"] = float(self.truth.true_defocus_um())
        w = time.perf_counter()
        sharp = image_sharpness(high, record["tissue_fraction"])
        qc = judge(autofocus, sharp, self._neighbour_sharpness(tile, manifest), self.config.qc_rules, record["tissue_fraction"])
        timings["qc"] = timings.get("qc", 0.0) + time.perf_counter() - w
        return high, qc

    def _neighbour_sharpness(self, tile: Tile, manifest: Manifest) -> list[Sharpness]:
        """Sharpness of the nearest tissue tiles whose QC was ``ok`` (the image reference)."""
        found: list[tuple[float, Sharpness]] = []
        for rec in manifest.records.values():
            qc = rec.get("qc") or {}
            sharp = Sharpness.from_dict(qc.get("sharpness"))
            if qc.get("verdict") == "ok" and sharp is not None:
                found.append((math.hypot(rec["x_um"] - tile.x_um, rec["y_um"] - tile.y_um), sharp))
        found.sort(key=lambda item: item[0])
        return [sharp for _, sharp in found[: self.config.qc_rules.neighbours]]

    def _initial_focus(
        self, tile: Tile, z_start: float, frame: np.ndarray | None, mask: np.ndarray | None, timings: dict[str, float],
    ) -> tuple[float, dict[str, Any]]:
        """Coarse focus at the first tissue tile: window by window, until a peak repeats.

        Returns the z to start the tile's autofocus from and the record of the windows;
        raises :class:`ScanFocusError` (stage back at ``z_start``) when no window has a
        focus peak that repeats when measured again.
        """
        cfg = self.config
        strategy = cfg.initial_focus
        assert strategy is not None
        limits = FocusLimits(cfg.initial_max_correction_um)
        half = float(getattr(strategy, "step_um", 5.0)) * (int(getattr(strategy, "planes", 25)) - 1) / 2
        step = max(2 * half - 10.0, 10.0)
        z_min = getattr(self.stage, "z_min_um", None)
        windows: list[dict[str, Any]] = []
        centres = [z_start]
        for k in range(1, int(cfg.initial_search_um // step) + 1):
            centres += [z_start + k * step, z_start - k * step]  # up (away from the slide) first
        for centre in centres:
            if centre + half > cfg.z_max_um or (z_min is not None and centre - half < z_min):
                windows.append({"centre_z_um": centre, "skipped": "beyond the Z travel or the safety limit"})
                continue
            reuse = abs(centre - z_start) < 1e-9
            result = self._autofocus(strategy, centre, frame if reuse else None, mask if reuse else None, limits, timings)
            window: dict[str, Any] = {"centre_z_um": centre, **result.to_dict()}
            windows.append(window)
            scores = np.asarray(result.details.get("scores") or [], np.float64)
            if scores.size:
                window["relative_spread"] = float((scores.max() - scores.min()) / max(abs(float(scores.mean())), 1e-12))
            if not result.ok:
                continue
            # Measure the peak again: a camera that does not see Z gives a "peak" that
            # does not repeat (a video's frames change with time, not with Z).
            again = self._score_here(strategy, result.z_um, result.measure or BROAD_MEASURE, limits)
            median = float(np.median(scores))
            window["score_again"] = again
            if again >= median + 0.5 * (float(scores.max()) - median):
                self._back_to(tile, result.z_um)
                return result.z_um, {"windows": windows, "z_um": result.z_um}
            window["ok"] = False
            window["reason"] = f"the peak did not repeat (score {again:.4g} measured again, {float(scores.max()):.4g} in the stack)"
        self._back_to(tile, z_start)
        tried = [w for w in windows if "skipped" not in w]
        lo = min((w["centre_z_um"] - half for w in tried), default=z_start)
        hi = max((w["centre_z_um"] + half for w in tried), default=z_start)
        spreads = [w.get("relative_spread", 0.0) for w in tried]
        if tried and max(spreads) < 0.02:
            reason = (f"no focus peak: the frames do not change with Z (focus measure within {100 * max(spreads):.1f}% "
                      "over the whole search); either --z-start is far from the focus, or the camera does not see "
                      "the Z motion (is it on the microscope, the Z motor coupled?)")
        elif any("did not repeat" in (w.get("reason") or "") for w in tried):
            reason = ("focus peaks did not repeat when measured again: the camera's frames change, but not with Z "
                      "(a video file? a loose Z coupling?)")
        else:
            reason = (f"no focus peak near --z-start {z_start:.0f} um at the first tissue tile {tile.index} "
                      f"({windows[-1].get('reason') if windows else 'no window within the Z travel'}); "
                      "set --z-start within about 50 um of the focus")
        raise ScanFocusError(reason, (lo, hi))

    def _autofocus(
        self, strategy: Strategy, z_start: float, frame: np.ndarray | None, mask: np.ndarray | None,
        limits: FocusLimits, timings: dict[str, float],
    ) -> AutofocusResult:
        ctx = FocusContext(frame=frame, tissue_mask=mask, clock=self.clock, sleep=self.sleep, limits=limits)
        t = self.clock()
        result = strategy.run(self.stage, self.camera, z_start, ctx)
        elapsed = self.clock() - t
        inference = float(result.details.get("inference_s") or 0.0)
        if self.simulated_clock:
            # The simulated clock saw the motion and the exposures; add the host's work
            # on focus measures (the inference is its own phase).
            elapsed += float(result.details.get("compute_s") or 0.0)
        else:
            elapsed -= inference  # counted in its own phase
        timings["autofocus"] += elapsed
        timings["inference"] += inference
        return result

    def _neighbour_focus(self, tile: Tile, manifest: Manifest) -> tuple[float, str]:
        """The z of the nearest tile focused by autofocus (scan start z when none)."""
        best, best_d = None, math.inf
        for rec in manifest.records.values():
            if rec.get("focus_source") != "autofocus" or (rec.get("qc") or {}).get("verdict", "ok") != "ok":
                continue
            d = math.hypot(rec["x_um"] - tile.x_um, rec["y_um"] - tile.y_um)
            if d < best_d:
                best, best_d = rec, d
        if best is None:
            return self.config.z_start_um, "start"
        return float(best["z_um"]), "neighbour"

    def _resync(self) -> None:
        """After an interruption the reply to the line in flight may still come: let the
        connection discard it before the cleanup talks to the board."""
        resync = getattr(getattr(self.stage, "connection", None), "resync", None)
        if resync is None:
            return
        try:
            resync()
        except Exception as exc:  # noqa: BLE001 - the cleanup goes on; parking will report
            log.warning("could not resynchronise with the board: %s", exc)

    def _park_and_release(self) -> bool:
        """Lift Z (away from the specimen) and release the motors; False if either failed."""
        ok = True
        try:
            pos = self.stage.position()
            z_park = min(self.config.z_max_um, pos.z_um + self.config.park_lift_um)
            if z_park > pos.z_um:
                self.stage.move_to(z_um=z_park)  # Z only: X/Y may not be homed yet
        except Exception as exc:  # noqa: BLE001 - cleanup: the connection may be gone, or the lift refused
            log.warning("could not park the stage: %s", exc)
            ok = False
        try:
            self.stage.release()
        except Exception as exc:  # noqa: BLE001 - cleanup must go on (manifest, report)
            log.warning("could not release the motors: %s", exc)
            ok = False
        return ok

    # --- report ------------------------------------------------------------------------

    def _report(
        self, manifest: Manifest, status: str, error: str | None, started: datetime,
        wall_s: float, clock_s: float, records_before: int, parked: bool,
    ) -> dict[str, Any]:
        recs = list(manifest)
        imaged = [r for r in recs if not r["empty"]]
        phases: dict[str, float] = {}
        for r in recs:
            for k, v in r.get("timings_s", {}).items():
                phases[k] = phases.get(k, 0.0) + v
        total = phases.get("total", 0.0)
        errors = [r["focus_error_um"] for r in imaged if "focus_error_um" in r]
        af = [r["autofocus"] for r in imaged if r.get("autofocus")]
        report: dict[str, Any] = {
            "status": status,
            "error": error,
            "version": __version__,
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "plan": self.plan.to_dict(),
            "autofocus": getattr(self.config.autofocus, "name", type(self.config.autofocus).__name__),
            "tiles": {
                "planned": len(self.plan.tiles), "done": len(recs), "this_run": len(recs) - records_before,
                "imaged": len(imaged), "empty": len(recs) - len(imaged),
                "autofocus_ok": sum(1 for a in af if a["ok"]),
                "autofocus_failed": sum(1 for a in af if not a["ok"]),
                "neighbour_focus": sum(1 for r in imaged if r["focus_source"] != "autofocus"),
            },
            "time_s": {
                "phases": {k: round(v, 4) for k, v in phases.items()},
                "per_tile": round(total / len(recs), 4) if recs else None,
                "per_mm2": round(total / self.plan.scanned_area_mm2, 3) if recs and len(recs) == len(self.plan.tiles) else None,
                "this_run_wall": round(wall_s, 3),
                "this_run_clock": round(clock_s, 3),
                "clock": "simulated" if self.simulated_clock else "real",
            },
            "autofocus_frames_mean": round(float(np.mean([a["frames"] for a in af])), 3) if af else None,
            "frames_per_tile": round(float(np.mean([_frames(r) for r in imaged if r.get("autofocus")])), 3) if af else None,
            "qc": {
                **{v: sum(1 for r in imaged if (r.get("qc") or {}).get("verdict") == v) for v in ("ok", "suspect", "failed")},
                "refocused": sum(1 for r in imaged if (r.get("qc") or {}).get("refocused")),
                "suspect_tiles": _defects(manifest),
            },
            "parked_and_released": parked,
        }
        if errors:
            abs_err = np.abs(errors)
            report["focus_error_um"] = {
                "mean_abs": round(float(abs_err.mean()), 4), "median_abs": round(float(np.median(abs_err)), 4),
                "max_abs": round(float(abs_err.max()), 4), "n": len(errors),
            }
        report.update(self.metadata)
        return report


def _frames(record: dict[str, Any]) -> int:
    """Low-res frames a tile's focus took: its autofocus, the confirmation and a refocus."""
    return sum(int((record.get(k) or {}).get("frames", 0)) for k in ("autofocus", "confirm", "refocus"))


def _defects(manifest: Manifest) -> list[dict[str, Any]]:
    """The tissue tiles whose QC is not ``ok`` (tiles of an older scan without QC pass)."""
    out = []
    for r in manifest:
        qc = r.get("qc")
        if not r["empty"] and qc is not None and qc.get("verdict") != "ok":
            out.append({"tile": r["tile"], "row": r["row"], "col": r["col"], "verdict": qc["verdict"], "reason": qc.get("reason", "")})
    return out
