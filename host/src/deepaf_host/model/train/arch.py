"""The model family (Keras 3): spatial, spectral, spatiospectral (seed 000), FCFNN (seed
001) and two-shot (Dastidar et al., seed 000's Table 1 anchor).

Training-only: imports TensorFlow/Keras. The scanner runs the exported ``.tflite``.

Fourier transforms are written as constant real DFT matrices applied along one axis at a
time (separable, orthonormal scaling). ``tf.signal.rfft2d`` and complex tensors need Flex
ops that no TFLite runtime here executes, and the builtin RFFT2D is float-only and
power-of-two-only; matrix products convert to FULLY_CONNECTED, a builtin int8 op, so the
whole network quantises to int8.

Layout inside the spectral transform: after the DFT along W and H the tensor is
``(B, K, C, H)`` with ``K = W // 2 + 1`` frequency columns; the 1x1 convolution on the
stacked real/imaginary parts is applied per frequency bin, which is what the FFC's
Fourier unit does (Chi et al. 2020).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np
from keras import layers

from ..preprocess import FOURIER_CROP

ARCHITECTURES = ("spatiospectral", "spatial", "spectral", "fcfnn", "two-shot")


@dataclass(frozen=True)
class ArchConfig:
    """Everything needed to rebuild a model (stored with checkpoints and in the card)."""

    name: str = "spatiospectral"
    patch_size: int = 224
    channels: int = 3
    widths: tuple[int, ...] = (32, 64, 128, 128)
    stem_stride: int = 4
    fcfnn_units: tuple[int, ...] = (256, 128, 64)
    fcfnn_dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        data = dict(data)
        for key in ("widths", "fcfnn_units"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


# --- constant DFT matrices -----------------------------------------------------------


def _dft(n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n)
    angle = 2.0 * np.pi * np.outer(k, k) / n
    return np.cos(angle), np.sin(angle)


def rdft_matrices(h: int, w: int) -> dict[str, np.ndarray]:
    """Matrices of the orthonormal real 2-D DFT of an (h, w) map and of its inverse."""
    k_cols = w // 2 + 1
    cos_w, sin_w = _dft(w)
    cos_h, sin_h = _dft(h)
    scale = 1.0 / np.sqrt(h * w)
    # Inverse along W (irfft): bins other than DC and Nyquist stand for two conjugate bins.
    weight = np.where((np.arange(k_cols) == 0) | ((w % 2 == 0) & (np.arange(k_cols) == w // 2)), 1.0, 2.0)
    angle = 2.0 * np.pi * np.outer(np.arange(k_cols), np.arange(w)) / w
    return {
        "fw_cos": cos_w[:, :k_cols] * scale,
        "fw_sin": -sin_w[:, :k_cols] * scale,
        "h_cos": cos_h,
        "h_sin": sin_h,
        "iw_cos": weight[:, None] * np.cos(angle) * scale,
        "iw_sin": -weight[:, None] * np.sin(angle) * scale,
    }


@keras.saving.register_keras_serializable(package="deepaf")
class ConstantMatmul(layers.Layer):
    """``x @ M`` along the last axis with a constant, non-trainable matrix M."""

    def __init__(self, matrix: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.matrix = np.asarray(matrix, dtype="float32")

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(
            name="matrix",
            shape=self.matrix.shape,
            initializer=keras.initializers.Constant(self.matrix),
            trainable=False,
        )

    def call(self, x: Any) -> Any:
        return keras.ops.matmul(x, keras.ops.cast(self.kernel, x.dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "matrix": self.matrix.tolist()}


@keras.saving.register_keras_serializable(package="deepaf")
class Slice(layers.Layer):
    """``x[..., start:stop]`` along one axis (2 or -1); a serialisable stand-in for Lambda."""

    def __init__(self, axis: int, start: int, stop: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis, self.start, self.stop = axis, start, stop

    def call(self, x: Any) -> Any:
        if self.axis == 2:
            return x[:, :, self.start : self.stop]
        return x[..., self.start : self.stop]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="deepaf")
class QuantNoise(layers.Layer):
    """Training only: adds the rounding error the tensor will carry in int8.

    Uniform noise of one quantisation step, the batch's (max - min) / 255, as the
    converter's min/max calibration would choose it ("training with quantisation
    noise", Fan et al. 2020). At inference the identity. It has no weights: a model built
    with it and one without hold the same weights, matched by layer name
    (:func:`copy_weights`; export converts the model without).
    """

    def __init__(self, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any, training: bool = False) -> Any:
        if not training:
            return x
        step = keras.ops.stop_gradient((keras.ops.max(x) - keras.ops.min(x)) / 255.0)
        return x + step * keras.random.uniform(keras.ops.shape(x), -0.5, 0.5, seed=self.generator)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


def _noisy(x: Any, noise: bool, name: str) -> Any:
    """``x``, with :class:`QuantNoise` after it when ``noise``."""
    return QuantNoise(name=f"{name}_qn")(x) if noise else x


def rdft2(x: Any, prefix: str, noise: bool = False) -> tuple[Any, Any]:
    """Real 2-D DFT of a (B, H, W, C) tensor -> (re, im), each (B, K, C, H)."""
    h, w = int(x.shape[1]), int(x.shape[2])
    m = rdft_matrices(h, w)
    t = layers.Permute((1, 3, 2), name=f"{prefix}_to_w")(x)  # B, H, C, W
    a = _noisy(ConstantMatmul(m["fw_cos"], name=f"{prefix}_w_cos")(t), noise, f"{prefix}_w_cos")  # B, H, C, K
    b = _noisy(ConstantMatmul(m["fw_sin"], name=f"{prefix}_w_sin")(t), noise, f"{prefix}_w_sin")
    a = layers.Permute((3, 2, 1), name=f"{prefix}_a_to_h")(a)  # B, K, C, H
    b = layers.Permute((3, 2, 1), name=f"{prefix}_b_to_h")(b)

    def matmul(x: Any, key: str, name: str) -> Any:
        return _noisy(ConstantMatmul(m[key], name=name)(x), noise, name)

    # (a + ib)(cos - i sin) along H
    re = layers.Add(name=f"{prefix}_re")([matmul(a, "h_cos", f"{prefix}_re_cos"), matmul(b, "h_sin", f"{prefix}_re_sin")])
    im = layers.Subtract(name=f"{prefix}_im")([matmul(b, "h_cos", f"{prefix}_im_cos"), matmul(a, "h_sin", f"{prefix}_im_sin")])
    return _noisy(re, noise, f"{prefix}_re"), _noisy(im, noise, f"{prefix}_im")


def irdft2(re: Any, im: Any, h: int, w: int, prefix: str, noise: bool = False) -> Any:
    """Inverse of :func:`rdft2`: (re, im) of shape (B, K, C, H) -> real (B, H, W, C)."""
    m = rdft_matrices(h, w)

    def matmul(x: Any, key: str, name: str) -> Any:
        return _noisy(ConstantMatmul(m[key], name=name)(x), noise, name)

    # (re + i im)(cos + i sin) along H
    a = layers.Subtract(name=f"{prefix}_ia")([matmul(re, "h_cos", f"{prefix}_ia_cos"), matmul(im, "h_sin", f"{prefix}_ia_sin")])
    b = layers.Add(name=f"{prefix}_ib")([matmul(im, "h_cos", f"{prefix}_ib_cos"), matmul(re, "h_sin", f"{prefix}_ib_sin")])
    a = layers.Permute((3, 2, 1), name=f"{prefix}_a_to_w")(_noisy(a, noise, f"{prefix}_ia"))  # B, H, C, K
    b = layers.Permute((3, 2, 1), name=f"{prefix}_b_to_w")(_noisy(b, noise, f"{prefix}_ib"))
    y = layers.Add(name=f"{prefix}_iw")([matmul(a, "iw_cos", f"{prefix}_iw_cos"), matmul(b, "iw_sin", f"{prefix}_iw_sin")])  # B, H, C, W
    return layers.Permute((1, 3, 2), name=f"{prefix}_to_hwc")(_noisy(y, noise, f"{prefix}_iw"))


# --- blocks --------------------------------------------------------------------------


def conv_bn_relu(x: Any, filters: int, kernel: int, name: str, strides: int = 1, noise: bool = False) -> Any:
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return _noisy(layers.ReLU(name=f"{name}_relu")(x), noise, name)


def spatial_block(x: Any, filters: int, name: str) -> Any:
    """Two 3x3 conv + BN + ReLU, then 2x2 max-pool (a U-Net encoder stage)."""
    x = conv_bn_relu(x, filters, 3, f"{name}_a")
    x = conv_bn_relu(x, filters, 3, f"{name}_b")
    return layers.MaxPooling2D(name=f"{name}_pool")(x)


def spectral_transform(x: Any, filters: int, name: str, noise: bool = False) -> Any:
    """FFC global branch: 1x1 conv -> real DFT -> 1x1 conv on stacked re/im -> inverse DFT -> 1x1 conv.

    ``noise``: :class:`QuantNoise` after every tensor that int8 rounds (training only).
    """
    h, w = int(x.shape[1]), int(x.shape[2])
    half = max(filters // 2, 1)
    y = conv_bn_relu(x, half, 1, f"{name}_in", noise=noise)
    re, im = rdft2(y, f"{name}_dft", noise)
    z = layers.Concatenate(axis=2, name=f"{name}_reim")([re, im])  # B, K, 2C, H
    z = layers.Permute((1, 3, 2), name=f"{name}_to_ch")(z)  # B, K, H, 2C
    z = conv_bn_relu(z, 2 * half, 1, f"{name}_freq", noise=noise)
    z = layers.Permute((1, 3, 2), name=f"{name}_from_ch")(z)  # B, K, 2C, H
    re2 = Slice(2, 0, half, name=f"{name}_re2")(z)
    im2 = Slice(2, half, 2 * half, name=f"{name}_im2")(z)
    back = irdft2(re2, im2, h, w, f"{name}_idft", noise)
    back = _noisy(layers.Add(name=f"{name}_skip")([back, y]), noise, f"{name}_skip")
    return _noisy(layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_out")(back), noise, f"{name}_out")


def ffc_block(x: Any, filters: int, name: str, noise: bool = False) -> Any:
    """A Fast Fourier Convolution block: local 3x3 branch beside the global spectral branch."""
    local = _noisy(layers.Conv2D(filters // 2, 3, padding="same", use_bias=False, name=f"{name}_local")(x), noise, f"{name}_local")
    glob = spectral_transform(x, filters - filters // 2, f"{name}_global", noise)
    y = layers.Concatenate(name=f"{name}_cat")([local, glob])
    y = _noisy(layers.BatchNormalization(name=f"{name}_bn")(y), noise, f"{name}_bn")
    y = layers.ReLU(name=f"{name}_relu")(y)
    return layers.MaxPooling2D(name=f"{name}_pool")(y)


def encoder(x: Any, kind: str, widths: tuple[int, ...], name: str, noise: bool = False) -> Any:
    for i, width in enumerate(widths):
        x = spatial_block(x, width, f"{name}{i}") if kind == "spatial" else ffc_block(x, width, f"{name}{i}", noise)
    return x


def regression_head(x: Any, width: int) -> Any:
    """Bottleneck (1x1 conv), global average pooling and a linear layer giving dz in um."""
    x = conv_bn_relu(x, width, 1, "bottleneck")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(1, name="dz_um")(x)


# --- models --------------------------------------------------------------------------


def build(config: ArchConfig, batch_size: int | None = None, quant_noise: bool = False) -> keras.Model:
    """The model named by ``config.name``. ``batch_size`` fixes the batch (1 for export).

    ``quant_noise``: train the spectral encoders with the rounding noise of int8
    (:class:`QuantNoise`, where quantisation costs the most accuracy); the same weights.
    """
    if config.name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.name!r}; choose from {', '.join(ARCHITECTURES)}")
    if config.name == "fcfnn":
        return _fcfnn(config, batch_size)
    channels = config.channels * (2 if config.name == "two-shot" else 1)
    size = config.patch_size
    inputs = keras.Input((size, size, channels), batch_size=batch_size, name="patch")
    x = inputs
    if config.name == "two-shot":
        # Dastidar et al.: the network sees the difference of two frames a fixed dz apart.
        first = Slice(-1, 0, config.channels, name="first")(x)
        second = Slice(-1, config.channels, 2 * config.channels, name="second")(x)
        x = layers.Subtract(name="difference")([second, first])
    if config.stem_stride > 1:
        # A stride-s stem sees every pixel when its kernel is at least s wide: defocus
        # lives in the finest detail, which a 3x3 kernel with stride 4 would skip.
        kernel = max(3, config.stem_stride)
        x = conv_bn_relu(x, config.widths[0] // 2, kernel, "stem", strides=config.stem_stride)
    if config.name == "spatiospectral":
        a = encoder(x, "spatial", config.widths, "spatial")
        b = encoder(x, "spectral", config.widths, "spectral", quant_noise)
    elif config.name in ("spatial", "two-shot"):
        a = encoder(x, "spatial", config.widths, "spatial_a")
        b = encoder(x, "spatial", config.widths, "spatial_b")
    else:
        a = encoder(x, "spectral", config.widths, "spectral_a", quant_noise)
        b = encoder(x, "spectral", config.widths, "spectral_b", quant_noise)
    x = layers.Concatenate(name="features")([a, b])
    return keras.Model(inputs, regression_head(x, config.widths[-1]), name=config.name)


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Every weighted layer of ``target`` takes the weights of ``source``'s layer of the
    same name (the order of the weight lists differs once :class:`QuantNoise` layers
    are in one of them). ``ValueError`` when a layer or a shape does not match."""
    layers_by_name = {layer.name: layer for layer in source.layers}
    theirs = {layer.name for layer in source.layers if layer.weights}
    ours = {layer.name for layer in target.layers if layer.weights}
    if theirs != ours:
        raise ValueError(f"layers differ: {sorted(theirs ^ ours)[:5]}")
    for layer in target.layers:
        if layer.weights:
            weights = layers_by_name[layer.name].get_weights()
            if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
                raise ValueError(f"layer {layer.name!r}: shapes differ")
            layer.set_weights(weights)


def _fcfnn(config: ArchConfig, batch_size: int | None) -> keras.Model:
    """Pinkard et al. (seed 001): dense layers on the centred Fourier magnitude.

    The magnitude (central crop, unit mean) is computed by the shared preprocessing
    (``deepaf_host.model.preprocess.fourier_magnitude``), in numpy, at training and at
    run time; the network is the small fully connected part.
    """
    inputs = keras.Input((FOURIER_CROP, FOURIER_CROP, 1), batch_size=batch_size, name="spectrum")
    x = layers.Flatten(name="flat")(inputs)
    x = layers.Dropout(config.fcfnn_dropout, name="input_dropout")(x)
    for i, units in enumerate(config.fcfnn_units):
        x = layers.Dense(units, activation="relu", name=f"dense{i}")(x)
    return keras.Model(inputs, layers.Dense(1, name="dz_um")(x), name="fcfnn")
