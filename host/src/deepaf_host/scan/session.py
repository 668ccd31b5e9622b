"""Build a scan from user options (the CLI's ``scan``, the benchmark and the tests).

Pre-flight: :func:`prepare_scan` checks everything before the runner moves a motor
or writes a file in the output folder, in this order:

1. the options (:func:`~deepaf_host.scan.options.resolve_options`): defaults (the virtual slide's only on a
   ``sim://`` port: on a real port ``--area``, ``--z-start`` and ``--z-min`` must be
   given), a resumed scan's plan read back from its folder, every value in range, the
   focus measure, the frame sizes;
2. the output folder: a used one needs ``--resume``; it is created when missing and a
   file is written in it and removed (a folder that cannot be written fails here);
3. the autofocus strategy (a missing single-shot model) and the tissue calibration;
4. the devices: a non-virtual camera (and the frame sizes it really delivers), the port
   and its handshake, the virtual camera;
5. what needs both: the model card against the low-res pixel scale, the tile plan
   against the stage's travel, ``--z-start`` against the Z travel and ``--z-min``, a
   locked board under ``--no-home``, a resumed plan against the folder's.

Every refusal is a typed error (:class:`~deepaf_host.errors.OptionError` names the
flag) and leaves the output folder as it was: folders that the check created are
removed again. Only :meth:`PreparedScan.run` writes: ``scan_options.json`` (the resolved
options, so that ``--resume`` needs nothing but ``--port`` and ``--out``), then the
runner's manifest, tiles and report.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import cv2

from ..autofocus import FocusLimits, make_strategy
from ..camera.base import Camera
from ..camera.open import open_camera
from .. import sim
from ..errors import CameraError, FrameSizeError, ModelError, OptionError, StageLimitError
from ..optics.presets import get_objective
from ..tissue import DEFAULT_THRESHOLDS, calibrate
from .manifest import MANIFEST, REPORT
from .options import (
    DEFAULTS,
    OPTIONS_FILE,
    VIRTUAL_Z_START_UM,
    ScanOptions,
    _size_text,
    is_virtual_port,
    parse_size,
    resolve_options,
    save_options,
)
from .plan import Area, Plan, plan_tiles
from .runner import ScanConfig, ScanEvents, ScanRunner
from .timing import PI_HQ_TIMING, CameraTiming, TimedCamera

log = logging.getLogger(__name__)

def _strategy_options(opts: ScanOptions) -> dict[str, Any]:
    options = dict(opts.autofocus_options)
    if opts.autofocus == "single-shot":
        options.setdefault("model", opts.model)
        options.setdefault("model_options", {"objective": opts.objective})
    elif opts.measure is not None:
        options.setdefault("measure", opts.measure)
    return options


def _thresholds(opts: ScanOptions) -> Any:
    if opts.blank_image is None:
        return DEFAULT_THRESHOLDS
    bgr = cv2.imread(str(opts.blank_image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OptionError("--blank", f"cannot read the image {opts.blank_image}")
    try:
        return calibrate(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    except ValueError as exc:
        raise OptionError("--blank", str(exc)) from None


# --- the output folder -----------------------------------------------------------------


def _prepare_out_dir(out: Path, resume: bool) -> list[Path]:
    """Check that ``out`` can take the scan: create it when missing (returns the folders
    created, for :func:`_remove_created` when a later check fails) and write and remove
    a file in it."""
    if out.exists() and not out.is_dir():
        raise OptionError("--out", f"{out} is a file, not a folder")
    if (out / MANIFEST).exists() and not resume:
        raise OptionError("--out", f"{out} already holds a scan ({MANIFEST}): add --resume to continue it, or choose another folder")
    missing: list[Path] = []
    p = out
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except OSError as exc:
                raise OptionError("--out", f"cannot create the folder {d}: {exc.strerror or exc}") from None
            created.append(d)
        try:
            fd, probe = tempfile.mkstemp(prefix=".preflight-", dir=out)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OptionError("--out", f"cannot write in {out}: {exc.strerror or exc}") from None
    except BaseException:
        _remove_created(created)
        raise
    return created


def _remove_created(created: list[Path]) -> None:
    for d in reversed(created):
        with contextlib.suppress(OSError):  # only while still empty
            d.rmdir()


# --- devices -------------------------------------------------------------------------


def _virtual_camera_url(spec: str, objective: str, low: tuple[int, int] | None, high: tuple[int, int] | None,
                        illumination: str | None = None) -> str:
    """``spec`` with --objective's preset when it names none, the frame sizes and the light."""
    parts = urlsplit(spec)
    preset = parts.netloc + parts.path.strip("/")
    keys = dict(parse_qsl(parts.query, keep_blank_values=True))
    added: list[tuple[str, str]] = []
    wanted = [("low", _size_text(low) if low else None, "--low-size"), ("high", _size_text(high) if high else None, "--high-size"),
              ("illumination", illumination, "--illumination")]
    for key, value, flag in wanted:
        if value is None:
            continue
        if key in keys:
            if keys[key].lower() != value:
                raise OptionError(flag, f"{value} differs from the virtual camera's {key}={keys[key]} ({spec})")
            continue
        added.append((key, value))
    if preset and not added:
        return spec
    query = "&".join(q for q in (parts.query, urlencode(added)) if q)
    return f"sim://{preset or objective}" + (f"?{query}" if query else "")


@contextlib.contextmanager
def open_microscope(
    port: str, camera_spec: str | None, *, z_min_um: float | None = None, objective: str = "20x",
    pixel_size_um: float | None = None, camera_timing: CameraTiming | None = PI_HQ_TIMING,
    low_size: tuple[int, int] | None = None, high_size: tuple[int, int] | None = None,
    backlash_um: tuple[float, float, float] | None = None, connection: Any = None, illumination: str | None = None,
) -> Iterator[tuple[Any, Camera, Callable[[], float], Callable[[float], None], bool]]:
    """Connect the stage and open the camera: yields ``(stage, camera, clock, sleep, simulated)``.

    ``connection``: a board connection that is already open (``deepaf-host serve``
    lends its own to a scan): used instead of opening ``port``, and left open. Opening
    the port again would reset the board (an Uno's DTR reset), losing its position.

    A non-virtual camera is opened before the port, so a missing camera fails before
    anything talks to the board. An OpenCV camera must deliver the frame sizes asked
    for (``FrameSizeError``); without ``pixel_size_um`` its low-res pixel is the
    objective preset's at the 1280-pixel-wide frame, scaled by the frame width.
    ``illumination``: the light of the autofocus frames (the virtual camera takes it
    into its URL; another camera is told it, since it cannot see it). Nothing moves here.
    """
    from ..stage import Connection, Stage

    virtual_camera = camera_spec is None and port.startswith("sim://") or (camera_spec or "").startswith("sim://")
    spec = camera_spec if camera_spec is not None else ("sim://" if port.startswith("sim://") else "0")
    if virtual_camera:
        spec = _virtual_camera_url(spec, objective, low_size, high_size, illumination)
    with contextlib.ExitStack() as stack:
        camera: Camera | None = None
        if not virtual_camera:
            options: dict[str, Any] = {"pixel_size_um": pixel_size_um}
            if pixel_size_um is None:
                from ..optics.presets import (
                    CAMERA_MODES,
                    get_objective,
                    specimen_pixel_um,
                )

                options["pixel_size_um"] = specimen_pixel_um(get_objective(objective), CAMERA_MODES["low"])
                options["pixel_size_width"] = CAMERA_MODES["low"].width_px
            resolutions = {m: s for m, s in (("low", low_size), ("high", high_size)) if s is not None}
            if resolutions:
                options["resolutions"] = resolutions
            camera = stack.enter_context(open_camera(spec, **options))
            if illumination is not None:  # what the user says lights the autofocus frames
                camera.illumination = illumination
        conn = connection
        if conn is None:
            conn = Connection(port)
            stack.callback(conn.close)
        stage = Stage(conn, z_min_um=z_min_um, backlash_um=backlash_um or (0.0, 0.0, 0.0))
        # An emulated board keeps its own clock; at any speed but real time, motion and
        # exposures are timed on it (simulated seconds) and host computation is added.
        timebase = sim.board_clock(conn)
        if camera is None:
            try:
                camera = stack.enter_context(sim.open_virtual_camera(spec, conn))
            except CameraError as exc:
                raise OptionError("--camera", str(exc)) from None
        if timebase.event_driven and camera_timing is not None:
            # Event-driven clock: frames would take no time at all without a camera model.
            camera = TimedCamera(camera, timebase.sleep, camera_timing)
        yield stage, camera, timebase.seconds, timebase.sleep, timebase.simulated


def _mm(um: float) -> str:
    return f"{um / 1000:g}"


def _check_devices(o: ScanOptions, strategy: Any, stage: Any, camera: Camera) -> Plan:
    """The checks that need the camera and the board; returns the tile plan."""
    for mode in ("low", "high"):
        camera.frame_shape(mode)  # an OpenCV camera switches to it: FrameSizeError
    card = getattr(getattr(strategy, "predictor", None), "card", None)
    if card is not None:
        # The model must see the defocus at the pixel scale it was trained on.
        low_h, low_w = camera.frame_shape("low")
        problems = card.optics_mismatches(o.objective, camera.pixel_size_um("low"), illumination=camera.illumination,
                                          frames=f"the scan's {low_w}x{low_h} low-res frames are")
        if problems:
            hint = {
                "illumination": "light the autofocus frames as the model was trained (the virtual camera's "
                                "illumination=), or choose another --model",
            }.get(problems[0].quantity, "the low-res frames must be at the model's pixel size (--low-size, "
                                        "--pixel-size-um, or the virtual camera's low=), or choose another --model")
            raise ModelError(card.file, f"{problems[0].reason}; {hint}")
    (x_lo, x_hi), (y_lo, y_hi), (z_lo, z_hi) = (stage.limits_um[a] for a in ("x", "y", "z"))
    for value, flag in ((o.z_start_um, "--z-start"), (o.z_min_um, "--z-min")):
        if value is not None and not z_lo <= value <= z_hi:
            raise OptionError(flag, f"{value:g} um is outside the Z travel ({z_lo:g} to {z_hi:g} um)")
    h, w = camera.frame_shape("high")
    p = camera.pixel_size_um("high")
    area = Area.parse_mm(str(o.area_mm))
    try:
        plan = plan_tiles(area, (w * p, h * p), float(o.overlap or 0.0), travel_um=((x_lo, x_hi), (y_lo, y_hi)))
    except StageLimitError as exc:
        raise OptionError(
            "--area", f"{o.area_mm} mm puts tiles at {exc.axis} = {_mm(exc.requested_um)} mm, outside the stage travel "
            f"(X {_mm(x_lo)} to {_mm(x_hi)} mm, Y {_mm(y_lo)} to {_mm(y_hi)} mm)",
        ) from None
    if not o.home and stage.is_locked:
        raise OptionError("--no-home", "the stage is not homed (the board is locked): leave --no-home out so that the scan homes first")
    if o.resume:
        _check_resumed_plan(o.out_dir, plan)
    return plan


def _frame_size_refusal(exc: FrameSizeError) -> OptionError:
    flag = "--low-size" if exc.mode == "low" else "--high-size"
    w, h = exc.delivered
    return OptionError(
        flag, f"camera {exc.camera} {exc.reason}: give a size it delivers (such as {flag} {w}x{h}); "
        "the pixel scale follows the frame size",
    )


def _check_resumed_plan(out: Path, plan: Plan) -> None:
    """The tiles of a resumed scan must be the ones it started with (their indices key
    the manifest): a camera with another field or pixel size plans other tiles."""
    try:
        old = json.loads((out / REPORT).read_text(encoding="utf-8"))["plan"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no readable report: the manifest alone decides
    new = json.loads(json.dumps(plan.to_dict()))
    if old == new:
        return
    if old.get("area_mm") != new["area_mm"]:
        flag, what = "--area", f"the area {new['area_mm']} mm, the folder's {old.get('area_mm')} mm"
    elif old.get("overlap") != new["overlap"]:
        flag, what = "--overlap", f"overlap {new['overlap']}, the folder's {old.get('overlap')}"
    else:
        fov = [round(v, 1) for v in new["fov_um"]]
        old_fov = [round(v, 1) for v in old.get("fov_um", [])]
        flag = "--camera"
        what = (f"a {fov[0]:g} x {fov[1]:g} um field ({new['cols']} x {new['rows']} tiles), the folder's "
                f"{' x '.join(f'{v:g}' for v in old_fov)} um ({old.get('cols')} x {old.get('rows')} tiles): "
                "use the camera, --high-size and --pixel-size-um it was scanned with")
    raise OptionError(flag, f"this scan would have other tiles than the one in {out}: {what}")


# --- the scan --------------------------------------------------------------------------


@dataclass
class PreparedScan:
    """A scan that passed pre-flight: devices open, nothing moved, nothing written."""

    options: ScanOptions
    plan: Plan
    runner: ScanRunner

    def run(self) -> dict[str, Any]:
        """Save the options in the folder (``--resume`` reads them), then scan; returns
        the report (raises what stopped the scan, after the runner's cleanup)."""
        save_options(self.options)
        return self.runner.run()


@contextlib.contextmanager
def prepare_scan(opts: ScanOptions, events: ScanEvents | Any | None = None, *, connection: Any = None) -> Iterator[PreparedScan]:
    """Pre-flight (see the module docstring) and yield the scan ready to run, with its
    devices open until the ``with`` block ends. A refusal raises before the yield and
    leaves ``opts.out_dir`` as it was. ``connection``: an open board connection to scan
    on (see :func:`open_microscope`)."""
    o = resolve_options(opts)
    created = _prepare_out_dir(Path(o.out_dir), o.resume)
    ready = False
    try:
        strategy = make_strategy(str(o.autofocus), **_strategy_options(o))
        thresholds = _thresholds(o)
        config = ScanConfig(
            autofocus=strategy, z_start_um=float(o.z_start_um if o.z_start_um is not None else VIRTUAL_Z_START_UM),
            limits=FocusLimits(float(o.max_correction_um if o.max_correction_um is not None else DEFAULTS["max_correction_um"])),
            thresholds=thresholds, settle_s=float(o.settle_s if o.settle_s is not None else DEFAULTS["settle_s"]),
            image_format=str(o.image_format), home=o.home, dof_um=get_objective(str(o.objective)).depth_of_field_um(),
            two_shot_um=o.two_shot_um,
        )
        low = None if o.low_size is None else parse_size(o.low_size, "--low-size")
        high = None if o.high_size is None else parse_size(o.high_size, "--high-size")
        with open_microscope(
            o.port, o.camera, z_min_um=o.z_min_um, objective=str(o.objective), pixel_size_um=o.pixel_size_um,
            camera_timing=o.camera_timing, low_size=low, high_size=high,
            backlash_um=getattr(o.profile, "backlash_um", None),  # measured by `deepaf-host calibrate`
            connection=connection, illumination=o.illumination,
        ) as (stage, camera, clock, sleep, simulated):
            plan = _check_devices(o, strategy, stage, camera)
            log.info(
                "pre-flight passed: %s, camera %s (low %sx%s at %.4f um/px, high %sx%s), %d tiles (%d x %d), "
                "z-start %g um, z-min %s", o.port, camera.name, *camera.frame_shape("low")[::-1],
                camera.pixel_size_um("low"), *camera.frame_shape("high")[::-1], len(plan.tiles), plan.cols, plan.rows,
                config.z_start_um, "none" if o.z_min_um is None else f"{o.z_min_um:g} um",
            )
            metadata = {
                "port": o.port, "camera": camera.name, "objective": o.objective,
                "autofocus_options": {k: v for k, v in _strategy_options(o).items() if isinstance(v, (str, int, float, bool, type(None)))},
                "model": getattr(getattr(strategy, "predictor", None), "name", None),
                "tissue_thresholds": thresholds.to_dict(),
                "camera_timing": None if not simulated or o.camera_timing is None else asdict(o.camera_timing),
                # Calibrated by `deepaf-host calibrate`: the stitcher turns the tiles back by it.
                "camera_rotation_deg": _profile_rotation(o),
                # And its flat field on blank glass: the stitcher's when the scan sees too little glass.
                "flat_field_path": _profile_flat_field(o),
            }
            runner = ScanRunner(
                stage, camera, plan, o.out_dir, config, resume=o.resume, events=events,
                clock=clock, sleep=sleep, simulated_clock=simulated, metadata=metadata, truth=sim.truth_of(camera),
            )
            ready = True
            yield PreparedScan(o, plan, runner)
    except FrameSizeError as exc:
        if ready:
            raise
        _remove_created(created)
        raise _frame_size_refusal(exc) from None
    except BaseException:
        if not ready:
            _remove_created(created)
        raise


def run_scan(opts: ScanOptions, events: ScanEvents | Any | None = None) -> dict[str, Any]:
    """Check everything, connect, plan, and run the scan; returns the report."""
    with prepare_scan(opts, events) as scan:
        return scan.run()


__all__ = [
    "OPTIONS_FILE", "PreparedScan", "ScanOptions", "is_virtual_port", "open_microscope", "prepare_scan",
    "resolve_options", "run_scan",
]


def _profile_flat_field(o: ScanOptions) -> str | None:
    """The profile's calibrated flat field for the objective, when the file is there."""
    table = o.profile.for_objective(o.objective) if o.profile is not None else None
    path = None if table is None else table.flat_field
    return str(Path(path).resolve()) if path is not None and Path(path).is_file() else None


def _profile_rotation(o: ScanOptions) -> float | None:
    """The camera's rotation on the stage from the profile's table for the objective."""
    table = o.profile.for_objective(o.objective) if o.profile is not None else None
    return None if table is None else table.rotation_deg
