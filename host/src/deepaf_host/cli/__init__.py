"""The ``deepaf-host`` command line.

Sub-commands live in their own modules and are imported only when they run, so that
``deepaf-host --help`` and a scan never import training frameworks. To add a command,
add one line to ``COMMANDS``: name -> "module:function" (a click command).
"""

from __future__ import annotations

import importlib

import click

from .. import __version__
from ..errors import ConfigError, DeepAfError

COMMANDS: dict[str, str] = {
    # name: "deepaf_host.cli.<module>:<click command>"
    "calibrate": "deepaf_host.cli.calibrate:calibrate",
    "collect": "deepaf_host.cli.collect:collect",
    "corpus": "deepaf_host.cli.corpus:corpus",
    "emulate": "deepaf_host.cli.emulate:emulate",
    "eval": "deepaf_host.cli.eval:eval_command",
    "export": "deepaf_host.cli.export:export",
    "flash": "deepaf_host.cli.flash:flash_command",
    "profile": "deepaf_host.cli.profile:profile",
    "refocus": "deepaf_host.cli.refocus:refocus",
    "train": "deepaf_host.cli.train:train",
    "scan": "deepaf_host.cli.scan:scan",
    "serve": "deepaf_host.cli.serve:serve",
    "simulate": "deepaf_host.cli.simulate:simulate",
    "stitch": "deepaf_host.cli.stitch:stitch",
}


class BadInput(click.ClickException):
    """A bad option or input: one line ``Error: ...`` and exit status 2 (as click's own
    usage errors), before the command did anything."""

    exit_code = 2


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> object:
        # A typed error is a message for the user, not a traceback: a bad value
        # (ConfigError) exits 2, as click's usage errors do; any other, 1. A usage
        # error is one line too (no usage block: it pointed at --help anyway).
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            raise BadInput(exc.format_message() + where) from exc
        except ConfigError as exc:
            raise BadInput(str(exc)) from exc
        except DeepAfError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="deepaf-host")
def main() -> None:
    """DeepAf slide scanner: scan slides with single-shot autofocus, on a real or virtual microscope."""
