"""Collecting focal stacks on the user's own microscope (``deepaf-host collect``).

For each of N fields spread over an area: move there, take a low-res frame and skip it
unless it shows tissue (glass is skipped), find focus (Brent's search around the last
field's focus; a broad stack first when that fails or on the first field), then take the
stack: planes at ``focus + u + offsets`` (``u`` uniform within half a step, so focus
falls between planes as it does for the model in a scan), every plane approached from
above -- the stack is taken top to bottom and ``Stage.move_to`` ends every move going
down, so the backlash is always taken up the same way. The stack's own focus curve
labels it: a Gaussian fitted to the planes around the sharpest one (sub-plane), the
stack reference of ``deepaf-host eval --model stack``. A stack whose peak lies at an end
is taken again around that end once; then the field is skipped.

The output is a "deepaf-stacks/1" dataset (``deepaf_host.stacks``) with ``source:
"collected"`` and the provenance of every stack (field, stage position, camera, port,
profile and its sha256, focus measure and fit, approach direction). ``index.json`` is
rewritten (atomically) after every stack and each visited field is a line of
``collect.jsonl``, so an interrupted collection resumes (``--resume``) at the next field
without taking a stack twice; ``collect.json`` holds the plan, which a resume must match.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .autofocus import FocusContext, FocusLimits, SearchAutofocus
from .calibrate.focus import find_focus
from .calibrate.measure import fit_peak
from .camera.base import Camera
from .errors import AutofocusError, DeepAfError, OptionError
from .focus import measures
from .optics.presets import get_objective
from .scan.plan import Area
from .stacks import StackWriter, open_stacks
from .stacks.format import INDEX
from .tissue import DEFAULT_THRESHOLDS, TissueThresholds, tissue_fraction, tissue_mask

PLAN_FILE = "collect.json"
JOURNAL = "collect.jsonl"
PLAN_FORMAT = "deepaf-collect/1"
#: Plan keys a resumed collection must share with the folder's (``fields`` may grow).
PLAN_KEYS = ("area_mm", "z_um", "size", "objective", "seed", "min_tissue", "measure")


class CollectError(DeepAfError):
    """A collection cannot start or go on; ``option`` names the flag at fault."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        self.reason = reason
        super().__init__(f"{option}: {reason}")


@dataclass
class CollectPlan:
    """What to collect: ``z_um`` = (start, stop, step) micrometres around focus."""

    area_mm: str
    fields: int
    z_um: tuple[float, float, float]
    objective: str
    size: tuple[int, int] = (512, 512)
    seed: int = 0
    min_tissue: float = 0.5
    measure: str = "laplacian"
    z_start_um: float = -4000.0
    settle_s: float = 0.2
    thresholds: TissueThresholds = DEFAULT_THRESHOLDS
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        start, stop, step = self.z_um
        if not step > 0 or stop <= start or (stop - start) / step > 400:
            raise CollectError("--z", f"need start < stop and 0 < step, at most 400 planes; got {start:g}:{stop:g}:{step:g}")
        if self.fields < 1:
            raise CollectError("--fields", f"at least one field, not {self.fields}")
        if not 0 <= self.min_tissue <= 1:
            raise CollectError("--min-tissue", f"a fraction 0-1, not {self.min_tissue}")
        measures.get(self.measure)

    def offsets(self) -> np.ndarray:
        start, stop, step = self.z_um
        n = int(math.floor((stop - start) / step + 1e-9)) + 1
        return start + step * np.arange(n)

    def key(self) -> dict[str, Any]:
        """What a resumed collection must match."""
        return {"area_mm": self.area_mm, "z_um": list(self.z_um), "size": list(self.size), "objective": self.objective,
                "seed": self.seed, "min_tissue": self.min_tissue, "measure": self.measure}


def field_candidates(area: Area, fov_um: tuple[float, float], seed: int) -> list[tuple[float, float]]:
    """Places to try, spread over ``area``: the centres of a grid of cells a little larger
    than the field (stacks never overlap), in an order shuffled by ``seed`` so that the
    first N tissue fields are spread over the whole area. A pure function: a resumed
    collection finds the same list."""
    w, h = fov_um
    pitch = 1.2 * max(w, h)
    cols = max(1, int(area.width_um // pitch))
    rows = max(1, int(area.height_um // pitch))
    xs = area.x0_um + (np.arange(cols) + 0.5) * area.width_um / cols
    ys = area.y0_um + (np.arange(rows) + 0.5) * area.height_um / rows
    points = [(float(x), float(y)) for y in ys for x in xs]
    order = np.random.default_rng([seed, 15]).permutation(len(points))
    return [points[i] for i in order]


def label_focus(z_um: np.ndarray, planes: np.ndarray, measure: str) -> tuple[float | None, list[float]]:
    """The stack reference: the sub-plane focus z of a stack (None: no peak inside it)
    and the focus measure of each plane."""
    fn = measures.get(measure)
    scores = [float(fn(measures.gray(p))) for p in planes]
    return fit_peak(z_um, scores), scores


def _crop(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = frame.shape[:2]
    ch, cw = min(size[0], h), min(size[1], w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return frame[y0 : y0 + ch, x0 : x0 + cw]


def _sha256(path: str | Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


# --- the folder ----------------------------------------------------------------------


def prepare_folder(out: Path, plan: CollectPlan, resume: bool) -> tuple[list[dict[str, Any]], int]:
    """Check ``out`` for the collection: a used folder needs ``resume`` and the same plan.
    Returns the journal so far and the number of stacks in the folder's index."""
    plan_path = out / PLAN_FILE
    if plan_path.exists() and not resume:
        raise CollectError("--out", f"{out} already holds a collection ({PLAN_FILE}): add --resume to continue it, or choose another folder")
    if (out / INDEX).exists() and not plan_path.exists():
        raise CollectError("--out", f"{out} holds a dataset that collect did not write; choose another folder")
    if not resume:
        return [], 0
    if not plan_path.exists():
        raise CollectError("--resume", f"{out} holds no collection to resume (no {PLAN_FILE})")
    try:
        saved = json.loads(plan_path.read_text(encoding="utf-8"))["plan"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CollectError("--resume", f"cannot read {plan_path}: {exc}") from None
    mine = json.loads(json.dumps(plan.key()))
    for k in PLAN_KEYS:
        if saved.get(k) != mine[k]:
            raise CollectError("--resume", f"{k} is {mine[k]} here but {saved.get(k)} in the collection in {out}; "
                                           "resume with the same plan, or collect into another folder")
    journal = []
    if (out / JOURNAL).exists():
        for line in (out / JOURNAL).read_text(encoding="utf-8").splitlines():
            try:
                journal.append(json.loads(line))
            except ValueError:
                break  # a line cut by the interruption: that field is taken again
    stacks = len(open_stacks(out)) if (out / INDEX).exists() else 0
    return journal, stacks


# --- the run -------------------------------------------------------------------------


#: ``progress(done_stacks, fields_wanted, record)`` after every visited place.
Progress = Callable[[int, int, dict[str, Any]], None]


class Collector:
    """Takes a plan's focal stacks with ``stage`` and ``camera`` into ``out``."""

    def __init__(self, stage: Any, camera: Camera, plan: CollectPlan, out: Path, *, resume: bool = False,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 progress: Progress | None = None) -> None:
        self.stage, self.camera, self.plan, self.out = stage, camera, plan, Path(out)
        self.resume, self.sleep, self.clock, self.progress = resume, sleep, clock, progress
        self.dof_um = get_objective(plan.objective).depth_of_field_um()

    # --- pieces ----------------------------------------------------------------------

    def _grab(self) -> np.ndarray:
        if self.plan.settle_s > 0:
            self.sleep(self.plan.settle_s)
        return self.camera.grab("low")

    def _tell(self, done: int, record: dict[str, Any]) -> None:
        if self.progress is not None:
            try:
                self.progress(done, self.plan.fields, record)
            except Exception:  # noqa: BLE001 - a broken progress display never stops a collection
                pass

    def _focus(self, z_prev: float | None) -> float:
        """Focus here: Brent's search around the last field's focus, else a broad stack."""
        if z_prev is not None:
            search = SearchAutofocus(range_um=max(12.0, 8.0 * self.dof_um), tolerance_um=max(0.05, self.dof_um / 5))
            context = FocusContext(clock=self.clock, sleep=self.sleep, limits=FocusLimits(search.range_um))
            result = search.run(self.stage, self.camera, z_prev, context)
            half = search.range_um / 2
            if result.ok and abs(result.z_um - z_prev) < 0.9 * half:
                return result.z_um
        z, _ = find_focus(self.stage, self.camera, z_prev if z_prev is not None else self.plan.z_start_um, self.dof_um,
                          sleep=self.sleep, clock=self.clock)
        return z

    def _stack(self, x: float, y: float, centre: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Planes around ``centre`` taken top to bottom; returned in ascending z."""
        step = self.plan.z_um[2]
        zs = np.round(centre + rng.uniform(-step / 2, step / 2) + self.plan.offsets(), 3)
        frames = []
        for z in zs[::-1]:
            self.stage.move_to(x_um=x, y_um=y, z_um=float(z))
            frames.append(_crop(self._grab(), self.plan.size))
        return zs, np.stack(frames[::-1])

    def _write(self, records: list[Any], planes: np.ndarray, zs: np.ndarray, focus: float, name: str,
               extra: dict[str, Any]) -> Any:
        writer = StackWriter(self.out, overwrite=True, metadata=self._metadata(), uuid_seed="collect")
        writer.records = list(records)
        record = writer.add(
            planes, z_um=zs, focus_z_um=round(focus, 4), objective=get_objective(self.plan.objective).name,
            pixel_size_um=round(self.camera.pixel_size_um("low"), 6), protocol=None, source="collected", name=name, **extra,
        )
        writer.close()
        return record

    def _metadata(self) -> dict[str, Any]:
        return {"generator": f"deepaf-host collect {__version__}", "collect": {**self.plan.key(), **self.plan.provenance}}

    # --- the loop --------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Collect until the plan's number of stacks is in the folder (or the area has no
        more tissue fields); returns a summary."""
        plan, out = self.plan, self.out
        journal, _ = prepare_folder(out, plan, self.resume)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": PLAN_FORMAT, "plan": {**plan.key(), "fields": plan.fields, **plan.provenance}}, indent=1)
        tmp = out / f".{PLAN_FILE}.tmp"
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, out / PLAN_FILE)
        records = list(open_stacks(out)) if (out / INDEX).exists() else []
        in_index = {r.extra.get("field") for r in records}
        visited = {int(j["field"]) for j in journal} | {int(f) for f in in_index if f is not None}
        h, w = self.camera.frame_shape("low")
        p = self.camera.pixel_size_um("low")
        candidates = field_candidates(Area.parse_mm(plan.area_mm), (w * p, h * p), plan.seed)
        z_prev = next((float(r.focus_z_um) for r in reversed(records) if r.focus_z_um is not None), None)
        counts = {"glass": sum(j.get("skipped") == "glass" for j in journal),
                  "no_focus": sum(j.get("skipped") == "no focus" for j in journal)}
        t0 = self.clock()
        tried = 0
        for i, (x, y) in enumerate(candidates):
            if len(records) >= plan.fields:
                break
            if i in visited:
                continue
            tried += 1
            entry: dict[str, Any] = {"field": i, "x_um": round(x, 2), "y_um": round(y, 2)}
            self.stage.move_to(x_um=x, y_um=y)
            frame = _crop(self._grab(), plan.size)
            fraction = tissue_fraction(tissue_mask(frame, plan.thresholds))
            entry["tissue_fraction"] = round(fraction, 4)
            if fraction < plan.min_tissue:
                entry["skipped"] = "glass"
                counts["glass"] += 1
            else:
                record = self._field(i, x, y, z_prev, records, entry, fraction)
                if record is None:
                    counts["no_focus"] += 1
                else:
                    records.append(record)
                    z_prev = float(record.focus_z_um)
            with open(out / JOURNAL, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            self._tell(len(records), entry)
        return {
            "out": str(out), "stacks": len(records), "fields_wanted": plan.fields,
            "skipped_glass": counts["glass"], "skipped_no_focus": counts["no_focus"],
            "places_tried": tried, "places_in_area": len(candidates),
            "seconds": round(self.clock() - t0, 1),
        }

    def _field(self, i: int, x: float, y: float, z_prev: float | None, records: list[Any], entry: dict[str, Any],
               fraction: float) -> Any:
        rng = np.random.default_rng([self.plan.seed, i, 7])
        try:
            centre = self._focus(z_prev)
        except AutofocusError as exc:
            entry["skipped"] = "no focus"
            entry["reason"] = exc.reason
            return None
        coarse = centre
        for _attempt in range(2):
            zs, planes = self._stack(x, y, centre, rng)
            focus, scores = label_focus(zs, planes, self.plan.measure)
            if focus is not None:
                break
            best = int(np.argmax(scores))
            centre = float(zs[best])  # the peak lies beyond this end: centre on it
        else:
            entry["skipped"] = "no focus"
            entry["reason"] = "the stack's sharpest plane stayed at an end"
            return None
        name = f"field_{i:04d}.ome.tif"
        extra = {
            "field": i, "x_um": round(x, 2), "y_um": round(y, 2),
            "tissue_fraction": round(fraction, 4), "coarse_focus_z_um": round(coarse, 3),
            "focus_measure": self.plan.measure, "focus_fit": "gaussian, planes above half the peak",
            "focus_scores": [round(s, 6) for s in scores], "approach": "down", "camera": self.camera.name,
            **{k: v for k, v in self.plan.provenance.items() if k in ("port", "profile", "profile_sha256")},
        }
        record = self._write(records, planes, zs, focus, name, extra)
        entry["stack"] = name
        entry["focus_z_um"] = round(focus, 4)
        return record


def provenance(port: str, profile_path: Path | None) -> dict[str, Any]:
    """What the dataset records of where it came from."""
    return {"port": port, "profile": None if profile_path is None else str(profile_path),
            "profile_sha256": _sha256(profile_path), "host_version": __version__}


def parse_z(text: str) -> tuple[float, float, float]:
    """``"start:stop:step"`` micrometres around focus -> floats (``--z``)."""
    try:
        start, stop, step = (float(v) for v in text.split(":"))
    except ValueError:
        raise OptionError("--z", f"expected start:stop:step in um around focus, like -10:10:0.5, got {text!r}") from None
    return start, stop, step


__all__ = ["CollectError", "CollectPlan", "Collector", "field_candidates", "label_focus", "parse_z", "prepare_folder",
           "provenance"]
