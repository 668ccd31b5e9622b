"""``deepaf-host train``: train one architecture on focal stacks, resumably.

A run folder holds everything: ``config.json`` (what was asked), ``patches/`` (the
extracted patch cache), ``last.keras`` (model + optimizer after the last finished
epoch), ``best.keras`` (lowest validation focus error), ``state.json`` (epoch, best,
early-stopping counter, history) and ``log.csv``. Running the same command again
continues after the last finished epoch; nothing done is lost on a crash or Ctrl-C
beyond the epoch in progress.

Seed 000's recipe: smooth L1 loss, Adam with learning rate 8e-4 and weight decay 0.006
(decoupled, AdamW), batch 32, early stopping on validation. The learning rate follows a
cosine schedule over the planned epochs.

``--epochs`` (and ``--patience``) may grow on a later run of the same command: the run
continues from its last epoch, and the learning rate from where the longer schedule
is at that epoch (a warm restart). Any other change needs a new run folder.

``init`` starts a new run from another run's best weights (fine-tuning: a trained
model adapted to a lab's own stacks, usually with a lower learning rate and a few
epochs). The architecture and the illumination must be the same; the objective and
pixel size may differ (recorded as ``init_optics``): the run's model is bound to its
stacks' optics, and its output starts scaled by the ratio of the depths of field
(``_rescale_output``). An exported int8 model without its float weights is rebuilt
from the int8 graph (``dequantize``).

``pack`` chooses the patch layout of the cache (:func:`deepaf_host.tissue.select_patches`):
packed (up to 4 patches per 512 x 512 plane) for new runs, since the cache is streamed
to disk (``data.write_patch_cache``) and its size no longer limits it. Runs made before
the setting existed used the greedy layout (about 1.2 patches per plane): their
``config.json`` has no ``pack`` and reads as ``pack=False``, a run continued keeps the
layout it started with, and a run started with ``init`` from a run folder takes that
run's layout unless told otherwise, so the same commands give the same patches.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from ...errors import ConfigError, DatasetError  # noqa: E402
from ..metrics import focus_metrics, median_per_image  # noqa: E402
from ..preprocess import input_kind, prepare  # noqa: E402
from .arch import ArchConfig, build, copy_weights  # noqa: E402
from .data import PatchSet, batches, iter_stacks, split_by_stack, write_patch_cache  # noqa: E402


@dataclass
class TrainConfig:
    arch: ArchConfig = field(default_factory=ArchConfig)
    epochs: int = 60
    steps_per_epoch: int | None = None  # None: one pass over the training patches
    batch_size: int = 32
    learning_rate: float = 8e-4
    weight_decay: float = 0.006
    huber_delta_um: float = 1.0
    patience: int = 10
    val_fraction: float = 0.2
    patches_per_plane: int = 4
    min_tissue: float = 0.5
    range_um: tuple[float, float] = (-10.0, 10.0)
    pair_offset_um: float = 2.0  # two-shot: the second frame is this much higher
    seed: int = 0
    #: Packed patch layout. None: decided by :func:`resolve_pack` (True for a new run).
    pack: bool | None = None
    #: Train with the rounding noise of int8 in the spectral encoders (``arch.QuantNoise``).
    quant_noise: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch"] = self.arch.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(", ".join(sorted(unknown)), "unknown training configuration key(s)")
        data["arch"] = ArchConfig.from_dict(data.get("arch", {}))
        if "range_um" in data:
            data["range_um"] = tuple(data["range_um"])
        data.setdefault("pack", LEGACY_PACK)  # a config saved before the key: the greedy layout
        return cls(**data)


#: The patch layout of runs whose config.json predates the ``pack`` key (greedy only).
LEGACY_PACK = False


def resolve_pack(config: TrainConfig, run: Path, init: Path | None = None) -> TrainConfig:
    """``config`` with ``pack`` decided: the run folder's own, when it has a config.json
    (False when that predates the key); else the ``init`` run's, when it starts from a
    run folder; else True. An explicit ``pack`` that differs from the run folder's is
    refused."""

    def saved_pack(config_path: Path) -> bool:
        return bool(json.loads(config_path.read_text()).get("train", {}).get("pack", LEGACY_PACK))

    if (run / "config.json").exists():
        saved = saved_pack(run / "config.json")
        if config.pack is not None and config.pack != saved:
            raise ConfigError(str(run / "config.json"), f"this run folder was started with pack={saved}; use a new --out")
        return replace(config, pack=saved)
    if config.pack is not None:
        return config
    if init is not None and (init.parent / "config.json").exists():
        return replace(config, pack=saved_pack(init.parent / "config.json"))
    return replace(config, pack=True)


@dataclass
class EpochReport:
    epoch: int
    train_loss: float
    val_loss: float
    val_focus_error_um: float
    val_within_dof: float
    learning_rate: float
    seconds: float


ProgressCallback = Callable[[str, int, int], None]  # (phase, done, total)


def _dataset_optics(data_dirs: Sequence[str]) -> dict[str, Any]:
    from ...stacks import open_stacks

    records = [r for d in data_dirs for r in open_stacks(d)]
    if not records:
        raise DatasetError(", ".join(data_dirs), "no stacks")
    objectives = {r.objective for r in records}
    pixels = {round(float(r.pixel_size_um or 0.0), 5) for r in records}
    lights = {r.illumination for r in records}
    if len(objectives) != 1 or len(pixels) != 1 or len(lights) != 1:
        raise DatasetError("<stacks>", f"stacks mix objectives {objectives}, pixel sizes {pixels} or illuminations "
                                       f"{lights}; train one model per setup")
    return {"objective": objectives.pop(), "pixel_size_um": pixels.pop(), "illumination": lights.pop(),
            "n_stacks": len(records)}


def dof_for(objective: str) -> float:
    from ...optics.presets import get_objective

    return float(get_objective(objective.split("/")[0]).depth_of_field_um())


def default_range_um(data_dirs: Sequence[str]) -> float:
    """``--range-um`` when not given: +-10 um at 20x/0.75 (about +-10 depths of field),
    scaled by the depth of field of the first stacks' objective (90 um at 10x/0.25);
    10 um when that is not one of the presets."""
    from ...stacks import open_stacks

    try:
        dof = dof_for(open_stacks(data_dirs[0], check=False).records[0].objective)
    except (ConfigError, DatasetError, IndexError):
        return 10.0
    return round(10.0 * dof / dof_for("20x") * 2) / 2


def init_weights_path(init: str | Path) -> Path:
    """The weights a fine-tuning run starts from: a run folder's best.keras, a .keras
    file, or an exported model ``X.tflite``: its float weights ``X.keras`` beside it when
    ``deepaf-host export`` wrote them, else the int8 model itself, rebuilt in float
    (``dequantize``), so any shipped model is a fine-tuning start."""
    path = Path(init)
    if path.is_dir():
        path = path / "best.keras"
    elif path.suffix == ".tflite":
        weights = path.with_suffix(".keras")
        if weights.is_file():
            path = weights
        elif path.is_file() and path.with_suffix(".json").is_file():
            return path.resolve()
        else:
            raise ConfigError(str(init), "--init needs an exported model with its card (X.json) beside it")
    if not path.is_file() or path.suffix != ".keras":
        raise ConfigError(str(init), "--init needs a training run folder (with best.keras), a .keras file or an exported .tflite model")
    return path.resolve()


def _check_init(init: Path, config: TrainConfig, optics: dict[str, Any]) -> dict[str, Any] | None:
    """A fine-tuning start must be the same network under the same light.

    Its objective and pixel size may differ from the stacks' (a user's microscope is not
    the one the shipped model was made for: that is what fine-tuning is for). Returns
    the start's optics when they differ, recorded in the run's config.json; the model
    exported from the run is bound to the stacks' optics, as any other."""
    meta_path = init.parent / "config.json"
    card_path = init.with_suffix(".json")
    if meta_path.exists():  # a training run's best.keras
        meta = json.loads(meta_path.read_text())
        arch, objective, pixel = meta.get("train", {}).get("arch"), meta.get("objective"), meta.get("pixel_size_um")
        light = str(meta.get("illumination", "koehler"))
    elif card_path.exists():  # an exported model (its float weights, or the int8 model itself), beside its card
        from ..card import ModelCard

        card = ModelCard.load(card_path)
        arch, objective, pixel = json.loads(json.dumps(card.arch_config)), card.objective, card.pixel_size_um
        light = card.illumination
    else:  # a bare .keras file: its layers must fit this architecture
        _load_init(build(config.arch), init, config.arch)
        return None
    if arch != json.loads(json.dumps(config.arch.to_dict())):
        raise ConfigError(str(init), f"was trained as {arch}, not {config.arch.to_dict()}")
    if light != optics["illumination"]:
        raise ConfigError(str(init), f"was trained under {light} illumination; these stacks are lit by {optics['illumination']}")
    same_pixel = pixel is not None and abs(float(pixel) / float(optics["pixel_size_um"]) - 1) <= 0.01
    if objective == optics["objective"] and same_pixel:
        return None
    return {"objective": objective, "pixel_size_um": pixel}


def _load_init(model: keras.Model, init: Path, arch: ArchConfig, sample: np.ndarray | None = None) -> None:
    """Put the start's weights into ``model``. An int8 .tflite is rebuilt in float, and
    its folded normalisations get the statistics of ``sample`` (prepared training inputs)."""
    if init.suffix == ".tflite":
        from .dequantize import keras_from_tflite, recalibrate

        source = keras_from_tflite(init, arch)
        if sample is not None:
            recalibrate(source, sample)
    else:
        source = keras.saving.load_model(init, compile=False)
    try:
        copy_weights(source, model)
    except ValueError:
        raise ConfigError(str(init), "its layers differ from this architecture's; use the same --model and sizes") from None


def _rescale_output(model: keras.Model, dof_from: float, dof_to: float) -> None:
    """Bring a start made for another objective to this one's distances: multiply the
    output layer by the ratio of the depths of field.

    The presets sample near Nyquist (pixel about lambda / 4 NA), so the defocus blur per
    depth of field spans about the same number of pixels at every objective (20x/0.75:
    6.0 px per DoF, 10x/0.25: 6.2): a frame 1 DoF from focus at 10x looks like one 1 DoF
    from focus at 20x, and only the unit (um) of the answer changes.
    """
    if dof_from <= 0 or abs(dof_to / dof_from - 1) < 0.01:
        return
    head = model.get_layer("dz_um")
    head.set_weights([w * (dof_to / dof_from) for w in head.get_weights()])


def prepare_run(run: Path, data_dirs: Sequence[str], config: TrainConfig, init: str | Path | None = None) -> dict[str, Any]:
    """Create or check the run folder; extract (or reuse) the patch cache."""
    run.mkdir(parents=True, exist_ok=True)
    config_path = run / "config.json"
    init_path = None if init is None else init_weights_path(init)
    config = resolve_pack(config, run, init_path)
    # Through JSON, so tuples compare equal to the lists read back from config.json.
    wanted = json.loads(json.dumps({"train": config.to_dict(), "data": [str(Path(d).resolve()) for d in data_dirs]}))
    if init_path is not None:
        wanted["init"] = str(init_path)
    if config_path.exists():
        saved = json.loads(config_path.read_text())
        if _comparable(saved) != _comparable(wanted):
            raise ConfigError(str(config_path), "this run folder was started with another configuration; use a new --out")
        if _comparable(saved, extendable=()) != _comparable(wanted, extendable=()):
            # More epochs (or patience) continue the run: "train longer" keeps everything.
            saved["train"] = wanted["train"]
            _write_json(config_path, saved)
        return saved
    optics = _dataset_optics(data_dirs)
    adapted = None if init_path is None else _check_init(init_path, config, optics)
    kind = input_kind(config.arch.name)
    patchset = write_patch_cache(
        run / "patches",
        iter_stacks(data_dirs),
        patch_size=config.arch.patch_size,
        patches_per_plane=config.patches_per_plane,
        min_tissue=config.min_tissue,
        pair_offset_um=config.pair_offset_um if kind == "pair" else None,
        range_um=config.range_um,
        pack=bool(config.pack),
    )
    train_idx, val_idx = split_by_stack(patchset, config.val_fraction, config.seed)
    np.save(run / "patches" / "train_index.npy", train_idx)
    np.save(run / "patches" / "val_index.npy", val_idx)
    saved = {**wanted, **optics, "dof_um": dof_for(optics["objective"]),
             "n_patches": len(patchset), "n_train": int(train_idx.size), "n_val": int(val_idx.size)}
    if adapted is not None:
        saved["init_optics"] = adapted
    tmp = config_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=2) + "\n")
    tmp.replace(config_path)
    return saved


#: Settings a finished or interrupted run may be continued with (run longer, wait longer).
EXTENDABLE = ("epochs", "patience")


def _comparable(meta: dict[str, Any], extendable: Sequence[str] = EXTENDABLE) -> dict[str, Any]:
    """What must match for a run folder to be continued: all but ``extendable``, with a
    config saved before ``pack`` existed read as :data:`LEGACY_PACK` (and one saved
    before ``quant_noise``, as trained without it)."""
    train = {"pack": LEGACY_PACK, "quant_noise": False, **meta.get("train", {})}
    train = {k: v for k, v in train.items() if k not in extendable}
    return {"train": train, "data": meta.get("data"), "init": meta.get("init")}


def predict_patchset(model: keras.Model, patchset: PatchSet, index: np.ndarray, kind: str, batch_size: int = 64) -> np.ndarray:
    out = []
    for x, _ in batches(patchset, index, kind, batch_size, seed=0, train=False):
        out.append(np.asarray(model(x, training=False)).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0)


def per_image_metrics(pred: np.ndarray, patchset: PatchSet, index: np.ndarray, dof_um: float) -> dict[str, Any]:
    images = patchset.image[index]
    true = patchset.dz_um[index]
    keys = np.unique(images)
    groups = [pred[images == k] for k in keys]
    truth = [float(true[images == k][0]) for k in keys]
    return focus_metrics(median_per_image(groups), truth, dof_um)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def train(
    run: Path,
    data_dirs: Sequence[str],
    config: TrainConfig,
    progress: ProgressCallback | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train (or continue training) the run in ``run``; returns the final state.

    ``init``: start from another run's best weights (see the module docstring).
    """
    keras.utils.set_random_seed(config.seed)
    meta = prepare_run(run, data_dirs, config, init)
    patchset = PatchSet.load(run / "patches")
    train_idx = np.load(run / "patches" / "train_index.npy")
    val_idx = np.load(run / "patches" / "val_index.npy")
    kind = input_kind(config.arch.name)
    dof_um = float(meta["dof_um"])

    state_path = run / "state.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {
        "epoch": 0, "best_val_focus_error_um": None, "best_epoch": None, "bad_epochs": 0, "done": False, "history": []
    }
    if state["done"] and (state["epoch"] >= config.epochs or state["bad_epochs"] >= config.patience):
        return state
    state["done"] = False
    if state["epoch"] > 0 and (run / "last.keras").exists():
        model = keras.saving.load_model(run / "last.keras")
    else:
        model = build(config.arch, quant_noise=config.quant_noise)
        if meta.get("init"):
            start = Path(meta["init"])
            sample = None
            if start.suffix == ".tflite":  # an int8 start: its normalisations need real inputs' statistics
                sel = np.sort(np.random.default_rng(config.seed).choice(train_idx, min(512, train_idx.size), replace=False))
                sample = prepare(kind, np.asarray(patchset.patches[sel]),
                                 None if patchset.second is None else np.asarray(patchset.second[sel]))
            _load_init(model, start, config.arch, sample)
            if meta.get("init_optics"):
                _rescale_output(model, dof_for(str(meta["init_optics"]["objective"])), dof_um)
        model.compile(
            optimizer=keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay),
            loss=keras.losses.Huber(delta=config.huber_delta_um),
        )
    steps = config.steps_per_epoch or max(1, math.ceil(train_idx.size / config.batch_size))
    stream = batches(patchset, train_idx, kind, config.batch_size, seed=config.seed + state["epoch"], train=True)

    class _Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if progress:
                progress("train", batch + 1, steps)

    for epoch in range(state["epoch"], config.epochs):
        lr = 0.5 * config.learning_rate * (1 + math.cos(math.pi * epoch / config.epochs))
        model.optimizer.learning_rate = lr
        t0 = time.perf_counter()
        history = model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[_Progress()])
        train_loss = float(history.history["loss"][-1])
        pred = predict_patchset(model, patchset, val_idx, kind)
        val_loss = float(np.mean(keras.ops.convert_to_numpy(
            keras.losses.Huber(delta=config.huber_delta_um, reduction="none")(patchset.dz_um[val_idx], pred)
        )))
        m = per_image_metrics(pred, patchset, val_idx, dof_um)
        report = EpochReport(epoch + 1, train_loss, val_loss, m["focus_error_um_mean"], m["within_dof_rate"], lr,
                             time.perf_counter() - t0)
        model.save(run / "last.keras.tmp.keras")
        os.replace(run / "last.keras.tmp.keras", run / "last.keras")
        best = state["best_val_focus_error_um"]
        if best is None or report.val_focus_error_um < best:
            model.save(run / "best.keras.tmp.keras")
            os.replace(run / "best.keras.tmp.keras", run / "best.keras")
            state.update(best_val_focus_error_um=report.val_focus_error_um, best_epoch=report.epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = report.epoch
        state["history"].append(asdict(report))
        state["done"] = state["bad_epochs"] >= config.patience or report.epoch >= config.epochs
        _append_log(run / "log.csv", report)
        _write_json(state_path, state)
        if on_epoch:
            on_epoch(report)
        if state["done"]:
            break
    state["done"] = True
    _write_json(state_path, state)
    return state


def _append_log(path: Path, report: EpochReport) -> None:
    row = asdict(report)
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())
