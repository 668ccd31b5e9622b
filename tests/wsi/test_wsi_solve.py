"""Global least-squares positions over the tile graph."""

from __future__ import annotations

import numpy as np
import pytest
from deepaf_host.wsi.solve import Edge, solve_positions


def test_pairs_decide_and_the_prior_fixes_the_rest() -> None:
    truth = np.array([[0.0, 0.0], [100.0, 3.0], [205.0, -2.0], [400.0, 0.0]])
    prior = truth + np.array([[4.0, -3.0], [-5.0, 2.0], [3.0, 3.0], [7.0, -6.0]])  # stage errors
    edges = [Edge(0, 1, *(truth[1] - truth[0])), Edge(1, 2, *(truth[2] - truth[1]))]
    sol = solve_positions(prior, edges)
    rel = sol.positions[:3] - sol.positions[0]
    assert np.allclose(rel, truth[:3] - truth[0], atol=0.05)
    # Tile 3 has no pair: it stays where the stage put it.
    assert np.allclose(sol.positions[3], prior[3], atol=1e-6)
    assert sol.residuals.max() < 0.05


def test_a_false_match_is_dropped() -> None:
    truth = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 80.0], [100.0, 80.0]])
    edges = [Edge(i, j, *(truth[j] - truth[i])) for i, j in [(0, 1), (0, 2), (1, 3), (2, 3)]]
    edges.append(Edge(0, 3, 140.0, 40.0))  # a false match: 60 px off
    sol = solve_positions(truth, edges, outlier_px=3.0)
    assert [(e.i, e.j) for e in sol.dropped] == [(0, 3)]
    assert np.allclose(sol.positions - sol.positions[0], truth, atol=0.05)


def test_bad_prior_shape() -> None:
    with pytest.raises(ValueError):
        solve_positions(np.zeros((3, 3)), [])


def test_camera_axes_from_pair_offsets() -> None:
    from deepaf_host.wsi.solve import fit_camera_axes

    theta = np.radians(0.8)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) * 1.01
    expected = np.array([[230.0, 0.0], [230.0, 1.0], [0.0, 170.0], [-1.0, 170.0], [230.0, -2.0]])
    fit = fit_camera_axes(expected, expected @ rot.T)
    assert fit is not None
    assert fit["rotation_deg"] == pytest.approx(0.8, abs=1e-3)
    assert fit["scale_x"] == pytest.approx(1.01, abs=1e-4) and fit["skew_deg"] == pytest.approx(0.0, abs=1e-3)
    assert fit_camera_axes(expected[:2] * [1, 0], expected[:2] * [1, 0]) is None
