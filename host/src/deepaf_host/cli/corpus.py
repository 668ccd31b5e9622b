"""``deepaf-host corpus``: list the real H&E specimen images, fetch the ones not shipped.

Only images that came from a package registry are files of the package; the others are
downloaded on demand from the public repository and commit their manifest entry records
(``optics.corpus``), into ``$DEEPAF_CORPUS_DIR`` or ``~/.cache/deepaf/specimens``.
"""

from __future__ import annotations

import click

from ..optics.corpus import SPLITS
from . import BadInput


@click.group("corpus")
def corpus() -> None:
    """The real H&E specimen images of the simulator (corpus:train, corpus:heldout)."""


@corpus.command("list")
@click.option("--split", type=click.Choice(SPLITS), default="all", show_default=True)
def list_command(split: str) -> None:
    """Each image with its split, licence, whether it is on this machine and where."""
    from ..optics.corpus import cache_dir, corpus_images

    images = corpus_images(split)
    width = max(len(img.id) for img in images) if images else 2
    click.echo(f"{'id':{width}s}  {'split':7s}  {'present':7s}  where / licence")
    for img in images:
        where = str(img.path) if img.present else f"(not fetched; would go to {img.path})"
        click.echo(f"{img.id:{width}s}  {img.split:7s}  {'yes' if img.present else 'no':7s}  {where}")
        click.echo(f"{'':{width}s}  {'':7s}  {'':7s}  licence: {img.licence}")
    missing = [img for img in images if not img.present]
    click.echo(f"{len(images) - len(missing)} of {len(images)} present; cache: {cache_dir()}")
    if missing:
        click.echo(f"fetch the others with: deepaf-host corpus fetch --split {split}")


@corpus.command("fetch")
@click.option("--split", type=click.Choice(SPLITS), default="all", show_default=True, help="Which images to fetch.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1.0), default=60.0, show_default=True,
              help="Seconds to wait for the server.")
def fetch(split: str, timeout_s: float) -> None:
    """Download the images of --split that are not on this machine and check their sha256.

    Each file comes from https://raw.githubusercontent.com/REPOSITORY/COMMIT/PATH as the
    manifest records it ($DEEPAF_CORPUS_URL replaces the base) and is written to the cache
    ($DEEPAF_CORPUS_DIR, else ~/.cache/deepaf/specimens) only once its sha256 matches.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    from ..optics.corpus import CorpusDownloadError, base_url, cache_dir, corpus_images, fetch_image

    images = corpus_images(split)
    click.echo(f"corpus {split}: {len(images)} images; cache {cache_dir()}; source {base_url()}")
    fetched = 0
    console = Console(stderr=True)  # the bar, on a terminal only; the result lines go to stdout
    for n, img in enumerate(images, 1):
        label = f"[{n}/{len(images)}] {img.id}"
        with Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True,
                      console=console, disable=not console.is_terminal) as bar:
            task = bar.add_task("download", total=None)

            def on_progress(done: int, total: int | None, bar: Progress = bar, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            try:
                path, downloaded = fetch_image(img, timeout_s=timeout_s, progress=on_progress)
            except CorpusDownloadError as exc:
                raise BadInput(str(exc)) from None
        fetched += downloaded
        click.echo(f"{label}: {'downloaded, sha256 ok, to' if downloaded else 'already present at'} {path}")
    click.echo(f"{fetched} downloaded, {len(images) - fetched} already present")
