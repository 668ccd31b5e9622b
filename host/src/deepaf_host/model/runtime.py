"""Runs an exported ``.tflite`` autofocus model inside the scanner.

Uses ``ai-edge-litert`` (the maintained successor of tflite-runtime); falls back to
``tflite_runtime`` when that is the one installed (it needs numpy<2). No TensorFlow.

``load_predictor`` is what the ``single-shot`` autofocus strategy calls
(``deepaf_host.autofocus.single_shot``): it returns a predictor with ``name``,
``patch_size``, ``range_um`` and ``predict(patches) -> dz_um``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .card import ModelCard
from .preprocess import prepare

#: The shipped default model (models/ in the repository).
DEFAULT_MODEL = "deepaf-spatiospectral-20x.tflite"

#: Environment variable naming a model file to use instead of the default.
MODEL_ENV = "DEEPAF_MODEL"


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        raise ModelError(
            "<runtime>", "no TFLite runtime: install ai-edge-litert (pip install ai-edge-litert)"
        ) from None


def default_model_path() -> Path:
    """Where the default model is: $DEEPAF_MODEL, the package's copy, or the checkout's models/."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    candidates = [here.parent.parent / "models" / DEFAULT_MODEL]  # installed package data
    candidates += [parent / "models" / DEFAULT_MODEL for parent in here.parents]  # a source checkout
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


class TFLitePredictor:
    """An int8 (or float) TFLite autofocus model with its card.

    ``predict(patches)`` takes (K, S, S, 3) uint8 RGB patches and returns (K,) signed
    distances to focus in um. ``infer(inputs)`` takes already prepared network inputs.
    """

    def __init__(self, path: str | Path, card: ModelCard, threads: int = 2) -> None:
        self.path = Path(path)
        self.card = card
        self.name = f"{self.path.name}@{card.sha256[:12]}"
        self.patch_size = card.patch_size
        self.range_um = card.range_um
        interpreter_class = _interpreter_class()
        try:
            self._interpreter = interpreter_class(model_path=str(self.path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(str(self.path), f"not a loadable TFLite model ({exc})") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        shape = tuple(int(v) for v in self._input["shape"])
        self.input_shape = shape[1:]
        if card.input_kind in ("patch", "pair"):
            expected = (card.patch_size, card.patch_size, card.channels * (2 if card.input_kind == "pair" else 1))
            if self.input_shape != expected:
                raise ModelError(str(self.path), f"model input {self.input_shape} does not match its card {expected}")

    @property
    def quantized(self) -> bool:
        return np.dtype(self._input["dtype"]) in (np.dtype(np.int8), np.dtype(np.uint8))

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """Run the network on prepared inputs (K, ...) float32; returns (K,) um."""
        x = np.asarray(inputs, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise ModelError(str(self.path), f"input of shape {x.shape[1:]} given, the model takes {self.input_shape}")
        dtype = np.dtype(self._input["dtype"])
        scale, zero = self._input["quantization"]
        out_scale, out_zero = self._output["quantization"]
        result = np.empty(len(x), dtype=np.float64)
        for i in range(len(x)):  # exported with batch 1: fixed shapes, no dynamic-shape ops
            sample = x[i : i + 1]
            if dtype != np.float32:
                info = np.iinfo(dtype)
                sample = np.clip(np.round(sample / scale + zero), info.min, info.max).astype(dtype)
            self._interpreter.set_tensor(self._input["index"], sample)
            self._interpreter.invoke()
            y = self._interpreter.get_tensor(self._output["index"]).astype(np.float64).reshape(-1)[0]
            result[i] = (y - out_zero) * out_scale if out_scale else y
        return result

    def predict(self, patches: np.ndarray, second: np.ndarray | None = None) -> np.ndarray:
        patches = np.asarray(patches)
        if patches.ndim != 4 or patches.shape[-1] != self.card.channels:
            raise ModelError(str(self.path), f"patches must be (K, H, W, {self.card.channels}), got {patches.shape}")
        if self.card.input_kind != "fourier" and patches.shape[1:3] != (self.patch_size, self.patch_size):
            raise ModelError(
                str(self.path), f"patches are {patches.shape[1]}x{patches.shape[2]}, the model takes {self.patch_size}"
            )
        return self.infer(prepare(self.card.input_kind, patches, second))


def card_path_for(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def load_model(
    path: str | Path | None = None,
    *,
    objective: str | None = None,
    pixel_size_um: float | None = None,
    threads: int = 2,
) -> TFLitePredictor:
    """Load a model and its card, checking both against each other and against the scan."""
    model_path = Path(path) if path is not None else default_model_path()
    if not model_path.is_file():
        hint = "" if path is not None else f" (the default model; set ${MODEL_ENV} or pass --model)"
        raise ModelError(str(model_path), f"model file not found{hint}")
    card = ModelCard.load(card_path_for(model_path))
    card.check_file(model_path)
    card.check_scan(objective, pixel_size_um)
    return TFLitePredictor(model_path, card, threads=threads)


def load_predictor(model: str | None = None, **options: Any) -> TFLitePredictor:
    """Entry point of the ``single-shot`` strategy (see the module docstring)."""
    return load_model(model, **options)
