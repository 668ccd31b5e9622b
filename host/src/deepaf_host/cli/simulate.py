"""``deepaf-host simulate``: write simulated focal stacks (deepaf-stacks/1)."""

from __future__ import annotations

import click

from ..optics.illumination import DEFAULT_ILLUMINATION, ILLUMINATIONS
from ..optics.presets import DEFAULT_RELAY, OBJECTIVES, PROTOCOLS, RANDOM_PROTOCOL


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Dataset folder to create.")
@click.option("--stacks", type=click.IntRange(min=1), default=10, show_default=True, help="Number of focal stacks.")
@click.option("--objective", type=click.Choice(sorted(OBJECTIVES)), default="20x", show_default=True)
@click.option("--z", "z_range", default="-10:10:0.5", show_default=True, help="Planes: start:stop:step in um from focus.")
@click.option("--protocol", type=click.Choice([*sorted(PROTOCOLS), RANDOM_PROTOCOL]), default="same", show_default=True,
              help="Lab conditions; 'random' draws a new lab for every slide.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--size", default="512x512", show_default=True, help="Plane size HxW: the centre crop of the camera frame.")
@click.option("--specimen", default="procedural", show_default=True, help="procedural, ihc, corpus:train, corpus:heldout (the shipped real H&E images, one per slide), or a folder of in-focus images.")
@click.option("--mode", type=click.Choice(["low", "high"]), default="low", show_default=True, help="Camera mode (pixel size).")
@click.option("--relay", type=float, default=DEFAULT_RELAY, show_default=True, help="Relay magnification.")
@click.option("--stacks-per-slide", type=click.IntRange(min=1), default=10, show_default=True, help="A new virtual slide (tissue, focal surface) every N stacks.")
@click.option("--illumination", type=click.Choice(sorted(ILLUMINATIONS)), default=DEFAULT_ILLUMINATION, show_default=True,
              help="Light source: the condenser (koehler), or seed 001's coherent LED 24 degrees off the axis "
                   "(off-axis) or a line of LEDs (off-axis-line). The focus stays that of the koehler image.")
@click.option("--overwrite", is_flag=True, help="Replace a dataset already in --out.")
def simulate(
    out_dir: str, stacks: int, objective: str, z_range: str, protocol: str, seed: int, size: str,
    specimen: str, mode: str, relay: float, stacks_per_slide: int, illumination: str, overwrite: bool,
) -> None:
    """Write simulated focal stacks of the virtual microscope to --out."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from ..stacks.simulate import parse_size, parse_z_range, simulate_dataset

    z = parse_z_range(z_range)
    hw = parse_size(size)
    with Progress(
        TextColumn("[bold]simulate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=False
    ) as bar:
        task = bar.add_task("stacks", total=stacks)
        dataset = simulate_dataset(
            out_dir, stacks=stacks, objective=objective, z_range_um=z, protocol=protocol, seed=seed, size=hw,
            specimen=specimen, mode=mode, relay=relay, stacks_per_slide=stacks_per_slide, illumination=illumination,
            overwrite=overwrite,
            progress=lambda done, total: bar.update(task, completed=done),
        )
    planes = sum(r.planes for r in dataset)
    click.echo(f"wrote {len(dataset)} stacks ({planes} planes of {hw[0]}x{hw[1]}) to {out_dir}")
