"""``deepaf-host eval``: focus accuracy of a model (or of the classical stack method) on
focal-stack test sets. No TensorFlow: models run through the TFLite runtime, exactly
as in the scanner.

Per image (one plane of one stack), the model predicts each of up to K tissue patches
of that plane (found on the plane itself, as the scanner does on its low-res frame) and
the median is the prediction (seed 000). The classical ``stack`` reference picks, per
stack, the sharpest plane by a focus measure with parabolic refinement, using every
plane of the stack; it is scored once per stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..autofocus.fit import refine_peak
from ..focus import measures
from ..tissue import select_patches, tissue_mask
from .metrics import focus_metrics
from .runtime import TFLitePredictor, load_model

Progress = Callable[[int, int], None]


def _dof_for(objective: str) -> float:
    from ..optics.presets import get_objective

    return float(get_objective(objective.split("/")[0]).depth_of_field_um())


def _records(data_dirs: Sequence[str | Path]) -> list[tuple[Any, Any]]:
    from ..stacks import open_stacks

    out = []
    for d in data_dirs:
        dataset = open_stacks(d)
        out.extend((dataset, record) for record in dataset)
    return out


def evaluate_model(
    data_dirs: Sequence[str | Path],
    model: str | Path | TFLitePredictor,
    *,
    patches_per_image: int = 8,
    min_tissue: float = 0.5,
    threads: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Seed 000's metrics for ``model`` on every plane within its trained range."""
    predictor = model if isinstance(model, TFLitePredictor) else load_model(model, threads=threads)
    card = predictor.card
    pair_offset = float(card.training.get("config", {}).get("pair_offset_um", 2.0)) if card.input_kind == "pair" else None
    records = _records(data_dirs)
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
    }
    return result


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
    for i, (dataset, record) in enumerate(records):
        if record.focus_z_um is None:
            continue
        frames = dataset.load(record)
        z = np.asarray(record.z_um, np.float64)
        scores = [score_fn(measures.gray(f)) for f in frames]
        best_z, _ = refine_peak(z, scores)
        # As a correction from the stack's middle plane: the same quantity a model predicts.
        start = z[len(z) // 2]
        predicted.append(float(best_z - start))
        true.append(float(record.focus_z_um - start))
        objectives.add(record.objective)
        frames_used += len(frames)
        if progress:
            progress(i + 1, len(records))
    if len(objectives) != 1:
        raise ValueError(f"the test sets mix objectives {sorted(objectives)}")
    return {
        "method": "stack",
        "measure": measure,
        "data": [str(d) for d in data_dirs],
        "frames_per_focus": frames_used / max(len(predicted), 1),
        **focus_metrics(predicted, true, _dof_for(objectives.pop())),
    }
