"""``deepaf-host profile``: write a commented profile template, or check and show one."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from ..errors import DeepAfError
from . import BadInput


@click.group("profile")
def profile() -> None:
    """The microscope profile: a TOML file that scan, collect and calibrate read (flags override it)."""


@profile.command("init")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--port", default=None, help="Fill in the serial port (or sim://).")
@click.option("--camera", default=None, help="Fill in the camera (index, device path, or sim://...).")
@click.option("--objective", default="20x", show_default=True, help="The objective in use (4x, 10x, 20x, 40x).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(file: Path | None, port: str | None, camera: str | None, objective: str, force: bool) -> None:
    """Write a commented profile template to FILE [default: the user's profile]."""
    from .. import profile as profiles

    target = file if file is not None else profiles.default_path()
    try:
        written = profiles.write_template(target, force=force, port=port, camera=camera, objective=objective)
    except DeepAfError as exc:
        raise BadInput(str(exc).removeprefix("--profile: ")) from None
    click.echo(f"wrote {written}: fill it in, then 'deepaf-host calibrate --profile {written}' measures the rest")


@profile.command("show")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def show(file: Path | None) -> None:
    """Check FILE [default: the user's profile] and print what it says, as JSON."""
    from .. import profile as profiles

    target = file if file is not None else profiles.default_path()
    try:
        loaded = profiles.load(target)
    except DeepAfError as exc:
        raise BadInput(str(exc)) from None
    doc = asdict(loaded)
    click.echo(json.dumps(doc, indent=1, default=str))
