"""Fixtures of the flashing tests (helpers in flash_helpers.py)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from flash_helpers import OPTIBOOT, SIM, BootSim  # noqa: E402


@pytest.fixture(scope="session")
def built() -> None:
    missing = [str(p) for p in (SIM, OPTIBOOT) if not p.exists()]
    if missing:
        pytest.fail(f"not built: {', '.join(missing)}; run `make -C firmware all sim optiboot`", pytrace=False)
    if shutil.which("avrdude") is None:
        pytest.fail("avrdude is not installed (make system-deps installs it)", pytrace=False)


@pytest.fixture
def boot_sim(built: None) -> Iterator[type[BootSim]]:
    """``boot_sim(app)`` starts a simulator; all are closed at the end of the test."""
    started: list[BootSim] = []

    class Started(BootSim):
        def __init__(self, app: Path | None = None, **kw: Path) -> None:
            super().__init__(app, **kw)
            started.append(self)

    try:
        yield Started
    finally:
        for sim in started:
            sim.close()


