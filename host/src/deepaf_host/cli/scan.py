"""``deepaf-host scan``: scan a slide on a real or virtual microscope."""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..autofocus import DEFAULT_STRATEGY, STRATEGIES
from ..refocus.card import TWO_SHOT_SEPARATION_UM
from ..scan.options import DEFAULTS, VIRTUAL_Z_START_UM
from ..errors import (
    CameraError,
    ConfigError,
    ConnectionLost,
    DeepAfError,
    HandshakeError,
    ModelError,
    OptionError,
    PortUnavailable,
    ProtocolTimeout,
    StageLimitError,
)
from . import BadInput

log = logging.getLogger("deepaf_host.cli.scan")

#: Exit status of ``deepaf-host scan`` (documented in its help and host/docs/scan/README.md).
EXIT_COMPLETE = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_DEFECTS = 3
EXIT_INTERRUPTED = 130

#: How many suspect tiles the summary lists (all of them are in report.json).
LISTED_SUSPECTS = 10


class ProgressEvents:
    """Scan events -> a rich progress bar (tiles done, empty, ETA)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None
        self.empty = 0
        self.af_failed = 0
        self.suspect = 0

    def _describe(self) -> str:
        suspect = f"  QC not ok {self.suspect}" if self.suspect else ""
        return f"scanning  [dim]empty {self.empty}  autofocus failed {self.af_failed}{suspect}[/]"

    def _count(self, record: dict[str, Any]) -> None:
        from ..scan.listeners import qc_verdict

        self.empty += bool(record.get("empty"))
        af = record.get("autofocus")
        self.af_failed += bool(af and not af.get("ok"))
        verdict, _ = qc_verdict(record)
        self.suspect += verdict not in (None, "ok")

    def scan_started(self, plan: Any, done: int) -> None:
        self.task = self.progress.add_task(self._describe(), total=len(plan.tiles))

    def tile_resumed(self, tile: Any, record: dict[str, Any]) -> None:
        self._count(record)
        self.progress.update(self.task, advance=1, description=self._describe())

    def tile_started(self, tile: Any) -> None:
        pass

    def tile_finished(self, tile: Any, record: dict[str, Any]) -> None:
        self._count(record)
        self.progress.update(self.task, advance=1, description=self._describe())

    def scan_finished(self, report: dict[str, Any]) -> None:
        pass


def _parked(out_dir: Path) -> bool:
    try:
        return bool(json.loads((out_dir / "report.json").read_text())["parked_and_released"])
    except (OSError, ValueError, KeyError):
        return False


# --- errors --------------------------------------------------------------------------

#: ConfigError keys raised below the options check -> the flag that sets the value.
_KEY_FLAGS = {
    "area": "--area", "overlap": "--overlap", "settle_s": "--settle", "max_correction_um": "--max-correction",
    "focus_measure": "--measure", "measure": "--measure", "autofocus": "--autofocus", "format": "--format",
    "blank": "--blank", "out": "--out", "resume": "--resume", "z_min_um": "--z-min", "z_start_um": "--z-start",
    "objective": "--objective", "camera": "--camera", "fov_um": "--camera", "pixel_size_um": "--pixel-size-um",
}


def refusal_message(exc: BaseException) -> str:
    """One line naming the flag at fault, for an error raised before the scan started."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OptionError):
        return text
    if isinstance(exc, ConfigError):
        flag = _KEY_FLAGS.get(exc.key)
        return f"{flag}: {' '.join(exc.reason.split())}" if flag else text
    if isinstance(exc, StageLimitError):
        return f"{'--z-start' if exc.axis == 'z' else '--area'}: {text}"
    for types, flag in (
        ((PortUnavailable, HandshakeError, ConnectionLost, ProtocolTimeout), "--port"),
        ((CameraError,), "--camera"),
        ((ModelError,), "--model"),
    ):
        if isinstance(exc, types):
            return f"{flag}: {text}"
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    return text


# --- logging -------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a live progress bar swaps it to
    print log lines above itself)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class ScanLog:
    """The scan's log handlers: stderr at the ``-v`` level, and ``--log-file`` at INFO
    (DEBUG with ``-vv``). A log file inside ``--out`` is opened only once pre-flight has
    passed (its lines are kept until then), so that a refused scan leaves ``--out`` as
    it was; one elsewhere is opened at once, and holds the refusal too."""

    FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

    def __init__(self, verbose: int, log_file: Path | None, out_dir: Path) -> None:
        self.logger = logging.getLogger("deepaf_host")
        console_level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
        file_level = logging.DEBUG if verbose >= 2 else logging.INFO
        self.handlers: list[logging.Handler] = []
        console = _StderrHandler()
        console.setLevel(console_level)
        console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        console.addFilter(lambda record: not getattr(record, "file_only", False))
        self.handlers.append(console)
        self.log_file = log_file
        self.file_level = file_level
        self.buffer: logging.handlers.MemoryHandler | None = None
        if log_file is not None:
            inside = _inside(log_file, out_dir)
            if inside:
                self.buffer = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
                self.buffer.setLevel(file_level)
                self.handlers.append(self.buffer)
            else:
                self.handlers.append(self._file_handler(log_file))
        self._saved_level = self.logger.level
        self.logger.setLevel(min(console_level, file_level if log_file else console_level))
        for h in self.handlers:
            self.logger.addHandler(h)

    def _file_handler(self, path: Path) -> logging.Handler:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        except OSError as exc:
            self.close()
            raise BadInput(f"--log-file: cannot write {path}: {exc.strerror or exc}") from None
        handler.setLevel(self.file_level)
        handler.setFormatter(logging.Formatter(self.FORMAT))
        return handler

    def open_deferred(self) -> None:
        """Pre-flight passed: open a log file inside ``--out`` and write what was kept."""
        if self.buffer is None or self.log_file is None:
            return
        handler = self._file_handler(self.log_file)
        self.buffer.setTarget(handler)
        self.buffer.flush()
        self.logger.removeHandler(self.buffer)
        self.handlers.remove(self.buffer)
        self.buffer.close()
        self.buffer = None
        self.logger.addHandler(handler)
        self.handlers.append(handler)

    def close(self) -> None:
        for h in self.handlers:
            self.logger.removeHandler(h)
            if isinstance(h, logging.handlers.MemoryHandler):
                h.setTarget(None)  # a refused scan: --out stays untouched
                h.buffer.clear()
            h.close()
        self.handlers = []
        self.logger.setLevel(self._saved_level)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


@contextlib.contextmanager
def scan_log(verbose: int, log_file: Path | None, out_dir: Path) -> Iterator[ScanLog]:
    handlers = ScanLog(verbose, log_file, out_dir)
    try:
        yield handlers
    finally:
        handlers.close()


# --- summary -------------------------------------------------------------------------


def summarize(console: Console, report: dict[str, Any], out_dir: Path) -> int:
    """Print the end of a scan that ran to its end; returns the exit status."""
    status = str(report.get("status"))
    tiles = report.get("tiles") or {}
    err = report.get("focus_error_um")
    qc = report.get("qc") if isinstance(report.get("qc"), dict) else None
    label = {"complete": "[green]done[/]", "complete_with_defects": "[yellow]done, with defects[/]"}.get(status, f"[red]{escape(status)}[/]")
    line = (
        f"{label}: {tiles.get('imaged')} tiles imaged, {tiles.get('empty')} empty, "
        f"{tiles.get('autofocus_failed')} autofocus failures -> {escape(str(out_dir))}/manifest.jsonl"
    )
    if qc is not None:
        line += f"; focus QC: {qc.get('ok', 0)} ok, {qc.get('suspect', 0)} suspect, {qc.get('failed', 0)} failed"
    if err:
        line += f"; focus error |dz| median {err['median_abs']:.2f} um, max {err['max_abs']:.2f} um"
    console.print(line, soft_wrap=True)
    time_s = report.get("time_s") or {}
    if time_s.get("per_mm2") is not None:
        console.print(f"      {time_s['per_tile']:.2f} s per tile, {time_s['per_mm2']:.1f} s/mm^2 ({time_s['clock']} clock)", soft_wrap=True)
    suspects = list((qc or {}).get("suspect_tiles") or [])
    if suspects:
        console.print(f"      {len(suspects)} tiles did not pass focus QC (all in {escape(str(out_dir / 'report.json'))}):", soft_wrap=True)
        for s in suspects[:LISTED_SUSPECTS]:
            verdict = s.get("verdict", "suspect")
            console.print(
                f"        tile {s.get('tile')} (row {s.get('row')}, col {s.get('col')}) {escape(str(verdict))}: {escape(str(s.get('reason', '')))}",
                soft_wrap=True,
            )
        if len(suspects) > LISTED_SUSPECTS:
            console.print(f"        ... and {len(suspects) - LISTED_SUSPECTS} more")
    if status == "complete":
        return EXIT_COMPLETE
    if status == "complete_with_defects":
        return EXIT_DEFECTS
    return EXIT_INTERRUPTED if status == "interrupted" else EXIT_FAILED


# --- the command ---------------------------------------------------------------------


def _given(ctx: click.Context, name: str, value: Any) -> Any:
    """None for an option left at its default: the resumed scan's value or the session's
    default fills it (see ``deepaf_host.scan.options``)."""
    source = ctx.get_parameter_source(name)
    return None if source in (click.core.ParameterSource.DEFAULT, None) else value


EPILOG = """\b
Exit status:
  0    complete: every tile scanned (and every tissue tile passed focus QC)
  1    failed: the scan started and stopped on an error (a lost board, a camera
       that stopped); report.json says how far it got; continue with --resume
  2    refused before the scan started (a bad option, an --out that cannot be
       written or already holds a scan, a camera, model or area that does not
       fit, a port or camera that cannot be opened): nothing moved, --out is as
       it was
  3    complete_with_defects: every tile scanned, some tissue tiles did not pass
       focus QC; they are listed here and in report.json
  130  interrupted (Ctrl-C): the stage was parked and released; continue with
       --resume
"""


@click.command("scan", epilog=EPILOG)
@click.option("--port", default=None, help="Serial port of the stage board, or sim:// for the virtual board [default: the profile's].")
@click.option("--profile", "profile_path", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Microscope profile (TOML) whose values fill the options not given [default: the user's profile when it exists and names this --port].")
@click.option("--camera", "camera_spec", default=None, help="Camera: index (0), device path, video file, or sim://... [default: sim:// with a sim:// port, else 0]")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder (tiles, manifest.jsonl, report.json, scan_options.json).")
@click.option("--area", default=None, help="Scan area X0,Y0,X1,Y1 in mm (machine coordinates). Required on a real port; on sim:// the virtual slide's demo area.")
@click.option("--objective", default="20x", show_default=True, help="Objective preset (4x, 10x, 20x, 40x).")
@click.option("--autofocus", "strategy", default=DEFAULT_STRATEGY, show_default=True, type=click.Choice(list(STRATEGIES)), help="Autofocus strategy.")
@click.option("--model", default=None, help="single-shot: the .tflite model [default: the shipped one].")
@click.option("--measure", default=None, help="Focus measure of stack/search/sweep (brenner, vollath4, vollath5, std, nvar, laplacian, spectral).")
@click.option("--overlap", default=DEFAULTS["overlap"], show_default=True, type=float, help="Overlap between neighbouring tiles (fraction of the field, 0 to below 0.9).")
@click.option("--resume", is_flag=True, help="Continue the scan in --out, without imaging finished tiles again; the plan (area, overlap, objective, autofocus, camera, z) comes from the folder.")
@click.option("--z-min", "z_min_um", default=None, type=float, help="Z safety limit (um, machine coordinates): the objective is never driven below it. Required on a real port.")
@click.option("--z-start", "z_start_um", default=None, type=float, help="Z (um, machine coordinates) where the specimen is roughly in focus; the first tissue tile searches around it. Required on a real port; "
              f"{VIRTUAL_Z_START_UM:g} on sim://.")
@click.option("--max-correction", "max_correction_um", default=DEFAULTS["max_correction_um"], show_default=True, type=float, help="Largest Z change (um) one autofocus may make.")
@click.option("--settle", "settle_s", default=DEFAULTS["settle_s"], show_default=True, type=float, help="Wait (s) after each XY move.")
@click.option("--format", "image_format", default=DEFAULTS["image_format"], show_default=True, type=click.Choice(["jpg", "png", "tif"]), help="Tile image format.")
@click.option("--blank", "blank_image", default=None, type=click.Path(dir_okay=False, exists=True, path_type=Path), help="An image of blank glass to calibrate the tissue detection.")
@click.option("--pixel-size-um", default=None, type=float, help="OpenCV cameras: specimen pixel size of the low-res frame as delivered (um) [default: the objective preset's at 1280 px wide, scaled by --low-size's width].")
@click.option("--low-size", default=None, metavar="WxH", help="Low-res frame size (tissue detection, autofocus); the camera must deliver it [default: 1280x720; sim:// cameras take it into their URL].")
@click.option("--high-size", default=None, metavar="WxH", help="High-res tile size; the camera must deliver it [default: 4056x3040; sim:// cameras: into their URL].")
@click.option("--illumination", default=None, metavar="LIGHT",
              help="Light of the autofocus frames: koehler (the condenser) or off-axis (an LED at 24 deg added for seed "
                   "001's FCFNN model, which is refused under other light) [default: the profile's, else koehler; "
                   "sim:// cameras take it into their URL].")
@click.option("--two-shot", is_flag=True,
              help=f"Take a second high-res shot {TWO_SHOT_SEPARATION_UM:g} um above every tile whose focus QC is not ok, "
                   "for `deepaf-host refocus --two-shot` (seed 003's two-shot fusion).")
@click.option("--no-home", is_flag=True, help="Do not home first (the board must already be homed).")
@click.option("--no-stitch", is_flag=True, help="Do not stitch the tiles into --out/slide.ome.tif at the end (run `deepaf-host stitch` later).")
@click.option("--log-file", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Also write the log here (INFO: one line per tile; DEBUG with -vv).")
@click.option("-v", "--verbose", count=True, help="-v: one log line per tile; -vv: also every line sent to and received from the board.")
@click.pass_context
def scan(
    ctx: click.Context, port: str | None, profile_path: Path | None, camera_spec: str | None, out_dir: Path, area: str | None, objective: str, strategy: str,
    model: str | None, measure: str | None, overlap: float, resume: bool, z_min_um: float | None, z_start_um: float | None,
    max_correction_um: float, settle_s: float, image_format: str, blank_image: Path | None, pixel_size_um: float | None,
    low_size: str | None, high_size: str | None, illumination: str | None, two_shot: bool, no_home: bool, no_stitch: bool,
    log_file: Path | None, verbose: int,
) -> None:
    """Scan the --area of a slide into --out: one image per tissue tile, a manifest and a report.

    Everything is checked before the first step (options, --out, camera sizes
    against the model, the area against the travel, z against --z-min); a refused
    scan moves nothing and leaves --out as it was.

    \b
    Demo on the virtual microscope (needs nothing but pip):
      deepaf-host scan --port sim:// --camera sim:// --out demo/
    A real microscope (--area, --z-start and --z-min are required):
      deepaf-host scan --port /dev/ttyACM0 --camera 0 --out slide1/ \\
          --area -32,-22,-28,-18 --z-start -4100 --z-min -7500
    """
    from ..scan.listeners import Listeners, TileLogger
    from ..profile import find as find_profile
    from ..scan.session import ScanOptions, prepare_scan

    console = Console(stderr=True)
    try:
        profile = find_profile(profile_path, port)
    except DeepAfError as exc:
        raise BadInput(refusal_message(exc)) from None
    if not port and (profile is None or not profile.port):
        raise click.UsageError("Missing option '--port' (or [microscope] port in a --profile).", ctx)
    options = ScanOptions(
        port=port or "", profile=profile, camera=camera_spec, out_dir=out_dir, area_mm=area, objective=_given(ctx, "objective", objective),
        autofocus=_given(ctx, "strategy", strategy), model=model, measure=measure, overlap=_given(ctx, "overlap", overlap),
        resume=resume, z_min_um=z_min_um, z_start_um=z_start_um,
        max_correction_um=_given(ctx, "max_correction_um", max_correction_um), settle_s=_given(ctx, "settle_s", settle_s),
        image_format=_given(ctx, "image_format", image_format), blank_image=blank_image, pixel_size_um=pixel_size_um,
        low_size=low_size, high_size=high_size, illumination=illumination, home=not no_home,
        two_shot_um=TWO_SHOT_SEPARATION_UM if two_shot else None,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    progress = Progress(*columns, console=console, transient=False)
    events = Listeners(ProgressEvents(progress), TileLogger())
    with scan_log(verbose, log_file, out_dir) as logs, contextlib.ExitStack() as devices:
        try:
            prepared = devices.enter_context(prepare_scan(options, events=events))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/] before the scan started: nothing moved")
            raise SystemExit(EXIT_INTERRUPTED) from None
        except (DeepAfError, OSError) as exc:
            message = refusal_message(exc)
            log.error("scan refused: %s", message, extra={"file_only": True})  # the console gets it from click
            raise BadInput(message) from None
        logs.open_deferred()
        with progress:
            try:
                report = prepared.run()
            except KeyboardInterrupt:
                progress.stop()
                parked = _parked(out_dir)
                state = "the stage was parked and its motors released" if parked else "the stage could NOT be parked and released"
                console.print(f"[yellow]interrupted[/]: {state}; continue with --resume (report in {escape(str(out_dir / 'report.json'))})", soft_wrap=True)
                raise SystemExit(EXIT_INTERRUPTED) from None
            except Exception as exc:  # noqa: BLE001 - every failure ends in one message and exit status 1
                progress.stop()
                message = " ".join(str(exc).split()) if isinstance(exc, DeepAfError) else f"{type(exc).__name__}: {exc}"
                log.info("scan failed: %s", message, exc_info=True)  # the traceback, for -v and the log file
                parked = _parked(out_dir)
                state = "the stage was parked and its motors released" if parked else "the stage could NOT be parked and released"
                console.print(f"[red]Error[/]: scan failed: {escape(message)}", soft_wrap=True)
                console.print(f"       {state}; continue with --resume (report in {escape(str(out_dir / 'report.json'))})", soft_wrap=True)
                raise SystemExit(EXIT_FAILED) from None
        code = summarize(console, report, out_dir)
        if code in (EXIT_COMPLETE, EXIT_DEFECTS) and not no_stitch:
            code = stitch_scan(console, out_dir) or code
    if code:
        raise SystemExit(code)


def stitch_scan(console: Console, out_dir: Path) -> int:
    """Stitch a finished scan into ``out_dir/slide.ome.tif``; 0, or EXIT_FAILED when it
    could not be made (the tiles are safe; ``deepaf-host stitch`` tries again)."""
    from .stitch import stitch_with_progress, summary_lines

    try:
        summary = stitch_with_progress(out_dir, console=console)
    except (DeepAfError, OSError, ValueError) as exc:
        console.print(f"[red]Error[/]: stitching failed: {escape(str(exc))}; the tiles are safe: "
                      f"deepaf-host stitch {escape(str(out_dir))}", soft_wrap=True)
        return EXIT_FAILED
    for line in summary_lines(out_dir, summary):
        console.print(escape(line), soft_wrap=True)
    return 0
