"""Contract suite of protocol.md: every test runs against each implementation.

``target`` is parametrised over the firmware in simavr and the host's virtual board.
The firmware target FAILS when the firmware is not built (a missing build must not
look like a pass). Tests marked ``firmware`` use simulator extras and run on the firmware only;
every firmware run of a test carries the ``firmware`` marker, so ``-m "not firmware"``
leaves simavr alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from board_client import Board  # noqa: E402
from firmware_target import ELF, SIM, FirmwareTarget  # noqa: E402
from targets import AXES, FAR, Target  # noqa: E402


@pytest.fixture(scope="session", params=["firmware", "virtual"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "firmware":
        missing = [str(p) for p in (SIM, ELF) if not p.exists()]
        if missing:
            pytest.fail(f"firmware not built: {', '.join(missing)}; run `make -C firmware all sim`", pytrace=False)
        t: Target = FirmwareTarget()
    else:
        from virtual_target import VirtualTarget

        t = VirtualTarget()
    try:
        yield t
    finally:
        t.close()


def _open_switches(target: Target) -> None:
    for axis in AXES:
        target.set_switch(axis, FAR, "+")


@pytest.fixture
def board(target: Target) -> Iterator[Board]:
    """A fresh connection (the board has just been reset), no switch closed, and the
    default settings restored afterwards so that tests stay independent."""
    _open_switches(target)
    b = Board(target, target.open())
    b.boot = b.handshake()
    try:
        yield b
    finally:
        _open_switches(target)
        # Whatever state the test left: reset, then restore the defaults.
        clean = Board(target, target.open())
        clean.handshake()
        clean.ok("$RST=$")
        clean.port.close()


@pytest.fixture
def firmware(target: Target) -> FirmwareTarget:
    assert isinstance(target, FirmwareTarget)
    return target


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("target") if callspec else None
        if param is None or HERE not in Path(str(item.path)).resolve().parents:
            keep.append(item)
            continue
        if param == "virtual" and item.get_closest_marker("firmware") is not None:
            drop.append(item)  # firmware-only test
            continue
        if param == "firmware":
            item.add_marker(pytest.mark.firmware)
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
