"""What a board says about itself: the ``$I`` reply (protocol.md 7, 11, 12)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import PROTOCOL_VERSION
from ..protocol_tables import RX_BUFFER_SIZE
from ..errors import HandshakeError


@dataclass(frozen=True)
class BoardInfo:
    """What the board said about itself in its ``$I`` reply."""

    dialect: str  # "deepaf" | "grbl"
    grbl_version: str  # "1.1h"
    firmware_version: str | None  # DeepAf firmware version; None on stock GRBL
    protocol_version: int | None  # protocol.md version; None on stock GRBL
    axes: int
    planner_blocks: int | None
    rx_buffer_bytes: int
    lines: tuple[str, ...]

    @property
    def is_deepaf(self) -> bool:
        return self.dialect == "deepaf"


def parse_build_info(url: str, lines: list[str]) -> BoardInfo:
    """The ``BoardInfo`` of a ``$I`` reply; ``HandshakeError`` for a board the host
    cannot drive (not GRBL 1.1, another protocol version, fewer than 3 axes)."""
    fields = {text[1:].split(":", 1)[0]: text[1:-1].split(":", 1)[1] for text in lines if ":" in text}
    version = fields.get("VER", "").split(":")[0]
    grbl_version = ".".join(version.split(".")[:2])
    if not grbl_version.startswith("1.1"):
        raise HandshakeError(url, f"not a GRBL 1.1 board: $I says {lines[0]!r}")
    options = fields.get("OPT", "").split(",")
    try:
        planner_blocks: int | None = int(options[1])
        rx_bytes = int(options[2])
    except (IndexError, ValueError):
        planner_blocks, rx_bytes = None, RX_BUFFER_SIZE
    if "DEEPAF" not in fields:
        return BoardInfo("grbl", grbl_version, None, None, 3, planner_blocks, rx_bytes, tuple(lines))
    deepaf = dict(item.partition("=")[::2] for item in fields["DEEPAF"].split(","))
    try:
        proto, axes = int(deepaf.get("PROTO", "")), int(deepaf.get("AXES", "3"))
    except ValueError:
        raise HandshakeError(url, f"cannot read {fields['DEEPAF']!r}") from None
    if proto != PROTOCOL_VERSION:
        newer = "host" if proto > PROTOCOL_VERSION else "firmware"
        raise HandshakeError(
            url,
            f"the firmware speaks protocol {proto}, this host speaks protocol {PROTOCOL_VERSION}: update the {newer}",
        )
    if axes < 3:
        raise HandshakeError(url, f"the board drives {axes} axes; the scanner needs X, Y and Z")
    return BoardInfo("deepaf", grbl_version, deepaf.get("FW"), proto, axes, planner_blocks, rx_bytes, tuple(lines))

