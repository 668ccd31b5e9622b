"""Small synthetic scan folders (known true tile positions) shared by the stitcher tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from deepaf_host.wsi.synthetic import write_synthetic_scan
from wsi_cases import GRID


@pytest.fixture(scope="session")
def grid_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 3 x 3 scan, not yet stitched (copy it before stitching into it)."""
    d = tmp_path_factory.mktemp("grid") / "scan"
    write_synthetic_scan(d, GRID)
    return d


@pytest.fixture(scope="session")
def stitched_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The 3 x 3 scan stitched without flat field (so level 0 must equal the tiles)."""
    from deepaf_host.wsi import StitchOptions, stitch

    d = tmp_path_factory.mktemp("stitched") / "scan"
    write_synthetic_scan(d, GRID)
    summary = stitch(d, StitchOptions(flat_field="off", smallest_level_px=128, jpeg_quality=95))
    return d, summary
