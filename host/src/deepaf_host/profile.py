"""The microscope profile: one TOML file that says what a user would otherwise type on
every command (port, camera, frame sizes, scan area, z-start, z-min, and per objective
its pixel size, rotation, blank image, flat field and model).

``deepaf-host profile init FILE`` writes a commented template (:func:`template`);
``scan``, ``collect`` and ``calibrate`` read it (``--profile FILE``, or the default
:func:`default_path` when it exists); ``calibrate`` writes what it measured back into
it (:func:`update_file`, which keeps the user's comments). A flag always overrides the
profile, and the profile overrides the built-in defaults.

The default profile describes the user's own microscope: a command given another
``--port`` than the profile's does not read it (``deepaf-host scan --port sim://`` stays
the virtual demo). A profile named with ``--profile`` is always read.

Everything is checked when the file is read: unknown tables and keys, types, units
and what contradicts itself (a z-start below the z-min, an area outside the travel, an
objective in use that has no table, a virtual camera on a real port, a ``sim://``
camera of another objective) raise :class:`ProfileError`, naming the file, the table
and the key. Paths in the profile are relative to its folder.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TypeGuard, overload
from urllib.parse import parse_qsl, urlsplit

from .errors import ConfigError, OptionError
from .codes import default_setting

FILE_NAME = "profile.toml"

#: Table -> its keys (an unknown key is an error: a typo must not silently do nothing).
MICROSCOPE_KEYS = ("name", "port", "camera", "low_size", "high_size", "objective", "illumination")
STAGE_KEYS = ("travel_mm", "area_mm", "z_start_um", "z_min_um", "backlash_um", "glass_mm", "calibrate_at_mm")
SCAN_KEYS = ("autofocus", "overlap", "settle_s")
OBJECTIVE_KEYS = ("pixel_size_um", "high_pixel_size_um", "rotation_deg", "skew_deg", "blank_image", "flat_field", "model")
TABLES = ("microscope", "stage", "scan", "objectives")


class ProfileError(OptionError):
    """A profile cannot be read, or contradicts itself. ``path`` is the file, ``where``
    the table and key (``[stage] z_start_um``)."""

    def __init__(self, path: str | Path, where: str, reason: str) -> None:
        self.path = str(path)
        self.where = where
        detail = f"{self.path}: {where}: {reason}" if where else f"{self.path}: {reason}"
        super().__init__("--profile", detail)


@dataclass(frozen=True)
class ObjectiveProfile:
    """What a profile says of one objective."""

    preset: str
    pixel_size_um: float | None = None
    high_pixel_size_um: float | None = None
    rotation_deg: float | None = None
    skew_deg: float | None = None
    blank_image: Path | None = None
    flat_field: Path | None = None
    model: str | None = None


@dataclass(frozen=True)
class Profile:
    """A microscope profile as read from ``path`` (None: a value not given)."""

    path: Path
    name: str | None = None
    port: str | None = None
    camera: str | None = None
    low_size: tuple[int, int] | None = None
    high_size: tuple[int, int] | None = None
    objective: str | None = None
    #: The light of the autofocus frames: ``koehler`` (the condenser) or an LED added
    #: for seed 001's model (``optics.illumination.ILLUMINATIONS``).
    illumination: str | None = None
    travel_mm: tuple[float, float, float] | None = None
    area_mm: tuple[float, float, float, float] | None = None
    z_start_um: float | None = None
    z_min_um: float | None = None
    backlash_um: tuple[float, float, float] | None = None
    glass_mm: tuple[float, float] | None = None
    calibrate_at_mm: tuple[float, float] | None = None
    scan: dict[str, Any] = field(default_factory=dict)
    objectives: dict[str, ObjectiveProfile] = field(default_factory=dict)

    def for_objective(self, objective: str | None) -> ObjectiveProfile | None:
        """The table of ``objective`` (a preset name, "20x" or "20x/0.75"; None: the
        profile's objective in use), or None when the profile has none for it."""
        name = objective if objective is not None else self.objective
        if name is None:
            return None
        preset = _preset(name)
        return self.objectives.get(preset) if preset else None

    @property
    def area_text(self) -> str | None:
        """The area as the ``--area`` flag spells it (``X0,Y0,X1,Y1`` mm)."""
        return None if self.area_mm is None else ",".join(f"{v:g}" for v in self.area_mm)

    def applies_to(self, port: str | None) -> bool:
        """Whether a command given ``port`` (None: not given) is about this microscope."""
        return port is None or not port.strip() or self.port is None or port.strip() == self.port


# --- where it lives ------------------------------------------------------------------


def default_path() -> Path:
    """The user's profile: ``$XDG_CONFIG_HOME/deepaf/profile.toml`` (``~/.config/...``
    on Linux; the platform's configuration folder elsewhere)."""
    import click

    return Path(click.get_app_dir("deepaf")) / FILE_NAME


def find(given: str | Path | None, port: str | None = None) -> Profile | None:
    """The profile a command reads: ``given`` (``--profile``; it must exist), else the
    default one when it exists and ``port`` (the ``--port`` given, None if not) is its
    port or it names none; else None."""
    if given is not None:
        return load(given)
    path = default_path()
    if not path.is_file():
        return None
    profile = load(path)
    return profile if profile.applies_to(port) else None


# --- reading -------------------------------------------------------------------------


def _preset(name: str) -> str | None:
    from .optics.presets import get_objective

    try:
        obj = get_objective(name)
    except ConfigError:
        return None
    from .optics.presets import OBJECTIVES

    return next(k for k, v in OBJECTIVES.items() if v is obj)


def _illumination(mic: _Reader) -> str | None:
    """``[microscope] illumination``: a named light of ``optics.illumination``."""
    from .optics.illumination import ILLUMINATIONS

    light = mic.text("illumination")
    if light is not None and light not in ILLUMINATIONS:
        raise mic.fail("illumination", f"unknown light {light!r}; one of {', '.join(ILLUMINATIONS)}")
    return light


def _number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Reader:
    """Typed access to one table, with errors naming the file, table and key."""

    def __init__(self, path: Path, table: str, data: Any, known: tuple[str, ...]) -> None:
        self.path, self.table = path, table
        if not isinstance(data, dict):
            raise ProfileError(path, f"[{table}]", f"must be a table, not {type(data).__name__}")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ProfileError(path, f"[{table}] {unknown[0]}", f"unknown key; known: {', '.join(known)}")
        self.data = data

    def fail(self, key: str, reason: str) -> ProfileError:
        return ProfileError(self.path, f"[{self.table}] {key}", reason)

    def text(self, key: str) -> str | None:
        v = self.data.get(key)
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, not {v!r}")
        return v.strip()

    def number(self, key: str, ok: Any = lambda v: True, valid: str = "") -> float | None:
        v = self.data.get(key)
        if v is None:
            return None
        if not _number(v) or not ok(float(v)):
            raise self.fail(key, f"must be a number{' ' + valid if valid else ''}, not {v!r}")
        return float(v)

    # One signature per list length, so that a profile field gets a tuple of its own length.
    @overload
    def numbers(self, key: str, n: Literal[2], ok: Callable[[float], bool] = ..., valid: str = "") -> tuple[float, float] | None: ...

    @overload
    def numbers(self, key: str, n: Literal[3], ok: Callable[[float], bool] = ..., valid: str = "") -> tuple[float, float, float] | None: ...

    @overload
    def numbers(self, key: str, n: Literal[4], ok: Callable[[float], bool] = ...,
                valid: str = "") -> tuple[float, float, float, float] | None: ...

    def numbers(self, key: str, n: int, ok: Callable[[float], bool] = lambda v: True, valid: str = "") -> tuple[float, ...] | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, str):
            try:
                v = [float(x) for x in v.split(",")]
            except ValueError:
                raise self.fail(key, f"must be {n} numbers, not {v!r}") from None
        if not isinstance(v, list) or len(v) != n or not all(_number(x) and ok(float(x)) for x in v):
            raise self.fail(key, f"must be a list of {n} numbers{' ' + valid if valid else ''}, not {v!r}")
        return tuple(float(x) for x in v)

    def size(self, key: str) -> tuple[int, int] | None:
        v = self.text(key)
        if v is None:
            return None
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", v)
        if not m or min(int(m[1]), int(m[2])) < 8:
            raise self.fail(key, f"must be WIDTHxHEIGHT in pixels (like \"1280x720\"), not {v!r}")
        return int(m[1]), int(m[2])

    def file(self, key: str) -> Path | None:
        v = self.text(key)
        if v is None:
            return None
        p = Path(v).expanduser()
        p = p if p.is_absolute() else self.path.parent / p
        if not p.is_file():
            raise self.fail(key, f"{p} does not exist (paths are relative to the profile's folder)")
        return p


def _tomllib(path: str | Path) -> ModuleType:
    """The standard library's TOML reader; :class:`ProfileError` on Python 3.10, which has none."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise ProfileError(path, "", "reading a profile needs Python 3.11 or later (tomllib)") from None
    return tomllib


def load(path: str | Path) -> Profile:
    """Read and check the profile at ``path``; raises :class:`ProfileError`."""
    tomllib = _tomllib(path)
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(p, "", f"cannot read it: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(p, "", f"not valid TOML: {exc}") from None
    return from_dict(doc, p)


def from_dict(doc: dict[str, Any], path: Path) -> Profile:
    """A :class:`Profile` from parsed TOML, checked (see the module docstring)."""
    unknown = sorted(set(doc) - set(TABLES))
    if unknown:
        raise ProfileError(path, f"[{unknown[0]}]", f"unknown table or key; known tables: {', '.join(TABLES)}")
    mic = _Reader(path, "microscope", doc.get("microscope", {}), MICROSCOPE_KEYS)
    stage = _Reader(path, "stage", doc.get("stage", {}), STAGE_KEYS)
    scan = _Reader(path, "scan", doc.get("scan", {}), SCAN_KEYS)
    objectives_doc = doc.get("objectives", {})
    if not isinstance(objectives_doc, dict):
        raise ProfileError(path, "[objectives]", "must hold one table per objective, like [objectives.20x]")

    objectives: dict[str, ObjectiveProfile] = {}
    for key, table in objectives_doc.items():
        preset = _preset(key)
        if preset is None:
            from .optics.presets import OBJECTIVES

            raise ProfileError(path, f"[objectives.{key}]", f"unknown objective; presets: {', '.join(OBJECTIVES)}")
        if preset in objectives:
            raise ProfileError(path, f"[objectives.{key}]", f"a second table for the {preset} objective")
        r = _Reader(path, f"objectives.{key}", table, OBJECTIVE_KEYS)
        objectives[preset] = ObjectiveProfile(
            preset=preset,
            pixel_size_um=r.number("pixel_size_um", lambda v: v > 0, "> 0"),
            high_pixel_size_um=r.number("high_pixel_size_um", lambda v: v > 0, "> 0"),
            rotation_deg=r.number("rotation_deg", lambda v: abs(v) <= 45, "within +-45 degrees"),
            skew_deg=r.number("skew_deg", lambda v: abs(v) <= 45, "within +-45 degrees"),
            blank_image=r.file("blank_image"),
            flat_field=r.file("flat_field"),
            model=None if r.text("model") is None else str(r.file("model")),
        )

    objective = mic.text("objective")
    if objective is not None:
        preset = _preset(objective)
        if preset is None:
            from .optics.presets import OBJECTIVES

            raise mic.fail("objective", f"unknown objective {objective!r}; presets: {', '.join(OBJECTIVES)}")
        if objectives and preset not in objectives:
            raise mic.fail("objective", f"{objective} has no [objectives.{preset}] table (the profile has "
                                        f"{', '.join(objectives)})")
        objective = preset

    autofocus = scan.text("autofocus")
    if autofocus is not None:
        from .autofocus import STRATEGIES

        if autofocus not in STRATEGIES:
            raise scan.fail("autofocus", f"unknown strategy {autofocus!r}; known: {', '.join(STRATEGIES)}")
    scan_values = {
        "autofocus": autofocus,
        "overlap": scan.number("overlap", lambda v: 0 <= v < 0.9, "from 0 to below 0.9"),
        "settle_s": scan.number("settle_s", lambda v: v >= 0, ">= 0"),
    }
    profile = Profile(
        path=path,
        name=mic.text("name"),
        port=mic.text("port"),
        camera=mic.text("camera"),
        low_size=mic.size("low_size"),
        high_size=mic.size("high_size"),
        objective=objective,
        illumination=_illumination(mic),
        travel_mm=stage.numbers("travel_mm", 3, lambda v: v > 0, "> 0"),
        area_mm=stage.numbers("area_mm", 4),
        z_start_um=stage.number("z_start_um"),
        z_min_um=stage.number("z_min_um"),
        backlash_um=stage.numbers("backlash_um", 3, lambda v: 0 <= v <= 5000, "from 0 to 5000 um"),
        glass_mm=stage.numbers("glass_mm", 2),
        calibrate_at_mm=stage.numbers("calibrate_at_mm", 2),
        scan={k: v for k, v in scan_values.items() if v is not None},
        objectives=objectives,
    )
    _check_consistent(profile, mic, stage)
    return profile


def _check_consistent(p: Profile, mic: _Reader, stage: _Reader) -> None:
    """What the values say of each other."""
    if p.z_start_um is not None and p.z_min_um is not None and p.z_start_um < p.z_min_um:
        raise stage.fail("z_start_um", f"{p.z_start_um:g} um is below z_min_um {p.z_min_um:g} um: every scan "
                                       "would start beyond its own Z safety limit")
    if p.area_mm is not None:
        x0, y0, x1, y1 = p.area_mm
        if x0 == x1 or y0 == y1:
            raise stage.fail("area_mm", f"{list(p.area_mm)} mm has no extent")
    if p.travel_mm is not None:
        tx, ty, tz = p.travel_mm
        checks: list[tuple[str, list[float], float, str]] = []
        if p.area_mm is not None:
            checks += [("area_mm", [p.area_mm[0], p.area_mm[2]], tx, "X"), ("area_mm", [p.area_mm[1], p.area_mm[3]], ty, "Y")]
        for key, value in (("glass_mm", p.glass_mm), ("calibrate_at_mm", p.calibrate_at_mm)):
            if value is not None:
                checks += [(key, [value[0]], tx, "X"), (key, [value[1]], ty, "Y")]
        for key, um in (("z_start_um", p.z_start_um), ("z_min_um", p.z_min_um)):
            if um is not None:
                checks.append((key, [um / 1000.0], tz, "Z"))
        for key, values, travel, axis in checks:
            for v in values:
                if not -travel <= v <= 0:
                    raise stage.fail(key, f"{axis} = {v:g} mm is outside the travel_mm {axis} range "
                                          f"({-travel:g} to 0 mm, machine coordinates)")
    camera = p.camera or ""
    if camera.startswith("sim://"):
        if p.port is not None and not p.port.startswith("sim://"):
            raise mic.fail("camera", f"the virtual camera {camera} follows a virtual board; port {p.port} is not one")
        parts = urlsplit(camera)
        preset = (parts.netloc + parts.path).strip("/")
        if preset and p.objective is not None and _preset(preset) != p.objective:
            raise mic.fail("camera", f"{camera} renders the {preset} objective, but objective is {p.objective}")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for key, size in (("low", p.low_size), ("high", p.high_size)):
            if size is not None and key in query and query[key].lower() != f"{size[0]}x{size[1]}":
                raise mic.fail(f"{key}_size", f"{size[0]}x{size[1]} differs from the camera's {key}={query[key]}")


# --- writing -------------------------------------------------------------------------


def template(*, port: str | None = None, camera: str | None = None, objective: str = "20x") -> str:
    """The commented profile ``profile init`` writes. Values not known are commented out
    (a commented key is not set)."""
    preset = _preset(objective) or objective

    def line(key: str, value: str | None, example: str, comment: str) -> str:
        text = f"{key} = {toml_value(value)}" if value is not None else f"# {key} = {example}"
        return f"{text:<38s} # {comment}"

    body = [
        "# DeepAf microscope profile. Read by deepaf-host scan, collect and calibrate (--profile FILE,",
        f"# or {default_path()} when it exists); any flag on the command line overrides it.",
        "# 'deepaf-host calibrate' writes what it measures into this file and keeps these comments.",
        "# A commented key is not set. Units are in the names; coordinates are the machine's",
        "# (after homing every axis lives in [-travel, 0]). Paths are relative to this file.",
        "",
        "[microscope]",
        line("name", None, '"bench-1"', "a name for reports"),
        line("port", port, '"/dev/ttyACM0"', "serial port of the stage board; sim:// for the virtual one"),
        line("camera", camera, '"0"', "camera index, device path, or sim://..."),
        line("low_size", None, '"1280x720"', "low-res frame (tissue detection, autofocus); the camera must deliver it"),
        line("high_size", None, '"4056x3040"', "high-res tile"),
        line("objective", preset, "", "the objective in use: one of the [objectives.*] tables"),
        line("illumination", None, '"koehler"', "light of the autofocus frames: koehler (the condenser), or off-axis "
             "(an LED at 24 deg, for the FCFNN model)"),
        "",
        "[stage]",
        line("travel_mm", None, "[" + ", ".join(f"{default_setting(n):g}" for n in (130, 131, 132)) + "]",
             "X, Y, Z travel (the board's $130-$132)"),
        line("area_mm", None, "[-32.0, -22.0, -28.0, -18.0]", "scan / collect area X0, Y0, X1, Y1 (mm)"),
        line("z_start_um", None, "-4100.0", "Z where the specimen is roughly in focus"),
        line("z_min_um", None, "-7500.0", "Z safety limit: the objective is never driven below it"),
        line("backlash_um", None, "[0.0, 0.0, 0.0]", "lost motion left after the board's own compensation (calibrate)"),
        line("glass_mm", None, "[-45.0, -20.0]", "a place of clean glass (calibrate's flat field)"),
        line("calibrate_at_mm", None, "[-30.0, -20.0]", "a place on tissue (calibrate's jogs and Z backlash)"),
        "",
        "[scan]",
        line("autofocus", None, '"search"', "search, stack, sweep or single-shot"),
        line("overlap", None, "0.1", "between neighbouring tiles, a fraction of the field"),
        line("settle_s", None, "0.2", "wait after each XY move"),
        "",
        f"[objectives.{preset}]",
        line("pixel_size_um", None, "0.1806", "low-res pixel in the specimen, at low_size (calibrate)"),
        line("high_pixel_size_um", None, "0.0570", "high-res pixel (calibrate)"),
        line("rotation_deg", None, "0.0", "camera on the stage: +X this far from the image rows, towards +row (calibrate)"),
        line("skew_deg", None, "0.0", "stage Y off square to X (calibrate)"),
        line("blank_image", None, f'"blank-{preset}.png"', "low-res frame of clean glass: tissue detection (calibrate)"),
        line("flat_field", None, f'"flat-{preset}.tif"', "high-res flat field, mean 1 per channel (calibrate)"),
        line("model", None, '"my-model.tflite"', "single-shot model for this objective"),
    ]
    return "\n".join(body) + "\n"


def toml_value(value: Any) -> str:
    """A TOML literal for a string, number, bool or list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML profile values must be finite, not {value!r}")
        return repr(round(value, 6))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, (str, Path)):
        s = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'
    raise TypeError(f"no TOML literal for {value!r}")


_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


def _table_name(header: str) -> str:
    return ".".join(part.strip().strip('"') for part in header.split("."))


def _value_end(line: str, start: int) -> int:
    """Index just past the TOML value that starts at ``start`` (a string, array or bare)."""
    i = start
    if i < len(line) and line[i] == '"':
        i += 1
        while i < len(line) and line[i] != '"':
            i += 2 if line[i] == "\\" else 1
        return min(i + 1, len(line))
    if i < len(line) and line[i] == "[":
        return line.index("]", i) + 1 if "]" in line[i:] else len(line)
    hash_at = line.find("#", i)
    return len(line.rstrip()) if hash_at < 0 else len(line[:hash_at].rstrip())


def set_value(text: str, table: str, key: str, value: Any) -> str:
    """``text`` (a TOML profile) with ``table.key = value``: the key's line replaced (its
    comment kept), else a commented ``# key = ...`` line of that table taken, else a line
    added at the table's end; a missing table is appended."""
    lines = text.splitlines()
    literal = toml_value(value)
    start = end = None
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m:
            if start is not None:
                end = i
                break
            if _table_name(m[1]) == table:
                start = i
    if start is None:
        head = ".".join(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else f'"{part}"' for part in table.split("."))
        body = "\n".join(lines).rstrip("\n")
        return f"{body}\n\n[{head}]\n{key} = {literal}\n"
    end = len(lines) if end is None else end
    pattern = re.compile(rf"^(\s*){re.escape(key)}(\s*=\s*)")
    commented = re.compile(rf"^\s*#\s*{re.escape(key)}(\s*=\s*)")
    for i in range(start + 1, end):
        m = pattern.match(lines[i])
        if m:
            stop = _value_end(lines[i], m.end())
            lines[i] = lines[i][: m.end()] + literal + lines[i][stop:]
            return "\n".join(lines) + "\n"
    for i in range(start + 1, end):
        m = commented.match(lines[i])
        if m:
            stop = _value_end(lines[i], m.end())
            tail = lines[i][stop:]
            lines[i] = f"{key} = {literal}" + (tail if tail.strip().startswith("#") else "")
            return "\n".join(lines) + "\n"
    last = end
    while last > start + 1 and not lines[last - 1].strip():
        last -= 1
    lines.insert(last, f"{key} = {literal}")
    return "\n".join(lines) + "\n"


def update_file(path: str | Path, values: dict[tuple[str, str], Any]) -> Profile:
    """Write ``{(table, key): value}`` into the profile at ``path`` (created from the
    template when missing), atomically, after checking that the result reads back as a
    valid profile with those values. Returns the profile as read back."""
    tomllib = _tomllib(path)

    p = Path(path).expanduser()
    text = p.read_text(encoding="utf-8") if p.exists() else template()
    for (table, key), value in values.items():
        text = set_value(text, table, key, value)
    doc = tomllib.loads(text)
    for (table, key), value in values.items():
        node: Any = doc
        for part in (*table.split("."), key):
            node = node.get(part) if isinstance(node, dict) else None
        expected = list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, Path) else value)
        if node != expected and not (_number(node) and _number(expected) and math.isclose(node, expected, rel_tol=1e-5)):
            raise ProfileError(p, f"[{table}] {key}", f"writing {value!r} read back as {node!r}; the file was not changed")
    profile = from_dict(doc, p)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)
    return profile


def write_template(path: str | Path, *, force: bool = False, **kwargs: Any) -> Path:
    """Write :func:`template` to ``path`` (not over an existing file unless ``force``)."""
    tomllib = _tomllib(path)

    p = Path(path).expanduser()
    if p.exists() and not force:
        raise ProfileError(p, "", "already exists (delete it, or choose another file)")
    text = template(**kwargs)
    from_dict(tomllib.loads(text), p)  # the template must itself be a valid profile
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


# --- what a command runs on ----------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """The microscope a command (``calibrate``, ``collect``) runs on: flags over the
    profile over the defaults (the virtual slide's only on a ``sim://`` port)."""

    port: str
    camera: str | None
    objective: str
    low_size: tuple[int, int] | None = None
    high_size: tuple[int, int] | None = None
    z_start_um: float | None = None
    z_min_um: float | None = None
    area_mm: str | None = None
    pixel_size_um: float | None = None
    blank_image: Path | None = None
    profile: Profile | None = None

    @property
    def virtual(self) -> bool:
        return self.port.startswith("sim://")


def _sim_preset(camera: str | None) -> str | None:
    if not camera or not camera.startswith("sim://"):
        return None
    parts = urlsplit(camera)
    return (parts.netloc + parts.path).strip("/") or None


def resolve_setup(
    profile: Profile | None,
    *,
    port: str | None = None,
    camera: str | None = None,
    objective: str | None = None,
    low_size: str | None = None,
    high_size: str | None = None,
    z_start_um: float | None = None,
    z_min_um: float | None = None,
    area_mm: str | None = None,
    need: tuple[str, ...] = ("z_start_um", "z_min_um"),
) -> Setup:
    """Fill a command's flags (None: not given) from ``profile``, then the defaults; on
    a real port the values in ``need`` must come from one of them. Raises ``OptionError``
    naming the flag."""
    from .optics.presets import OBJECTIVES
    from .scan.options import VIRTUAL_Z_START_UM, parse_size
    from .scan.plan import DEMO_AREA_MM

    prof = profile
    port = (port or (prof.port if prof else None) or "").strip()
    if not port:
        raise OptionError("--port", "required: give --port (a serial port like /dev/ttyACM0, or sim://) or set "
                                    "[microscope] port in the profile")
    virtual = port.startswith("sim://")
    if camera is None and prof is not None and prof.camera is not None:
        camera = prof.camera
    if camera is not None and camera.startswith("sim://") and not virtual:
        raise OptionError("--camera", f"the virtual camera {camera} follows a virtual board; {port} is not one (use --port sim://)")
    preset = _sim_preset(camera)
    if preset is not None and _preset(preset) is None:
        raise OptionError("--camera", f"unknown objective {preset!r} in {camera}; presets: {', '.join(OBJECTIVES)}")
    if objective is not None:
        if _preset(objective) is None:
            raise OptionError("--objective", f"unknown objective {objective!r}; presets: {', '.join(OBJECTIVES)}")
        if preset is not None and _preset(preset) != _preset(objective):
            raise OptionError("--objective", f"{objective} differs from the virtual camera's objective ({camera})")
        objective = str(_preset(objective))
    else:
        objective = str(_preset(preset) if preset else (prof.objective if prof and prof.objective else "20x"))
    lo = parse_size(low_size, "--low-size") if low_size is not None else (prof.low_size if prof else None)
    hi = parse_size(high_size, "--high-size") if high_size is not None else (prof.high_size if prof else None)
    values: dict[str, Any] = {
        "z_start_um": z_start_um if z_start_um is not None else (prof.z_start_um if prof else None),
        "z_min_um": z_min_um if z_min_um is not None else (prof.z_min_um if prof else None),
        "area_mm": area_mm if area_mm is not None else (prof.area_text if prof else None),
    }
    if virtual:
        values["z_start_um"] = VIRTUAL_Z_START_UM if values["z_start_um"] is None else values["z_start_um"]
        values["area_mm"] = values["area_mm"] or DEMO_AREA_MM
    flags = {"z_start_um": "--z-start", "z_min_um": "--z-min", "area_mm": "--area"}
    for key in need:
        if values[key] is None and not virtual:
            raise OptionError(flags[key], f"required on a real port ({port}): give it, or set [stage] {key} in the profile")
    if values["z_start_um"] is not None and values["z_min_um"] is not None and values["z_start_um"] < values["z_min_um"]:
        raise OptionError("--z-start", f"{values['z_start_um']:g} um is below --z-min {values['z_min_um']:g} um")
    table = prof.for_objective(objective) if prof else None
    pixel = None
    if table is not None and table.pixel_size_um is not None and not (camera or "").startswith("sim://") and not (
        camera is None and virtual
    ):
        pixel = table.pixel_size_um
    return Setup(
        port=port, camera=camera, objective=objective, low_size=lo, high_size=hi, z_start_um=values["z_start_um"],
        z_min_um=values["z_min_um"], area_mm=values["area_mm"], pixel_size_um=pixel,
        blank_image=table.blank_image if table else None, profile=prof,
    )


def tissue_thresholds(blank_image: Path) -> Any:
    """Tissue-detection thresholds from a profile's blank image (as ``scan --blank``)."""
    import cv2

    from .tissue import calibrate as from_blank

    bgr = cv2.imread(str(blank_image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ProfileError(blank_image, "blank_image", "cannot be read as an image")
    try:
        return from_blank(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    except ValueError as exc:
        raise ProfileError(blank_image, "blank_image", str(exc)) from None
