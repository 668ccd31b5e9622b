"""``deepaf-host scan``: scan a slide on a real or virtual microscope."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..autofocus import DEFAULT_STRATEGY, STRATEGIES
from ..scan.plan import DEMO_AREA_MM


class ProgressEvents:
    """Scan events -> a rich progress bar (tiles done, empty, ETA)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None
        self.empty = 0
        self.af_failed = 0

    def _describe(self) -> str:
        return f"scanning  [dim]empty {self.empty}  autofocus failed {self.af_failed}[/]"

    def scan_started(self, plan: Any, done: int) -> None:
        self.task = self.progress.add_task(self._describe(), total=len(plan.tiles))

    def tile_resumed(self, tile: Any, record: dict[str, Any]) -> None:
        self.empty += bool(record.get("empty"))
        self.progress.update(self.task, advance=1, description=self._describe())

    def tile_started(self, tile: Any) -> None:
        pass

    def tile_finished(self, tile: Any, record: dict[str, Any]) -> None:
        self.empty += bool(record["empty"])
        af = record.get("autofocus")
        self.af_failed += bool(af and not af["ok"])
        self.progress.update(self.task, advance=1, description=self._describe())

    def scan_finished(self, report: dict[str, Any]) -> None:
        pass


def _parked(out_dir: Path) -> bool:
    try:
        return bool(json.loads((out_dir / "report.json").read_text())["parked_and_released"])
    except (OSError, ValueError, KeyError):
        return False


@click.command("scan")
@click.option("--port", required=True, help="Serial port of the stage board, or sim:// for the virtual board.")
@click.option("--camera", "camera_spec", default=None, help="Camera: index (0), device path, video file, or sim://... [default: sim:// with a sim:// port, else 0]")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder (tiles, manifest.jsonl, report.json).")
@click.option("--area", default=DEMO_AREA_MM, show_default=True, help="Scan area X0,Y0,X1,Y1 in mm (machine coordinates).")
@click.option("--objective", default="20x", show_default=True, help="Objective preset (4x, 10x, 20x, 40x).")
@click.option("--autofocus", "strategy", default=DEFAULT_STRATEGY, show_default=True, type=click.Choice(list(STRATEGIES)), help="Autofocus strategy.")
@click.option("--model", default=None, help="single-shot: the .tflite model [default: the shipped one].")
@click.option("--measure", default=None, help="Focus measure of stack/search/sweep (brenner, vollath4, vollath5, std, nvar, laplacian, spectral).")
@click.option("--overlap", default=0.1, show_default=True, type=float, help="Overlap between neighbouring tiles (fraction of the field).")
@click.option("--resume", is_flag=True, help="Continue the scan in --out, without imaging finished tiles again.")
@click.option("--z-min", "z_min_um", default=None, type=float, help="Z safety limit (um, machine coordinates): the objective is never driven below it.")
@click.option("--z-start", "z_start_um", default=-4000.0, show_default=True, type=float, help="Z (um) where the specimen is roughly in focus; the first tissue tile searches around it.")
@click.option("--max-correction", "max_correction_um", default=30.0, show_default=True, type=float, help="Largest Z change (um) one autofocus may make.")
@click.option("--settle", "settle_s", default=0.2, show_default=True, type=float, help="Wait (s) after each XY move.")
@click.option("--format", "image_format", default="jpg", show_default=True, type=click.Choice(["jpg", "png", "tif"]), help="Tile image format.")
@click.option("--blank", "blank_image", default=None, type=click.Path(dir_okay=False, exists=True, path_type=Path), help="An image of blank glass to calibrate the tissue detection.")
@click.option("--pixel-size-um", default=None, type=float, help="OpenCV cameras: specimen pixel size of the low-res frame (um) [default: from the objective preset].")
@click.option("--no-home", is_flag=True, help="Do not home first (the board must already be homed).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def scan(
    port: str, camera_spec: str | None, out_dir: Path, area: str, objective: str, strategy: str, model: str | None,
    measure: str | None, overlap: float, resume: bool, z_min_um: float | None, z_start_um: float,
    max_correction_um: float, settle_s: float, image_format: str, blank_image: Path | None,
    pixel_size_um: float | None, no_home: bool, verbose: bool,
) -> None:
    """Scan the --area of a slide into --out: one image per tissue tile, a manifest and a report.

    \b
    Demo on the virtual microscope (needs nothing but pip):
      deepaf-host scan --port sim:// --camera sim:// --out demo/
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from ..scan.session import ScanOptions, run_scan

    console = Console(stderr=True)
    options = ScanOptions(
        port=port, camera=camera_spec, out_dir=out_dir, area_mm=area, objective=objective, autofocus=strategy,
        model=model, measure=measure, overlap=overlap, resume=resume, z_min_um=z_min_um, z_start_um=z_start_um,
        max_correction_um=max_correction_um, settle_s=settle_s, image_format=image_format, blank_image=blank_image,
        pixel_size_um=pixel_size_um, home=not no_home,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        try:
            report = run_scan(options, events=ProgressEvents(progress))
        except KeyboardInterrupt:
            progress.stop()
            parked = _parked(out_dir)
            state = "the stage was parked and its motors released" if parked else "the stage could NOT be parked and released"
            console.print(f"[yellow]interrupted[/]: {state}; continue with --resume (report in {out_dir / 'report.json'})")
            raise SystemExit(130) from None
    tiles = report["tiles"]
    err = report.get("focus_error_um")
    console.print(
        f"[green]done[/]: {tiles['imaged']} tiles imaged, {tiles['empty']} empty, "
        f"{tiles['autofocus_failed']} autofocus failures -> {out_dir}/manifest.jsonl"
        + (f"; focus error |dz| median {err['median_abs']:.2f} um, max {err['max_abs']:.2f} um" if err else "")
    )
    if report["time_s"].get("per_mm2") is not None:
        console.print(f"      {report['time_s']['per_tile']:.2f} s per tile, {report['time_s']['per_mm2']:.1f} s/mm^2 ({report['time_s']['clock']} clock)")

