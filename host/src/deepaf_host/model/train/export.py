"""``deepaf-host export``: a trained run -> a full-integer int8 ``.tflite`` with its card.

The network is rebuilt with a fixed batch of 1 (fixed shapes convert to plain builtin
ops, no dynamic-shape helpers), calibrated on representative tissue patches drawn
evenly over the trained dz range, converted with int8 input and output, and checked:
builtin ops only, every activation tensor int8, and the int8 model's focus error on the
validation fields no worse than the float model's than :func:`int8_allowance_um` allows.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from ...errors import ModelError  # noqa: E402
from ..card import ModelCard, render_markdown, sha256_of  # noqa: E402
from ..preprocess import input_kind, prepare  # noqa: E402
from ..runtime import TFLitePredictor  # noqa: E402
from .arch import ArchConfig, build, copy_weights  # noqa: E402
from .data import PatchSet  # noqa: E402
from .fit import TrainConfig, per_image_metrics, predict_patchset  # noqa: E402



def training_sources(data_dirs: list[str]) -> list[dict[str, Any]]:
    """What each training dataset was made of, for the card: how it was generated (tool,
    specimen, protocol, seed, planes) and which real images (corpus ids with their
    licence and source) its stacks were rendered from. Datasets no longer on disk are
    listed by path only."""
    from ...errors import DatasetError
    from ...optics.corpus import load_manifest
    from ...stacks import open_stacks

    corpus = {img.id: img for img in load_manifest()}
    out: list[dict[str, Any]] = []
    for d in data_dirs:
        entry: dict[str, Any] = {"data": Path(d).name}
        try:
            dataset = open_stacks(d)
        except DatasetError:  # moved or deleted since training: the card still records the path
            out.append(entry)
            continue
        entry["stacks"] = len(dataset)
        gen = dataset.metadata.get("generator")
        if gen:
            entry["generator"] = {k: gen[k] for k in ("tool", "specimen", "protocol", "seed", "z_offsets_um", "illumination") if k in gen}
        ids = sorted({str(r.extra["specimen_image"]) for r in dataset if "specimen_image" in r.extra})
        if ids:
            entry["real_images"] = [
                {"id": i, **({"licence": corpus[i].licence, "source": corpus[i].source} if i in corpus else {})}
                for i in ids
            ]
        out.append(entry)
    return out

#: The int8 loss always allowed, in depths of field. A relative rule alone refuses a
#: float model so good that int8's rounding is most of its error: the 10x fine-tune on
#: procedural tissue (host/docs/calibrate) scored float 0.69 um = 0.08 DoF, int8 0.99 um
#: (+0.035 DoF; each patch's answer moved by 0.12 DoF RMS), though a scan cannot see
#: 0.05 DoF (its bar is DoF/2).
MAX_DEGRADATION_DOF = 0.05


def int8_allowance_um(fe_float_um: float, dof_um: float, max_degradation: float = 0.10,
                      max_degradation_dof: float = MAX_DEGRADATION_DOF) -> float:
    """How much worse (um of focus error) the int8 model may be than the float one:
    ``max_degradation`` of the float error or ``max_degradation_dof`` depths of field,
    whichever is larger."""
    return max(max_degradation * fe_float_um, max_degradation_dof * dof_um)


def representative_index(patchset: PatchSet, index: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` training patches spread evenly over the dz range (stratified by dz bins)."""
    rng = np.random.default_rng(seed)
    dz = patchset.dz_um[index]
    edges = np.linspace(dz.min(), dz.max() + 1e-6, 11)
    chosen: list[int] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        pool = index[(dz >= lo) & (dz < hi)]
        if pool.size:
            chosen.extend(rng.choice(pool, size=min(pool.size, max(1, n // 10)), replace=False).tolist())
    return np.asarray(sorted(chosen))


def convert(model: keras.Model, calibration: np.ndarray, quantize: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        def representative() -> Iterator[list[np.ndarray]]:
            for sample in calibration:
                yield [sample[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # The converter warns that int8 input statistics were not given: it computes
        # them from the representative dataset, which is what we want.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs", category=UserWarning)
        # Keras prints the exported signature (hundreds of TensorSpec lines) to stdout.
        with contextlib.redirect_stdout(io.StringIO()):
            return bytes(converter.convert())


def check_int8(path: Path) -> dict[str, Any]:
    """Builtin ops only and int8 activations; returns the op list and tensor type counts."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPACK delegate, which would replace the nodes it takes over
    # by one DELEGATE node and hide the file's own ops.
    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interpreter.allocate_tensors()
    ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    bad_ops = [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")]
    types: dict[str, int] = {}
    for tensor in interpreter.get_tensor_details():
        name = np.dtype(tensor["dtype"]).name
        types[name] = types.get(name, 0) + 1
    if bad_ops:
        raise ModelError(str(path), f"non-builtin ops {bad_ops}")
    if types.get("float32", 0):
        raise ModelError(str(path), f"{types['float32']} float32 tensors in a model that must be full-int8")
    return {"ops": ops, "tensor_types": types}


def measure_latency(
    path: Path, card: ModelCard, patches: np.ndarray, second: np.ndarray | None = None,
    frame_patches: int = 8, repeats: int = 20,
) -> dict[str, Any]:
    """Median ms per patch with 1 thread, and per low-res frame (``frame_patches``
    patches, preprocessing included) with 2 threads."""
    out: dict[str, Any] = {"frame_patches": frame_patches}
    for threads, count, key in ((1, 1, "ms_per_patch_1_thread"), (2, frame_patches, "ms_per_frame_2_threads")):
        predictor = TFLitePredictor(path, card, threads=threads)
        batch = np.resize(patches, (count, *patches.shape[1:]))
        pair = None if second is None else np.resize(second, (count, *second.shape[1:]))
        predictor.predict(batch, pair)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            predictor.predict(batch, pair)
            times.append(time.perf_counter() - t0)
        out[key] = round(1000 * float(np.median(times)), 3)
    return out


def export(
    run: Path,
    out: Path,
    *,
    name: str | None = None,
    calibration_size: int = 400,
    max_degradation: float = 0.10,
    max_degradation_dof: float = MAX_DEGRADATION_DOF,
    force: bool = False,
) -> ModelCard:
    meta = json.loads((run / "config.json").read_text())
    config = TrainConfig.from_dict(meta["train"])
    state = json.loads((run / "state.json").read_text())
    best = run / "best.keras"
    if not best.exists():
        raise ModelError(str(best), "the run has no best.keras: train it first")
    trained = keras.saving.load_model(best)
    arch: ArchConfig = config.arch
    fixed = build(arch, batch_size=1)
    copy_weights(trained, fixed)  # by layer name: a run trained with quant_noise has more layers

    patchset = PatchSet.load(run / "patches")
    train_idx = np.load(run / "patches" / "train_index.npy")
    val_idx = np.load(run / "patches" / "val_index.npy")
    kind = input_kind(arch.name)
    calib_idx = representative_index(patchset, train_idx, calibration_size, config.seed)
    second = None if patchset.second is None else np.asarray(patchset.second[calib_idx])
    calibration = prepare(kind, np.asarray(patchset.patches[calib_idx]), second)

    out.parent.mkdir(parents=True, exist_ok=True)
    float_path = out.with_name(out.stem + "-float.tflite")
    float_path.write_bytes(convert(fixed, calibration, quantize=False))
    tmp = out.with_suffix(".tflite.tmp")
    tmp.write_bytes(convert(fixed, calibration, quantize=True))
    checks = check_int8(tmp)
    os.replace(tmp, out)
    # The float weights beside the model: what `train --init X.tflite` fine-tunes from.
    weights = build(arch)
    copy_weights(trained, weights)
    weights_tmp = out.with_name(out.stem + ".tmp.keras")
    weights.save(weights_tmp)
    os.replace(weights_tmp, out.with_suffix(".keras"))

    dof_um = float(meta["dof_um"])
    card = ModelCard(
        name=name or out.stem,
        architecture=arch.name,
        file=out.name,
        sha256=sha256_of(out),
        input_kind=kind,
        patch_size=arch.patch_size,
        channels=arch.channels,
        objective=str(meta["objective"]),
        pixel_size_um=float(meta["pixel_size_um"]),
        illumination=str(meta.get("illumination", "koehler")),
        range_um=config.range_um,
        dof_um=dof_um,
        arch_config=arch.to_dict(),
        params=int(trained.count_params()),
        training={
            "data": meta["data"], "n_stacks": meta["n_stacks"], "n_train_patches": meta["n_train"],
            "n_val_patches": meta["n_val"], "config": meta["train"], "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"],
            "seconds": round(sum(h["seconds"] for h in state["history"]), 1),
            **({"init": meta["init"]} if meta.get("init") else {}),
            "sources": training_sources(meta["data"]),
        },
    )
    float_card = ModelCard(**{**card.__dict__, "file": float_path.name, "sha256": sha256_of(float_path),
                              "input_dtype": "float32"})

    float_pred = predict_patchset(trained, patchset, val_idx, kind)
    x_val = prepare(kind, np.asarray(patchset.patches[val_idx]),
                    None if patchset.second is None else np.asarray(patchset.second[val_idx]))
    int8_pred = TFLitePredictor(out, card, threads=2).infer(x_val)
    m_float = per_image_metrics(float_pred, patchset, val_idx, dof_um)
    m_int8 = per_image_metrics(int8_pred, patchset, val_idx, dof_um)
    card.metrics = {"validation_float": m_float, "validation_int8": m_int8, "int8_checks": checks,
                    "file_bytes": out.stat().st_size}
    sample = np.asarray(patchset.patches[val_idx[:8]])
    sample2 = None if patchset.second is None else np.asarray(patchset.second[val_idx[:8]])
    card.latency = measure_latency(out, card, sample, sample2)
    float_latency = measure_latency(float_path, float_card, sample, sample2)
    card.latency.update({f"float_{k}": v for k, v in float_latency.items() if k.startswith("ms_")})
    card.save(out.with_suffix(".json"))
    out.with_suffix(".md").write_text(render_markdown(card))
    float_card.metrics = {"validation_float": m_float}
    float_card.latency = dict(float_latency)
    float_card.save(float_path.with_suffix(".json"))

    fe_float, fe_int8 = m_float["focus_error_um_mean"], m_int8["focus_error_um_mean"]
    allowed = int8_allowance_um(fe_float, dof_um, max_degradation, max_degradation_dof)
    if fe_int8 > fe_float + allowed and not force:
        # Nothing refused stays where the scanner would pick it up; the float model and
        # its card stay for inspection.
        for path in (out, out.with_suffix(".json"), out.with_suffix(".md"), out.with_suffix(".keras")):
            path.unlink(missing_ok=True)
        raise ModelError(
            str(out),
            f"int8 focus error {fe_int8:.3f} um is more than {allowed:.3f} um worse than the float model's "
            f"{fe_float:.3f} um (allowed: {max_degradation:.0%} of it or {max_degradation_dof:g} of the depth of field "
            f"{dof_um:.2f} um, whichever is larger); not shipping it (use --force to keep it anyway). The float model "
            f"beside it, {float_path} ({float_latency['ms_per_patch_1_thread']:.1f} ms per patch against "
            f"{card.latency['ms_per_patch_1_thread']:.1f} int8), runs in eval and scan as it is; or train on with "
            f"int8's rounding noise (deepaf-host train --init {run} --quant-noise ...) and export that run",
        )
    return card
