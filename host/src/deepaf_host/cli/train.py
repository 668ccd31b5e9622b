"""``deepaf-host train``: train an autofocus model on focal stacks (needs the ``train`` extra)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import click

from ..errors import ConfigError

if TYPE_CHECKING:  # fit imports TensorFlow: at run time it is imported inside the command
    from ..model.train.fit import EpochReport


def _import_training() -> tuple[ModuleType, ModuleType]:
    """The ``arch`` and ``fit`` modules, or ConfigError when TensorFlow is not installed."""
    try:
        from ..model.train import arch, fit
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("tensorflow", "keras"):
            raise ConfigError("train", "training needs TensorFlow: pip install 'deepaf-host[train]'") from None
        raise
    return arch, fit


@click.command()
@click.option("--data", "data_dirs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="Focal-stack dataset folder (repeat for several).")
@click.option("--model", "architecture", default="spatiospectral", show_default=True,
              type=click.Choice(["spatiospectral", "spatial", "spectral", "fcfnn", "two-shot"]))
@click.option("--out", "run", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder; running again with the same folder resumes.")
@click.option("--epochs", default=60, show_default=True, type=click.IntRange(1),
              help="Planned epochs; a larger value on a finished run trains it longer.")
@click.option("--steps-per-epoch", default=None, type=click.IntRange(1), help="Default: one pass over the patches.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--lr", "learning_rate", default=8e-4, show_default=True, type=float)
@click.option("--weight-decay", default=0.006, show_default=True, type=float)
@click.option("--patience", default=10, show_default=True, type=click.IntRange(1))
@click.option("--patch-size", default=224, show_default=True, type=click.IntRange(32))
@click.option("--widths", default="32,64,128,128", show_default=True, help="Encoder widths, comma-separated.")
@click.option("--stem-stride", default=4, show_default=True, type=click.IntRange(1),
              help="Stride of the first convolution (4: about 4x faster training than 2 on a CPU).")
@click.option("--patches-per-plane", default=4, show_default=True, type=click.IntRange(1))
@click.option("--pack/--no-pack", "pack", default=None,
              help="Packed patch layout (up to 4 patches per 512x512 plane) or greedy only (about 1.2). "
                   "Default: packed for a new run; a resumed run keeps its own, an --init run takes its source's.")
@click.option("--range-um", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Train on planes within +-this distance of focus [default: 10 um at 20x/0.75, scaled by the "
                   "depth of field of the stacks' objective (90 um at 10x/0.25)].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--quant-noise", is_flag=True,
              help="Train the spectral encoders with the rounding noise of int8, so that the int8 export keeps the "
                   "float model's accuracy (a few epochs from a trained run: --init RUN).")
@click.option("--init", "init", default=None, type=click.Path(exists=True),
              help="Fine-tune from: a run folder's best weights, a .keras file, or an exported model X.tflite "
                   "(its float weights X.keras beside it, or else the int8 model read back); another objective or "
                   "pixel size is allowed.")
def train(
    data_dirs: tuple[str, ...], architecture: str, run: Path, epochs: int, steps_per_epoch: int | None,
    batch_size: int, learning_rate: float, weight_decay: float, patience: int, patch_size: int, widths: str,
    stem_stride: int, patches_per_plane: int, pack: bool | None, range_um: float | None, seed: int, quant_noise: bool,
    init: str | None,
) -> None:
    """Train a single-shot autofocus model (resumable: run the same command again)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    arch, fit = _import_training()
    try:
        width_tuple = tuple(int(w) for w in widths.split(","))
    except ValueError:
        raise click.BadParameter(f"{widths!r} is not a comma-separated list of integers", param_hint="--widths") from None
    if range_um is None:
        range_um = fit.default_range_um(data_dirs)
    config = fit.TrainConfig(
        arch=arch.ArchConfig(name=architecture, patch_size=patch_size, widths=width_tuple, stem_stride=stem_stride),
        epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, learning_rate=learning_rate,
        weight_decay=weight_decay, patience=patience, patches_per_plane=patches_per_plane,
        range_um=(-range_um, range_um), seed=seed, pack=pack, quant_noise=quant_noise,
    )
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("preparing patches", total=None)

        def on_progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        def on_epoch(report: EpochReport) -> None:
            console.print(
                f"epoch {report.epoch}: loss {report.train_loss:.3f}, val loss {report.val_loss:.3f}, "
                f"val focus error {report.val_focus_error_um:.3f} um, within DoF {report.val_within_dof:.1%} "
                f"({report.seconds:.0f} s)"
            )

        state = fit.train(run, data_dirs, config, progress=on_progress, on_epoch=on_epoch, init=init)
    adapted = json.loads((run / "config.json").read_text()).get("init_optics")
    if adapted:
        click.echo(f"started from a model made for {adapted['objective']} at {adapted['pixel_size_um']} um/px; "
                   "this run's model is for its stacks' optics")
    click.echo(f"best validation focus error {state['best_val_focus_error_um']:.3f} um at epoch "
               f"{state['best_epoch']}; run in {run}")
