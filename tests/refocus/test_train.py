"""Refocus training's validation (``refocus.train.evaluate``): the model selection must see
what a network does to the planes already in focus, the bar's "never damage a good tile"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

from deepaf_host.refocus.train import IN_FOCUS_LIMIT, PairData, build_network, evaluate  # noqa: E402


def _pair_file(path: Path, shots: int) -> Path:
    """Four fields of three planes, the first plane of each in focus; the truth is a smooth
    image and every input is that truth plus noise (the network's output is scored on it)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:32, 0:32]
    base = (128 + 60 * np.sin(xx / 3.0)[..., None] * np.cos(yy / 4.0)[..., None]) * np.ones(3)
    truth = np.stack([np.clip(base + 10 * k, 0, 255) for k in range(4)]).astype(np.uint8)
    shape = (4, 3, *((2,) if shots == 2 else ()), 32, 32, 3)
    noise = rng.normal(0.0, 3.0, shape)
    t = truth[:, None, None] if shots == 2 else truth[:, None]
    inputs = np.clip(t + noise, 0, 255).astype(np.uint8)
    dz = np.tile([0.0, 2.0, -3.0], (4, 1))
    np.savez(path, inputs=inputs, truth=truth, dz_um=dz)
    return path


@pytest.mark.parametrize("shots", [1, 2])
def test_validation_reports_the_worst_change_on_planes_in_focus(tmp_path: Path, shots: int) -> None:
    data = PairData([str(_pair_file(tmp_path / "v.npz", shots))], order="tile")
    model = build_network(shots, widths=(4, 8))
    # The residual starts at zero: the output is the (first) input, so nothing changes.
    ev = evaluate(model, data)
    assert ev["in_focus_worst"] == pytest.approx(0.0, abs=1e-6)
    assert ev["ssim_out"] == pytest.approx(ev["ssim_in"], abs=1e-6)
    # A network that adds a pattern to every frame damages the frames in focus too; the
    # validation must say so, beyond the selection's limit.
    layer = model.get_layer("residual")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.full_like(bias, 0.15)])
    damaged = evaluate(model, data)
    assert damaged["in_focus_worst"] < IN_FOCUS_LIMIT
    # Only the planes in focus count: without one, the same damage reports no change.
    data.dz[:] = 2.0
    assert evaluate(model, data)["in_focus_worst"] == 0.0


def test_the_loss_of_samples_in_focus_can_be_weighted() -> None:
    import tensorflow as tf
    from deepaf_host.refocus.train import refocus_loss

    rng = np.random.default_rng(5)
    y = tf.constant(rng.uniform(0.2, 0.8, (3, 32, 32, 3)).astype(np.float32))
    p = y + tf.constant(np.stack([np.zeros((32, 32, 3)), rng.normal(0, 0.05, (32, 32, 3)),
                                  rng.normal(0, 0.2, (32, 32, 3))]).astype(np.float32))
    per = [float(refocus_loss(y, p, tf.constant(w))) for w in np.eye(3, dtype=np.float32)]
    assert per[0] < per[1] < per[2]  # each sample's own loss, by its error
    assert float(refocus_loss(y, p)) == pytest.approx(np.mean(per), rel=1e-5)
    assert float(refocus_loss(y, p, tf.constant([1.0, 1.0, 1.0]))) == pytest.approx(np.mean(per), rel=1e-5)
    # Three times the weight on the first (say, in-focus) sample pulls the loss toward its own.
    assert float(refocus_loss(y, p, tf.constant([3.0, 1.0, 1.0]))) == pytest.approx((3 * per[0] + per[1] + per[2]) / 5, rel=1e-5)
