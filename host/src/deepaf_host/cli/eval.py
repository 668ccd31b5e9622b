"""``deepaf-host eval``: focus accuracy on focal-stack test sets, printed as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(name="eval")
@click.option("--data", "data_dirs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="Test set folder (repeat for several).")
@click.option("--model", default=None, help="A .tflite model (default: the shipped model), or 'stack' for the "
              "classical reference (sharpest plane of the whole stack).")
@click.option("--measure", default="laplacian", show_default=True, help="Focus measure of the stack reference.")
@click.option("--patches", "patches_per_image", default=8, show_default=True, type=click.IntRange(1))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON here.")
def eval_command(data_dirs: tuple[str, ...], model: str | None, measure: str, patches_per_image: int, threads: int,
                 out: Path | None) -> None:
    """Evaluate autofocus on focal stacks: focus error, false direction, within DoF, per |dz| bin."""
    from ..model.evaluate import evaluate_model, evaluate_stack_reference

    if model == "stack":
        result = evaluate_stack_reference(data_dirs, measure=measure)
    else:
        result = evaluate_model(data_dirs, model, patches_per_image=patches_per_image, threads=threads)
    text = json.dumps(result, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    click.echo(text)
