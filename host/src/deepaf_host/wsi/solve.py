"""Global tile positions from pairwise offsets: weighted least squares over the tile graph.

Unknowns: the top-left corner p_k (x, y) of every tile, in pixels. Each accepted pair
(i, j) measured p_j - p_i = m_ij (weight w_ij); each tile has its stage position s_k as
a weak prior (weight ``prior_weight``, a fraction of a pair's):

    minimise  sum_pairs w_ij |p_j - p_i - m_ij|^2  +  prior_weight * sum_k |p_k - s_k|^2

The prior fixes what the pairs leave free: the mosaic's translation, and the place of
tiles (or islands of tiles) that no accepted pair ties to the rest; within a connected
island the pairs decide, to within ``prior_weight`` of a pixel per pixel of stage error.
x and y separate; the normal equations are a sparse SPD system (graph Laplacian plus a
diagonal). A pair whose residual after the solve exceeds ``outlier_px`` disagrees with
the others round a loop (a false match): the worst are dropped and the solve repeated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


@dataclass(frozen=True)
class Edge:
    i: int
    j: int
    #: Measured p_j - p_i, pixels.
    dx: float
    dy: float
    weight: float = 1.0


@dataclass
class Solution:
    #: (n, 2) solved top-left corners, pixels.
    positions: np.ndarray
    #: Edges kept in the final solve, and those dropped as outliers.
    kept: list[Edge]
    dropped: list[Edge]
    #: |residual| of each kept edge after the solve, pixels.
    residuals: np.ndarray


def _solve(n: int, edges: list[Edge], prior: np.ndarray, prior_weight: float) -> np.ndarray:
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    rhs = prior * prior_weight
    diag = np.full(n, prior_weight, dtype=np.float64)
    for e in edges:
        w = e.weight
        diag[e.i] += w
        diag[e.j] += w
        rows += [e.i, e.j]
        cols += [e.j, e.i]
        vals += [-w, -w]
        rhs[e.j] += w * np.array([e.dx, e.dy])
        rhs[e.i] -= w * np.array([e.dx, e.dy])
    a = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr() + sp.diags(diag)
    solved = spla.spsolve(a.tocsc(), rhs)
    return np.asarray(solved, dtype=np.float64).reshape(n, 2)


def solve_positions(
    prior: np.ndarray,
    edges: list[Edge],
    *,
    prior_weight: float = 1e-3,
    outlier_px: float = 4.0,
    max_drops: int | None = None,
) -> Solution:
    """Solve the tile positions (see the module docstring). ``prior``: (n, 2) stage corners."""
    p = np.asarray(prior, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"prior must be (n, 2), got {p.shape}")
    if prior_weight <= 0:
        raise ValueError(f"prior_weight must be positive, got {prior_weight}")
    n = len(p)
    kept = list(edges)
    dropped: list[Edge] = []
    limit = len(edges) if max_drops is None else max_drops
    while True:
        pos = _solve(n, kept, p.copy(), prior_weight)
        if not kept:
            return Solution(pos, kept, dropped, np.zeros(0))
        res = np.array([np.hypot(pos[e.j, 0] - pos[e.i, 0] - e.dx, pos[e.j, 1] - pos[e.i, 1] - e.dy) for e in kept])
        worst = float(res.max())
        if worst <= outlier_px or len(dropped) >= limit:
            return Solution(pos, kept, dropped, res)
        # Drop the worst pairs (those within half of the worst residual), then solve again:
        # one false match pulls its neighbours' residuals up too, so not all at once.
        bad = set(np.flatnonzero(res >= max(outlier_px, 0.5 * worst))[: limit - len(dropped)].tolist())
        dropped += [e for k, e in enumerate(kept) if k in bad]
        kept = [e for k, e in enumerate(kept) if k not in bad]


def fit_camera_axes(expected: np.ndarray, measured: np.ndarray) -> dict[str, float] | None:
    """The linear map A with measured ~= A @ expected (pair offsets, pixels, (n, 2)):
    how the camera's axes sit on the stage's. Returns its rotation (degrees, image
    counter-clockwise from the stage axes), the scale along each stage axis (1 = the
    pixel size is right) and the skew (degrees off 90 between the axes); None when the
    pairs do not span both axes."""
    e = np.asarray(expected, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(measured, dtype=np.float64).reshape(-1, 2)
    if len(e) < 2 or np.linalg.matrix_rank(e) < 2:
        return None
    at, *_ = np.linalg.lstsq(e, m, rcond=None)
    a = at.T  # measured = a @ expected
    col_x, col_y = a[:, 0], a[:, 1]
    angle_x = math.degrees(math.atan2(col_x[1], col_x[0]))
    angle_y = math.degrees(math.atan2(-col_y[0], col_y[1]))
    return {
        "rotation_deg": round((angle_x + angle_y) / 2, 4),
        "scale_x": round(float(np.hypot(*col_x)), 5), "scale_y": round(float(np.hypot(*col_y)), 5),
        "skew_deg": round(angle_y - angle_x, 4),
    }
