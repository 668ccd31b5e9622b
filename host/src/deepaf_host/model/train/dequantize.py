"""A Keras model rebuilt from an exported int8 ``.tflite``: any shipped model is a
fine-tuning start, whether or not its float weights were kept beside it.

The int8 graph holds every learnt number, quantised and partly folded:

- a convolution followed by batch normalisation and ReLU is one fused op whose int8
  kernel is ``W * gamma / sigma`` (per output channel) and whose int32 bias is
  ``beta - mean * gamma / sigma``;
- a batch normalisation that cannot be folded (after a concatenation) stays as an int8
  ``mul`` and ``sub`` (``x * mul + sub``);
- a convolution without normalisation, and the final dense layer, are plain int8
  weights (and an int32 bias).

Tensors are found by the Keras layer names the converter keeps in them
(``<model>_1/<layer>_1/...``). The rebuilt network computes the int8 model's function
in float (to its rounding). A folded normalisation is restored as ``gamma``/``beta``
over the statistics of its own input on real patches (:func:`recalibrate`), so that
training, which normalises by the batch's statistics, starts from the same function
instead of a rescaled one.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from ...errors import ConfigError
from .arch import ArchConfig, build


def _tensors(path: Path) -> dict[str, list[tuple[np.ndarray, tuple[str, ...]]]]:
    """Dequantised constant tensors of a .tflite, keyed by each Keras layer they name."""
    from ..runtime import _interpreter_class

    try:
        interpreter = _interpreter_class()(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(str(path), f"is not a readable TFLite model: {exc}") from None
    by_layer: dict[str, list[tuple[np.ndarray, tuple[str, ...]]]] = {}
    for detail in interpreter.get_tensor_details():
        q = detail["quantization_parameters"]
        if q["scales"].size == 0 or detail["dtype"] not in (np.int8, np.int32):
            continue
        try:
            raw = interpreter.get_tensor(detail["index"])
        except ValueError:  # an activation, not a constant
            continue
        scales, zeros = q["scales"].astype(np.float64), q["zero_points"].astype(np.float64)
        if scales.size > 1:
            shape = [1] * raw.ndim
            shape[q["quantized_dimension"]] = scales.size
            scales, zeros = scales.reshape(shape), zeros.reshape(shape)
        value = ((raw.astype(np.float64) - zeros) * scales).astype(np.float32)
        ops = tuple(part.split("/")[-1] for part in detail["name"].split(";"))
        layers = {seg[:-2] for part in detail["name"].split(";") for seg in part.split("/")[1:2] if seg.endswith("_1")}
        for layer in layers:
            by_layer.setdefault(layer, []).append((value, ops))
    return by_layer


def _pick(found: list[tuple[np.ndarray, tuple[str, ...]]], ndim: int, layer: str, path: Path) -> np.ndarray:
    matches = [v for v, _ in found if v.ndim == ndim]
    if len(matches) != 1:
        raise ConfigError(str(path), f"holds {len(matches)} candidate tensors of rank {ndim} for layer {layer!r}; "
                          "it was not exported from this architecture")
    return matches[0]


def _affine_bn(bn: keras.layers.BatchNormalization, scale: np.ndarray, shift: np.ndarray) -> None:
    """Set a normalisation layer to compute ``x * scale + shift`` in inference mode."""
    eps = bn.epsilon
    bn.set_weights([(scale * np.sqrt(1.0 + eps)).astype(np.float32), shift.astype(np.float32),
                    np.zeros_like(shift, dtype=np.float32), np.ones_like(shift, dtype=np.float32)])


def keras_from_tflite(path: str | Path, arch: ArchConfig) -> keras.Model:
    """The float network of ``arch`` carrying the weights of the int8 model at ``path``.

    Batch normalisations hold the folded affine maps (mean 0, variance 1); call
    :func:`recalibrate` with real inputs before training from it.
    """
    path = Path(path)
    if arch.name == "fcfnn":
        raise ConfigError(str(path), "FCFNN models are rebuilt from their .keras only (dense layers are not folded)")
    tensors = _tensors(path)
    model = build(arch)
    by_name = {layer.name: layer for layer in model.layers}
    for layer in model.layers:
        found = tensors.get(layer.name, [])
        if isinstance(layer, keras.layers.Conv2D):
            kernel = _pick(found, 4, layer.name, path)  # (out, kh, kw, in)
            layer.set_weights([kernel.transpose(1, 2, 3, 0)])
            if layer.name.endswith("_conv"):  # conv_bn_relu: the normalisation is folded in
                bn = by_name[layer.name[: -len("_conv")] + "_bn"]
                bias = [v for v, ops in tensors.get(bn.name, []) if v.ndim == 1 and v.size == kernel.shape[0]]
                if len(bias) != 1:
                    raise ConfigError(str(path), f"has no folded bias for {bn.name!r}")
                _affine_bn(bn, np.ones(kernel.shape[0], np.float32), bias[0])
        elif isinstance(layer, keras.layers.BatchNormalization):
            if layer.name.endswith("_bn") and layer.name[: -len("_bn")] + "_conv" in by_name:
                continue  # folded into its convolution, set there
            mul = [v for v, ops in found if ops and ops[0] == "mul"]
            sub = [v for v, ops in found if ops and ops[0] == "sub"]
            if len(mul) != 1 or len(sub) != 1:
                raise ConfigError(str(path), f"has no scale and shift for {layer.name!r}")
            _affine_bn(layer, mul[0], sub[0])
        elif isinstance(layer, keras.layers.Dense):
            dense = _pick(found, 2, layer.name, path)  # (out, in)
            layer.set_weights([dense.T, _pick(found, 1, layer.name, path)])
    return model


def recalibrate(model: keras.Model, inputs: np.ndarray) -> None:
    """Give each normalisation the statistics of its own input on ``inputs``, keeping
    the function: ``gamma (x - m) / sqrt(v + eps) + beta == scale x + shift``.

    Without this a folded normalisation holds mean 0 and variance 1, and the first
    training step (batch statistics) would rescale every channel by its spread.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    probe = keras.Model(model.inputs, [layer.input for layer in norms])
    outputs = probe.predict(inputs, batch_size=32, verbose=0)
    if len(norms) == 1:
        outputs = [outputs]
    for bn, x in zip(norms, outputs, strict=True):
        gamma, beta, _, _ = bn.get_weights()
        eps = bn.epsilon
        scale = gamma / np.sqrt(1.0 + eps)
        axes = tuple(range(np.asarray(x).ndim - 1))
        m = np.asarray(x, np.float64).mean(axis=axes)
        v = np.asarray(x, np.float64).var(axis=axes)
        bn.set_weights([(scale * np.sqrt(v + eps)).astype(np.float32), (beta + scale * m).astype(np.float32),
                        m.astype(np.float32), v.astype(np.float32)])

