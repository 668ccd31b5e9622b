"""``deepaf-host calibrate``: measure the microscope and write it into the profile."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import click

from ..errors import DeepAfError, OptionError
from . import BadInput
from .microscope import open_homed


def _point(text: str | None, flag: str) -> tuple[float, float] | None:
    """``"X,Y"`` in mm -> (x, y) in um."""
    if text is None:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise BadInput(f"{flag}: expected X,Y in mm (machine coordinates), got {text!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise BadInput(f"{flag}: expected finite numbers, got {text!r}")
    return x * 1000.0, y * 1000.0


#: Where calibrate looks for tissue on the virtual slide (its section's middle), by default
#: on a sim:// port only.
VIRTUAL_AT_MM = (-30.0, -19.5)


def _fmt(value: Any, unit: str, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(f"{v:.{digits}g}" for v in value) + f" {unit}"
    return f"{value:.{digits}g} {unit}"


def _change(before: float | None, after: float | None) -> str:
    if before is None or after is None or before == 0:
        return ""
    return f"({(after / before - 1) * 100:+.2f} %)"


@click.command("calibrate")
@click.option("--port", default=None, help="Serial port of the stage board, or sim:// [default: the profile's].")
@click.option("--camera", "camera_spec", default=None, help="Camera: index, device path, or sim://... [default: the profile's].")
@click.option("--profile", "profile_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="The profile to read and write [default: the user's, created when missing].")
@click.option("--objective", default=None, help="Objective preset in use (4x, 10x, 20x, 40x) [default: the profile's].")
@click.option("--at", "at_mm", default=None, metavar="X,Y",
              help="A place on tissue (mm) with a few mm of tissue towards -X and -Y [default: the profile's "
                   "calibrate_at_mm or the middle of its area; the virtual slide's on sim://].")
@click.option("--glass", "glass_mm", default=None, metavar="X,Y", help="A place of clean glass (mm) for the flat field [default: the profile's, else searched around the tissue].")
@click.option("--z-start", "z_start_um", default=None, type=float, help="Z (um) where the specimen is roughly in focus.")
@click.option("--z-min", "z_min_um", default=None, type=float, help="Z safety limit (um).")
@click.option("--low-size", default=None, metavar="WxH", help="Low-res frame size.")
@click.option("--high-size", default=None, metavar="WxH", help="High-res frame size.")
@click.option("--steps", default="xy,z,flat", show_default=True, help="What to measure: xy (pixel size, rotation, XY backlash), z (Z backlash), flat (flat field, blank image).")
@click.option("--travel-mm", default=3.0, show_default=True, type=click.FloatRange(0.2, 20), help="Length of the X jog chain (Y: two thirds of it).")
@click.option("--settle", "settle_s", default=0.2, show_default=True, type=click.FloatRange(0), help="Wait (s) after each move before a frame.")
@click.option("--no-home", is_flag=True, help="Do not home first (the board must already be homed).")
@click.option("--dry-run", is_flag=True, help="Measure and print, but do not write the profile.")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Also write every measured value here.")
def calibrate(
    port: str | None, camera_spec: str | None, profile_path: Path | None, objective: str | None, at_mm: str | None,
    glass_mm: str | None, z_start_um: float | None, z_min_um: float | None, low_size: str | None, high_size: str | None,
    steps: str, travel_mm: float, settle_s: float, no_home: bool, dry_run: bool, json_out: Path | None,
) -> None:
    """Measure the pixel size, the camera's rotation on the stage, the backlash and a flat
    field, and write them into the profile (with a before/after summary).

    \b
    The pixel size and rotation come from chains of known XY jogs registered by phase
    correlation; the Z backlash from one focus peak approached from below and from
    above; the flat field from frames of clean glass. On the virtual microscope:
      deepaf-host calibrate --port 'sim://?errors=leadscrew' --camera 'sim://20x?rotation_deg=1.5' --profile p.toml
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from .. import profile as profiles
    from ..calibrate import STEPS, CalibrationPlan, run_calibration
    from ..optics.presets import get_objective
    from ..scan.options import VIRTUAL_Z_START_UM
    from ..stage import Stage
    from ..tissue import DEFAULT_THRESHOLDS

    console = Console(stderr=True)
    wanted = tuple(s.strip() for s in steps.split(",") if s.strip())
    if not wanted or set(wanted) - set(STEPS):
        raise BadInput(f"--steps: choose from {', '.join(STEPS)}, got {steps!r}")
    try:
        if profile_path is not None:
            target = profile_path.expanduser()
            profile = profiles.load(target) if target.exists() else None
        else:
            profile = profiles.find(None, port)
            target = profile.path if profile is not None else profiles.default_path()
            if profile is None and target.exists():
                raise OptionError("--profile", f"the profile {target} is for port {profiles.load(target).port}, not "
                                               f"{port}: name the profile to write with --profile FILE")
        setup = profiles.resolve_setup(profile, port=port, camera=camera_spec, objective=objective, low_size=low_size,
                                       high_size=high_size, z_start_um=z_start_um, z_min_um=z_min_um)
    except DeepAfError as exc:
        raise BadInput(str(exc)) from None
    at = _point(at_mm, "--at")
    if at is None and profile is not None and profile.calibrate_at_mm is not None:
        at = (profile.calibrate_at_mm[0] * 1000.0, profile.calibrate_at_mm[1] * 1000.0)
    if at is None and profile is not None and profile.area_mm is not None:
        a = profile.area_mm
        at = ((a[0] + a[2]) * 500.0, (a[1] + a[3]) * 500.0)
    if at is None and setup.virtual:
        at = (VIRTUAL_AT_MM[0] * 1000.0, VIRTUAL_AT_MM[1] * 1000.0)
    if at is None:
        raise BadInput(f"--at: required on a real port ({setup.port}): a place on tissue X,Y in mm (or [stage] calibrate_at_mm in the profile)")
    glass = _point(glass_mm, "--glass")
    if glass is None and profile is not None and profile.glass_mm is not None:
        glass = (profile.glass_mm[0] * 1000.0, profile.glass_mm[1] * 1000.0)
    try:
        thresholds = DEFAULT_THRESHOLDS if setup.blank_image is None else profiles.tissue_thresholds(setup.blank_image)
    except DeepAfError as exc:
        raise BadInput(str(exc)) from None
    table = setup.profile.for_objective(setup.objective) if setup.profile else None
    plan = CalibrationPlan(
        at_um=at, z_start_um=float(setup.z_start_um if setup.z_start_um is not None else VIRTUAL_Z_START_UM),
        dof_um=get_objective(setup.objective).depth_of_field_um(), glass_um=glass, steps=wanted,
        x_travel_um=travel_mm * 1000.0, y_travel_um=travel_mm * 1000.0 * 2 / 3, settle_s=settle_s, thresholds=thresholds,
    )
    with contextlib.ExitStack() as stack:
        stage, camera, clock, sleep = open_homed(stack, setup, no_home, high_size=setup.high_size)
        nominal = camera.pixel_size_um("low")
        raw = Stage(stage.connection, z_min_um=setup.z_min_um, approach_um=0.0)
        with Progress(TextColumn("{task.description:8s}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(step: str, done: int, total: int) -> None:
                if step not in tasks:
                    tasks[step] = bar.add_task(step, total=total)
                bar.update(tasks[step], completed=done, total=total)

            try:
                result = run_calibration(stage, camera, plan, raw_stage=raw, sleep=sleep, clock=clock, progress=progress)
            except DeepAfError as exc:
                raise click.ClickException(str(exc)) from None
            finally:
                with contextlib.suppress(DeepAfError):
                    stage.release()
        camera_name = camera.name

    values = result.to_dict()
    updates = _profile_values(result, setup, table, profile, target, camera_name)
    _summary(values, result, setup, table, profile, nominal, updates)
    if json_out is not None:
        json_out.write_text(json.dumps(values, indent=1) + "\n", encoding="utf-8")
    if dry_run:
        click.echo(f"--dry-run: {target} not written")
        return
    for name, image in (("blank", result.blank), ("flat", result.flat)):
        if image is None:
            continue
        path = target.parent / updates[("objectives." + setup.objective, "blank_image" if name == "blank" else "flat_field")]
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "blank":
            import cv2

            cv2.imwrite(str(path), image[..., ::-1])
        else:
            import tifffile

            tifffile.imwrite(path, image, photometric="rgb")
    try:
        if not target.exists():
            profiles.write_template(target, port=setup.port, camera=setup.camera, objective=setup.objective)
        profiles.update_file(target, updates)
    except DeepAfError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {target}")


def _profile_values(result: Any, setup: Any, table: Any, profile: Any, target: Path, camera_name: str) -> dict[tuple[str, str], Any]:
    """(table, key) -> value for the profile file."""
    obj = f"objectives.{setup.objective}"
    out: dict[tuple[str, str], Any] = {}
    if profile is None or profile.port is None:
        out[("microscope", "port")] = setup.port
    if (profile is None or profile.camera is None) and setup.camera is not None:
        out[("microscope", "camera")] = setup.camera
    if profile is None or profile.objective is None:
        out[("microscope", "objective")] = setup.objective
    a = result.axes
    if a is not None:
        out[(obj, "pixel_size_um")] = round(a.pixel_size_um, 6)
        out[(obj, "rotation_deg")] = round(a.rotation_deg, 4)
        out[(obj, "skew_deg")] = round(a.skew_deg, 4)
    if result.high_pixel_size_um is not None:
        out[(obj, "high_pixel_size_um")] = round(result.high_pixel_size_um, 6)
    old = list(profile.backlash_um) if profile is not None and profile.backlash_um is not None else [0.0, 0.0, 0.0]
    if result.xy_backlash_um is not None:
        old[0], old[1] = (round(max(0.0, v), 2) for v in result.xy_backlash_um)
    if result.z_backlash_um is not None:
        old[2] = round(max(0.0, result.z_backlash_um), 3)
    if result.xy_backlash_um is not None or result.z_backlash_um is not None:
        out[("stage", "backlash_um")] = old
    out[("stage", "calibrate_at_mm")] = [round(v / 1000.0, 4) for v in result.at_um]
    if result.glass_um is not None:
        out[("stage", "glass_mm")] = [round(v / 1000.0, 4) for v in result.glass_um]
        out[(obj, "blank_image")] = f"blank-{setup.objective}.png"
        out[(obj, "flat_field")] = f"flat-{setup.objective}.tif"
    return out


def _summary(values: dict[str, Any], result: Any, setup: Any, table: Any, profile: Any, nominal: float,
             updates: dict[tuple[str, str], Any]) -> None:
    before_pixel = table.pixel_size_um if table is not None else None
    rows = [
        ("pixel size (low-res)", _fmt(before_pixel, "um") if before_pixel else f"{nominal:.4g} um (nominal)",
         _fmt(values["pixel_size_um"], "um", 5), _change(before_pixel or nominal, values["pixel_size_um"])),
        ("pixel size (high-res)", _fmt(table.high_pixel_size_um if table else None, "um"), _fmt(values["high_pixel_size_um"], "um", 5), ""),
        ("camera rotation", _fmt(table.rotation_deg if table else None, "deg"), _fmt(values["rotation_deg"], "deg", 3), ""),
        ("stage skew", _fmt(table.skew_deg if table else None, "deg"), _fmt(values["skew_deg"], "deg", 3), ""),
        ("backlash X, Y, Z", _fmt(profile.backlash_um if profile else None, "um", 3),
         _fmt(updates.get(("stage", "backlash_um")), "um", 3), ""),
        ("flat field", str(table.flat_field.name) if table and table.flat_field else "-",
         "-" if values["corner_falloff"] is None else f"corners {values['corner_falloff'] * 100:.1f} % darker than the centre", ""),
    ]
    click.echo(f"calibration of {setup.objective} on {setup.port} (focus z {values['focus_z_um']:.2f} um, "
               f"{values['frames']} frames, {values['seconds']:.0f} s)")
    click.echo(f"  {'':22s} {'before':>22s}   {'after':<22s}")
    for name, before, after, change in rows:
        click.echo(f"  {name:22s} {before:>22s}   {after:<22s} {change}".rstrip())
    if values["z_backlash_runs_um"]:
        runs = ", ".join(f"{v:.2f}" for v in values["z_backlash_runs_um"])
        board = values["board_backlash_um"]
        extra = f"; the board compensates {board[2]:g} um more ($142)" if board and board[2] else ""
        click.echo(f"  Z backlash runs: {runs} um (left after the board's compensation{extra})")
    if values["pixel_size_x_um"] is not None and abs(values["pixel_size_x_um"] / values["pixel_size_y_um"] - 1) > 0.01:
        click.echo(f"  note: X and Y give pixel sizes {values['pixel_size_x_um']:.5g} and {values['pixel_size_y_um']:.5g} um "
                   "(over 1 % apart): check the board's steps per mm ($100, $101)")
