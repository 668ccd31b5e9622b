"""Train the single-image refocus network (seed 002, Deep-R) and export it to TFLite.

Needs the ``train`` extra (TensorFlow / Keras 3); nothing at run time imports this.

The network is a residual U-Net: the output is the input plus what the network adds,
so a frame already in focus needs only a zero residual. Encoder widths 16-32-64-128 with
two 3x3 convolutions per level, max-pooling down, nearest upsampling and a 3x3
convolution up, skip concatenations; ReLU throughout (int8-friendly); about 0.47 M
parameters. Deep-R's generator is a residual U-Net trained as a GAN with MS-SSIM and
BerHu losses; here the GAN is dropped (2 CPU cores, <= 30 min) and single-scale SSIM
replaces MS-SSIM (a 128 x 128 crop is too small for five scales of an 11-pixel window):
``loss = (1 - SSIM) + 5 BerHu`` (BerHu's threshold c = 0.2 max |error| of the batch, as
Deep-R's reference 49-50). Inputs are RGB / 255; training crops of 128 x 128 from the
160 x 160 pairs, with random flips and quarter turns of input and truth together.

    python -m deepaf_host.refocus.train --data A.npz B.npz --val V.npz --out runs/refocus --minutes 25

Two-shot fusion (seed 003, TSVA): ``build_tsva``, trained on two-shot pair sets
(``pairs.build_dataset(separation_um=...)``) by the same command (the data say which).
Two contracting paths with SHARED weights take the sharper shot (Y1, by Brenner's
gradient) and the other (Y2); their deepest features are concatenated, and the expansive
path concatenates the skips of both paths at every level; the output is Y1 plus the
residual. TSVA trains with MSE; here the loss is the single-image network's, so that the
two networks differ only in the second shot (the figures compare them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import SHOT_ORDERS

DEFAULT_WIDTHS = (16, 32, 64, 128)
CROP = 128


def _upsample_layer(name: str, dynamic: bool) -> Any:
    """Nearest 2x upsampling. For export (``dynamic``) as ``tf.image.resize`` to twice the
    tensor's own size (one RESIZE_NEAREST_NEIGHBOR op), so that the TFLite file takes any
    frame size; Keras' UpSampling2D (``ops.repeat``) converts to fixed-shape reshapes.
    Neither has weights: the same trained weights load into both."""
    from keras import layers

    if not dynamic:
        return layers.UpSampling2D(2, interpolation="nearest", name=name)

    class Upsample2x(layers.Layer):
        def call(self, x: Any) -> Any:
            import tensorflow as tf

            return tf.image.resize(x, tf.shape(x)[1:3] * 2, method="nearest")

        def compute_output_shape(self, shape: Any) -> Any:
            return (shape[0], None if shape[1] is None else 2 * shape[1], None if shape[2] is None else 2 * shape[2], shape[3])

    return Upsample2x(name=name)


def build_unet(widths: tuple[int, ...] = DEFAULT_WIDTHS, input_shape: tuple[Any, Any, int] = (None, None, 3),
               dynamic: bool = False) -> Any:
    import keras
    from keras import layers

    inp = keras.Input(shape=input_shape, name="frame")
    x = inp
    skips = []
    for i, w in enumerate(widths[:-1]):
        x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"enc{i}a")(x)
        x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"enc{i}b")(x)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Conv2D(widths[-1], 3, padding="same", activation="relu", name="mid_a")(x)
    x = layers.Conv2D(widths[-1], 3, padding="same", activation="relu", name="mid_b")(x)
    for i in reversed(range(len(widths) - 1)):
        w = widths[i]
        x = _upsample_layer(f"up{i}", dynamic)(x)
        x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"up{i}_conv")(x)
        x = layers.Concatenate(name=f"cat{i}")([x, skips[i]])
        x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"dec{i}a")(x)
        x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"dec{i}b")(x)
    res = layers.Conv2D(3, 1, padding="same", name="residual", kernel_initializer="zeros")(x)
    out = layers.Add(name="refocused")([inp, res])
    return keras.Model(inp, out, name="refocus_unet")


def build_tsva(widths: tuple[int, ...] = DEFAULT_WIDTHS, input_shape: tuple[Any, Any, int] = (None, None, 3),
               dynamic: bool = False) -> Any:
    """TSVA's network (seed 003, Fig. 4): two contracting paths sharing their weights, the
    deepest features of both concatenated, an expansive path that concatenates both paths'
    skips at every level, output = the first shot (Y1, in the card's order) + residual.
    The inputs keep TSVA's names, ``sharper`` for Y1 and ``other``, whatever the order.
    Widths and layers as ``build_unet`` (the same receptive field and tiling)."""
    import keras
    from keras import layers

    sharper = keras.Input(shape=input_shape, name="sharper")
    other = keras.Input(shape=input_shape, name="other")
    levels = [(layers.Conv2D(w, 3, padding="same", activation="relu", name=f"enc{i}a"),
               layers.Conv2D(w, 3, padding="same", activation="relu", name=f"enc{i}b")) for i, w in enumerate(widths)]

    def contract(x: Any, tag: str) -> tuple[Any, list[Any]]:
        skips = []
        for i, (a, b) in enumerate(levels):
            x = b(a(x))
            if i < len(levels) - 1:
                skips.append(x)
                x = layers.MaxPooling2D(2, name=f"pool{i}_{tag}")(x)
        return x, skips

    x1, skips1 = contract(sharper, "y1")
    x2, skips2 = contract(other, "y2")
    x = layers.Concatenate(name="fuse")([x1, x2])
    x = layers.Conv2D(widths[-1], 3, padding="same", activation="relu", name="mid")(x)
    for i in reversed(range(len(widths) - 1)):
        w = widths[i]
        x = _upsample_layer(f"up{i}", dynamic)(x)
        x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"up{i}_conv")(x)
        x = layers.Concatenate(name=f"cat{i}")([x, skips1[i], skips2[i]])
        x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"dec{i}a")(x)
        x = layers.Conv2D(w, 3, padding="same", activation="relu", name=f"dec{i}b")(x)
    res = layers.Conv2D(3, 1, padding="same", name="residual", kernel_initializer="zeros")(x)
    out = layers.Add(name="refocused")([sharper, res])
    return keras.Model([sharper, other], out, name="tsva")


def build_network(shots: int, widths: tuple[int, ...] = DEFAULT_WIDTHS, dynamic: bool = False) -> Any:
    """The single-image U-Net (``shots`` 1) or TSVA (``shots`` 2)."""
    return build_tsva(widths, dynamic=dynamic) if shots == 2 else build_unet(widths, dynamic=dynamic)


def berhu(y: Any, p: Any) -> Any:
    """Per-sample BerHu (reverse Huber): L1 below c, quadratic above; c = 0.2 of the
    batch's largest absolute error. (B, H, W, C) -> (B,)."""
    import tensorflow as tf

    d = tf.abs(y - p)
    c = tf.maximum(0.2 * tf.reduce_max(d), 1e-6)
    return tf.reduce_mean(tf.where(d <= c, d, (d * d + c * c) / (2.0 * c)), axis=[1, 2, 3])


def refocus_loss(y: Any, p: Any, weight: Any = None) -> Any:
    """``(1 - SSIM) + 5 BerHu``, the mean over the batch, or its ``weight``-ed mean."""
    import tensorflow as tf

    per = (1.0 - tf.image.ssim(y, tf.clip_by_value(p, 0.0, 1.0), max_val=1.0)) + 5.0 * berhu(y, p)
    if weight is None:
        return tf.reduce_mean(per)
    return tf.reduce_sum(weight * per) / tf.reduce_sum(weight)


class PairData:
    """Pairs from ``pairs.build_dataset`` files: (input plane, its field's truth). Two-shot
    files: the input is the plane's two shots in the card's ``order`` (``brenner``: the
    sharper first, by ``metrics.order_shots`` on the whole plane, as the runtime orders a
    whole frame; ``tile``: as rendered, the tile first)."""

    def __init__(self, paths: list[str], order: str = "brenner") -> None:
        from .metrics import order_shots

        ins, truths, dzs, seconds = [], [], [], []
        for p in paths:
            with np.load(p) as z:
                ins.append(z["inputs"])
                truths.append(z["truth"])
                dzs.append(z["dz_um"])
                if "second_dz_um" in z:
                    seconds.append(z["second_dz_um"] - z["dz_um"])
        self.inputs = np.concatenate(ins)  # (F, P, H, W, 3), two-shot (F, P, 2, H, W, 3)
        self.truth = np.concatenate(truths)  # (F, H, W, 3)
        self.dz = np.concatenate(dzs)  # (F, P)
        self.n_fields, self.n_planes = self.dz.shape
        self.shots = 2 if self.inputs.ndim == 6 else 1
        #: Two shots: ``above`` when every second shot is above its tile (as the scan
        #: takes it), else ``either``.
        self.second_side = "above" if seconds and all((d > 0).all() for d in seconds) else "either"
        if self.shots == 2:
            for f in range(self.n_fields):
                for k in range(self.n_planes):
                    a, b, swapped = order_shots(self.inputs[f, k, 0], self.inputs[f, k, 1], order)
                    if swapped:
                        self.inputs[f, k] = np.stack([a, b])

    def batch(self, rng: np.random.Generator, size: int, crop: int = CROP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Random crops, quarter turns and flips: x (size, crop, crop, 3) or, two-shot,
        (size, 2, crop, crop, 3); y (size, crop, crop, 3); RGB / 255; and which samples
        are in focus (dz = 0), (size,) bool."""
        f = rng.integers(self.n_fields, size=size)
        p = rng.integers(self.n_planes, size=size)
        h, w = self.truth.shape[1:3]
        x = np.empty((size, *self.inputs.shape[2:-3], crop, crop, 3), np.float32)
        y = np.empty((size, crop, crop, 3), np.float32)
        for k in range(size):
            i, j = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
            a = self.inputs[f[k], p[k], ..., i : i + crop, j : j + crop, :]
            b = self.truth[f[k], i : i + crop, j : j + crop]
            t = int(rng.integers(4))
            a, b = np.rot90(a, t, axes=(-3, -2)), np.rot90(b, t)
            if rng.random() < 0.5:
                a, b = a[..., ::-1, :], b[:, ::-1]
            x[k], y[k] = a, b
        return x / np.float32(255.0), y / np.float32(255.0), self.dz[f, p] == 0.0


def network_inputs(x: Any, shots: int) -> Any:
    """A batch as the network takes it: the frames, or [sharper shots, other shots]."""
    return [x[:, 0], x[:, 1]] if shots == 2 else x


def evaluate(model: Any, data: PairData) -> dict[str, float]:
    """Mean SSIM (``metrics.ssim``) of input and output against truth on the whole planes
    (two-shot: the input is the first shot, the one the output adds its residual to), and
    the worst change on the planes in focus (dz = 0: what the network does to a good tile)."""
    from .metrics import ssim

    s_in, s_out, focus = [], [], []
    for f in range(data.n_fields):
        x = data.inputs[f].astype(np.float32) / 255.0
        y = np.asarray(model(network_inputs(x, data.shots), training=False))
        out = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
        first = data.inputs[f, :, 0] if data.shots == 2 else data.inputs[f]
        for p in range(data.n_planes):
            s_in.append(ssim(first[p], data.truth[f]))
            s_out.append(ssim(out[p], data.truth[f]))
            if data.dz[f, p] == 0.0:
                focus.append(s_out[-1] - s_in[-1])
    return {"ssim_in": float(np.mean(s_in)), "ssim_out": float(np.mean(s_out)),
            "in_focus_worst": float(min(focus)) if focus else 0.0}


#: Model selection keeps only checkpoints that change no validation plane in focus by more
#: than this (SSIM), the refocus bar's limit on damaging good tiles (issue 17).
IN_FOCUS_LIMIT = -0.02


def train(data_paths: list[str], val_paths: list[str], out: str, minutes: float, batch: int = 8, lr: float = 1e-3,
          seed: int = 0, widths: tuple[int, ...] = DEFAULT_WIDTHS, resume: bool = False, order: str = "brenner",
          init: str | None = None, focus_weight: float = 1.0) -> Path:
    """Train for ``minutes`` (cosine schedule from ``lr``), checkpointing every 200 steps.
    ``focus_weight``: the loss of a sample in focus (dz = 0) counts that many times, so
    that the network learns to leave good tiles alone where two readings of a pair are
    possible (issue 17's "never damage a good tile")."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(seed)
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    data = PairData(data_paths, order)
    vals = [PairData([v], order) for v in val_paths]
    if any(v.shots != data.shots for v in vals):
        raise ValueError(f"training pairs have {data.shots} shot(s), validation pairs {[v.shots for v in vals]}")
    if any(v.second_side != data.second_side for v in vals):
        raise ValueError(f"training pairs take the second shot on {data.second_side!r} side(s), validation pairs "
                         f"{[v.second_side for v in vals]}")
    model = build_network(data.shots, widths)
    if resume and (run / "last.weights.h5").exists():
        model.load_weights(run / "last.weights.h5")
    elif init is not None:
        model.load_weights(init)
    opt = keras.optimizers.Adam(lr)

    @tf.function
    def step(x: Any, y: Any, w: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = refocus_loss(y, model(network_inputs(x, data.shots), training=True), w)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    rng = np.random.default_rng(seed)
    start = time.monotonic()
    deadline = start + 60.0 * minutes
    log = open(run / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed below
    best = -float("inf")
    n = 0
    losses: list[float] = []
    try:
        while time.monotonic() < deadline:
            frac = (time.monotonic() - start) / (deadline - start)
            opt.learning_rate.assign(lr * 0.5 * (1.0 + np.cos(np.pi * min(frac, 1.0))) + 1e-5)
            x, y, focus = data.batch(rng, batch)
            w = np.where(focus, np.float32(focus_weight), np.float32(1.0)).astype(np.float32)
            losses.append(float(step(tf.constant(x), tf.constant(y), tf.constant(w))))
            n += 1
            if n % 200 == 0:
                model.save_weights(run / "last.weights.h5")
                evs = [evaluate(model, v) for v in vals]
                ev = {"ssim_in": float(np.mean([e["ssim_in"] for e in evs])),
                      "ssim_out": float(np.mean([e["ssim_out"] for e in evs])),
                      "in_focus_worst": min(e["in_focus_worst"] for e in evs)}
                rec = {"step": n, "minutes": round((time.monotonic() - start) / 60.0, 2),
                       "loss": round(float(np.mean(losses[-200:])), 5), **{k: round(v, 4) for k, v in ev.items()}}
                print(json.dumps(rec), flush=True)
                log.write(json.dumps(rec) + "\n")
                log.flush()
                # The best mean SSIM among checkpoints that keep good tiles good; one that
                # does not is kept only while no checkpoint does.
                score = ev["ssim_out"] + (0.0 if ev["in_focus_worst"] >= IN_FOCUS_LIMIT else -1.0)
                if score > best:
                    best = score
                    model.save_weights(run / "best.weights.h5")
    finally:
        log.close()
    model.save_weights(run / "last.weights.h5")
    if best == -float("inf"):
        model.save_weights(run / "best.weights.h5")
    (run / "config.json").write_text(json.dumps({"widths": list(widths), "shots": data.shots, "batch": batch, "lr": lr, "seed": seed,
                                                 **({"order": order, "second_side": data.second_side} if data.shots == 2 else {}),
                                                 "steps": n, "minutes": minutes, "data": data_paths, "val": val_paths,
                                                 "selection": f"best mean validation SSIM with no in-focus plane below {IN_FOCUS_LIMIT}",
                                                 "crop": CROP, "loss": "(1 - SSIM) + 5 BerHu",
                                                 **({"focus_weight": focus_weight} if focus_weight != 1.0 else {}),
                                                 "n_train_pairs": int(data.n_fields * data.n_planes)}, indent=2))
    return run


def calibration_frames(n: int, tile: int, seed: int = 104, separation_um: float | None = None,
                       order: str = "brenner", second_side: str = "either") -> np.ndarray:
    """``n`` defocused frames of ``tile`` pixels (procedural and corpus ``train`` slides of
    their own seeds) to calibrate the int8 ranges; (n, tile, tile, 3) float32 in [0, 1].
    Two-shot (``separation_um``): (n, 2, tile, tile, 3), in the shot ``order``."""
    from .metrics import order_shots
    from .pairs import iter_pair_sets

    frames: list[np.ndarray] = []
    for specimen in ("procedural", "corpus:train"):
        for ps in iter_pair_sets(seed=seed, slides=n // 4, fields_per_slide=1, planes_per_field=2, specimen=specimen,
                                 shape=(tile, tile), p_focus=0.2, separation_um=separation_um,
                                 second_side=second_side):
            if separation_um is None:
                frames.extend(ps.inputs)
            else:
                frames.extend(np.stack(order_shots(a, b, order)[:2]) for a, b in ps.inputs)
    return np.stack(frames[:n]).astype(np.float32) / np.float32(255.0)


def convert(model: Any, calibration: np.ndarray | None) -> bytes:
    """Keras model -> TFLite bytes: full int8 (builtin ops, int8 input and output) when
    ``calibration`` is given, float32 otherwise. A two-input model (TSVA) is calibrated on
    (n, 2, H, W, 3) frames."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        two = len(model.inputs) == 2

        def representative() -> Any:
            for frame in calibration:
                yield [frame[0][None], frame[1][None]] if two else [frame[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def export(run: str, out_dir: str, name: str, tile: int = 320, margin: int = 32, quantize: bool = True,
           weights: str = "best.weights.h5", calibration_size: int = 48, guard_ratio: float | None = None) -> Path:
    """A trained run -> ``out_dir/<name>.tflite`` and its refocus card ``<name>.json``."""
    from ..model.card import sha256_of
    from ..optics.presets import CAMERA_MODES, get_objective, specimen_pixel_um
    from .card import RefocusCard
    from .card import TWO_SHOT_SEPARATION_UM
    from .pairs import TRAIN_RANGE_UM

    run_dir = Path(run)
    config = json.loads((run_dir / "config.json").read_text())
    widths = tuple(config["widths"])
    shots = int(config.get("shots", 1))
    separation = TWO_SHOT_SEPARATION_UM if shots == 2 else None
    # Dynamic height and width: the file runs on a tile (the card's) or on a whole padded
    # frame (``RefocusModel.full_frame``, the reference the tiling is checked against).
    model = build_network(shots, widths, dynamic=True)
    model.load_weights(run_dir / weights)
    order = str(config.get("order", "brenner"))
    side = str(config.get("second_side", "either"))
    calib = calibration_frames(calibration_size, tile, separation_um=separation, order=order,
                               second_side=side) if quantize else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.tflite"
    path.write_bytes(convert(model, calib))
    obj = get_objective("20x")
    card = RefocusCard(
        name=name, file=path.name, sha256=sha256_of(path), tile=tile, margin=margin, objective=obj.name,
        pixel_size_um=round(specimen_pixel_um(obj, CAMERA_MODES["low"]), 6), range_um=TRAIN_RANGE_UM,
        input_dtype="int8" if quantize else "float32", stride=2 ** (len(widths) - 1),
        architecture="tsva" if shots == 2 else "residual-unet", shots=shots, separation_um=separation, order=order,
        second_side=side,
        arch_config={"widths": list(widths), "convs_per_level": 2, "down": "maxpool", "up": "nearest + conv3x3",
                     "output": "first shot (Y1, in the card's order) + residual" if shots == 2 else "input + residual",
                     **({"paths": "two contracting paths, shared weights"} if shots == 2 else {})},
        params=int(model.count_params()),
        guard={"kind": "detail_ratio", "min_detail_ratio": guard_ratio} if guard_ratio is not None else {},
        training={k: config[k] for k in ("steps", "batch", "lr", "loss", "crop", "n_train_pairs", "data", "val") if k in config},
    )
    card.save(path.with_suffix(".json"))
    return path


def main() -> None:  # pragma: no cover - long training run
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--val", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--resume", action="store_true", help="start from the run's last weights (a new cosine schedule)")
    ap.add_argument("--init", default=None, help="start from these weights (.weights.h5), e.g. another run's best")
    ap.add_argument("--order", choices=SHOT_ORDERS, default="brenner", help="two-shot input order (metrics.SHOT_ORDERS)")
    ap.add_argument("--focus-weight", type=float, default=1.0, help="weight of the loss of samples in focus (dz = 0)")
    a = ap.parse_args()
    train(a.data, a.val, a.out, a.minutes, batch=a.batch, lr=a.lr, resume=a.resume, order=a.order, init=a.init,
          focus_weight=a.focus_weight)


def export_main() -> None:  # pragma: no cover - export of a trained run
    ap = argparse.ArgumentParser(description="export a refocus run to TFLite with its card")
    ap.add_argument("run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--tile", type=int, default=320)
    ap.add_argument("--margin", type=int, default=32)
    ap.add_argument("--float", action="store_true", help="float32 instead of int8")
    ap.add_argument("--guard-ratio", type=float, default=None, help="pass frames through below this detail ratio")
    a = ap.parse_args()
    print(export(a.run, a.out, a.name, tile=a.tile, margin=a.margin, quantize=not a.float, guard_ratio=a.guard_ratio))


if __name__ == "__main__":  # pragma: no cover
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "export":
        sys.argv.pop(1)
        export_main()
    else:
        main()
