"""The model family: DFT-as-matmul against numpy's FFT, shapes of every architecture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

import keras  # noqa: E402

from deepaf_host.model.preprocess import FOURIER_CROP  # noqa: E402
from deepaf_host.model.train.arch import ARCHITECTURES, ArchConfig, build, copy_weights, irdft2, rdft2  # noqa: E402


@pytest.mark.parametrize(("h", "w"), [(8, 8), (7, 10), (14, 14)])
def test_dft_layers_match_numpy_fft(h: int, w: int) -> None:
    rng = np.random.default_rng(h * w)
    x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
    inputs = keras.Input((h, w, 3))
    re, im = rdft2(inputs, "t")
    back = irdft2(re, im, h, w, "i")
    got_re, got_im, got_back = keras.Model(inputs, [re, im, back])(x)
    # (B, K, C, H) -> (B, H, K, C) to compare with numpy's (B, H, K) per channel.
    want = np.fft.rfft2(x, axes=(1, 2), norm="ortho")
    np.testing.assert_allclose(np.transpose(np.asarray(got_re), (0, 3, 1, 2)), want.real, atol=2e-5)
    np.testing.assert_allclose(np.transpose(np.asarray(got_im), (0, 3, 1, 2)), want.imag, atol=2e-5)
    np.testing.assert_allclose(np.asarray(got_back), x, atol=2e-5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_builds_and_predicts_one_value(name: str) -> None:
    config = ArchConfig(name=name, patch_size=64, widths=(8, 8, 16, 16), fcfnn_units=(16, 8))
    model = build(config, batch_size=2)
    shape = model.input_shape[1:]
    if name == "fcfnn":
        assert shape == (FOURIER_CROP, FOURIER_CROP, 1)
    else:
        assert shape == (64, 64, 6 if name == "two-shot" else 3)
    y = model(np.zeros((2, *shape), np.float32))
    assert tuple(y.shape) == (2, 1)


def test_spatiospectral_has_both_encoders_and_the_ablations_do_not() -> None:
    def layer_names(name: str) -> set[str]:
        return {layer.name for layer in build(ArchConfig(name=name, patch_size=64, widths=(8, 8, 16, 16))).layers}

    both = layer_names("spatiospectral")
    assert any(n.startswith("spatial0") for n in both) and any(n.startswith("spectral0") for n in both)
    assert not any("dft" in n for n in layer_names("spatial"))
    assert not any(n.startswith("spatial") for n in layer_names("spectral"))


def test_config_round_trips_and_unknown_names_are_refused() -> None:
    config = ArchConfig(name="spectral", widths=(4, 8, 8, 8))
    assert ArchConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown architecture"):
        build(ArchConfig(name="resnet"))


@pytest.mark.parametrize("name", ["spatiospectral", "fcfnn"])
def test_a_start_for_another_objective_answers_in_this_objectives_depths_of_field(name: str) -> None:
    """Fine-tuning a 20x model for 10x stacks: its answers start scaled by the ratio of the
    depths of field (8.64 / 0.96 = 9); the same objective leaves them as they were."""
    from deepaf_host.model.train.fit import _rescale_output

    config = ArchConfig(name=name, patch_size=64, widths=(8, 8, 16, 16), fcfnn_units=(16, 8))
    model = build(config, batch_size=2)
    x = np.random.default_rng(1).normal(size=(2, *model.input_shape[1:])).astype(np.float32)
    before = np.asarray(model(x)).ravel()
    _rescale_output(model, 0.96, 0.96)
    np.testing.assert_allclose(np.asarray(model(x)).ravel(), before, rtol=1e-6)
    _rescale_output(model, 0.96, 8.64)
    np.testing.assert_allclose(np.asarray(model(x)).ravel(), 9.0 * before, rtol=1e-5, atol=1e-6)


def test_the_default_training_range_follows_the_stacks_depth_of_field(tmp_path: Path) -> None:
    """+-10 um at 20x/0.75 is about +-10 depths of field: at 10x/0.25 the default is +-90 um,
    not +-10 (one DoF, which would train a model blind beyond it)."""
    import json

    from deepaf_host.model.train.fit import default_range_um

    def dataset(name: str, objective: str) -> str:
        d = tmp_path / name
        d.mkdir()
        entry = {"file": "s.ome.tif", "z_um": [0.0, 1.0], "focus_z_um": 0.5, "objective": objective,
                 "pixel_size_um": 0.36, "protocol": "same", "source": "simulated"}
        (d / "index.json").write_text(json.dumps({"format": "deepaf-stacks/1", "stacks": [entry]}))
        return str(d)

    assert default_range_um([dataset("a", "20x/0.75")]) == 10.0
    assert default_range_um([dataset("b", "10x/0.25")]) == 90.0
    assert default_range_um([dataset("c", "unknown")]) == 10.0


def test_quantisation_noise_acts_in_training_only_and_keeps_the_weights() -> None:
    config = ArchConfig(patch_size=64, widths=(8, 8, 16, 16))
    plain, noisy = build(config), build(config, quant_noise=True)
    assert any(layer.name.endswith("_qn") for layer in noisy.layers)
    assert not any(layer.name.endswith("_qn") for layer in plain.layers)
    copy_weights(plain, noisy)
    x = np.random.default_rng(0).normal(size=(4, 64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(noisy(x)), np.asarray(plain(x)))  # inference: the identity
    # Training: about one int8 step of noise per tensor of the spectral encoder.
    assert np.abs(np.asarray(noisy(x, training=True)) - np.asarray(plain(x, training=True))).max() > 1e-4
    # Back into a plain model (what export converts), by layer name.
    again = build(config)
    copy_weights(noisy, again)
    for layer in again.layers:
        for mine, theirs in zip(layer.get_weights(), noisy.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ValueError, match="layers differ"):
        copy_weights(build(ArchConfig(name="spatial", patch_size=64, widths=(8, 8, 16, 16))), again)
