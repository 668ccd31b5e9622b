#!/usr/bin/env python3
"""Writes the protocol's tables, kept once in protocol/*.csv, where they are used.

    python3 protocol/generate.py          rewrite every generated file (make protocol)
    python3 protocol/generate.py --check  exit 1, naming them, when any is out of date

Outputs (committed, so building the firmware or installing the host never runs this):

- firmware/codes.h            error and alarm numbers
- firmware/settings_table.h   setting numbers, kinds, ranges and defaults
- firmware/config.h           the block of shared constants between its GENERATED markers
- host/src/deepaf_host/protocol_tables.py   all of it, for the host and the virtual board
- protocol.md                 the tables between its GENERATED markers (the prose is hand-written)

Standard library only: CI and users run it with Debian's python3.
"""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OPEN_HIGH = 1e9  # the upper bound of a range written ">0" or ">=0"
DIALECTS = ("deepaf", "grbl")
AXES = "XYZ"


class TableError(ValueError):
    """A row of protocol/*.csv that cannot be right."""


@dataclass(frozen=True)
class Code:
    number: int
    name: str
    text: str
    dialects: tuple[str, ...]


@dataclass(frozen=True)
class Kind:
    name: str
    storage: str  # u8, u16 or float: how the firmware keeps the value
    range: str  # as protocol.md writes it: "2-20", ">0", ">=0"
    low: float
    high: float
    low_exclusive: bool

    @property
    def integer(self) -> bool:
        return self.storage != "float"


@dataclass(frozen=True)
class Setting:
    number: int
    name: str
    field: str
    unit: str
    kind: Kind
    default: float
    dialects: tuple[str, ...]
    grbl: str


@dataclass(frozen=True)
class Constant:
    name: str
    value: str
    type: str  # int, float, str, ints
    c_suffix: str
    c_override: bool
    why: str


@dataclass(frozen=True)
class Tables:
    errors: list[Code]
    alarms: list[Code]
    kinds: list[Kind]
    settings: list[Setting]
    constants: list[Constant]

    def deepaf_settings(self) -> list[Setting]:
        return [s for s in self.settings if "deepaf" in s.dialects]

    def deepaf_kinds(self) -> list[Kind]:
        used = {s.kind.name for s in self.deepaf_settings()}
        return [k for k in self.kinds if k.name in used]


# --- reading ----------------------------------------------------------------------------


def _rows(name: str, columns: list[str]) -> list[dict[str, str]]:
    path = HERE / name
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != columns:
            raise TableError(f"{name}: columns must be {','.join(columns)}, not {reader.fieldnames}")
        return list(reader)


def _dialects(where: str, text: str) -> tuple[str, ...]:
    dialects = tuple(text.split())
    if not dialects or any(d not in DIALECTS for d in dialects):
        raise TableError(f"{where}: dialects must be some of {' '.join(DIALECTS)}, not {text!r}")
    return dialects


def _increasing(name: str, numbers: list[int]) -> None:
    if numbers != sorted(set(numbers)):
        raise TableError(f"{name}: numbers must be unique and increasing")


def _unique(name: str, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TableError(f"{name}: {', '.join(repeated)} named twice")


def _codes(name: str) -> list[Code]:
    codes = [
        Code(int(r["number"]), r["name"], r["text"], _dialects(f"{name} {r['number']}", r["dialects"]))
        for r in _rows(name, ["number", "name", "dialects", "text"])
    ]
    _increasing(name, [c.number for c in codes])
    for dialect in DIALECTS:
        _unique(name, [c.name for c in codes if dialect in c.dialects])
    return codes


def _kind(row: dict[str, str]) -> Kind:
    text = row["range"]
    if text in (">0", ">=0"):
        low, high, exclusive = 0.0, OPEN_HIGH, text == ">0"
    else:
        low_text, sep, high_text = text.partition("-")
        if not sep:
            raise TableError(f"kinds.csv {row['kind']}: range must be LOW-HIGH, >0 or >=0, not {text!r}")
        low, high, exclusive = float(low_text), float(high_text), False
    if row["storage"] not in ("u8", "u16", "float"):
        raise TableError(f"kinds.csv {row['kind']}: storage must be u8, u16 or float")
    return Kind(row["kind"], row["storage"], text, low, high, exclusive)


def read_tables() -> Tables:
    kinds = [_kind(r) for r in _rows("kinds.csv", ["kind", "storage", "range", "note"])]
    by_name = {k.name: k for k in kinds}
    settings = []
    for r in _rows("settings.csv", ["number", "name", "field", "unit", "kind", "default", "dialects", "grbl"]):
        where = f"settings.csv ${r['number']}"
        kind = by_name.get(r["kind"])
        if kind is None:
            raise TableError(f"{where}: kind {r['kind']!r} is not in kinds.csv")
        setting = Setting(
            int(r["number"]), r["name"], r["field"], r["unit"], kind, float(r["default"]),
            _dialects(where, r["dialects"]), r["grbl"],
        )  # fmt: skip
        if "deepaf" in setting.dialects and not setting.field:
            raise TableError(f"{where}: a DeepAf setting needs its firmware field (settings_t member)")
        low_ok = setting.default > kind.low if kind.low_exclusive else setting.default >= kind.low
        if not (low_ok and setting.default <= kind.high) or (kind.integer and setting.default != int(setting.default)):
            raise TableError(f"{where}: default {r['default']} is outside its kind {kind.name} ({kind.range})")
        settings.append(setting)
    _increasing("settings.csv", [s.number for s in settings])
    _unique("settings.csv", [s.field for s in settings if s.field])
    constants = [
        Constant(r["name"], r["value"], r["type"], r["c_suffix"], r["c_override"] == "yes", r["why"])
        for r in _rows("constants.csv", ["name", "value", "type", "c_suffix", "c_override", "why"])
    ]
    for c in constants:
        if c.type not in ("int", "float", "str", "ints"):
            raise TableError(f"constants.csv {c.name}: type must be int, float, str or ints")
    return Tables(_codes("errors.csv"), _codes("alarms.csv"), kinds, settings, constants)


# --- C ----------------------------------------------------------------------------------

C_NOTE = "Generated by protocol/generate.py from protocol/{src}: edit there, then `make protocol`."


def _c_float(value: float) -> str:
    text = repr(float(value))
    return ("1e9" if value == OPEN_HIGH else text) + "f"


def _c_comment(text: str, indent: str = "") -> list[str]:
    lines = textwrap.wrap(text, 88 - len(indent) - 3)
    if len(lines) == 1:
        return [f"{indent}/* {lines[0]} */"]
    out = [f"{indent}/* {lines[0]}"]
    out += [f"{indent} * {line}" for line in lines[1:-1]]
    out.append(f"{indent} * {lines[-1]} */")
    return out


def codes_h(t: Tables) -> str:
    out = [
        "/*",
        " * codes.h - error and alarm numbers (protocol.md section 10).",
        " *",
        " * Generated by protocol/generate.py from protocol/errors.csv and alarms.csv:",
        " * edit there, then `make protocol`.",
        " * The firmware sends numbers only; the texts are in protocol.md and the host.",
        " */",
        "#ifndef CODES_H",
        "#define CODES_H",
        "",
        "/* Success: not a code of the table, so not spelled STATUS_. */",
        "#define CODE_OK 0",
        "",
    ]
    out += [f"#define STATUS_{c.name} {c.number}" for c in t.errors if "deepaf" in c.dialects]
    out.append("")
    out += [f"#define ALARM_{c.name} {c.number}" for c in t.alarms if "deepaf" in c.dialects]
    out += ["", "#endif", ""]
    return "\n".join(out)


def settings_table_h(t: Tables) -> str:
    kinds = t.deepaf_kinds()
    storages = [k.storage for k in kinds]
    order = {"u8": 0, "u16": 1, "float": 2}
    if [order[s] for s in storages] != sorted(order[s] for s in storages):
        raise TableError("kinds.csv: the firmware's kinds must be grouped u8, then u16, then float")
    floats = [k for k in kinds if not k.integer]
    if any(k.low != 0 for k in floats) or any(k.low_exclusive for k in kinds if k.integer):
        raise TableError("kinds.csv: float kinds start at 0 (or >0), integer kinds at an inclusive low")
    last = {s: [k.name for k in kinds if k.storage == s][-1] for s in storages}
    too_big = [s.number for s in t.deepaf_settings() if s.number > 255]
    if too_big:
        raise TableError(f"settings.csv ${too_big[0]}: the firmware's table keeps setting numbers in one byte (0-255)")
    out = [
        "/*",
        " * settings_table.h - the settings of protocol.md section 8: number, kind, field, default.",
        " *",
        " * Generated by protocol/generate.py from protocol/settings.csv and kinds.csv:",
        " * edit there, then `make protocol`.",
        " * Included by settings.c only; settings_t (settings.h) holds the fields.",
        " */",
        "#ifndef SETTINGS_TABLE_H",
        "#define SETTINGS_TABLE_H",
        "",
        "/* Value kinds, grouped by storage: u8, then u16, then float. */",
        "enum {",
    ]
    out += [f"\tK_{k.name}, /* {k.storage} {k.range} */" for k in kinds]
    out += [
        "};",
        f"#define K_LAST_U8 K_{last['u8']}",
        f"#define K_LAST_INT K_{last['u16']}",
        "",
        "/* Each integer kind's range, R(kind, low, high). */",
        "#define SETTING_INT_RANGES(R) \\",
    ]
    out += [f"\tR(K_{k.name}, {int(k.low)}, {int(k.high)}) \\" for k in kinds if k.integer]
    out[-1] = out[-1][:-2]
    expr = _c_float(OPEN_HIGH)
    for k in reversed([k for k in floats if k.high != OPEN_HIGH]):
        expr = f"((kind) == K_{k.name} ? {_c_float(k.high)} : {expr})"
    positive = " || ".join(f"(kind) == K_{k.name}" for k in floats if k.low_exclusive) or "0"
    out += [
        "",
        "/* A float kind's upper bound (1e9: none); every float kind starts at 0. */",
        f"#define SETTING_FLOAT_HIGH(kind) {expr}",
        "/* The float kinds that must be > 0, not >= 0. */",
        f"#define SETTING_POSITIVE(kind) ({positive})",
        "",
        "/* S(number, kind, field), in increasing number ($$ lists them in this order). */",
        "#define SETTINGS_TABLE(S) \\",
    ]
    out += [f"\tS({s.number}, K_{s.kind.name}, {s.field}) \\" for s in t.deepaf_settings()]
    out[-1] = out[-1][:-2]
    out += ["", "/* Each field is as wide as its kind says (settings_t is declared in settings.h). */"]
    size = {"u8": 1, "u16": 2, "float": 4}
    for s in t.deepaf_settings():
        out.append(
            f"_Static_assert(sizeof(((settings_t *)0)->{s.field}) == {size[s.kind.storage]}, "
            f'"${s.number}: settings_t.{s.field} is not {s.kind.storage}");'
        )
    out += ["", "/* The defaults (settings_t initialiser): the reference build of protocol.md section 8. */"]
    out.append("#define SETTINGS_DEFAULTS { \\")
    for s in t.deepaf_settings():
        value = str(int(s.default)) if s.kind.integer else _c_float(s.default)
        out.append(f"\t.{s.field} = {value}, \\")
    out += ["}", "", "#endif", ""]
    return "\n".join(out)


def _c_value(c: Constant) -> str:
    if c.type == "str":
        return f'"{c.value}"'
    if c.type == "float":
        return _c_float(float(c.value))
    if c.type == "ints":
        return "{" + ", ".join(c.value.split()) + "}"
    return c.value + c.c_suffix


def config_block(t: Tables) -> list[str]:
    out = _c_comment(
        "Shared with the host and the virtual board. " + C_NOTE.format(src="constants.csv")
        + " An option marked overridable may be given on the compiler's command line."
    )  # fmt: skip
    for c in t.constants:
        out += [""] + _c_comment(c.why)
        define = f"#define {c.name} {_c_value(c)}"
        out += [f"#ifndef {c.name}", define, "#endif"] if c.c_override else [define]
    return out


# --- Python -----------------------------------------------------------------------------


def _py_str(text: str) -> str:
    return json.dumps(text)  # a double-quoted Python string literal as well


def _py_strs(texts: tuple[str, ...]) -> str:
    return "(" + ", ".join(_py_str(t) for t in texts) + ("," if len(texts) == 1 else "") + ")"


def _py_value(c: Constant) -> str:
    if c.type == "str":
        return _py_str(c.value)
    if c.type == "float":
        return repr(float(c.value))
    if c.type == "ints":
        return "(" + ", ".join(c.value.split()) + ")"
    return c.value


def python_module(t: Tables) -> str:
    out = [
        '"""The stage protocol\'s tables: codes, settings, shared constants (protocol.md).',
        "",
        C_NOTE.format(src="*.csv").replace("`", "``"),
        "The firmware's headers and protocol.md's tables come from the same rows.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import NamedTuple",
        "",
    ]
    for c in t.constants:
        out += ["#: " + line for line in textwrap.wrap(c.why, 100)]
        out.append(f"{c.name} = {_py_value(c)}")
    out += [
        "",
        "",
        "class Code(NamedTuple):",
        '    """An ``error:N`` or ``ALARM:N`` code; ``dialects``: the boards that send it."""',
        "",
        "    number: int",
        "    name: str",
        "    text: str",
        "    dialects: tuple[str, ...]",
        "",
        "",
        "class Kind(NamedTuple):",
        '    """A setting\'s value kind: firmware storage (u8, u16, float) and range."""',
        "",
        "    name: str",
        "    storage: str",
        "    low: float",
        "    high: float  # 1e9: no upper bound",
        "    low_exclusive: bool  # the value must be > low (a value reading 0 at 4 decimals is 0)",
        "",
        "    @property",
        "    def integer(self) -> bool:",
        '        return self.storage != "float"',
        "",
        "",
        "class Setting(NamedTuple):",
        '    """One ``$N`` setting; ``field`` is the firmware\'s settings_t member (empty for stock GRBL\'s own)."""',
        "",
        "    number: int",
        "    name: str",
        "    field: str",
        "    unit: str",
        "    kind: Kind",
        "    default: float",
        "    dialects: tuple[str, ...]",
        "",
        "",
    ]
    for title, codes in (("ERRORS", t.errors), ("ALARMS", t.alarms)):
        out.append(f"{title}: tuple[Code, ...] = (")
        out += [f"    Code({c.number}, {_py_str(c.name)}, {_py_str(c.text)}, {_py_strs(c.dialects)})," for c in codes]
        out += [")", ""]
    out.append("KINDS: dict[str, Kind] = {")
    for k in t.kinds:
        name = _py_str(k.name)
        out.append(f"    {name}: Kind({name}, {_py_str(k.storage)}, {k.low!r}, {k.high!r}, {k.low_exclusive!r}),")
    out += ["}", "", "SETTINGS: tuple[Setting, ...] = ("]
    for s in t.settings:
        cells = [str(s.number), *map(_py_str, (s.name, s.field, s.unit)), f"KINDS[{_py_str(s.kind.name)}]"]
        out.append(f"    Setting({', '.join(cells)}, {s.default!r}, {_py_strs(s.dialects)}),")
    out += [")", ""]
    return "\n".join(out)


# --- protocol.md ------------------------------------------------------------------------


def _md_code_table(codes: list[Code]) -> list[str]:
    out = ["| N | name | text |", "| --- | --- | --- |"]
    return out + [f"| {c.number} | {c.name} | {c.text} |" for c in codes if "deepaf" in c.dialects]


def _md_default(s: Setting, decimals: int) -> str:
    return str(int(s.default)) if s.kind.integer or decimals == 0 else f"{s.default:.{decimals}f}"


def md_settings(t: Tables) -> list[str]:
    out = ["| N | name | unit | default | range | GRBL |", "| --- | --- | --- | --- | --- | --- |"]
    rows = t.deepaf_settings()
    i = 0
    while i < len(rows):
        s = rows[i]
        base = s.field.split("[")[0]
        group = [r for r in rows[i : i + len(AXES)] if r.field.split("[")[0] == base] if "[" in s.field else [s]
        unit = s.unit + (" (int)" if s.kind.integer and s.unit not in ("mask", "bool") else "")
        if len(group) > 1:
            if [r.field for r in group] != [f"{base}[{a}]" for a in range(len(AXES))]:
                raise TableError(f"settings.csv ${s.number}: the axes of {base} must follow each other, X Y Z")
            name = ", ".join(AXES) + " " + s.name.split(" ", 1)[1]
            cells = [", ".join(str(r.number) for r in group), name, unit, ", ".join(_md_default(r, 0) for r in group)]
        else:
            cells = [str(s.number), s.name, unit, _md_default(s, 4)]
        out.append("| " + " | ".join([*cells, s.kind.range, s.grbl]) + " |")
        i += len(group)
    return out


def md_versions(t: Tables) -> list[str]:
    value = {c.name: c.value for c in t.constants}
    return [
        "| item | value |",
        "| --- | --- |",
        f"| protocol version | `{value['DEEPAF_PROTOCOL_VERSION']}` (this document) |",
        f"| firmware version | `{value['DEEPAF_FIRMWARE_VERSION']}` (`firmware/config.h`, `DEEPAF_FIRMWARE_VERSION`) |",
        f"| GRBL dialect | `{value['GRBL_DIALECT']}` |",
    ]


# --- files ------------------------------------------------------------------------------


def replace_blocks(text: str, blocks: dict[str, list[str]], where: str) -> str:
    """``text`` with the lines between each ``BEGIN GENERATED <id>`` marker line and its
    ``END GENERATED <id>`` line replaced by ``blocks[id]`` (the marker lines stay)."""
    lines = text.split("\n")
    for ident, body in blocks.items():
        begins = [i for i, line in enumerate(lines) if f"BEGIN GENERATED {ident} " in line + " "]
        ends = [i for i, line in enumerate(lines) if f"END GENERATED {ident} " in line + " "]
        if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
            raise TableError(f"{where}: needs one 'BEGIN GENERATED {ident}' line and one 'END GENERATED {ident}' after it")
        lines[begins[0] + 1 : ends[0]] = body
    return "\n".join(lines)


def outputs(t: Tables) -> dict[Path, str]:
    """Every generated file's path and its full new text."""
    config = ROOT / "firmware" / "config.h"
    md = ROOT / "protocol.md"
    return {
        ROOT / "firmware" / "codes.h": codes_h(t),
        ROOT / "firmware" / "settings_table.h": settings_table_h(t),
        config: replace_blocks(config.read_text(encoding="utf-8"), {"constants": config_block(t)}, "firmware/config.h"),
        ROOT / "host" / "src" / "deepaf_host" / "protocol_tables.py": python_module(t),
        md: replace_blocks(
            md.read_text(encoding="utf-8"),
            {
                "versions": md_versions(t),
                "settings": md_settings(t),
                "errors": _md_code_table(t.errors),
                "alarms": _md_code_table(t.alarms),
            },
            "protocol.md",
        ),
    }


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        files = outputs(read_tables())
    except (TableError, ValueError) as exc:  # ValueError: a number that is not one
        print(f"protocol/generate.py: {exc}", file=sys.stderr)
        return 1
    stale = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)} (run `make protocol`)", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    if not stale:
        print(f"the {len(files)} generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
