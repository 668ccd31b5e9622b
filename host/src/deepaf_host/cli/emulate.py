"""``deepaf-host emulate``: a board on a pseudo-terminal, for any serial program.

    deepaf-host emulate                      # the virtual board, real time
    deepaf-host emulate --speed 10           # ten times faster
    deepaf-host emulate --firmware firmware/build/deepaf.elf   # the firmware in simavr

The first line on stdout is the device path (``/dev/pts/N``); open it with
``deepaf-host scan --port /dev/pts/N`` or a G-code sender. Runs until Ctrl-C.
"""

from __future__ import annotations

import threading

import click

from ..errors import ConfigError


def _virtual(speed: str, dialect: str) -> None:
    from ..board import VirtualBoard
    from ..board.pty import PtyServer

    try:
        rate = float(speed)
    except ValueError:
        raise ConfigError("speed", f"the virtual board on a terminal runs at N times real time, not {speed!r}") from None
    if not rate > 0:
        raise ConfigError("speed", f"must be > 0, not {speed!r}")
    board = VirtualBoard(speed=rate, dialect=dialect)
    server = PtyServer(board)
    click.echo(server.path)
    click.echo(f"virtual {dialect} board on {server.path} at {rate:g}x real time; Ctrl-C stops it", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def _firmware(elf: str, speed: str) -> None:
    from ..board.simavr import FirmwareSim

    mode = {"1": "realtime", "realtime": "realtime", "fast": "fast"}.get(speed)
    if mode is None:
        raise ConfigError("speed", f"the firmware in simavr runs at 1 (realtime) or 'fast', not {speed!r}")
    try:
        sim = FirmwareSim(elf, speed=mode)
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        raise ConfigError("firmware", str(exc)) from exc
    with sim:
        click.echo(sim.pty_path)
        click.echo(f"firmware {elf} in simavr ({mode}) on {sim.pty_path}; Ctrl-C stops it", err=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


@click.command("emulate")
@click.option("--speed", default="1", show_default=True, help="Board seconds per real second (firmware: 1 or 'fast').")
@click.option(
    "--firmware",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Serve this firmware ELF in simavr (deepaf-sim) instead of the virtual board.",
)
@click.option(
    "--dialect",
    type=click.Choice(["deepaf", "grbl"]),
    default="deepaf",
    show_default=True,
    help="Virtual board only: 'grbl' acts as a stock GRBL 1.1 board.",
)
def emulate(speed: str, firmware: str | None, dialect: str) -> None:
    """Serve a board on a pseudo-terminal and print its device path."""
    if firmware is not None:
        _firmware(firmware, speed)
    else:
        _virtual(speed, dialect)
