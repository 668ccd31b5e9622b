"""The shipped firmware image: built from the sources (reproducibly), described by
deepaf.json, and the version comparison behind the scan's "firmware is older" warning."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from pathlib import Path

import pytest
from deepaf_host import PROTOCOL_VERSION
from deepaf_host.board import reports as virtual_reports
from deepaf_host.firmware import image as image_module
from deepaf_host.firmware.errors import FlashRefused
from deepaf_host.firmware.flash import BoardState, settings_report
from deepaf_host.firmware.image import (
    embedded_version,
    is_older,
    outdated_hint,
    parse_version,
    shipped_dir,
    shipped_image,
    shipped_info,
)
from deepaf_host.stage import Connection
from deepaf_host.stage.info import BoardInfo

from flash_helpers import FIRMWARE, build_firmware


def config_define(name: str) -> str:
    text = (FIRMWARE / "config.h").read_text()
    found = re.search(rf"^#define {name} (.+)$", text, re.MULTILINE)
    assert found, name
    return found.group(1).strip().strip('"')


def test_deepaf_json_describes_the_shipped_hex() -> None:
    info = shipped_info()
    hex_bytes = (shipped_dir() / "deepaf.hex").read_bytes()
    assert info["sha256"] == hashlib.sha256(hex_bytes).hexdigest()
    assert info["firmware_version"] == config_define("DEEPAF_FIRMWARE_VERSION")
    assert info["settings_format"] == int(config_define("SETTINGS_FORMAT_VERSION"))
    assert info["protocol_version"] == int(config_define("DEEPAF_PROTOCOL_VERSION")) == PROTOCOL_VERSION
    image = shipped_image()
    assert image.firmware_version == info["firmware_version"] and image.shipped
    assert image.hex.data_bytes == image.hex.end > 16 * 1024, "one block from address 0"


def test_the_virtual_board_reports_the_shipped_version() -> None:
    """Otherwise every sim:// scan would warn that its firmware is outdated."""
    assert virtual_reports.FIRMWARE_VERSION == shipped_info()["firmware_version"]


@pytest.mark.firmware
def test_the_shipped_hex_is_what_the_sources_build(tmp_path: Path) -> None:
    """A firmware change without `make -C firmware ship` fails here."""
    built = build_firmware(tmp_path / "build")
    shipped = shipped_dir() / "deepaf.hex"
    assert hashlib.sha256(built.read_bytes()).hexdigest() == hashlib.sha256(shipped.read_bytes()).hexdigest(), (
        "the shipped firmware is not the one the sources build: run `make -C firmware ship`"
    )


def test_a_damaged_shipped_image_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("deepaf.hex", "deepaf.json"):
        shutil.copy(shipped_dir() / name, tmp_path / name)
    lines = (tmp_path / "deepaf.hex").read_text().splitlines()
    monkeypatch.setattr(image_module, "shipped_dir", lambda: tmp_path)
    flipped = lines[5][:9] + ("0" if lines[5][9] != "0" else "1") + lines[5][10:]
    (tmp_path / "deepaf.hex").write_text("\n".join(lines[:5] + [flipped] + lines[6:]) + "\n")
    with pytest.raises(FlashRefused, match="line 6 bad checksum"):
        shipped_image()
    # A consistent image that is not the recorded one (checksum fixed up) is refused too.
    body = bytes.fromhex(flipped[1:-2])
    fixed = flipped[:-2] + f"{(-sum(body)) & 0xFF:02X}"
    (tmp_path / "deepaf.hex").write_text("\n".join(lines[:5] + [fixed] + lines[6:]) + "\n")
    with pytest.raises(FlashRefused, match="is damaged: sha256"):
        shipped_image()


def test_the_version_is_read_from_the_image_itself() -> None:
    assert embedded_version(b"\xff\x00[DEEPAF:FW=1.2.3,PROTO=1,AXES=3]\x00") == "1.2.3"
    assert embedded_version(b"Grbl 1.1h ['$' for help]") is None


@pytest.mark.parametrize(
    ("a", "b", "older"),
    [("0.1.0", "0.1.1", True), ("0.9.0", "0.10.0", True), ("1.0.0", "0.10.0", False), ("0.1.0", "0.1.0", False),
     ("0.1.0-dev", "0.2.0", None), ("0.1", "0.2.0", None)],
)
def test_versions_compare_numerically(a: str, b: str, older: bool | None) -> None:
    assert is_older(a, b) is older


def test_parse_version() -> None:
    assert parse_version(" 0.12.3 ") == (0, 12, 3) and parse_version("v1.0.0") is None


def info(version: str | None, dialect: str = "deepaf") -> BoardInfo:
    return BoardInfo(dialect, "1.1h", version, 1 if version else None, 3, 15, 128, ())


def test_the_hint_names_the_command_that_updates_the_board(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_module, "shipped_version", lambda: "0.2.0")
    hint = outdated_hint("/dev/ttyACM0", info("0.1.0"))
    assert hint == (
        "the board on /dev/ttyACM0 runs firmware 0.1.0, older than the 0.2.0 this host ships: "
        "update it with `deepaf-host flash --port /dev/ttyACM0`"
    )
    assert outdated_hint("/dev/ttyACM0", info("0.2.0")) is None
    assert outdated_hint("/dev/ttyACM0", info("0.3.0")) is None
    assert outdated_hint("/dev/ttyACM0", info(None, "grbl")) is None


def test_a_connection_warns_when_the_board_is_older(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(image_module, "shipped_version", lambda: "9.0.0")
    with caplog.at_level(logging.WARNING, logger="deepaf_host.stage.connection"):
        Connection("sim://?speed=max").close()
        warned = [r.getMessage() for r in caplog.records]
        Connection("sim://?speed=max", warn_outdated=False).close()
    assert warned == [
        f"the board on sim://?speed=max runs firmware {virtual_reports.FIRMWARE_VERSION}, older than the 9.0.0 "
        "this host ships: update it with `deepaf-host flash --port sim://?speed=max`"
    ]
    assert len(caplog.records) == 1, "warn_outdated=False is silent"


def state(**settings: str) -> BoardState:
    return BoardState(info("0.1.0"), {int(k[1:]): v for k, v in settings.items()})


def test_settings_report_kept_reset_and_unknown() -> None:
    kept = settings_report(state(s100="800.0000", s0="4"), state(s100="800", s0="4"), 1)
    assert kept[0].startswith("settings: flashing wrote flash only") and "format version 1" in kept[0]
    assert kept[1] == "settings: kept -- the 2 values read before flashing are unchanged."
    reset = settings_report(state(s100="1234.0000", s0="4"), state(s100="800.0000", s0="4"), 1)
    assert reset[1].startswith("settings: reset to the firmware's defaults -- 1 of 2 values changed")
    assert reset[2:] == ["  $100=1234.0000    (now 800.0000)"]
    unknown = settings_report(None, state(s100="800"), None)
    assert "its own format version" in unknown[0] and "none were readable before flashing" in unknown[1]
    assert "not read after flashing" in settings_report(state(s0="4"), None, 1)[1]
