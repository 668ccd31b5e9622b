"""Flashing the motor board: avrdude through the Uno's bootloader, then a check.

``flash(port, image)`` does what a user with a fresh Uno and a CNC Shield expects:

1. Refuses, before anything is written (``FlashRefused``): a URL rather than a serial
   device, a port that does not exist, a port another process holds open (a scan, a
   G-code sender; Linux only, from /proc), no avrdude. The image was checked when it
   was loaded (``ihex.read_hex``: record checksums, the 32,256-byte application section).
2. Reads the board as it is: ``$I`` and ``$$`` if a DeepAf or GRBL 1.1 firmware answers
   (opening the port resets an Uno, as it always does).
3. Runs ``avrdude -p atmega328p -c arduino -P PORT -b 115200 -D -U flash:w:HEX:i``:
   avrdude pulses DTR/RTS to reset the board into its bootloader (Optiboot, STK500v1 at
   115200 baud), checks the chip's signature, writes the application section page by
   page and reads it back to verify. ``-D``: no chip erase -- Optiboot erases each page
   before writing it and never touches the EEPROM or itself.
4. Opens the port again and checks that ``$I`` reports the version stored in the image
   just written (``FlashFailed`` if not), then says what became of the settings.

The settings live in EEPROM with a format version and a CRC-16 (firmware/settings.c).
Flashing leaves the EEPROM as it was; at its first boot the new firmware keeps the
stored settings when their format version is its own and the CRC matches, and loads its
defaults otherwise (there is no migration). The boot message that says which is sent
while nobody listens (avrdude has just closed the port), so the host compares ``$$``
before and after instead, and lists the previous values when they were replaced.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeepAfError, HandshakeError, PortUnavailable
from ..stage.info import BoardInfo
from .errors import AvrdudeMissing, FlashFailed, PortRefused
from .image import FirmwareImage, is_older, shipped_version

AVRDUDE = "avrdude"
PART = "atmega328p"
#: avrdude's name for the STK500v1 dialect of the Arduino bootloaders, with the DTR reset.
PROGRAMMER = "arduino"
BAUD = 115200
#: Time for the board as found to answer: bootloader (about 1 s) plus boot.
BEFORE_TIMEOUT_S = 4.0
#: Time for the flashed firmware to answer.
AFTER_TIMEOUT_S = 10.0
#: Pause between closing the port and the next program opening it.
SETTLE_S = 0.25
#: Longest avrdude run accepted (a full 32 KB write and verify takes about 10 s).
AVRDUDE_TIMEOUT_S = 180.0

Echo = Callable[[str], None]


@dataclass(frozen=True)
class BoardState:
    """What the board said about itself: ``$I`` and its ``$$`` settings."""

    info: BoardInfo
    settings: dict[int, str]

    def describe(self) -> str:
        info = self.info
        if info.is_deepaf:
            return f"DeepAf firmware {info.firmware_version} (protocol {info.protocol_version})"
        return f"stock GRBL {info.grbl_version}"


@dataclass(frozen=True)
class FlashResult:
    before: BoardState | None
    after: BoardState | None
    avrdude_output: str
    settings_lines: list[str]


def avrdude_command(port: str, hex_path: str | os.PathLike[str]) -> list[str]:
    """The avrdude command line that flashes ``hex_path`` onto the Uno on ``port``."""
    return [AVRDUDE, "-p", PART, "-c", PROGRAMMER, "-P", port, "-b", str(BAUD), "-D", "-U", f"flash:w:{hex_path}:i"]


def find_avrdude() -> str:
    """avrdude's path, or ``AvrdudeMissing``."""
    found = shutil.which(AVRDUDE)
    if found is None:
        raise AvrdudeMissing(AVRDUDE)
    return found


def port_holders(port: str) -> list[tuple[int, str]]:
    """Other processes that hold ``port`` open, as (pid, command line); Linux only
    (elsewhere: an empty list). Processes of other users are not visible unless root."""
    proc = Path("/proc")
    if not sys.platform.startswith("linux") or not proc.is_dir():
        return []
    target = os.path.realpath(port)
    holders: list[tuple[int, str]] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) != target:
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            holders.append((int(entry.name), cmdline or "?"))
            break
    return holders


def check_port(port: str) -> None:
    """``PortRefused`` unless ``port`` is a serial device nobody else has open."""
    if "://" in port:
        raise PortRefused(
            port,
            "a URL, not a serial device: the virtual board and the firmware in simavr have no bootloader "
            "(firmware/sim/deepaf-sim --bootloader runs one on a pseudo-terminal)",
        )
    if not os.path.exists(port):
        raise PortRefused(port, "no such device (is the board plugged in?)")
    holders = port_holders(port)
    if holders:
        pid, cmdline = holders[0]
        raise PortRefused(
            port, f"busy: process {pid} ({cmdline[:80]}) has it open -- a scan or a serial monitor? Stop it first"
        )


def _parse_settings(lines: tuple[str, ...]) -> dict[int, str]:
    settings: dict[int, str] = {}
    for line in lines:
        number, eq, value = line.partition("=")
        if eq and number.startswith("$") and number[1:].isdigit():
            settings[int(number[1:])] = value
    return settings


def read_board(port: str, timeout_s: float) -> tuple[BoardState | None, str]:
    """Opens ``port`` (an Uno resets), asks ``$I`` and ``$$``, closes it. Returns the
    state, or None and why not when no DeepAf or GRBL 1.1 firmware answered."""
    from ..stage.connection import Connection

    try:
        conn = Connection(port, handshake_timeout_s=timeout_s, timeout_s=timeout_s, warn_outdated=False)
    except PortUnavailable:
        raise
    except HandshakeError as exc:
        return None, exc.reason
    except DeepAfError as exc:
        return None, str(exc)
    try:
        try:
            settings = _parse_settings(conn.command("$$").lines)
        except DeepAfError as exc:
            return BoardState(conn.info, {}), f"$$ failed: {exc}"
        return BoardState(conn.info, settings), ""
    finally:
        conn.close()
        time.sleep(SETTLE_S)


def _same_value(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def settings_report(before: BoardState | None, after: BoardState | None, settings_format: int | None) -> list[str]:
    """What became of the stored settings, from ``$$`` before and after flashing."""
    fmt = f"format version {settings_format}" if settings_format is not None else "its own format version"
    lines = [
        f"settings: flashing wrote flash only; the EEPROM keeps its bytes, and the new firmware keeps them when "
        f"they are in {fmt} with a good CRC-16, else it loads its defaults (no migration)."
    ]
    if after is None or not after.settings:
        lines.append("settings: not read after flashing (the board did not answer $$).")
        return lines
    if before is None or not before.settings:
        lines.append(
            f"settings: none were readable before flashing; the board now uses the {len(after.settings)} values "
            "`$$` lists (its defaults, unless the EEPROM already held settings in its format)."
        )
        return lines
    common = sorted(set(before.settings) & set(after.settings))
    changed = [n for n in common if not _same_value(before.settings[n], after.settings[n])]
    if not changed:
        lines.append(f"settings: kept -- the {len(common)} values read before flashing are unchanged.")
        return lines
    lines.append(
        f"settings: reset to the firmware's defaults -- {len(changed)} of {len(common)} values changed (the stored "
        "settings were in another format, or their CRC failed). The values before flashing, to send again "
        "where they still apply:"
    )
    lines += [f"  ${n}={before.settings[n]}    (now {after.settings[n]})" for n in changed]
    return lines


def _tail(output: str, count: int = 4, about: tuple[str, ...] = ()) -> str:
    """avrdude's last ``count`` lines (those that mention ``about``, when any do),
    without the modem-line complaints a pseudo-terminal causes."""
    useful = [line.strip() for line in output.splitlines() if line.strip() and "TIOCM" not in line]
    relevant = [line for line in useful if any(key in line.lower() for key in about)]
    return " | ".join((relevant or useful)[-count:])


def _avrdude_failure(port: str, output: str) -> DeepAfError:
    """The error for a failed avrdude run: refused when nothing was written yet."""
    low = output.lower()
    if "writing" not in low:
        if "signature" in low and "expected" in low:
            return PortRefused(port, f"the chip is not an ATmega328P (avrdude: {_tail(output, 2, ('signature',))})")
        sync = ("not in sync", "not responding", "protocol expects")
        if any(key in low for key in sync):
            return PortRefused(
                port,
                "no Uno bootloader answered (STK500v1 at 115200 baud after the DTR reset): is it an Arduino Uno, "
                f"with Optiboot? (avrdude: {_tail(output, 1, sync)})",
            )
        return PortRefused(port, f"avrdude stopped before writing: {_tail(output)}")
    return FlashFailed(
        port,
        f"avrdude failed while writing or verifying: {_tail(output)}. The bootloader is intact: run the same "
        "command again",
    )


def run_avrdude(command: list[str], port: str) -> str:
    """Runs avrdude; its output, or the error for its failure."""
    try:
        done = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=AVRDUDE_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise AvrdudeMissing(command[0]) from None
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode(errors="replace")
        raise FlashFailed(port, f"avrdude did not finish within {AVRDUDE_TIMEOUT_S:g} s: {_tail(out)}") from None
    if done.returncode != 0:
        raise _avrdude_failure(port, done.stdout)
    return done.stdout


def flash(port: str, image: FirmwareImage, echo: Echo = print) -> FlashResult:
    """Flashes ``image`` onto the Uno on ``port`` and checks the result; see the module
    docstring. Progress goes to ``echo``, one line at a time."""
    find_avrdude()
    check_port(port)
    before, why = read_board(port, BEFORE_TIMEOUT_S)
    if before is not None:
        echo(f"{port}: the board runs {before.describe()}; {len(before.settings)} settings read")
    else:
        echo(f"{port}: no DeepAf or GRBL firmware answered ({why}); a new board runs none")
    command = avrdude_command(port, image.path)
    what = f"DeepAf {image.firmware_version}" if image.firmware_version else "an image without a DeepAf version"
    echo(f"flashing {image.path.name} ({what}, {image.hex.data_bytes} bytes, sha256 {image.sha256[:16]}...) with:")
    echo("  " + shlex.join(command))
    output = run_avrdude(command, port)
    verified = next((line.strip() for line in output.splitlines() if "verified" in line), "")
    echo(f"avrdude: {verified.removeprefix('avrdude: ') or 'done'}")
    time.sleep(SETTLE_S)
    after, why = read_board(port, AFTER_TIMEOUT_S)
    if image.firmware_version is not None:
        if after is None:
            raise FlashFailed(
                port,
                f"avrdude wrote and verified the image, but no DeepAf {image.firmware_version} answered $I ({why})",
            )
        if after.info.firmware_version != image.firmware_version:
            raise FlashFailed(
                port, f"the board reports {after.describe()}, not the {image.firmware_version} just written"
            )
        echo(f"the board answers $I: {after.describe()}, the version just written")
        shipped = shipped_version()
        if shipped is not None and is_older(image.firmware_version, shipped):
            echo(f"note: {image.firmware_version} is older than the {shipped} this host ships")
    elif after is not None:
        echo(f"the board answers $I: {after.describe()}")
    else:
        echo("the board does not answer $I (not a DeepAf or GRBL image: nothing to check)")
    report = settings_report(before, after, image.settings_format)
    for line in report:
        echo(line)
    return FlashResult(before, after, output, report)
