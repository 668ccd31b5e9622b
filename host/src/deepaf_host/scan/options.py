"""The options of a scan: what the user gave, what a resumed scan's folder says, the
defaults, and the check of every value (in the user's units, naming the flag).

``ScanOptions`` holds None for "not given". :func:`resolve_options` fills it: the
value given; on ``--resume`` the folder's ``scan_options.json`` (or, for a folder
written before it existed, its ``report.json``); then the microscope profile
(``deepaf_host.profile``: port, camera, sizes, area, z, and the objective's pixel size,
blank image and model); then the defaults. The virtual
slide's defaults (``--area``, ``--z-start``) hold on a ``sim://`` port only: on a real
port ``--area``, ``--z-start`` and ``--z-min`` must be given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..autofocus import DEFAULT_STRATEGY, STRATEGIES, FocusLimits
from ..errors import ConfigError, OptionError
from ..focus.measures import MEASURES
from .manifest import IMAGE_FORMATS, MANIFEST, REPORT, write_atomic
from .plan import DEMO_AREA_MM, Area
from .runner import ScanConfig
from .timing import PI_HQ_TIMING, CameraTiming

#: The resolved options of the scan in a folder (written when the scan starts).
OPTIONS_FILE = "scan_options.json"
OPTIONS_FORMAT = "deepaf-scan-options/1"

#: Where the virtual slide's specimen is roughly in focus: the default ``--z-start``
#: on a ``sim://`` port only (the runner's own default, for library use).
VIRTUAL_Z_START_UM = ScanConfig().z_start_um

#: ScanOptions field -> the CLI flag that sets it (errors name the flag).
FLAGS: dict[str, str] = {
    "port": "--port", "out_dir": "--out", "camera": "--camera", "area_mm": "--area", "objective": "--objective",
    "autofocus": "--autofocus", "model": "--model", "measure": "--measure", "overlap": "--overlap",
    "resume": "--resume", "z_min_um": "--z-min", "z_start_um": "--z-start", "max_correction_um": "--max-correction",
    "settle_s": "--settle", "image_format": "--format", "blank_image": "--blank", "pixel_size_um": "--pixel-size-um",
    "low_size": "--low-size", "high_size": "--high-size", "home": "--no-home", "illumination": "--illumination",
    "two_shot_um": "--two-shot",
}

#: Options that define the tiles and their images: a resumed scan keeps the folder's
#: (given again with another value, they are refused).
PLAN_FIELDS = (
    "area_mm", "overlap", "objective", "autofocus", "model", "measure", "image_format", "pixel_size_um",
    "low_size", "high_size", "illumination",
)
#: Options a resumed scan takes from the folder unless given again (then the new value
#: holds: a camera on another path, a corrected start z, a longer settle).
TUNABLE_FIELDS = ("camera", "z_start_um", "z_min_um", "max_correction_um", "settle_s", "blank_image", "two_shot_um")

#: Defaults that hold on any port (None in ScanOptions means "not given").
DEFAULTS: dict[str, Any] = {
    "objective": "20x", "autofocus": DEFAULT_STRATEGY, "overlap": 0.1,
    "max_correction_um": FocusLimits().max_correction_um, "settle_s": ScanConfig().settle_s, "image_format": "jpg",
}

#: Largest frame side accepted by --low-size/--high-size (a 64 MP sensor is 9248 wide).
MAX_FRAME_SIDE = 20000


@dataclass
class ScanOptions:
    """What a user asks of a scan. ``None``: not given (a default, or on ``--resume``
    the folder's value, fills it: see :func:`resolve_options`)."""

    port: str
    out_dir: Path
    camera: str | None = None
    area_mm: str | None = None
    objective: str | None = None
    autofocus: str | None = None
    autofocus_options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    measure: str | None = None
    overlap: float | None = None
    resume: bool = False
    z_min_um: float | None = None
    z_start_um: float | None = None
    max_correction_um: float | None = None
    settle_s: float | None = None
    image_format: str | None = None
    blank_image: Path | None = None
    pixel_size_um: float | None = None
    #: OpenCV cameras: frame sizes ``"WxH"`` or (width, height) [default 1280x720 and
    #: 4056x3040]; the virtual camera takes them into its URL.
    low_size: str | tuple[int, int] | None = None
    high_size: str | tuple[int, int] | None = None
    #: The light of the low-res (autofocus) frames (``optics.illumination``): the
    #: condenser, or seed 001's LED added to the microscope; a model is refused under
    #: other light. The virtual camera takes it into its URL.
    illumination: str | None = None
    #: Second high-res shot (um above the tile) of every tile whose QC is not ok, for
    #: ``deepaf-host refocus --two-shot``; None: none.
    two_shot_um: float | None = None
    home: bool = True
    #: Simulated scans only: the camera time model (None: frames take no simulated time).
    camera_timing: CameraTiming | None = PI_HQ_TIMING
    #: The microscope profile (``deepaf_host.profile.Profile``) whose values fill what is
    #: not given; None: no profile.
    profile: Any = None


def is_virtual_port(port: str) -> bool:
    """The virtual board: the only port on which the virtual slide's defaults apply."""
    return port.strip().startswith("sim://")


def parse_size(text: str | tuple[int, int], option: str) -> tuple[int, int]:
    """``"1280x720"`` -> (1280, 720); ``option`` names the flag in the error."""
    if isinstance(text, (tuple, list)):
        values = list(text)
    else:
        try:
            values = [int(v) for v in str(text).lower().replace(" ", "").split("x")]
        except ValueError:
            raise OptionError(option, f"expected WIDTHxHEIGHT in pixels (like 1280x720), got {text!r}") from None
    if len(values) != 2 or not all(isinstance(v, int) and 8 <= v <= MAX_FRAME_SIDE for v in values):
        raise OptionError(option, f"expected WIDTHxHEIGHT, each 8 to {MAX_FRAME_SIDE} pixels, got {text!r}")
    return values[0], values[1]


def _size_text(size: tuple[int, int] | None) -> str | None:
    return None if size is None else f"{size[0]}x{size[1]}"


# --- options -------------------------------------------------------------------------


def _saved_options(out_dir: Path) -> dict[str, Any]:
    """The options of the scan in ``out_dir``: its ``scan_options.json`` or, for a folder
    written before that file existed, what its ``report.json`` says of the plan."""
    path = out_dir / OPTIONS_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            values = data["options"]
            if data.get("format") != OPTIONS_FORMAT or not isinstance(values, dict):
                raise ValueError(f"format {data.get('format')!r}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OptionError("--resume", f"cannot read the scan's options in {path}: {exc}") from None
        unknown = sorted(set(values) - set(PLAN_FIELDS) - set(TUNABLE_FIELDS))
        if unknown:
            raise OptionError("--resume", f"{path} has options this version does not know: {', '.join(unknown)}")
        return values
    saved: dict[str, Any] = {}
    try:
        report = json.loads((out_dir / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return saved
    if not isinstance(report, dict):
        return saved
    plan = report.get("plan")
    if not isinstance(plan, dict):
        plan = {}
    area = plan.get("area_mm")
    if isinstance(area, list) and len(area) == 4:
        saved["area_mm"] = ",".join(repr(float(v)) for v in area)
    if isinstance(plan.get("overlap"), (int, float)):
        saved["overlap"] = float(plan["overlap"])
    if report.get("autofocus") in STRATEGIES:
        saved["autofocus"] = report["autofocus"]
    for key in ("objective", "camera"):
        if isinstance(report.get(key), str):
            saved[key] = report[key]
    return saved


def _same(name: str, given: Any, saved: Any) -> bool:
    if given is None or saved is None:
        return given is None and saved is None
    if name == "area_mm":
        try:
            a, b = Area.parse_mm(str(given)), Area.parse_mm(str(saved))
        except ConfigError as exc:
            raise OptionError("--area", exc.reason) from None
        return all(math.isclose(u, v, abs_tol=1e-3) for u, v in zip(asdict(a).values(), asdict(b).values()))
    if name in ("low_size", "high_size"):
        return parse_size(given, FLAGS[name]) == parse_size(saved, FLAGS[name])
    if name in ("overlap", "pixel_size_um"):
        return math.isclose(float(given), float(saved), rel_tol=1e-9, abs_tol=1e-12)
    if name == "objective":
        from ..optics.presets import get_objective

        try:
            return get_objective(str(given)).name == get_objective(str(saved)).name
        except ConfigError:
            return str(given) == str(saved)
    if name == "model":
        return Path(str(given)).expanduser().resolve() == Path(str(saved)).expanduser().resolve()
    return bool(given == saved)


def _shown(name: str, value: Any) -> str:
    if value is None:
        return {"model": "the shipped model", "measure": "the strategy's default measure"}.get(name, "none")
    return str(value)


def resolve_options(opts: ScanOptions) -> ScanOptions:
    """``opts`` with every value filled and checked; reads nothing but ``--out``.

    Fills, in order: the value given, on ``--resume`` the folder's (a plan option given
    with another value is refused: tile indices are the resumed scan's keys), the
    default. On a real port ``--area``, ``--z-start`` and ``--z-min`` have no default:
    the virtual slide's must never drive real hardware. Raises ``OptionError``.
    """
    out = Path(opts.out_dir)
    o = replace(opts, out_dir=out, port=(opts.port or "").strip())
    if not o.port and o.profile is not None and o.profile.port:
        o = replace(o, port=o.profile.port)
    if not o.port:
        raise OptionError("--port", "empty port (a serial port like /dev/ttyACM0, or sim:// for the virtual board; or the profile's [microscope] port)")
    virtual = is_virtual_port(o.port)
    from_folder: set[str] = set()
    if o.resume:
        if not (out / MANIFEST).exists() and not (out / OPTIONS_FILE).exists():
            raise OptionError("--resume", f"{out} holds no scan to resume (no {MANIFEST}); leave --resume out to start one")
        saved = _saved_options(out)
        for name in (*PLAN_FIELDS, *TUNABLE_FIELDS):
            if name not in saved:
                continue
            given = getattr(o, name)
            if given is None:
                value = saved[name]
                if name == "blank_image" and value is not None:
                    value = Path(value)
                o = replace(o, **{name: value})
                from_folder.add(name)
            elif name in PLAN_FIELDS and not _same(name, given, saved[name]):
                flag = FLAGS[name]
                raise OptionError(
                    flag, f"{given} differs from the scan being resumed in {out} ({_shown(name, saved[name])}); "
                    f"leave {flag} out to resume it as it was planned, or scan into another folder",
                )
    if o.profile is not None:
        o = _from_profile(o, o.profile, from_folder)
    if o.objective is None and o.camera is not None and o.camera.startswith("sim://"):
        preset = urlsplit(o.camera).netloc + urlsplit(o.camera).path.strip("/")
        if preset:
            o = replace(o, objective=preset)  # the virtual camera renders this objective
    for name, default in DEFAULTS.items():
        if getattr(o, name) is None:
            o = replace(o, **{name: default})
    if virtual:
        if o.area_mm is None:
            o = replace(o, area_mm=DEMO_AREA_MM)
        if o.z_start_um is None:
            o = replace(o, z_start_um=VIRTUAL_Z_START_UM)
    else:
        needed = [
            ("area_mm", "--area", "the scan area X0,Y0,X1,Y1 in mm (machine coordinates)"),
            ("z_start_um", "--z-start", "the Z (um, machine coordinates) where the specimen is roughly in focus"),
            ("z_min_um", "--z-min", "the Z safety limit (um): the objective is never driven below it"),
        ]
        for name, flag, what in needed:
            if getattr(o, name) is None:
                raise OptionError(flag, f"required on a real port ({o.port}): {what}; the virtual slide's default never drives real hardware")
    _check_values(o)
    return o


def _from_profile(o: ScanOptions, profile: Any, keep: set[str]) -> ScanOptions:
    """``o`` with what is still None (and not the resumed folder's, ``keep``) taken from
    the microscope profile; the objective's own values follow the objective in use."""
    values: dict[str, Any] = {
        "camera": profile.camera, "low_size": profile.low_size, "high_size": profile.high_size,
        "illumination": profile.illumination,
        "area_mm": profile.area_text, "z_start_um": profile.z_start_um, "z_min_um": profile.z_min_um,
        **profile.scan,
    }
    camera = o.camera if o.camera is not None else values["camera"]
    sim_camera = (camera or "").startswith("sim://") or (camera is None and is_virtual_port(o.port))
    preset = (urlsplit(camera).netloc + urlsplit(camera).path.strip("/")) if camera and camera.startswith("sim://") else ""
    if not preset:  # a virtual camera's preset decides the objective (a contradiction is refused below)
        values["objective"] = profile.objective
    table = profile.for_objective(o.objective or values.get("objective") or preset or DEFAULTS["objective"])
    if table is not None:
        values["blank_image"] = table.blank_image
        if not sim_camera:
            values["pixel_size_um"] = table.pixel_size_um
        if (o.autofocus or values.get("autofocus") or DEFAULTS["autofocus"]) == "single-shot":
            values["model"] = table.model
    for name, value in values.items():
        if value is not None and getattr(o, name) is None and name not in keep:
            o = replace(o, **{name: value})
    return o


def _check_values(o: ScanOptions) -> None:
    """Every value in range, in the user's units; raises ``OptionError``."""
    from ..optics.presets import OBJECTIVES, get_objective

    try:
        Area.parse_mm(str(o.area_mm))
    except ConfigError as exc:
        raise OptionError("--area", exc.reason) from None
    try:
        get_objective(str(o.objective))
    except ConfigError:
        raise OptionError("--objective", f"unknown objective {o.objective!r}; presets: {', '.join(OBJECTIVES)}") from None
    if o.autofocus not in STRATEGIES:
        raise OptionError("--autofocus", f"unknown strategy {o.autofocus!r}; known: {', '.join(STRATEGIES)}")
    if o.measure is not None:
        if o.measure not in MEASURES:
            raise OptionError("--measure", f"unknown focus measure {o.measure!r}; known: {', '.join(sorted(MEASURES))}")
        if o.autofocus == "single-shot":
            raise OptionError("--measure", "applies to --autofocus stack, search and sweep, not single-shot")
    if o.model is not None and o.autofocus != "single-shot":
        raise OptionError("--model", f"applies to --autofocus single-shot, not {o.autofocus}")
    if o.image_format not in IMAGE_FORMATS:
        raise OptionError("--format", f"unknown image format {o.image_format!r}; known: {', '.join(IMAGE_FORMATS)}")
    ranges: list[tuple[str, float | None, Callable[[float], bool], str]] = [
        ("--overlap", o.overlap, lambda v: 0.0 <= v < 0.9, "a fraction of the field, from 0 to below 0.9"),
        ("--settle", o.settle_s, lambda v: v >= 0.0, "seconds, 0 or more"),
        ("--max-correction", o.max_correction_um, lambda v: v > 0.0, "um, more than 0"),
        ("--z-start", o.z_start_um, lambda v: True, "um"),
        ("--z-min", o.z_min_um, lambda v: True, "um"),
        ("--pixel-size-um", o.pixel_size_um, lambda v: v > 0.0, "um, more than 0"),
        ("--two-shot", o.two_shot_um, lambda v: 0.0 < v <= 10.0, "um above the tile, more than 0 and at most 10"),
    ]
    for flag, value, ok, valid in ranges:
        if value is not None and not (math.isfinite(float(value)) and ok(float(value))):
            raise OptionError(flag, f"{value:g} is out of range ({valid})")
    if o.z_min_um is not None and o.z_start_um is not None and o.z_start_um < o.z_min_um:
        raise OptionError(
            "--z-start", f"{o.z_start_um:g} um is below --z-min {o.z_min_um:g} um: the scan would start beyond its own Z safety limit",
        )
    for name in ("low_size", "high_size"):
        if getattr(o, name) is not None:
            parse_size(getattr(o, name), FLAGS[name])
    from ..optics.illumination import ILLUMINATIONS

    if o.illumination is not None and o.illumination not in ILLUMINATIONS:
        raise OptionError("--illumination", f"unknown light {o.illumination!r}; one of {', '.join(ILLUMINATIONS)}")
    camera = (o.camera or "").strip()
    if o.camera is not None and not camera:
        raise OptionError("--camera", "empty camera name (an index like 0, a device path, a video file, or sim://)")
    if o.pixel_size_um is not None and (camera.startswith("sim://") or (o.camera is None and is_virtual_port(o.port))):
        raise OptionError("--pixel-size-um", "applies to OpenCV cameras; the virtual camera's pixel size follows its objective")
    if camera.startswith("sim://"):
        preset = urlsplit(camera).netloc + urlsplit(camera).path.strip("/")
        if preset and get_objective_name(preset) != get_objective_name(str(o.objective)):
            raise OptionError("--objective", f"{o.objective} differs from the virtual camera's objective ({camera})")


def get_objective_name(name: str) -> str:
    from ..optics.presets import get_objective

    try:
        return get_objective(name).name
    except ConfigError:
        return name


def save_options(o: ScanOptions) -> Path:
    """Write ``o``'s plan and tunable options to ``out_dir/scan_options.json`` (atomically)."""
    values: dict[str, Any] = {}
    for name in (*PLAN_FIELDS, *TUNABLE_FIELDS):
        value = getattr(o, name)
        if name in ("low_size", "high_size") and value is not None:
            value = _size_text(parse_size(value, FLAGS[name]))
        elif name == "model" and value is not None:
            value = str(Path(str(value)).expanduser().resolve())
        elif name == "blank_image" and value is not None:
            value = str(Path(value).resolve())
        values[name] = value
    path = Path(o.out_dir) / OPTIONS_FILE
    text = json.dumps({"format": OPTIONS_FORMAT, "options": values}, indent=2) + "\n"
    write_atomic(path, text.encode("utf-8"))
    return path
