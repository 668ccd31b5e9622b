"""``deepaf-host eval``: focus accuracy on focal-stack test sets, printed as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

import click

from . import BadInput


def _open_out(out: Path) -> IO[str]:
    """A temporary file beside ``out``, opened before the evaluation so that a folder
    that is missing or not writable fails at once, not after it; ``_commit`` renames it
    into place (atomically: ``out`` is never half written)."""
    folder = out.parent
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise BadInput(f"--out: cannot write {out}: {folder} {why}")
    tmp = folder / f".{out.name}.{os.getpid()}.tmp"
    try:
        return tmp.open("w", encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"--out: cannot write {out}: {exc.strerror or exc}") from None


def _commit(tmp: IO[str], text: str, out: Path) -> None:
    try:
        tmp.write(text)
        tmp.flush()
        os.fsync(tmp.fileno())
        tmp.close()
        os.replace(tmp.name, out)
    except OSError as exc:
        _discard(tmp)
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None


def _discard(tmp: IO[str]) -> None:
    tmp.close()
    Path(tmp.name).unlink(missing_ok=True)


@click.command(name="eval")
@click.option("--data", "data_dirs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="Test set folder (repeat for several).")
@click.option("--model", default=None, help="A .tflite model (default: the shipped model), or 'stack' for the "
              "classical reference (sharpest plane of the whole stack).")
@click.option("--measure", default="laplacian", show_default=True, help="Focus measure of the stack reference.")
@click.option("--patches", "patches_per_image", default=8, show_default=True, type=click.IntRange(1))
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1))
@click.option("--allow-mismatch", is_flag=True,
              help="Evaluate a model even on stacks whose objective or pixel size (more than 10% apart) differ "
              "from its card's, or are unknown; they are listed under 'optics_mismatch' in the result. Without "
              "it such stacks are refused before any inference, as the scanner refuses the model.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the JSON here (checked to be writable before evaluating).")
def eval_command(data_dirs: tuple[str, ...], model: str | None, measure: str, patches_per_image: int, threads: int,
                 allow_mismatch: bool, out: Path | None) -> None:
    """Evaluate autofocus on focal stacks: focus error, false direction, within DoF, per |dz| bin."""
    from ..model.evaluate import evaluate_model, evaluate_stack_reference

    tmp = _open_out(out) if out is not None else None
    try:
        if model == "stack":
            result = evaluate_stack_reference(data_dirs, measure=measure)
        else:
            result = evaluate_model(data_dirs, model, patches_per_image=patches_per_image, threads=threads,
                                    allow_mismatch=allow_mismatch)
    except BaseException:
        if tmp is not None:
            _discard(tmp)
        raise
    text = json.dumps(result, indent=2)
    if tmp is not None and out is not None:
        _commit(tmp, text + "\n", out)
    click.echo(text)
