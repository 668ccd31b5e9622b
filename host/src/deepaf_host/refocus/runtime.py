"""The refocus network at run time: ai-edge-litert only (no TensorFlow), tiled over a
full frame with overlap, and a guard for frames already in focus.

Tiling: the frame is padded by reflection (``margin`` pixels on every side, more at the
bottom and right up to a whole number of tiles), the network runs on tiles of ``tile``
pixels whose origins step by ``tile - 2 margin`` (a multiple of the network's stride, so
every tile sees the same pooling grid as one pass over the padded frame would), and only
each tile's centre is kept. Where the network's receptive field fits in the margin, the
joined result is exactly one pass of the network over the padded frame
(:meth:`RefocusModel.full_frame`): no seams.

Guard: the network restores fine detail that defocus took away; on a frame already in
focus it has none to restore, and whatever it changes can only cost. ``detail_ratio`` is
the ratio of the output's to the input's fine-detail power (Laplacian of the lightly
smoothed luminance, so camera noise counts little); when it is below the card's
``min_detail_ratio`` the input is returned unchanged (``passed_through``).

Two-shot models (seed 003, TSVA; card ``shots`` 2) take the tile and a second shot of
the same field ``separation_um`` away, in the card's ``order``: by default (TSVA's rule)
the sharper of the two by Brenner's gradient over the WHOLE frame (so every tile of it
agrees) goes to the ``sharper`` input, the other to ``other``; with ``order`` "tile" the
tile goes first. Both are padded and tiled alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .card import DEFAULT_REFOCUS_MODEL, DEFAULT_TWO_SHOT_MODEL, RefocusCard


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        raise ModelError("<runtime>", "no TFLite runtime: install ai-edge-litert (pip install ai-edge-litert)") from None


def default_refocus_model_path(name: str = DEFAULT_REFOCUS_MODEL) -> Path:
    """A shipped refocus model (the single-image one unless ``name``): the package's copy
    or the checkout's models/."""
    here = Path(__file__).resolve()
    candidates = [here.parent.parent / "models" / name]
    candidates += [parent / "models" / name for parent in here.parents]
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def detail_power(rgb: np.ndarray) -> float:
    """Fine-detail power of a frame: mean squared Laplacian of its luminance after a
    Gaussian of sigma 1 px (which keeps the optics' detail and damps pixel noise)."""
    import cv2

    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    g = np.asarray(cv2.GaussianBlur(g, (0, 0), 1.0), dtype=np.float32)
    lap = np.asarray(cv2.Laplacian(g, cv2.CV_32F), dtype=np.float32)[4:-4, 4:-4]
    return float(np.mean(lap * lap))


@dataclass
class RefocusResult:
    image: np.ndarray
    #: The network's output before the guard (equal to ``image`` unless passed through).
    network: np.ndarray
    detail_ratio: float
    passed_through: bool
    #: Two-shot: the second shot was the sharper one (the output is built on it).
    swapped: bool = False


class RefocusModel:
    """A refocus ``.tflite`` with its card: ``refocus(frame) -> RefocusResult``."""

    def __init__(self, path: str | Path, card: RefocusCard, threads: int = 2) -> None:
        self.path = Path(path)
        self.card = card
        self.threads = threads
        self.name = f"{self.path.name}@{card.sha256[:12]}"
        self._interpreter = self._load((card.tile, card.tile))
        details = self._interpreter.get_input_details()
        if len(details) != card.shots:
            raise ModelError(str(self.path), f"model takes {len(details)} input(s), its card says {card.shots} shot(s)")
        self._order = self._input_order(details)
        for inp in details:
            shape = tuple(int(v) for v in inp["shape"])
            if shape[1:] != (card.tile, card.tile, card.channels):
                raise ModelError(str(self.path), f"model input {shape[1:]} does not match its card's tile "
                                 f"{(card.tile, card.tile, card.channels)}")

    def _input_order(self, details: list[dict[str, Any]]) -> list[int]:
        """Positions in ``get_input_details()`` of the frame (one shot) or of the sharper
        and the other shot (two: matched by the names the network gives its inputs)."""
        if len(details) == 1:
            return [0]
        names = [str(d["name"]) for d in details]
        try:
            return [next(k for k, n in enumerate(names) if key in n) for key in ("sharper", "other")]
        except StopIteration:
            raise ModelError(str(self.path), f"two-shot model inputs {names} are not named sharper and other") from None

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int = 2, two_shot: bool = False) -> RefocusModel:
        """``path``, or the shipped single-image model (the two-shot one with ``two_shot``)."""
        default = DEFAULT_TWO_SHOT_MODEL if two_shot else DEFAULT_REFOCUS_MODEL
        model_path = Path(path) if path is not None else default_refocus_model_path(default)
        if not model_path.is_file():
            raise ModelError(str(model_path), "refocus model file not found")
        card = RefocusCard.load(model_path.with_suffix(".json"))
        card.check_file(model_path)
        return cls(model_path, card, threads=threads)

    def _load(self, shape: tuple[int, int]) -> Any:
        try:
            interp = _interpreter_class()(model_path=str(self.path), num_threads=self.threads)
            for inp in interp.get_input_details():
                interp.resize_tensor_input(inp["index"], [1, shape[0], shape[1], self.card.channels])
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(str(self.path), f"not a loadable TFLite model ({exc})") from None
        return interp

    @property
    def quantized(self) -> bool:
        return np.dtype(self._interpreter.get_input_details()[0]["dtype"]) != np.dtype(np.float32)

    @property
    def shots(self) -> int:
        return self.card.shots

    def _invoke(self, interp: Any, xs: list[np.ndarray]) -> np.ndarray:
        """One pass on the (H, W, 3) float32 frames in [0, 1] (one per shot) -> (H, W, 3) float32."""
        details = interp.get_input_details()
        out = interp.get_output_details()[0]
        for pos, x in zip(self._order, xs, strict=True):
            inp = details[pos]
            dtype = np.dtype(inp["dtype"])
            sample = x[None]
            if dtype != np.float32:
                scale, zero = inp["quantization"]
                info = np.iinfo(dtype)
                sample = np.clip(np.round(sample / scale + zero), info.min, info.max).astype(dtype)
            interp.set_tensor(inp["index"], np.ascontiguousarray(sample))
        interp.invoke()
        y = interp.get_tensor(out["index"])[0].astype(np.float32)
        oscale, ozero = out["quantization"]
        if np.dtype(out["dtype"]) != np.float32 and oscale:
            y = (y - np.float32(ozero)) * np.float32(oscale)
        return y

    def _pad(self, frame: np.ndarray) -> tuple[np.ndarray, int, int]:
        h, w = frame.shape[:2]
        m, step = self.card.margin, self.card.tile - 2 * self.card.margin
        ny, nx = -(-h // step), -(-w // step)
        padded = np.pad(frame, ((m, ny * step + m - h), (m, nx * step + m - w), (0, 0)), mode="reflect")
        return padded, ny, nx

    def _check(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != self.card.channels or frame.dtype != np.uint8:
            raise ModelError(str(self.path), f"frames must be (H, W, {self.card.channels}) uint8, got {frame.shape} {frame.dtype}")
        if min(frame.shape[:2]) < 2:
            raise ModelError(str(self.path), f"frame of {frame.shape[:2]} pixels is too small")
        return frame

    def _shots(self, frame: np.ndarray, second: np.ndarray | None) -> tuple[list[np.ndarray], bool]:
        """The frames the network takes, checked: [frame], or [first, other] in the card's
        shot order and whether the second shot went first."""
        frame = self._check(frame)
        if self.card.shots == 1:
            if second is not None:
                raise ModelError(str(self.path), "a single-image model takes no second shot")
            return [frame], False
        if second is None:
            raise ModelError(str(self.path), f"a two-shot model needs the second shot ({self.card.separation_um} um away)")
        second = self._check(second)
        if second.shape != frame.shape:
            raise ModelError(str(self.path), f"the two shots differ in size: {frame.shape} and {second.shape}")
        from .metrics import order_shots

        first, other, swapped = order_shots(frame, second, self.card.order)
        return [first, other], swapped

    def network_tiled(self, frame: np.ndarray, second: np.ndarray | None = None) -> np.ndarray:
        """The network over a whole (H, W, 3) uint8 frame (and its second shot), tile by tile -> uint8."""
        return self._tiled(self._shots(frame, second)[0])

    def _tiled(self, shots: list[np.ndarray]) -> np.ndarray:
        """``network_tiled`` on frames already checked and ordered (``_shots``)."""
        h, w = shots[0].shape[:2]
        padded = [self._pad(s.astype(np.float32) / np.float32(255.0)) for s in shots]
        ny, nx = padded[0][1], padded[0][2]
        t, m = self.card.tile, self.card.margin
        step = t - 2 * m
        out = np.empty((ny * step, nx * step, 3), np.float32)
        for i in range(ny):
            for j in range(nx):
                tiles = [p[i * step : i * step + t, j * step : j * step + t] for p, _, _ in padded]
                y = self._invoke(self._interpreter, tiles)
                out[i * step : (i + 1) * step, j * step : (j + 1) * step] = y[m : m + step, m : m + step]
        return _to_uint8(out[:h, :w])

    def full_frame(self, frame: np.ndarray, second: np.ndarray | None = None) -> np.ndarray:
        """The network in ONE pass over the padded frame (the reference tiling must match)."""
        shots, _ = self._shots(frame, second)
        h, w = frame.shape[:2]
        padded = [self._pad(s.astype(np.float32) / np.float32(255.0))[0] for s in shots]
        interp = self._load(padded[0].shape[:2])
        m = self.card.margin
        return _to_uint8(self._invoke(interp, padded)[m : m + h, m : m + w])

    def refocus(self, frame: np.ndarray, guard: bool = True, second: np.ndarray | None = None) -> RefocusResult:
        """Refocus one frame at the card's pixel size (two-shot models: with its ``second``
        shot); ``guard=False`` never passes through. Passed through, the result is the
        frame, or the first shot in the card's order."""
        shots, swapped = self._shots(frame, second)
        net = self._tiled(shots)
        base = shots[0]
        ratio = detail_power(net) / max(detail_power(base), 1e-12)
        threshold = self.card.guard.get("min_detail_ratio") if self.card.guard.get("kind") == "detail_ratio" else None
        passed = bool(guard and threshold is not None and ratio < float(threshold))
        return RefocusResult(base.copy() if passed else net, net, float(ratio), passed, swapped)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * np.float32(255.0)), 0, 255).astype(np.uint8)
