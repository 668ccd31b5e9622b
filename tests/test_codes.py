"""protocol.md's code table, the host's codes module and the firmware's codes.h agree."""

from __future__ import annotations

import re
from pathlib import Path

from deepaf_host import codes

ROOT = Path(__file__).resolve().parents[1]


def _protocol_table(heading: str) -> dict[int, tuple[str, str]]:
    text = (ROOT / "protocol.md").read_text()
    section = text.split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| ([A-Z0-9_]+) \| (.+?) \|$", section, flags=re.M)
    return {int(n): (name, txt) for n, name, txt in rows}


def _firmware_defines(prefix: str) -> dict[int, str]:
    text = (ROOT / "firmware" / "codes.h").read_text()
    rows = re.findall(rf"^#define {prefix}_([A-Z0-9_]+)\s+(\d+)\b", text, flags=re.M)
    return {int(n): name for name, n in rows}


def test_protocol_errors_match_host():
    table = _protocol_table("### 10.1 Errors")
    assert len(table) >= 20
    assert table == {n: (c.name, c.text) for n, c in codes.ERRORS.items()}


def test_protocol_alarms_match_host():
    table = _protocol_table("### 10.2 Alarms")
    assert len(table) >= 5
    assert table == {n: (c.name, c.text) for n, c in codes.ALARMS.items()}


def test_firmware_errors_match_protocol():
    table = _protocol_table("### 10.1 Errors")
    assert _firmware_defines("STATUS") == {n: name for n, (name, _) in table.items()}


def test_firmware_alarms_match_protocol():
    table = _protocol_table("### 10.2 Alarms")
    assert _firmware_defines("ALARM") == {n: name for n, (name, _) in table.items()}
