"""Intel HEX read strictly: a damaged or oversized image is refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest
from deepaf_host.firmware.errors import FlashRefused, HexFileError
from deepaf_host.firmware.ihex import APPLICATION_BYTES, read_hex


def record(address: int, data: bytes, kind: int = 0) -> str:
    body = bytes([len(data), address >> 8, address & 0xFF, kind]) + data
    return ":" + (body + bytes([(-sum(body)) & 0xFF])).hex().upper()


EOF = ":00000001FF"


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "image.hex"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_records_are_placed_at_their_addresses_with_erased_gaps(tmp_path: Path) -> None:
    path = write(tmp_path, record(0x0000, b"\x0c\x94"), record(0x0010, b"\xaa\xbb\xcc"), EOF)
    image = read_hex(path)
    assert image.data == b"\x0c\x94" + b"\xff" * 14 + b"\xaa\xbb\xcc"
    assert image.data_bytes == 5 and image.end == 0x13


def test_extended_addresses_are_applied(tmp_path: Path) -> None:
    path = write(tmp_path, record(0, b"\x00\x10", kind=2), record(0x0004, b"\x01"), EOF)  # segment 0x10 -> 0x100
    assert read_hex(path).end == 0x105


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (":10000000", r"line 2 has 4 bytes where its byte count says 21"),
        (record(0x0000, b"\x01\x02")[:-2] + "00", r"line 2 bad checksum 0x00 \(the record's bytes need 0xFB\)"),
        (":0200000001ZZ00", r"line 2 is not an even number of hex digits"),
        ("0200000001020000", r"line 2 does not start with ':'"),
        (record(0x0000, b"\x01", kind=7), r"line 2 has record type 07"),
        (record(0x0000, b"\x55"), r"line 2 writes address 0x0000 a second time"),
    ],
)
def test_a_damaged_record_is_refused_naming_its_line(tmp_path: Path, line: str, reason: str) -> None:
    path = write(tmp_path, record(0x0000, b"\x0c"), line, EOF)
    with pytest.raises(HexFileError, match=reason) as caught:
        read_hex(path)
    assert caught.value.line == 2 and isinstance(caught.value, FlashRefused)


def test_an_image_reaching_into_the_bootloader_is_refused(tmp_path: Path) -> None:
    last = APPLICATION_BYTES - 1
    assert read_hex(write(tmp_path, record(last, b"\x01"), EOF)).end == APPLICATION_BYTES
    with pytest.raises(HexFileError, match=r"writes address 0x7E00, past the 32256-byte application section"):
        read_hex(write(tmp_path, record(last, b"\x01\x02"), EOF))


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ((record(0, b"\x01"),), "no end-of-file record"),
        ((EOF,), "holds no data"),
        ((record(0, b"\x01"), EOF, record(1, b"\x02")), "line 3 follows the end-of-file record of line 2"),
    ],
)
def test_a_truncated_or_empty_file_is_refused(tmp_path: Path, lines: tuple[str, ...], reason: str) -> None:
    with pytest.raises(HexFileError, match=reason):
        read_hex(write(tmp_path, *lines))


def test_a_binary_or_missing_file_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x0c\x94\xff\xfe")
    with pytest.raises(HexFileError, match="not an Intel HEX file"):
        read_hex(binary)
    with pytest.raises(HexFileError, match="cannot be read"):
        read_hex(tmp_path / "missing.hex")
