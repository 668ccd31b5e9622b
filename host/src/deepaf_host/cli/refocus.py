"""``deepaf-host refocus DIR``: repair a finished scan's out-of-focus tiles (seed 002)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError, ModelError
from . import BadInput

#: Exit status of ``deepaf-host refocus``.
EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Refocus model (.tflite with its .json card) [default: the shipped deepaf-refocus-20x].")
@click.option("--all", "all_tiles", is_flag=True, help="Refocus every tissue tile, not only those whose QC is suspect or failed.")
@click.option("--no-guard", is_flag=True, help="Never pass a tile through unchanged, even when the network adds no detail.")
@click.option("--pixel-size-um", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The tiles' pixel size [default: the scan plan's field of view over the image width].")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="Inference threads.")
@click.option("--two-shot", is_flag=True,
              help="Fuse each tile with its second shot (taken by `scan --two-shot`; seed 003, TSVA) with the two-shot "
                   "model [default model: the shipped deepaf-tsva-20x]. A two-shot --model implies it.")
def refocus(directory: Path, model_path: Path | None, all_tiles: bool, no_guard: bool, pixel_size_um: float | None,
            threads: int, two_shot: bool) -> None:
    """Refocus the tiles of the finished scan in DIRECTORY whose focus QC is suspect or
    failed (one network pass per tile, Deep-R, seed 002), writing each repaired image
    beside the captured one as <tile>.refocused.png (a captured tile is never
    overwritten), and record in manifest.jsonl what was done (a 'virtual_refocus' object in the
    tile's record: model, sha256, input and output files).

    Exit status: 0 done (also when no tile needed it), 1 some tiles could not be
    repaired (listed; the others were), 2 refused before anything was written (not a
    finished scan folder, a missing or corrupt model), 130 Ctrl-C (tiles repaired so far
    are recorded).

    With --two-shot (or a two-shot --model) each tile is fused with its second shot,
    recorded by `deepaf-host scan --two-shot` for the tiles whose QC was not ok; a tile
    without one is listed as not repaired.
    """
    from ..refocus.repair import TileOutcome, read_scan, repair_scan, select_tiles
    from ..refocus.runtime import RefocusModel

    try:
        _, lines, _ = read_scan(directory)
        model = RefocusModel.load(model_path, threads=threads, two_shot=two_shot)
    except (ConfigError, ModelError) as exc:
        raise BadInput(str(exc)) from exc
    if two_shot and model.card.shots != 2:
        raise BadInput(f"--two-shot: {model.path} is a single-image model (its card says 1 shot)")
    todo = select_tiles([rec for _, rec in lines if rec is not None], all_tiles)
    shots = f", two shots {model.card.separation_um:g} um apart" if model.card.shots == 2 else ""
    click.echo(f"{directory}: {len(todo)} tile(s) to refocus with {model.name} "
               f"({'int8' if model.quantized else 'float'}, {model.card.pixel_size_um} um/px{shots})")

    def progress(o: TileOutcome, k: int, n: int) -> None:
        if o.error:
            what = f"FAILED: {o.error}"
        elif o.passed_through:
            what = f"already in focus (detail x{o.detail_ratio:.2f}): left as it is"
        else:
            what = f"-> {o.output} (detail x{o.detail_ratio:.2f}, {o.seconds:.1f} s)"
        click.echo(f"[{k}/{n}] tile {o.tile} ({o.verdict}) {what}")

    try:
        summary = repair_scan(directory, model, all_tiles=all_tiles, guard=not no_guard, pixel_size_um=pixel_size_um,
                              progress=progress)
    except KeyboardInterrupt:
        click.echo("interrupted: the tiles refocused so far are recorded in the manifest", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except ConfigError as exc:
        raise BadInput(str(exc)) from exc
    click.echo(f"refocused {summary.repaired}, left in focus {summary.passed}, failed {summary.errors} "
               f"of {summary.selected}; recorded in {directory / 'manifest.jsonl'}")
    if summary.errors:
        raise SystemExit(EXIT_FAILED)
