"""The files generated from protocol/*.csv are what the generator writes today.

protocol/generate.py writes the firmware's codes.h and settings_table.h, config.h's
shared constants, the host's protocol_tables.py and protocol.md's tables from one set of
rows; these tests fail when a generated file was edited by hand or a row changed without
`make protocol`, and when the generator would accept a row that cannot be right.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from deepaf_host import codes, protocol_tables

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "protocol" / "generate.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protocol_generate", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gen() -> ModuleType:
    return _generator()


@pytest.fixture
def tables_copy(gen: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of protocol/*.csv that the generator reads instead of the real one."""
    for path in (ROOT / "protocol").glob("*.csv"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(gen, "HERE", tmp_path)
    return tmp_path


def test_generated_files_are_up_to_date(gen: ModuleType) -> None:
    files = gen.outputs(gen.read_tables())
    assert len(files) == 5
    stale = [str(p.relative_to(ROOT)) for p, text in files.items() if p.read_text(encoding="utf-8") != text]
    assert not stale, f"out of date (run `make protocol`): {', '.join(stale)}"


def test_check_mode_runs_with_the_standard_library_only() -> None:
    """`python3 -I -S protocol/generate.py --check`: no site-packages, no venv, no writes."""
    done = subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), "--check"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_changed_row_makes_the_check_fail_and_changes_every_output(
    gen: ModuleType, tables_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tables_copy / "errors.csv"
    path.write_text(path.read_text().replace("Missing or malformed number", "Malformed number"))
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "protocol.md" in err and "protocol_tables.py" in err and "codes.h" not in err  # texts are not in C
    path.write_text(path.read_text().replace("2,BAD_NUMBER_FORMAT", "2,BAD_NUMBER"))
    assert gen.main(["--check"]) == 1
    assert "firmware/codes.h" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("settings.csv", "0,step pulse width,pulse_us,us,INT_PULSE,4,", "0,step pulse width,pulse_us,us,INT_PULSE,1,", "outside"),
        ("settings.csv", "24,homing locate feed,homing_locate,mm/min,FLOAT_POS,25,", "24,x,homing_locate,mm/min,FLOAT_POS,0,", "outside"),
        ("settings.csv", "26,homing debounce,homing_debounce,ms,INT_1000,25,", "26,x,homing_debounce,ms,INT_1000,2.5,", "outside"),
        ("settings.csv", ",INT_1000,", ",INT_999,", "not in kinds.csv"),
        ("settings.csv", "150,idle release delay,idle_release,", "150,idle release delay,,", "firmware field"),
        ("settings.csv", "101,Y steps", "99,Y steps", "increasing"),
        ("settings.csv", "150,idle release delay,idle_release,", "256,idle release delay,idle_release,", "one byte"),
        ("errors.csv", "63,HOMING_FAILED,deepaf,", "63,HOMING_FAILED,deepaf grbl marlin,", "dialects"),
        ("errors.csv", "62,VALUE_OUT_OF_RANGE,", "62,SOFT_LIMIT,", "SOFT_LIMIT named twice"),
        ("settings.csv", "141,Y backlash,backlash[1],", "141,Y backlash,backlash[0],", "named twice"),
        ("alarms.csv", "9,HOMING_FAIL_APPROACH", "8,HOMING_FAIL_APPROACH", "increasing"),
        ("kinds.csv", "INT_1000,u16,0-1000", "INT_1000,u16,1000", "range"),
        ("kinds.csv", "INT_65535,u16,0-65535", "INT_65535,u16,>0", "integer kinds"),
        ("kinds.csv", "MASK,u8,0-7", "MASK,u16,0-7", "grouped"),
        ("constants.csv", "LINE_MAX,80,int", "LINE_MAX,80,long", "type"),
    ],
)
def test_rows_that_cannot_be_right_are_refused(
    gen: ModuleType, tables_copy: Path, file: str, old: str, new: str, message: str
) -> None:
    path = tables_copy / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(gen.TableError, match=message):
        gen.outputs(gen.read_tables())


def test_the_host_reads_the_generated_rows() -> None:
    assert codes.error_number("SOFT_LIMIT") == 61
    assert codes.alarm_text(2).startswith("Soft limit")  # stock GRBL's own
    assert codes.error_text(99) == "Unknown error code 99"
    deepaf = [s.number for s in protocol_tables.SETTINGS if "deepaf" in s.dialects]
    assert deepaf[:3] == [0, 2, 3] and deepaf[-1] == 150 and len(deepaf) == 30
