"""The motor board's firmware as the host sees it: the image this package ships,
checked Intel HEX files, and flashing an Uno through its bootloader with avrdude
(``deepaf-host flash``).

- ``ihex.py``: Intel HEX read strictly (record checksums, the application section's size).
- ``image.py``: the shipped image and its version; version comparison; the warning a
  scan logs when the board's firmware is older than the shipped one.
- ``flash.py``: avrdude, the checks before it and the ``$I`` check after it.
"""

from __future__ import annotations

from .errors import AvrdudeMissing, FlashFailed, FlashRefused, HexFileError, PortRefused
from .image import FirmwareImage, is_older, load_image, outdated_hint, shipped_image

__all__ = [
    "AvrdudeMissing",
    "FirmwareImage",
    "FlashFailed",
    "FlashRefused",
    "HexFileError",
    "PortRefused",
    "is_older",
    "load_image",
    "outdated_hint",
    "shipped_image",
]
