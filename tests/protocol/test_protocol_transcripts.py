"""Protocol exchanges kept as small transcript files (transcripts/*.txt), replayed.

Format, one item per line:
  # comment
  > text          send text and a LF
  >> bytes        send bytes as written, with Python escapes (\\x18, \\r, \\n), no LF added
  < pattern       the next line received must match; '*' matches any text
  << settings N=V ...  the lines of a ``$$`` listing: protocol.md's defaults (from
                  protocol/settings.csv), with the settings named here changed
  = no-motion     the motors must not move during this transcript
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from board_client import DEFAULT_SETTINGS, Board

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.txt"))


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in text.split("*")) + "$")


def replay(board: Board, path: Path) -> None:
    no_motion = False
    before = board.target.motor_steps()
    for number, raw in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        where = f"{path.name}:{number}"
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw.startswith(">> "):
            board.write(raw[3:].encode("ascii").decode("unicode_escape").encode("latin-1"))
        elif raw.startswith("> "):
            board.write(raw[2:] + "\n")
        elif raw.startswith("<< settings"):
            changed = dict(item.split("=", 1) for item in raw.split()[2:])
            unknown = set(changed) - {str(n) for n in DEFAULT_SETTINGS}
            if unknown:
                raise ValueError(f"{where}: no such setting {sorted(unknown)}")
            for n, default in DEFAULT_SETTINGS.items():
                expected = f"${n}={changed.get(str(n), default)}"
                got = board.readline()
                assert got == expected, f"{where}: expected {expected!r}, got {got!r}"
        elif raw.startswith("< "):
            got = board.readline()
            assert _pattern(raw[2:]).match(got), f"{where}: expected {raw[2:]!r}, got {got!r}"
        elif raw.strip() == "= no-motion":
            no_motion = True
        else:
            raise ValueError(f"{where}: bad transcript line {raw!r}")
    if no_motion:
        assert board.target.motor_steps() == before, f"{path.name}: the motors moved"


def test_transcripts_exist() -> None:
    assert len(TRANSCRIPTS) >= 5


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(board: Board, path: Path) -> None:
    replay(board, path)
