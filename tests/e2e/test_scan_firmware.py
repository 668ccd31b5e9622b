"""One end-to-end scan on the real firmware: ``simavr://`` runs firmware/build/deepaf.elf
in simavr, and the virtual camera follows its motors (``deepaf_host.sim.simulated_board``), so
homing, every move, the autofocus sweeps, parking and the release go through the same
firmware that ships. A small area (2 x 2 tiles, one of them glass) and small frames keep
it well under a minute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deepaf_host.scan.manifest import MANIFEST
from deepaf_host.scan.session import ScanOptions, run_scan

ROOT = Path(__file__).resolve().parents[2]
ELF = ROOT / "firmware" / "build" / "deepaf.elf"
SIM = ROOT / "firmware" / "build" / "deepaf-sim"
#: The 20x virtual camera with small frames (same field, coarser pixels).
CAMERA = "sim://20x?low=320x180&high=320x240"
#: 2 x 2 tiles on the upper-left edge of the virtual slide's tissue: 3 tissue, 1 glass.
AREA_MM = "-30.30,-15.90,-29.90,-15.70"


@pytest.mark.firmware
@pytest.mark.slow
def test_scan_on_the_firmware_in_simavr(tmp_path: Path) -> None:
    if not (ELF.exists() and SIM.exists()):
        pytest.fail("firmware not built: run `make -C firmware all sim`", pytrace=False)
    out = tmp_path / "scan"
    report = run_scan(
        ScanOptions(
            port=f"simavr://{ELF}?speed=fast",
            camera=CAMERA,
            out_dir=out,
            area_mm=AREA_MM,
            autofocus="stack",
            # A real port: the virtual slide's defaults are not applied, so say them.
            z_start_um=-4000.0,
            z_min_um=-7000.0,
        )
    )
    assert report["status"] == "complete", report
    assert report["parked_and_released"] is True
    tiles = report["tiles"]
    assert tiles["planned"] == tiles["done"] == 4 and tiles["imaged"] == 3 and tiles["empty"] == 1
    assert tiles["autofocus_ok"] == 3 and tiles["autofocus_failed"] == 0
    lines = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert [r["tile"] for r in lines] == [0, 1, 2, 3]
    imaged = [r for r in lines if not r["empty"]]
    half_dof = 0.49  # the 20x objective's depth of field, halved
    assert all(abs(r["focus_error_um"]) <= half_dof for r in imaged), [r["focus_error_um"] for r in imaged]
    assert all(r["focus_source"] == "autofocus" and (out / r["image"]).exists() for r in imaged)
