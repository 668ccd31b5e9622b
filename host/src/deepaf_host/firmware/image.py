"""Firmware images: the one this package ships, any other ``.hex``, and their versions.

The shipped image is ``deepaf_host/data/firmware/deepaf.hex``, built by ``make -C
firmware ship`` from the repository's firmware sources, with ``deepaf.json`` beside it
(firmware and protocol version, EEPROM settings format, sha256). A test rebuilds the
sources and compares, so the package never ships an image its sources do not make.

The version an image will report is read from the image itself: the DeepAf firmware
stores its ``$I`` line ``[DEEPAF:FW=<version>,...`` in flash, so after flashing the host
can check that the board reports exactly the version it just wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import FlashRefused
from .ihex import HexImage, read_hex

if TYPE_CHECKING:
    from ..stage.info import BoardInfo

_VERSION_IN_FLASH = re.compile(rb"\[DEEPAF:FW=([0-9A-Za-z.+-]{1,32}),")
_NUMERIC = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class FirmwareImage:
    """A checked flash image and what is known about it."""

    hex: HexImage
    sha256: str  # of the .hex file
    firmware_version: str | None  # the DeepAf version stored in the image; None: not DeepAf
    settings_format: int | None  # EEPROM settings format; known for the shipped image
    shipped: bool

    @property
    def path(self) -> Path:
        return self.hex.path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def embedded_version(data: bytes) -> str | None:
    """The DeepAf firmware version a flash image reports in ``$I``, or None."""
    found = _VERSION_IN_FLASH.search(data)
    return found.group(1).decode("ascii") if found else None


def load_image(path: str | os.PathLike[str]) -> FirmwareImage:
    """Reads and checks any ``.hex`` (``HexFileError`` when it is not flashable)."""
    image = read_hex(path)
    return FirmwareImage(image, _sha256(image.path), embedded_version(image.data), None, shipped=False)


def shipped_dir() -> Path:
    return Path(str(resources.files("deepaf_host") / "data" / "firmware"))


def shipped_info() -> dict[str, object]:
    """``deepaf.json``: the shipped image's versions and sha256."""
    try:
        info: dict[str, object] = json.loads((shipped_dir() / "deepaf.json").read_text(encoding="utf-8"))
    except OSError as exc:
        raise FlashRefused(
            f"this deepaf-host installation has no firmware image ({exc.strerror}): use --hex FILE"
        ) from None
    return info


def shipped_image() -> FirmwareImage:
    """The image this package ships, checked against its recorded sha256."""
    info = shipped_info()
    path = shipped_dir() / str(info["file"])
    image = read_hex(path)
    sha = _sha256(path)
    if sha != info["sha256"]:
        raise FlashRefused(f"the shipped firmware {path} is damaged: sha256 {sha}, recorded {info['sha256']}")
    version = embedded_version(image.data)
    if version != info["firmware_version"]:
        raise FlashRefused(
            f"the shipped firmware {path} reports {version!r}, deepaf.json says {info['firmware_version']!r}"
        )
    fmt = info.get("settings_format")
    return FirmwareImage(image, sha, version, int(fmt) if isinstance(fmt, int) else None, shipped=True)


def shipped_version() -> str | None:
    """The shipped image's firmware version; None when this installation has none."""
    try:
        version = shipped_info().get("firmware_version")
    except FlashRefused:
        return None
    return version if isinstance(version, str) else None


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``"0.1.0"`` -> ``(0, 1, 0)``; None for anything that is not MAJOR.MINOR.PATCH."""
    found = _NUMERIC.fullmatch(text.strip())
    return (int(found.group(1)), int(found.group(2)), int(found.group(3))) if found else None


def is_older(version: str, than: str) -> bool | None:
    """Whether firmware ``version`` is older than ``than``; None when either is not
    MAJOR.MINOR.PATCH (such versions are not compared)."""
    a, b = parse_version(version), parse_version(than)
    if a is None or b is None:
        return None
    return a < b


def outdated_hint(port: str, info: BoardInfo) -> str | None:
    """The warning for a DeepAf board whose firmware is older than the shipped one
    (None when it is not, or when it cannot be told)."""
    if not info.is_deepaf or info.firmware_version is None:
        return None
    shipped = shipped_version()
    if shipped is None or not is_older(info.firmware_version, shipped):
        return None
    return (
        f"the board on {port} runs firmware {info.firmware_version}, older than the {shipped} this host ships: "
        f"update it with `deepaf-host flash --port {port}`"
    )
