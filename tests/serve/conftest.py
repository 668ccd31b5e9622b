"""Fixtures: the live page's server on a fresh virtual board (see servelive.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the serve extra (aiohttp) is not installed: pip install 'deepaf-host[serve]'")

from .servelive import Live, start


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """A loopback server (no token) on a fresh event-driven virtual board."""
    server, close = start(tmp_path)
    yield server
    close()


@pytest.fixture
def live_fast(tmp_path: Path) -> Iterator[Live]:
    """A loopback server on a board at 50 x real time: a move from the page (which does
    not wait for it) runs on by itself, as on a real board; "max" runs only while
    someone waits for it."""
    server, close = start(tmp_path, board_kwargs={"speed": 50.0})
    yield server
    close()


@pytest.fixture
def live_token(tmp_path: Path) -> Iterator[Live]:
    """A server that needs a token (as one bound off loopback), Z safety limit -6000 um."""
    server, close = start(tmp_path, token="s3cret-token", z_min_um=-6000.0)
    yield server
    close()


@pytest.fixture
def live_slow(tmp_path: Path) -> Iterator[Live]:
    """A loopback server on a board at 3 x real time: a homing takes about 3 s, a search
    autofocus about 0.7 s (9 frames), long enough to stop them half way."""
    server, close = start(tmp_path, board_kwargs={"speed": 3.0})
    yield server
    close()
