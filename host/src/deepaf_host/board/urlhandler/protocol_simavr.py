"""``simavr://`` -- a pyserial port to the real firmware running in simavr.

URL: ``simavr://PATH/TO/deepaf.elf[?speed=realtime|fast&switch_z=STEP[:SIDE]...]``
(a relative path is relative to the working directory; ``simavr:///abs/path.elf``).
Opening the port starts ``deepaf-sim`` next to the ELF and opens its pseudo-terminal
(which resets the AVR); closing it stops the simulator. The port object exposes
``board``: the ``FirmwareSim`` (ground truth and PoseSource of the virtual camera).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from serial.serialposix import Serial as PosixSerial
from serial.serialutil import SerialException

from ..board import DEFAULT_SWITCHES
from ..simavr import FirmwareSim


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "simavr":
        raise SerialException(f"expected a simavr:// URL, not {url!r}")
    elf = parts.netloc + parts.path
    if not elf:
        raise SerialException(f"bad simavr:// URL {url!r}: no firmware ELF")
    kwargs: dict[str, Any] = {}
    switches = list(DEFAULT_SWITCHES)
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key == "speed":
            kwargs["speed"] = value
        elif key in ("switch_x", "switch_y", "switch_z"):
            step, _, side = value.partition(":")
            try:
                switches["xyz".index(key[-1])] = (int(step), side or "+")
            except ValueError:
                raise SerialException(f"bad simavr:// URL {url!r}: {key}={value!r}") from None
        else:
            raise SerialException(f"bad simavr:// URL {url!r}: unknown option {key!r}")
    kwargs["switches"] = tuple(switches)
    return elf, kwargs


class Serial(PosixSerial):
    """The pty of a ``deepaf-sim`` started for this port."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.board: FirmwareSim | None = None
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        elf, kwargs = parse_url(str(self._port))
        try:
            self.board = FirmwareSim(elf, **kwargs)
        except (FileNotFoundError, ValueError, RuntimeError, TimeoutError) as exc:
            raise SerialException(f"cannot start the firmware simulator for {self._port!r}: {exc}") from exc
        url, self.portstr = self.portstr, self.board.pty_path  # type: ignore[has-type]  # pyserial's untyped attribute
        try:
            super().open()
        except BaseException:
            self.board.close()
            self.board = None
            raise
        finally:
            self.portstr = url

    def close(self) -> None:
        super().close()
        if self.board is not None:
            self.board.close()
            self.board = None
