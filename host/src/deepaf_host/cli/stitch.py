"""``deepaf-host stitch DIR...``: scan folders -> pyramidal OME-TIFF slides."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from ..errors import DeepAfError


@click.command()
@click.argument("directories", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--output", default="slide.ome.tif", show_default=True, help="File name of the slide, inside each folder.")
@click.option("--no-register", is_flag=True, help="Place every tile where the stage put it (no registration).")
@click.option("--flat-field", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Vignetting correction from the scan's own glass (auto: when enough glass was seen).")
@click.option("--max-shift-um", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True,
              help="Largest stage error between neighbours that registration may correct.")
@click.option("--min-ncc", type=click.FloatRange(-1, 1), default=0.3, show_default=True,
              help="Lowest overlap correlation of an accepted pair.")
@click.option("--quality", "jpeg_quality", type=click.IntRange(1, 100), default=90, show_default=True, help="JPEG quality of the slide's tiles.")
@click.option("--smallest-level", "smallest_level_px", type=click.IntRange(min=16), default=1024, show_default=True,
              help="Halve until the smallest pyramid level is at most this many pixels.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="JPEG encoding threads.")
@click.option("--force", is_flag=True, help="Stitch again even when the slide is up to date.")
@click.option("--rotation-deg", type=click.FloatRange(-45, 45), default=None,
              help="The camera's rotation on the stage (degrees, as calibrate measures it): tiles are turned back by it "
                   "[default: the scan's, from its profile; else 0].")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Hand each slide to this Dask distributed scheduler (tcp://host:8786; the folders must be on a file "
                   "system the workers share; needs the cluster extra) [default: stitch here, one after another].")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def stitch(
    directories: tuple[str, ...], output: str, no_register: bool, flat_field: str, max_shift_um: float, min_ncc: float,
    jpeg_quality: int, smallest_level_px: int, workers: int, force: bool, rotation_deg: float | None, scheduler: str | None,
    verbose: bool,
) -> None:
    """Stitch scan folders into DIR/slide.ome.tif (pyramidal, tiled JPEG OME-TIFF), with
    thumbnail.png, focus_map.png/.csv, report.html and stitch.json beside it.

    Neighbours are registered by phase correlation and the positions solved globally,
    the stage positions serving as a weak prior; glass tiles stay where the stage put
    them. A stitch that is interrupted leaves no slide file and resumes from its
    registration cache. A folder that cannot be stitched is reported and the others
    go on (exit status 1 at the end).
    """
    from ..wsi import StitchOptions

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    opts = StitchOptions(
        output=output, register=not no_register, flat_field=flat_field, max_shift_um=max_shift_um, min_ncc=min_ncc,
        jpeg_quality=jpeg_quality, smallest_level_px=smallest_level_px, workers=workers, force=force,
        rotation_deg=rotation_deg,
    )
    failed = 0
    if scheduler is not None:
        from ..wsi.cluster import stitch_on_cluster

        for directory, summary, error in stitch_on_cluster(list(directories), opts, scheduler):
            if error is not None:
                failed += 1
                click.echo(f"Error: {directory}: {error}", err=True)
                continue
            assert summary is not None
            for line in summary_lines(directory, summary):
                click.echo(line)
        if failed:
            raise SystemExit(1)
        return
    for directory in directories:
        try:
            summary = stitch_with_progress(directory, opts)
        except DeepAfError as exc:
            failed += 1
            click.echo(f"Error: {directory}: {exc}", err=True)
            continue
        for line in summary_lines(directory, summary):
            click.echo(line)
    if failed:
        raise SystemExit(1)


def stitch_with_progress(directory: str | Path, opts: Any = None, console: Any = None) -> dict[str, Any]:
    """Stitch one folder with a progress bar per phase (gone when done); the summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..wsi import stitch as run_stitch

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"stitch: {phase:8s}", total=total)
            bar.update(tasks[phase], completed=done, total=total)

        return run_stitch(directory, opts, progress)


def summary_lines(directory: str | Path, summary: dict[str, Any]) -> list[str]:
    """What a stitch made, in a few lines (``stitch`` and the end of ``scan`` print them)."""
    directory = str(directory).rstrip("/")
    path = f"{directory}/{summary['slide']}"
    if summary.get("up_to_date"):
        return [f"{path} is up to date (--force to stitch again)"]
    reg = summary["registration"]["summary"]
    levels = " / ".join(f"{w}x{h}" for h, w in summary["levels"])
    lines = [
        f"{path}: {levels} px, {summary['pixel_size_um']:.4g} um/px, {summary['output_bytes'] / 1e6:.1f} MB",
        f"  registration: {reg['accepted']}/{reg['pairs']} pairs accepted, {reg['dropped_outliers']} dropped as outliers, "
        f"{summary['tiles']['placed_by_stage']} tiles placed by the stage alone",
    ]
    axes = summary["registration"].get("camera_axes")
    if axes:
        lines.append(f"  camera on the stage: rotated {axes['rotation_deg']:+.3f} deg, scale x {axes['scale_x']:.4f} "
                     f"y {axes['scale_y']:.4f}, skew {axes['skew_deg']:+.3f} deg")
    gt = summary.get("ground_truth")
    if gt:
        st, so = gt["seam_error_px"]["stitched_all_pairs"], gt["seam_error_px"]["stage_only_all_pairs"]
        lines.append(f"  seam error vs truth: median {st['median']:.2f} px, max {st['max']:.2f} px "
                     f"(stage only: median {so['median']:.2f}, max {so['max']:.2f})")
    ff = summary["flat_field"]
    lines.append(f"  flat field: {'applied (' + ff['method'] + ')' if ff['applied'] else 'not applied'}"
                 + (f" - {ff['note']}" if ff["note"] else ""))
    lines.append(f"  {summary['mosaic_megapixels']:.1f} megapixels in {summary['timings_s']['total']:.1f} s "
                 f"({summary['megapixels_per_s']} MP/s); report: {directory}/report.html")
    return lines
