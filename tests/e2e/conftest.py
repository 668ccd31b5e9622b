"""End-to-end tests on the virtual microscope: the sim:// board (event-driven clock)
and the virtual camera following it, at reduced frame sizes to stay fast."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from deepaf_host.board import VirtualBoard

#: The 20x virtual camera with small frames (same field, coarser pixels): fast to render.
CAMERA = "sim://20x?low=640x360&high=512x384"

_names = itertools.count()


@pytest.fixture
def board() -> Iterator[VirtualBoard]:
    """A fresh event-driven board, reachable as ``board.url``."""
    b = VirtualBoard(speed="max", name=f"e2e-{next(_names)}")
    yield b
