"""Typed errors of the DeepAf host.

Every error carries the values that caused it, so a caller (or a user reading the
message) knows what was asked for and what the limit was. Public methods raise these;
nothing in the scanner raises a bare ``Exception`` or uses ``assert`` for runtime checks.
"""

from __future__ import annotations

from . import codes


class DeepAfError(Exception):
    """Base class of every error the host raises on purpose."""


# --- connection and firmware ---------------------------------------------------------


class PortUnavailable(DeepAfError):
    """The serial port (or URL) could not be opened."""

    def __init__(self, port: str, reason: str) -> None:
        self.port = port
        self.reason = reason
        super().__init__(f"cannot open port {port!r}: {reason}")


class ConnectionLost(DeepAfError):
    """The port went away (unplugged, emulator exited) while talking to the board."""

    def __init__(self, port: str, reason: str) -> None:
        self.port = port
        self.reason = reason
        super().__init__(f"connection to {port!r} lost: {reason}")


class ProtocolTimeout(DeepAfError):
    """No reply to a line within the time allowed."""

    def __init__(self, line: str, seconds: float) -> None:
        self.line = line
        self.seconds = seconds
        super().__init__(f"no reply to {line!r} within {seconds:g} s")


class GarbledReply(DeepAfError):
    """A reply was neither ``ok`` nor ``error:N`` (line noise). The connection has
    resynchronised; whether the line took effect is unknown."""

    def __init__(self, line: str, received: str) -> None:
        self.line = line
        self.received = received
        super().__init__(f"garbled reply {received!r} to {line!r}; resynchronised, the line's effect is unknown")


class HandshakeError(DeepAfError):
    """The device did not identify as a DeepAf or GRBL 1.1 board, or speaks another protocol version."""

    def __init__(self, port: str, reason: str) -> None:
        self.port = port
        self.reason = reason
        super().__init__(f"handshake with {port!r} failed: {reason}")


class FirmwareError(DeepAfError):
    """The board answered a line with ``error:N``; nothing moved (protocol.md 3.3)."""

    def __init__(self, code: int, line: str) -> None:
        self.code = code
        self.text = codes.error_text(code)
        self.line = line
        super().__init__(f"error:{code} ({self.text}) for line {line!r}")


class FirmwareAlarm(DeepAfError):
    """The board raised ``ALARM:N``; it is locked until homed or unlocked."""

    def __init__(self, code: int, line: str | None = None) -> None:
        self.code = code
        self.text = codes.alarm_text(code)
        self.line = line
        where = f" during {line!r}" if line else ""
        super().__init__(f"ALARM:{code} ({self.text}){where}")


# --- stage ---------------------------------------------------------------------------


class StageLimitError(DeepAfError):
    """A requested position is outside the travel or a safety limit; nothing moved."""

    def __init__(self, axis: str, requested_um: float, limit_um: float, reason: str = "travel") -> None:
        self.axis = axis
        self.requested_um = requested_um
        self.limit_um = limit_um
        self.reason = reason
        super().__init__(
            f"{axis} = {requested_um:.2f} um is beyond the {reason} limit {limit_um:.2f} um; nothing moved"
        )


class NotHomedError(DeepAfError):
    """Motion was asked of a stage that is locked and has not been homed."""

    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(f"cannot {action}: the stage is not homed (run home() / '$H' first)")


# --- camera, model, data, configuration ----------------------------------------------


class CameraError(DeepAfError):
    """The camera is missing, cannot be configured, or returned no frame."""

    def __init__(self, camera: str, reason: str) -> None:
        self.camera = camera
        self.reason = reason
        super().__init__(f"camera {camera!r}: {reason}")


class ModelError(DeepAfError):
    """A model file is missing, corrupt, or does not match the scan."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"model {path!r}: {reason}")


class DatasetError(DeepAfError):
    """A focal-stack dataset is missing, malformed, or inconsistent."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"dataset {path!r}: {reason}")


class OpticsMismatchError(DatasetError):
    """A stack was taken with other optics (objective, pixel size, illumination) than a
    model was trained for, or with optics it does not state; the model was not run on it."""

    def __init__(self, path: str, stack: str, quantity: str, stack_value: object, card_value: object,
                 model: str, reason: str, others: int = 0) -> None:
        self.stack = stack
        self.quantity = quantity
        self.stack_value = stack_value
        self.card_value = card_value
        self.model = model
        self.others = others
        more = f" (and {others} more stack{'s' if others > 1 else ''} like it)" if others else ""
        super().__init__(path, f"stack {stack!r} does not match model {model!r}: {reason}{more}")


class AutofocusError(DeepAfError):
    """An autofocus strategy could not find focus; the stage is left where it was."""

    def __init__(self, strategy: str, reason: str) -> None:
        self.strategy = strategy
        self.reason = reason
        super().__init__(f"autofocus {strategy!r} failed: {reason}")


class ScanFocusError(DeepAfError):
    """A scan cannot find the specimen's focus (or the camera does not see Z at all), so
    it stops before writing a blurred tile. ``searched_um`` is the z range looked at."""

    def __init__(self, reason: str, searched_um: tuple[float, float] | None = None) -> None:
        self.reason = reason
        self.searched_um = searched_um
        where = f" (searched z {searched_um[0]:.0f} to {searched_um[1]:.0f} um)" if searched_um else ""
        super().__init__(f"scan stopped: {reason}{where}")


class ConfigError(DeepAfError):
    """A configuration value or key is invalid (unknown keys are errors)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"configuration {key!r}: {reason}")


class OptionError(ConfigError):
    """A user option is invalid or does not fit the hardware; ``option`` is the CLI flag
    that sets it (``--settle``), and the reason is in the user's units with the valid
    range. Raised before anything moves or is written."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(option, reason)
        self.option = option
        self.args = (f"{option}: {reason}",)


class FrameSizeError(CameraError):
    """A camera delivers frames of another size than the one asked for (its driver
    ignored the request): the pixel scale would not be the one the scan assumes."""

    def __init__(self, camera: str, mode: str, requested: tuple[int, int], delivered: tuple[int, int]) -> None:
        self.mode = mode
        self.requested = requested
        self.delivered = delivered
        super().__init__(
            camera,
            f"delivers {delivered[0]}x{delivered[1]} frames in {mode} mode, not the {requested[0]}x{requested[1]} asked for",
        )
