"""Errors of flashing the motor board.

``FlashRefused``: nothing was written to the board (a bad image, no avrdude, a port
that is busy or has no Uno bootloader behind it); the CLI exits 2. ``FlashFailed``:
writing began and did not end with the board answering as it should; exit 1.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DeepAfError


class FlashRefused(DeepAfError):
    """Refused before anything was written to the board."""


class HexFileError(FlashRefused):
    """The firmware image is not a valid Intel HEX file for the board."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path} line {line}" if line is not None else str(path)
        super().__init__(f"--hex {where} {reason}; nothing was written to the board")


class AvrdudeMissing(FlashRefused):
    """avrdude, which talks to the Uno's bootloader, is not installed."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"{name} not found on PATH: install it (Debian/Ubuntu: sudo apt install avrdude; "
            "macOS: brew install avrdude; Windows: the avrdude release zip)"
        )


class PortRefused(FlashRefused):
    """The port cannot be flashed: virtual, busy, or no Uno bootloader answered."""

    def __init__(self, port: str, reason: str) -> None:
        self.port = port
        self.reason = reason
        super().__init__(f"--port {port}: {reason}; nothing was written to the board")


class FlashFailed(DeepAfError):
    """Writing began but the board does not run the image as it should."""

    def __init__(self, port: str, reason: str) -> None:
        self.port = port
        self.reason = reason
        super().__init__(f"flashing {port} failed: {reason}")
