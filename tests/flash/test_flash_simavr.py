"""End to end without hardware: avrdude -> the Uno's bootloader (Optiboot, built from
Debian's arduino-core-avr source) in simavr -> the flashed firmware answers ``$I``.

Emulated: BOOTRST (every reset starts at 0x7E00), the DTR auto-reset (opening the
pseudo-terminal is an external reset, MCUSR.EXTRF), the UART at Optiboot's baud rate.
Real: avrdude (STK500v1, signature check, write and read-back verify), Optiboot's code,
its SPM page erase/fill/write executed by simavr's flash module, its watchdog reset
into the application, the firmware image and the host's checks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from deepaf_host.cli import main
from deepaf_host.firmware.ihex import read_hex
from deepaf_host.firmware.image import shipped_image, shipped_info
from deepaf_host.stage import Connection

from flash_helpers import OPTIBOOT, BootSim, build_firmware

pytestmark = pytest.mark.firmware

DEBIAN_OPTIBOOT = Path("/usr/share/arduino/hardware/arduino/avr/bootloaders/optiboot/optiboot_atmega328.hex")


def flash_cli(port: str, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["flash", "--port", port, *extra])
    return result.exit_code, result.output


def application_flash(sim: BootSim, tmp_path: Path) -> bytes:
    dump = tmp_path / "flash.bin"
    sim.command(f"flash save {dump}")
    return dump.read_bytes()


def test_a_fresh_uno_is_flashed_through_optiboot_and_answers_with_the_shipped_version(
    boot_sim: type[BootSim], tmp_path: Path
) -> None:
    sim = boot_sim()  # only the bootloader: the application section is blank
    image = shipped_image()
    assert set(application_flash(sim, tmp_path)[: image.hex.end]) == {0xFF}
    code, out = flash_cli(sim.pty)
    assert code == 0, out
    version = shipped_info()["firmware_version"]
    assert f"the board answers $I: DeepAf firmware {version} (protocol 1), the version just written" in out
    assert "no DeepAf or GRBL firmware answered" in out
    # The bootloader wrote every page with SPM (erase, 64 word fills, write).
    erases, writes, fills = sim.numbers("spm")
    pages = -(-image.hex.end // 128)
    assert erases == writes == pages and fills == 64 * pages
    written = application_flash(sim, tmp_path)
    assert written[: image.hex.end] == image.hex.data
    assert written[0x7E00:] == read_hex(OPTIBOOT, limit=0x8000).data[0x7E00:], "the bootloader is intact"
    # The watchdog reset that ends Optiboot's upload started the application.
    power_on, external, watchdog = sim.numbers("resets")
    assert power_on == 1 and external >= 3 and watchdog >= 2


def test_an_older_firmware_is_warned_about_then_upgraded_and_its_settings_reported(
    boot_sim: type[BootSim], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The board runs an "older" firmware whose settings are in another EEPROM format.
    old = build_firmware(tmp_path / "old", '-DDEEPAF_FIRMWARE_VERSION=\\"0.0.9\\"', "-DSETTINGS_FORMAT_VERSION=0")
    sim = boot_sim(old)
    with caplog.at_level(logging.WARNING, logger="deepaf_host.stage.connection"):
        with Connection(sim.pty) as conn:
            assert conn.info.firmware_version == "0.0.9"
            conn.command("$100=1234")
    version = shipped_info()["firmware_version"]
    assert any(
        f"runs firmware 0.0.9, older than the {version} this host ships" in r.getMessage()
        and f"deepaf-host flash --port {sim.pty}" in r.getMessage()
        for r in caplog.records
    ), caplog.text
    code, out = flash_cli(sim.pty)
    assert code == 0, out
    assert "the board runs DeepAf firmware 0.0.9 (protocol 1)" in out
    assert f"DeepAf firmware {version} (protocol 1), the version just written" in out
    assert "reset to the firmware's defaults" in out and "$100=1234" in out, out
    with Connection(sim.pty) as conn:
        assert conn.info.firmware_version == version
        assert "$100=800.0000" in conn.command("$$").lines, "the defaults are in use"


def test_the_harness_refuses_a_bootloader_that_does_not_fit_the_boot_section(built: None, tmp_path: Path) -> None:
    """Debian's prebuilt optiboot_atmega328.hex (arduino-core-avr 1.8.7) is 532 bytes:
    20 of them lie past 0x7FFF, where an ATmega328P has no flash. The harness refuses
    it as the chip would; the tests use Optiboot built from the same package's source
    (firmware/Makefile, target optiboot), which fits."""
    oversized = tmp_path / "big.hex"
    oversized.write_text(":0280000001007D\n:00000001FF\n")
    for boot in [oversized] + ([DEBIAN_OPTIBOOT] if DEBIAN_OPTIBOOT.exists() else []):
        with pytest.raises(RuntimeError, match=r"byte at 0x80.. is outside 0x7e00-0x7fff"):
            BootSim(bootloader=boot).close()
