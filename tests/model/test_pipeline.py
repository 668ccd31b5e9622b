"""Train -> export -> load -> predict -> evaluate, end to end on a tiny simulated dataset.

The network is tiny and trains for a few steps: these tests check the plumbing (files,
int8 conversion, cards, errors), not accuracy. Accuracy is the benchmark's job
(``deepaf-host eval`` on the shipped model, figures in the README).
"""

from __future__ import annotations

import json
from dataclasses import replace
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

from click.testing import CliRunner  # noqa: E402

from deepaf_host.cli import main  # noqa: E402
from deepaf_host.errors import ConfigError, ModelError  # noqa: E402
from deepaf_host.model.card import ModelCard  # noqa: E402
from deepaf_host.model.runtime import load_model  # noqa: E402
from deepaf_host.model.train.arch import ArchConfig  # noqa: E402
from deepaf_host.model.train.export import check_int8, export, int8_allowance_um  # noqa: E402
from deepaf_host.model.train.fit import TrainConfig, train  # noqa: E402
from deepaf_host.stacks import open_stacks, simulate_dataset  # noqa: E402

pytestmark = pytest.mark.slow

PATCH = 48


def tiny_config(name: str = "spatiospectral", patch: int = PATCH) -> TrainConfig:
    arch = ArchConfig(name=name, patch_size=patch, widths=(4, 4, 8, 8), stem_stride=2, fcfnn_units=(8,))
    return TrainConfig(arch=arch, epochs=2, steps_per_epoch=3, batch_size=8, patches_per_plane=2,
                       min_tissue=0.3, range_um=(-4.0, 4.0), val_fraction=0.34, seed=3)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "stacks"
    simulate_dataset(out, stacks=6, z_range_um=(-4.0, 4.0, 1.0), protocol="same", seed=5, size=(128, 128),
                     stacks_per_slide=2)
    return out


@pytest.fixture(scope="module")
def trained(stacks: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    run = tmp_path_factory.mktemp("run") / "run"
    state = train(run, [str(stacks)], tiny_config())
    assert state["done"] and state["epoch"] == 2
    model = tmp_path_factory.mktemp("models") / "tiny.tflite"
    export(run, model, calibration_size=20, force=True)
    return run, model


def test_training_writes_a_resumable_run(trained: tuple[Path, Path], stacks: Path) -> None:
    run, _ = trained
    for name in ("config.json", "state.json", "log.csv", "last.keras", "best.keras", "patches/patches.npy"):
        assert (run / name).exists(), name
    state = json.loads((run / "state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    assert len((run / "log.csv").read_text().splitlines()) == 3  # header + 2 epochs
    meta = json.loads((run / "config.json").read_text())
    train_stacks = set(np.load(run / "patches" / "stack.npy")[np.load(run / "patches" / "train_index.npy")])
    val_stacks = set(np.load(run / "patches" / "stack.npy")[np.load(run / "patches" / "val_index.npy")])
    assert train_stacks and val_stacks and not train_stacks & val_stacks  # split by field
    assert meta["objective"].startswith("20x")
    # Running the finished run again does nothing; another configuration is refused.
    before = (run / "last.keras").stat().st_mtime_ns
    assert train(run, [str(stacks)], tiny_config())["epoch"] == 2
    assert (run / "last.keras").stat().st_mtime_ns == before
    other = tiny_config()
    other.learning_rate = 1e-2
    with pytest.raises(ConfigError, match="another configuration"):
        train(run, [str(stacks)], other)


def test_an_interrupted_run_continues_where_it_stopped(stacks: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = tiny_config("fcfnn", patch=64)  # FCFNN crops 64x64 of the spectrum
    state = train(run, [str(stacks)], config)
    assert state["epoch"] == 2
    # Pretend the process died after epoch 1: the state says 1 epoch, not done.
    state["epoch"], state["done"], state["history"] = 1, False, state["history"][:1]
    (run / "state.json").write_text(json.dumps(state))
    resumed = train(run, [str(stacks)], config)
    assert resumed["epoch"] == 2 and [h["epoch"] for h in resumed["history"]] == [1, 2]
    # A finished run trains longer when asked for more epochs, and only then.
    config.epochs = 3
    longer = train(run, [str(stacks)], config)
    assert longer["done"] and [h["epoch"] for h in longer["history"]] == [1, 2, 3]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 3


def test_fine_tuning_starts_from_the_given_run(trained: tuple[Path, Path], stacks: Path, tmp_path: Path) -> None:
    import keras

    source, _ = trained
    config = tiny_config()
    config.epochs, config.learning_rate = 1, 0.0  # no step moves a weight: the start is what stays
    run = tmp_path / "tuned"
    train(run, [str(stacks)], config, init=source)
    assert json.loads((run / "config.json").read_text())["init"] == str((source / "best.keras").resolve())
    start = keras.saving.load_model(source / "best.keras").trainable_weights
    tuned = keras.saving.load_model(run / "last.keras").trainable_weights
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(start, tuned, strict=True))
    # With int8 rounding noise in training: the same start (weights matched by layer
    # name), and the export converts the network without the noise layers.
    noisy = tmp_path / "noisy"
    train(noisy, [str(stacks)], replace(config, quant_noise=True), init=source)
    saved = keras.saving.load_model(noisy / "last.keras")
    assert any(layer.name.endswith("_qn") for layer in saved.layers)
    begin = keras.saving.load_model(source / "best.keras")
    for layer in begin.layers:
        for a, b in zip(layer.trainable_weights, saved.get_layer(layer.name).trainable_weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    card = export(noisy, tmp_path / "noisy.tflite", calibration_size=20, force=True)
    assert card.metrics["int8_checks"]["tensor_types"].get("float32", 0) == 0
    scratch = tmp_path / "scratch"
    train(scratch, [str(stacks)], config)
    fresh = keras.saving.load_model(scratch / "last.keras").trainable_weights
    assert not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(start, fresh, strict=True))
    # Another network, or no weights at all, is refused before anything is written.
    other = tiny_config()
    other.arch = ArchConfig(name="spatiospectral", patch_size=PATCH, widths=(4, 4, 8, 16), stem_stride=2, fcfnn_units=(8,))
    with pytest.raises(ConfigError, match="was trained as"):
        train(tmp_path / "other", [str(stacks)], other, init=source)
    assert not (tmp_path / "other" / "config.json").exists()
    bare = tmp_path / "bare" / "weights.keras"  # a .keras file without its run's config
    bare.parent.mkdir()
    shutil.copy(source / "best.keras", bare)
    with pytest.raises(ConfigError, match="layers differ"):
        train(tmp_path / "other-bare", [str(stacks)], other, init=bare)
    assert not (tmp_path / "other-bare" / "config.json").exists()
    with pytest.raises(ConfigError, match="--init needs"):
        train(tmp_path / "none", [str(stacks)], config, init=tmp_path)


def test_an_exported_model_is_a_fine_tuning_start(trained: tuple[Path, Path], stacks: Path, tmp_path: Path) -> None:
    import keras

    run, model = trained
    assert model.with_suffix(".keras").is_file()  # the float weights beside the .tflite
    config = tiny_config()
    config.epochs, config.learning_rate = 1, 0.0
    tuned = tmp_path / "tuned"
    train(tuned, [str(stacks)], config, init=model)
    start = keras.saving.load_model(run / "best.keras").trainable_weights
    after = keras.saving.load_model(tuned / "last.keras").trainable_weights
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(start, after, strict=True))
    # Checked against the model's card: another architecture is refused before anything is written.
    other = tiny_config()
    other.arch = ArchConfig(name="spatiospectral", patch_size=PATCH, widths=(4, 4, 8, 16), stem_stride=2, fcfnn_units=(8,))
    with pytest.raises(ConfigError, match="was trained as"):
        train(tmp_path / "other", [str(stacks)], other, init=model)
    bare = tmp_path / "old.tflite"  # a model file without its card
    shutil.copy(model, bare)
    with pytest.raises(ConfigError, match="with its card"):
        train(tmp_path / "none", [str(stacks)], config, init=bare)


def test_an_int8_model_without_its_float_weights_is_rebuilt_as_a_fine_tuning_start(
    trained: tuple[Path, Path], stacks: Path, tmp_path: Path
) -> None:
    """Models shipped before export kept their float weights: the int8 graph is read
    back into the network (folded normalisations included) and fine-tuned from there."""
    import keras

    from deepaf_host.model.preprocess import prepare
    from deepaf_host.model.train.dequantize import keras_from_tflite, recalibrate

    run, model = trained
    shipped = tmp_path / "models" / model.name
    shipped.parent.mkdir()
    shutil.copy(model, shipped)
    shutil.copy(model.with_suffix(".json"), shipped.with_suffix(".json"))
    config = tiny_config()
    float_model = keras.saving.load_model(run / "best.keras")
    rebuilt = keras_from_tflite(shipped, config.arch)
    # Every convolution holds the float model's kernel with its normalisation folded in,
    # to the int8 rounding (half a quantisation step of that output channel).
    for layer in float_model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.name.endswith("_conv"):
            gamma, _, _, var = float_model.get_layer(layer.name[:-5] + "_bn").get_weights()
            folded = layer.get_weights()[0] * gamma / np.sqrt(var + 1e-3)
            got = rebuilt.get_layer(layer.name).get_weights()[0]
            step = np.abs(folded).max(axis=(0, 1, 2)) / 127
            assert np.all(np.abs(got - folded) <= step * 0.51 + 1e-7), layer.name
    patches = open_stacks(stacks).load(0)[:, :PATCH, :PATCH]
    x = prepare("patch", patches)
    want = float_model.predict(x, verbose=0).ravel()
    got = rebuilt.predict(x, verbose=0).ravel()
    assert np.abs(got - want).max() <= 0.05 * max(1.0, np.abs(want).max())
    # Recalibration moves each normalisation onto its input's statistics, keeping the function.
    recalibrate(rebuilt, x)
    assert np.allclose(rebuilt.predict(x, verbose=0).ravel(), got, atol=1e-4)
    # And `train --init X.tflite` runs from it, with no X.keras beside the model, on a
    # user's stacks of other optics (made here by giving the start another objective):
    # the start's optics are recorded, the run's model is bound to its stacks'.
    assert not shipped.with_suffix(".keras").exists()
    card = json.loads(shipped.with_suffix(".json").read_text())
    card["input"].update(objective="10x/0.25", pixel_size_um=0.3611)
    shipped.with_suffix(".json").write_text(json.dumps(card))
    config.epochs = 1
    state = train(tmp_path / "tuned", [str(stacks)], config, init=shipped)
    assert state["done"]
    meta = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert meta["init"] == str(shipped.resolve())
    assert meta["init_optics"] == {"objective": "10x/0.25", "pixel_size_um": 0.3611}
    assert meta["objective"] == "20x/0.75"


def test_export_is_full_int8_with_builtin_ops_and_a_card(trained: tuple[Path, Path]) -> None:
    _, model = trained
    checks = check_int8(model)
    assert not any(op.startswith("Flex") for op in checks["ops"])
    assert set(checks["tensor_types"]) <= {"int8", "int32"}
    card = ModelCard.load(model.with_suffix(".json"))
    assert card.input_dtype == "int8" and card.patch_size == PATCH and card.units == "um"
    assert card.metrics["validation_int8"]["n_images"] > 0
    assert card.metrics["validation_float"]["n_images"] == card.metrics["validation_int8"]["n_images"]
    assert card.latency["ms_per_patch_1_thread"] > 0
    assert model.with_name("tiny-float.tflite").exists()
    assert "sha256" in model.with_suffix(".md").read_text()


def test_the_runtime_predicts_from_uint8_patches(trained: tuple[Path, Path]) -> None:
    _, model = trained
    predictor = load_model(model, objective="20x/0.75")
    assert predictor.quantized
    rng = np.random.default_rng(0)
    dz = predictor.predict(rng.integers(0, 256, size=(3, PATCH, PATCH, 3)).astype(np.uint8))
    assert dz.shape == (3,) and np.all(np.isfinite(dz))
    with pytest.raises(ModelError, match="the model takes"):
        predictor.predict(np.zeros((1, PATCH + 2, PATCH + 2, 3), np.uint8))


def test_a_model_worse_after_int8_than_allowed_is_not_shipped(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = trained
    out = tmp_path / "refused.tflite"
    # A negative tolerance no int8 model can meet: the refusal path, deterministically.
    with pytest.raises(ModelError, match="not shipping it") as refused:
        export(run, out, calibration_size=20, max_degradation=-1.0, max_degradation_dof=-1.0)
    assert not out.exists() and not out.with_suffix(".json").exists()
    # What the user is pointed to instead: the float model, which the runtime takes.
    float_model = tmp_path / "refused-float.tflite"
    assert str(float_model) in str(refused.value)
    predictor = load_model(float_model, objective="20x/0.75")
    assert not predictor.quantized
    assert np.isfinite(predictor.predict(np.full((1, PATCH, PATCH, 3), 128, np.uint8))).all()


def test_the_int8_allowance_is_relative_or_a_fraction_of_the_depth_of_field() -> None:
    # The shipped 20x model (float 0.743 um, DoF 0.96): 10 % of its error.
    assert int8_allowance_um(0.743, 0.96) == pytest.approx(0.0743)
    # A 10x fine-tune (float 0.686 um, DoF 8.64): 0.05 DoF; its int8 0.99 um is kept,
    # the +-90 um run's (float 2.22, int8 3.37) is not.
    assert int8_allowance_um(0.686, 8.64) == pytest.approx(0.432)
    assert 0.99 <= 0.686 + int8_allowance_um(0.686, 8.64)
    assert 3.37 > 2.22 + int8_allowance_um(2.22, 8.64)


@pytest.fixture
def model_copy(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    _, model = trained
    for suffix in (".tflite", ".json"):
        shutil.copy(model.with_suffix(suffix), tmp_path / f"m{suffix}")
    card = json.loads((tmp_path / "m.json").read_text())
    card["file"] = "m.tflite"
    (tmp_path / "m.json").write_text(json.dumps(card))
    return tmp_path / "m.tflite"


def test_missing_model_or_card_is_a_model_error(model_copy: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_model(model_copy.with_name("absent.tflite"))
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="card not found"):
        load_model(model_copy)


def test_corrupt_model_file_is_a_model_error(model_copy: Path) -> None:
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(model_copy)
    # Even with a card that matches the garbage, the runtime refuses it clearly.
    model_copy.write_bytes(b"not a flatbuffer" * 64)
    card = ModelCard.load(model_copy.with_suffix(".json"))
    from deepaf_host.model.card import sha256_of

    card.sha256 = sha256_of(model_copy)
    card.save(model_copy.with_suffix(".json"))
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        load_model(model_copy)


def test_card_mismatches_are_model_errors(model_copy: Path) -> None:
    with pytest.raises(ModelError, match="trained for objective"):
        load_model(model_copy, objective="40x")
    card = ModelCard.load(model_copy.with_suffix(".json"))
    with pytest.raises(ModelError, match="um/pixel"):
        load_model(model_copy, pixel_size_um=card.pixel_size_um * 2)
    path = model_copy.with_suffix(".json")
    raw = json.loads(path.read_text())
    raw["input"]["patch_size"] = PATCH * 2
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="does not match its card"):
        load_model(model_copy)
    raw["output"]["units"] = "mm"
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="units"):
        load_model(model_copy)
    path.write_text("{ not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(model_copy)
    path.write_text(json.dumps({"format": "deepaf-model/1", "name": "x"}))
    with pytest.raises(ModelError, match="incomplete or malformed"):
        load_model(model_copy)


def test_eval_cli_prints_the_benchmark_json(trained: tuple[Path, Path], stacks: Path) -> None:
    _, model = trained
    runner = CliRunner()
    result = runner.invoke(main, ["eval", "--data", str(stacks), "--model", str(model), "--patches", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in ("n_images", "focus_error_um_mean", "focus_error_um_std", "false_direction_rate",
                "within_dof_rate", "per_bin"):
        assert key in report
    n_planes = sum(len(r.z_um) for r in open_stacks(stacks))
    assert 0 < report["n_images"] <= n_planes
    assert 0.0 <= report["within_dof_rate"] <= 1.0
    stack = json.loads(runner.invoke(main, ["eval", "--data", str(stacks), "--model", "stack"]).output)
    assert stack["method"] == "stack" and stack["n_images"] == 6
    # The stack reference on clean simulated stacks must actually find focus.
    assert stack["focus_error_um_mean"] < 1.0
