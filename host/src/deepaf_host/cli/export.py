"""``deepaf-host export``: a trained run -> full-int8 .tflite + model card."""

from __future__ import annotations

from pathlib import Path

import click

from .train import _import_training


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="models/NAME.tflite")
@click.option("--name", default=None, help="Model name in the card (default: the file stem).")
@click.option("--calibration", "calibration_size", default=400, show_default=True, type=click.IntRange(10),
              help="Representative patches for int8 calibration.")
@click.option("--max-degradation", default=0.10, show_default=True, type=click.FloatRange(0),
              help="Refuse an int8 model whose focus error is worse than the float model's by more than this "
                   "fraction of it and more than --max-degradation-dof.")
@click.option("--max-degradation-dof", default=0.05, show_default=True, type=click.FloatRange(0),
              help="The int8 loss always allowed, in depths of field.")
@click.option("--force", is_flag=True, help="Keep the int8 model even when it is worse than allowed.")
def export(run: Path, out: Path, name: str | None, calibration_size: int, max_degradation: float,
           max_degradation_dof: float, force: bool) -> None:
    """Export RUN's best model as a full-integer int8 TFLite model with its card."""
    _import_training()
    from ..model.train.export import export as do_export

    card = do_export(run, out, name=name, calibration_size=calibration_size, max_degradation=max_degradation,
                     max_degradation_dof=max_degradation_dof, force=force)
    f, q = card.metrics["validation_float"], card.metrics["validation_int8"]
    click.echo(f"wrote {out} ({out.stat().st_size} bytes, sha256 {card.sha256[:12]}...)")
    click.echo(f"validation focus error: float {f['focus_error_um_mean']:.3f} um, int8 {q['focus_error_um_mean']:.3f} um")
    click.echo(f"latency: {card.latency['ms_per_patch_1_thread']:.2f} ms per patch (1 thread)")
