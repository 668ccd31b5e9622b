"""``deepaf-host flash``: put the firmware this host ships onto the motor board.

    deepaf-host flash --port /dev/ttyACM0               # the shipped image
    deepaf-host flash --port /dev/ttyACM0 --hex my.hex  # another image
    deepaf-host flash --port /dev/ttyACM0 --dry-run     # print the avrdude command only

Exit status: 0 flashed and checked; 2 refused before anything was written (a bad
image, no avrdude, a busy port, no Uno bootloader); 1 failed after writing began.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from ..firmware.errors import FlashRefused


def _refused(exc: FlashRefused) -> click.ClickException:
    from . import BadInput

    return BadInput(str(exc))


@click.command("flash")
@click.option("--port", required=True, help="Serial port of the Arduino Uno (e.g. /dev/ttyACM0, COM3).")
@click.option(
    "--hex",
    "hex_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Intel HEX image to write instead of the one this host ships.",
)
@click.option("--dry-run", is_flag=True, help="Check the image and print the avrdude command; write nothing.")
def flash_command(port: str, hex_file: Path | None, dry_run: bool) -> None:
    """Flash the motor board (Arduino Uno + CNC Shield) through its bootloader with
    avrdude, then check that it answers $I with the version just written."""
    from ..firmware import flash as flashing
    from ..firmware.image import load_image, shipped_image

    try:
        image = load_image(hex_file.resolve()) if hex_file is not None else shipped_image()
        command = flashing.avrdude_command(port, image.path)
        if dry_run:
            click.echo(shlex.join(command))
            return
        flashing.flash(port, image, echo=click.echo)
    except FlashRefused as exc:
        raise _refused(exc) from exc
