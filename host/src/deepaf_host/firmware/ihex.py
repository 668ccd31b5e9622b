"""Intel HEX files, read strictly: every record checked before anything is flashed.

``read_hex(path)`` returns the image as bytes from address 0 (gaps are 0xFF, as in
erased flash) or raises ``HexFileError`` naming the line and what is wrong with it: a
character that is not hex, a byte count that does not match the record, a checksum
that does not add up, an unknown record type, bytes written twice, bytes past
``limit`` (the application section of an ATmega328P with the Uno's 512-byte
bootloader: 32,256 bytes), no end-of-file record, or records after it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import HexFileError

#: ATmega328P: 32 KB of flash, the top 512 bytes hold the Uno's bootloader (Optiboot).
FLASH_BYTES = 32 * 1024
BOOT_SECTION_BYTES = 512
APPLICATION_BYTES = FLASH_BYTES - BOOT_SECTION_BYTES

_DATA, _EOF, _SEGMENT, _START_SEGMENT, _LINEAR, _START_LINEAR = range(6)


@dataclass(frozen=True)
class HexImage:
    """A flash image: ``data[a]`` is the byte at flash address ``a``."""

    path: Path
    data: bytes  # from address 0 to the last byte written; gaps are 0xFF
    data_bytes: int  # bytes the file writes (the gaps not counted)

    @property
    def end(self) -> int:
        """One past the highest address written."""
        return len(self.data)


def _record(path: Path, number: int, text: str) -> bytes:
    if not text.startswith(":"):
        raise HexFileError(path, number, "does not start with ':'")
    digits = text[1:]
    if len(digits) % 2 or not digits or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise HexFileError(path, number, "is not an even number of hex digits after ':'")
    record = bytes.fromhex(digits)
    if len(record) < 5 or len(record) != record[0] + 5:
        raise HexFileError(path, number, f"has {len(record)} bytes where its byte count says {record[0] + 5}")
    if sum(record) & 0xFF:
        expected = (-sum(record[:-1])) & 0xFF
        raise HexFileError(path, number, f"bad checksum 0x{record[-1]:02X} (the record's bytes need 0x{expected:02X})")
    return record


def read_hex(path: str | os.PathLike[str], *, limit: int = APPLICATION_BYTES) -> HexImage:
    """Reads and checks an Intel HEX file; see the module docstring."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except UnicodeDecodeError:
        raise HexFileError(path, None, "is not an Intel HEX file (not ASCII text)") from None
    except OSError as exc:
        raise HexFileError(path, None, f"cannot be read ({exc.strerror or exc})") from None
    memory: dict[int, int] = {}
    base = 0
    eof_line: int | None = None
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        if eof_line is not None:
            raise HexFileError(path, number, f"follows the end-of-file record of line {eof_line}")
        record = _record(path, number, text)
        count, address, kind, payload = record[0], (record[1] << 8) | record[2], record[3], record[4:-1]
        if kind == _DATA:
            for offset, value in enumerate(payload):
                at = base + address + offset
                if at >= limit:
                    section = f"the {limit}-byte application section (0x0000-0x{limit - 1:04X})"
                    raise HexFileError(path, number, f"writes address 0x{at:04X}, past {section}")
                if at in memory:
                    raise HexFileError(path, number, f"writes address 0x{at:04X} a second time")
                memory[at] = value
        elif kind == _EOF:
            eof_line = number
        elif kind in (_SEGMENT, _LINEAR) and count == 2:
            upper = (payload[0] << 8) | payload[1]
            base = upper << 4 if kind == _SEGMENT else upper << 16
        elif kind in (_START_SEGMENT, _START_LINEAR) and count == 4:
            pass  # a start address: on an AVR the reset vector decides
        else:
            raise HexFileError(
                path, number, f"has record type {kind:02X} with {count} data bytes, which Intel HEX does not define"
            )
    if eof_line is None:
        raise HexFileError(path, None, "has no end-of-file record (:00000001FF): truncated?")
    if not memory:
        raise HexFileError(path, None, "holds no data")
    data = bytearray(b"\xff" * (max(memory) + 1))
    for at, value in memory.items():
        data[at] = value
    return HexImage(path, bytes(data), len(memory))
