"""``deepaf-host collect``: focal stacks on the user's own microscope (deepaf-stacks/1)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import click

from ..errors import DeepAfError
from . import BadInput
from .microscope import open_homed

EXIT_INTERRUPTED = 130


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or min(int(m[1]), int(m[2])) < 16:
        raise BadInput(f"--size: expected HxW in pixels, each at least 16 (like 512x512), got {text!r}")
    return int(m[1]), int(m[2])


@click.command("collect")
@click.option("--port", default=None, help="Serial port of the stage board, or sim:// [default: the profile's].")
@click.option("--camera", "camera_spec", default=None, help="Camera: index, device path, or sim://... [default: the profile's].")
@click.option("--profile", "profile_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Microscope profile [default: the user's when it exists and names this --port].")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Dataset folder (deepaf-stacks/1).")
@click.option("--fields", type=click.IntRange(min=1), default=50, show_default=True, help="Number of focal stacks (tissue fields).")
@click.option("--z", "z_range", default=None, help="Planes start:stop:step in um around focus [default: -10:10:0.5 at 20x, scaled by the objective's depth of field].")
@click.option("--area", default=None, help="Area X0,Y0,X1,Y1 in mm to spread the fields over [default: the profile's; the virtual slide's tissue on sim://].")
@click.option("--objective", default=None, help="Objective preset in use [default: the profile's].")
@click.option("--size", "size_text", default="512x512", show_default=True, help="Plane size HxW: the centre crop of the low-res frame (the whole frame when smaller).")
@click.option("--min-tissue", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="Skip a field whose plane shows less tissue than this fraction.")
@click.option("--measure", default="laplacian", show_default=True, help="Focus measure that labels each stack (the stack reference).")
@click.option("--seed", default=0, show_default=True, type=int, help="Order of the fields and sub-plane offsets.")
@click.option("--z-start", "z_start_um", default=None, type=float, help="Z (um) where the specimen is roughly in focus.")
@click.option("--z-min", "z_min_um", default=None, type=float, help="Z safety limit (um).")
@click.option("--low-size", default=None, metavar="WxH", help="Low-res frame size the camera delivers.")
@click.option("--settle", "settle_s", default=0.2, show_default=True, type=click.FloatRange(0), help="Wait (s) after each move before a frame.")
@click.option("--resume", is_flag=True, help="Continue the collection in --out (same plan), without taking a field twice.")
@click.option("--no-home", is_flag=True, help="Do not home first (the board must already be homed).")
def collect(
    port: str | None, camera_spec: str | None, profile_path: Path | None, out_dir: Path, fields: int, z_range: str | None,
    area: str | None, objective: str | None, size_text: str, min_tissue: float, measure: str, seed: int,
    z_start_um: float | None, z_min_um: float | None, low_size: str | None, settle_s: float, resume: bool, no_home: bool,
) -> None:
    """Take focal stacks on --fields tissue fields spread over an area into --out.

    \b
    Glass is skipped; every plane is approached from above; each stack is labelled with
    the sub-plane peak of its own focus curve and carries its provenance. Interrupted
    (Ctrl-C, a lost cable), it continues with --resume. On the virtual microscope:
      deepaf-host collect --port sim:// --camera 'sim://20x?low=640x360' --out stacks/ --fields 20
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import profile as profiles
    from ..collect import Collector, CollectPlan, parse_z, prepare_folder, provenance
    from ..optics.presets import get_objective
    from ..scan.options import VIRTUAL_Z_START_UM
    from ..scan.plan import Area
    from ..tissue import DEFAULT_THRESHOLDS

    console = Console(stderr=True)
    try:
        profile = profiles.find(profile_path, port)
        setup = profiles.resolve_setup(profile, port=port, camera=camera_spec, objective=objective, low_size=low_size,
                                       z_start_um=z_start_um, z_min_um=z_min_um, area_mm=area,
                                       need=("z_start_um", "z_min_um", "area_mm"))
        Area.parse_mm(str(setup.area_mm))
        dof = get_objective(setup.objective).depth_of_field_um()
        if z_range is None:
            k = dof / get_objective("20x").depth_of_field_um()
            z = (round(-10.0 * k, 3), round(10.0 * k, 3), round(0.5 * k, 4))
        else:
            z = parse_z(z_range)
        thresholds = DEFAULT_THRESHOLDS if setup.blank_image is None else profiles.tissue_thresholds(setup.blank_image)
        plan = CollectPlan(
            area_mm=str(setup.area_mm), fields=fields, z_um=z, objective=setup.objective, size=_size(size_text), seed=seed,
            min_tissue=min_tissue, measure=measure,
            z_start_um=float(setup.z_start_um if setup.z_start_um is not None else VIRTUAL_Z_START_UM), settle_s=settle_s,
            thresholds=thresholds, provenance=provenance(setup.port, profile.path if profile else None),
        )
        prepare_folder(out_dir, plan, resume)  # refuse a used folder before anything moves
    except DeepAfError as exc:
        raise BadInput(str(exc)) from None
    summary: dict[str, Any] | None = None
    with contextlib.ExitStack() as stack:
        stage, camera, clock, sleep = open_homed(stack, setup, no_home)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("collecting", total=fields)

            def progress(done: int, total: int, record: dict[str, Any]) -> None:
                skipped = record.get("skipped")
                note = f"  [dim]field {record['field']}: {skipped}[/]" if skipped else ""
                bar.update(task, completed=done, description=f"collecting{note}")

            collector = Collector(stage, camera, plan, out_dir, resume=resume, sleep=sleep, clock=clock, progress=progress)
            try:
                summary = collector.run()
            except KeyboardInterrupt:
                bar.stop()
                console.print(f"[yellow]interrupted[/]: the stacks taken are in {out_dir}; continue with --resume")
                raise SystemExit(EXIT_INTERRUPTED) from None
            except DeepAfError as exc:
                bar.stop()
                console.print(f"[red]Error[/]: collection stopped: {exc}; the stacks taken are in {out_dir}; continue with --resume")
                raise SystemExit(1) from None
            finally:
                with contextlib.suppress(DeepAfError, OSError):
                    stage.release()
    if summary is None:
        return
    click.echo(f"{summary['stacks']} of {summary['fields_wanted']} stacks in {out_dir} ({summary['skipped_glass']} places "
               f"of glass and {summary['skipped_no_focus']} without focus skipped; {summary['seconds']:.0f} s)")
    if summary["stacks"] < summary["fields_wanted"]:
        click.echo(f"the area has no more tissue fields ({summary['places_in_area']} places): give a larger --area")
        raise SystemExit(3)
