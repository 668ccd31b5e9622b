"""``deepaf-host eval``: focus accuracy of a model (or of the classical stack method) on
focal-stack test sets. No TensorFlow: models run through the TFLite runtime, exactly
as in the scanner.

Per image (one plane of one stack), the model predicts each of up to K tissue patches
of that plane (found on the plane itself, as the scanner does on its low-res frame) and
the median is the prediction (seed 000). The classical ``stack`` reference picks, per
stack, the sharpest plane by a focus measure with parabolic refinement, using every
plane of the stack; it is scored once per stack.

A model is only run on stacks taken with the optics on its card, checked as the scanner
checks them (``ModelCard.optics_mismatches``: the same objective, a pixel size at most
10% apart, neither unknown): every stack with a known focus, of every dataset, is
checked before any inference, and a mismatch raises ``OpticsMismatchError`` unless
``allow_mismatch``, which evaluates anyway and lists those stacks in ``optics_mismatch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..autofocus.fit import refine_peak
from ..errors import DatasetError, OpticsMismatchError
from ..focus import measures
from ..tissue import select_patches, tissue_mask
from .card import ModelCard, OpticsMismatch
from .metrics import focus_metrics
from .runtime import TFLitePredictor, load_model

Progress = Callable[[int, int], None]


def _dof_for(objective: str) -> float:
    from ..optics.presets import get_objective

    return float(get_objective(objective.split("/")[0]).depth_of_field_um())


def _records(data_dirs: Sequence[str | Path]) -> list[tuple[Any, Any]]:
    from ..stacks import open_stacks

    out: list[tuple[Any, Any]] = []
    for d in data_dirs:
        dataset = open_stacks(d)
        out.extend((dataset, record) for record in dataset)
    return out


def optics_mismatches(
    card: ModelCard, records: Sequence[tuple[Any, Any]]
) -> list[tuple[Any, Any, list[OpticsMismatch]]]:
    """The stacks (``(dataset, record)`` pairs) whose objective, pixel size or
    illumination differ from ``card``'s, or are unknown, each with how: ``(dataset, record, mismatches)``."""
    out = []
    for dataset, record in records:
        problems = card.optics_mismatches(
            record.objective, record.pixel_size_um, subject="the stack",
            frames="its planes are", unknown_is_mismatch=True, illumination=record.illumination,
        )
        if problems:
            out.append((dataset, record, problems))
    return out


def evaluate_model(
    data_dirs: Sequence[str | Path],
    model: str | Path | TFLitePredictor | None,
    *,
    patches_per_image: int = 8,
    min_tissue: float = 0.5,
    threads: int = 2,
    allow_mismatch: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Seed 000's metrics for ``model`` (a predictor, a .tflite path, or None for the
    shipped default model) on every plane within its trained range.

    Raises ``OpticsMismatchError`` (before any inference) when a stack of any dataset
    was taken with other optics than the model's card states, or does not state them;
    ``allow_mismatch`` evaluates anyway and lists those stacks in ``optics_mismatch``.
    """
    predictor = model if isinstance(model, TFLitePredictor) else load_model(model, threads=threads)
    card = predictor.card
    pair_offset = float(card.training.get("config", {}).get("pair_offset_um", 2.0)) if card.input_kind == "pair" else None
    records = _records(data_dirs)
    mismatched = optics_mismatches(card, [(d, r) for d, r in records if r.focus_z_um is not None])
    if mismatched and not allow_mismatch:
        dataset, record, problems = mismatched[0]
        first = problems[0]
        raise OpticsMismatchError(
            str(dataset.root), record.file, first.quantity, first.actual, first.trained, predictor.name,
            "; ".join(m.reason for m in problems) + "; --allow-mismatch (allow_mismatch=True) evaluates anyway",
            others=len(mismatched) - 1,
        )
    predicted: list[float] = []
    true: list[float] = []
    n_patches = 0
    infer_s = 0.0
    lo, hi = card.range_um
    for i, (dataset, record) in enumerate(records):
        if record.focus_z_um is None:
            continue
        frames = dataset.load(record)
        z = np.asarray(record.z_um, np.float64)
        for p in range(len(frames)):
            dz = float(record.focus_z_um - z[p])
            if not lo <= dz <= hi:
                continue
            second = None
            if pair_offset is not None:
                match = np.flatnonzero(np.isclose(z, z[p] + pair_offset, atol=1e-3))
                if match.size == 0:
                    continue
                second = frames[int(match[0])]
            chosen = select_patches(tissue_mask(frames[p]), card.patch_size, patches_per_image, min_tissue)
            if not chosen:
                continue
            batch = np.stack([c.crop(frames[p]) for c in chosen])
            pair = None if second is None else np.stack([c.crop(second) for c in chosen])
            t0 = time.perf_counter()
            values = predictor.predict(batch, pair)
            infer_s += time.perf_counter() - t0
            predicted.append(float(np.median(values)))
            true.append(dz)
            n_patches += len(chosen)
        if progress:
            progress(i + 1, len(records))
    result: dict[str, Any] = {
        "method": card.architecture,
        "model": predictor.name,
        "data": [str(d) for d in data_dirs],
        "frames_per_focus": 2 if pair_offset is not None else 1,
        **focus_metrics(predicted, true, card.dof_um),
        "n_patches": n_patches,
        "ms_per_image": round(1000 * infer_s / max(len(predicted), 1), 3),
        # The stacks evaluated although their optics differ from the card's (allow_mismatch).
        "optics_mismatch": [
            {"data": str(dataset.root), "stack": record.file, "objective": record.objective,
             "pixel_size_um": record.pixel_size_um, "mismatch": [m.quantity for m in problems],
             "reasons": [m.reason for m in problems]}
            for dataset, record, problems in mismatched
        ],
        "card_optics": {"objective": card.objective, "pixel_size_um": card.pixel_size_um},
    }
    return result


def sharpest_z(z_um: np.ndarray, scores: Sequence[float]) -> tuple[float, bool]:
    """The stack reference's focus: ``(z, at_edge)``, the parabola-refined sharpest plane,
    or the sharpest plane itself with ``at_edge`` True when it is the first or last in z
    (``refine_peak`` has no neighbour on one side there)."""
    z = np.asarray(z_um, np.float64)
    s = np.asarray(scores, np.float64)
    order = np.argsort(z, kind="stable")
    i = int(np.argmax(s[order]))
    if i == 0 or i == z.size - 1:
        return float(z[order[i]]), True
    return refine_peak(z, s)[0], False


def evaluate_stack_reference(
    data_dirs: Sequence[str | Path],
    *,
    measure: str = "laplacian",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The classical reference: sharpest plane of the whole stack by ``measure``."""
    score_fn = measures.get(measure)
    records = _records(data_dirs)
    predicted: list[float] = []
    true: list[float] = []
    objectives = set()
    frames_used = 0
    at_edge: list[str] = []
    for i, (dataset, record) in enumerate(records):
        if record.focus_z_um is None:
            continue
        frames = dataset.load(record)
        z = np.asarray(record.z_um, np.float64)
        scores = [score_fn(measures.gray(f)) for f in frames]
        # A stack whose sharpest plane is its first or last one is still scored, with
        # that plane (not refined): it is what the method answers, and the true focus may
        # well lie beyond the stack. Skipping it would drop exactly the stacks on which
        # the reference fails and flatter it next to a model, which is scored on every
        # plane; the count tells how often it happened.
        best_z, edge = sharpest_z(z, scores)
        if edge:
            at_edge.append(str(dataset.path(record)))
        # As a correction from the stack's middle plane: the same quantity a model predicts.
        start = z[len(z) // 2]
        predicted.append(float(best_z - start))
        true.append(float(record.focus_z_um - start))
        objectives.add(record.objective)
        frames_used += len(frames)
        if progress:
            progress(i + 1, len(records))
    if len(objectives) != 1:
        where = ", ".join(str(d) for d in data_dirs)
        reason = f"the test sets mix objectives {sorted(objectives)}" if objectives else "no stack with a known focus"
        raise DatasetError(where, reason)
    return {
        "method": "stack",
        "measure": measure,
        "data": [str(d) for d in data_dirs],
        "frames_per_focus": frames_used / max(len(predicted), 1),
        **focus_metrics(predicted, true, _dof_for(objectives.pop())),
        "stacks_peak_at_edge": len(at_edge),
        "peak_at_edge": at_edge,
    }
