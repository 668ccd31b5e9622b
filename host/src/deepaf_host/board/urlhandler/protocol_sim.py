"""``sim://`` -- a pyserial port connected to a virtual board.

URL: ``sim://[NAME][?option=value&...]``

- ``NAME`` opens the live board of that name (``VirtualBoard.url``) and resets it, as
  reopening a real board's port does (EEPROM and motor positions survive); a name
  that is not live creates a board of that name; no name creates a fresh board.
- Board options (only when the board is created): ``speed`` (a number, 1 = real time,
  or ``max``), ``jump`` (1: jump to the next event when a reader waits), ``dialect``
  (``deepaf`` or ``grbl``), ``boot_s``, ``switch_x``/``switch_y``/``switch_z``
  (``STEP`` or ``STEP:SIDE``).
- Stage errors (only ``true_position_um()``, what the virtual camera sees, feels them;
  all off unless given): ``play_um`` (one value or three, comma separated: mechanical
  backlash), ``repeat_um`` (one or three: repeatability, the standard deviation of the
  error each move leaves), ``skew_deg`` (Y off square to X), ``error_seed`` (seed of the
  repeatability draws, default 0), and ``errors=leadscrew`` for values typical of a GRBL
  stage on lead screws (``STAGE_ERRORS``: play 20,20,4 um, repeat 2,2,0.2 um, skew 0.3
  degrees); a value given beside ``errors`` replaces the set's.
- Connection option: ``disconnect_after_lines=N``: after N lines have been written,
  the connection breaks and every later read or write raises ``SerialException`` (as
  an unplugged cable).

The port object exposes ``board`` (the ``VirtualBoard``: the PoseSource of the virtual
camera), ``inject_disconnect()`` and ``corrupt_next_reply()``.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from serial.serialutil import PortNotOpenError, SerialBase, SerialException, to_bytes

from ..board import DEFAULT_SWITCHES, STAGE_ERRORS, VirtualBoard, find_board

_BOARD_OPTIONS = (
    "speed", "jump", "dialect", "boot_s", "play_um", "switch_x", "switch_y", "switch_z", "repeat_um", "skew_deg",
    "error_seed", "errors",
)


def _three(options: dict[str, str], key: str) -> tuple[float, float, float]:
    values = [float(v) for v in options[key].split(",")]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ValueError(f"{key} takes one value or three (x,y,z)")
    return (values[0], values[1], values[2])


def _board_kwargs(options: dict[str, str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if "speed" in options:
        kwargs["speed"] = "max" if options["speed"] == "max" else float(options["speed"])
    if "jump" in options:
        if options["jump"] not in ("0", "1"):
            raise ValueError("jump is 0 or 1")
        kwargs["jump"] = options["jump"] == "1"
    if "dialect" in options:
        kwargs["dialect"] = options["dialect"]
    if "boot_s" in options:
        kwargs["boot_s"] = float(options["boot_s"])
    if "errors" in options:
        preset = STAGE_ERRORS.get(options["errors"])
        if preset is None:
            raise ValueError(f"errors is one of {', '.join(STAGE_ERRORS)}, not {options['errors']!r}")
        kwargs.update(preset)
    for key in ("play_um", "repeat_um"):
        if key in options:
            kwargs[key] = _three(options, key)
    if "skew_deg" in options:
        kwargs["skew_deg"] = float(options["skew_deg"])
    if "error_seed" in options:
        kwargs["error_seed"] = int(options["error_seed"])
    switches = list(DEFAULT_SWITCHES)
    for i, axis in enumerate("xyz"):
        spec = options.get(f"switch_{axis}")
        if spec is not None:
            step, _, side = spec.partition(":")
            if side not in ("", "+", "-"):
                raise ValueError(f"switch_{axis}: side must be + or -, not {side!r}")
            switches[i] = (int(step), side or "+")
    kwargs["switches"] = tuple(switches)
    return kwargs


def parse_url(url: str) -> tuple[VirtualBoard, int | None]:
    """The board a ``sim://`` URL names (created if needed) and the line count after
    which to disconnect."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "sim":
        raise SerialException(f"expected a sim:// URL, not {url!r}")
    try:
        options: dict[str, str] = {}
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if key not in (*_BOARD_OPTIONS, "disconnect_after_lines"):
                raise ValueError(f"unknown option {key!r}")
            options[key] = value
        lines = options.pop("disconnect_after_lines", None)
        disconnect = None if lines is None else int(lines)
        name = parts.netloc or None
        board = find_board(name) if name else None
        if board is not None:
            if options:
                raise ValueError(f"board {name!r} exists already; its options were set when it was created")
        else:
            board = VirtualBoard(name=name, **_board_kwargs(options))
    except ValueError as exc:
        raise SerialException(f"bad sim:// URL {url!r}: {exc}") from exc
    return board, disconnect


class Serial(SerialBase):
    """A pyserial port whose other end is a ``VirtualBoard``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.board: VirtualBoard | None = None
        self._lines_left: int | None = None
        self._lost = False
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        if self.is_open:  # type: ignore[has-type]  # pyserial's untyped attribute
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        self.board, self._lines_left = parse_url(str(self._port))
        self._lost = False
        self.is_open = True
        self.board.reset()

    def close(self) -> None:
        self.is_open = False  # first: the flush of close() has nothing to do then
        super().close()

    def _reconfigure_port(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_break_state(self) -> None:
        pass

    def _board(self) -> VirtualBoard:
        if not self.is_open or self.board is None:
            raise PortNotOpenError()
        if self._lost:
            raise SerialException(f"{self._port}: the virtual board was disconnected")
        return self.board

    # --- fault injection ------------------------------------------------------------

    def inject_disconnect(self) -> None:
        """Break the connection now: later reads and writes raise SerialException."""
        self._lost = True

    def corrupt_next_reply(self) -> None:
        """The next ``ok``/``error:N`` arrives garbled (line noise)."""
        self._board().corrupt_next_reply()

    # --- pyserial API ---------------------------------------------------------------

    @property
    def in_waiting(self) -> int:
        return self._board().in_waiting()

    @property
    def out_waiting(self) -> int:
        self._board()
        return 0

    def read(self, size: int = 1) -> bytes:
        board = self._board()
        data = bytearray()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while len(data) < size:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            chunk = board.read(size - len(data), timeout)
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def write(self, data: Any) -> int:
        board = self._board()
        payload = to_bytes(data)
        if self._lines_left is not None:
            ends = [i for i, b in enumerate(payload) if b == 0x0A]
            if len(ends) >= self._lines_left:
                cut = ends[self._lines_left - 1] + 1 if self._lines_left > 0 else 0
                board.write(payload[:cut])
                self._lost = True
                raise SerialException(f"{self._port}: the virtual board was disconnected")
            self._lines_left -= len(ends)
        board.write(payload)
        return len(payload)

    def reset_input_buffer(self) -> None:
        self._board().discard_output()

    def reset_output_buffer(self) -> None:
        self._board()

    def flush(self) -> None:
        if self.is_open:
            self._board()

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
