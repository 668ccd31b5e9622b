"""Autofocus accuracy metrics of seed 000 (pure functions).

Per image, the prediction is the median over its patches. Then:

- focus error: mean +- std of |predicted dz - true dz| in um (seed 000's FE);
- false-direction rate: share of images whose prediction has the wrong sign, among the
  images farther than DoF/2 from focus (nearer than that, either direction is in focus);
- within-DoF rate: share of images with |error| <= DoF/2 (sharp to the eye after the move).

All rates are fractions in [0, 1]. The same figures are given per |true dz| bin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Edges of the |true dz| bins, um (the last bin is open-ended).
DEFAULT_BIN_EDGES_UM: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 7.0)


def median_per_image(predictions: Sequence[Sequence[float]]) -> np.ndarray:
    """The median of each image's patch predictions (seed 000's per-image prediction)."""
    out = np.empty(len(predictions), dtype=np.float64)
    for i, p in enumerate(predictions):
        values = np.asarray(p, dtype=np.float64)
        if values.size == 0:
            raise ValueError(f"image {i} has no patch prediction")
        out[i] = float(np.median(values))
    return out


def _summary(pred: np.ndarray, true: np.ndarray, dof_um: float) -> dict[str, Any]:
    n = int(pred.size)
    if n == 0:
        return {"n_images": 0, "focus_error_um_mean": None, "focus_error_um_std": None,
                "focus_error_um_median": None, "false_direction_rate": None, "within_dof_rate": None,
                "n_direction_decisive": 0}
    err = np.abs(pred - true)
    decisive = np.abs(true) > dof_um / 2
    wrong = np.sign(pred[decisive]) != np.sign(true[decisive])
    return {
        "n_images": n,
        "focus_error_um_mean": float(err.mean()),
        "focus_error_um_std": float(err.std()),
        "focus_error_um_median": float(np.median(err)),
        "false_direction_rate": float(wrong.mean()) if wrong.size else 0.0,
        "within_dof_rate": float((err <= dof_um / 2).mean()),
        "n_direction_decisive": int(decisive.sum()),
    }


def focus_metrics(
    predicted_um: Sequence[float] | np.ndarray,
    true_um: Sequence[float] | np.ndarray,
    dof_um: float,
    bin_edges_um: Sequence[float] = DEFAULT_BIN_EDGES_UM,
) -> dict[str, Any]:
    """Seed 000's metrics overall and per |true dz| bin.

    ``predicted_um`` and ``true_um`` are per image (signed distance to focus, um).
    """
    pred = np.asarray(predicted_um, dtype=np.float64).reshape(-1)
    true = np.asarray(true_um, dtype=np.float64).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"{pred.size} predictions for {true.size} true values")
    if not dof_um > 0:
        raise ValueError(f"depth of field must be positive, got {dof_um}")
    if not np.all(np.isfinite(pred)):
        raise ValueError("predictions contain NaN or infinity")
    result = _summary(pred, true, dof_um)
    result["dof_um"] = float(dof_um)
    edges = list(bin_edges_um)
    bins = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else float("inf")
        sel = (np.abs(true) >= lo) & (np.abs(true) < hi)
        entry = _summary(pred[sel], true[sel], dof_um)
        bins.append({"abs_dz_um_min": lo, "abs_dz_um_max": hi if np.isfinite(hi) else None, **entry})
    result["per_bin"] = bins
    return result
