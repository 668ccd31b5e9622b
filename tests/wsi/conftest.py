"""Small synthetic scan folders (known true tile positions) shared by the stitcher tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from deepaf_host.wsi.synthetic import SyntheticSpec, write_synthetic_scan

#: 3 x 3 tiles of 256 x 192 px with stage errors of several pixels (jitter 1.5 um = 3 px
#: sigma at 0.5 um/px, and 2.5 um = 5 px of backlash on every other row).
GRID = SyntheticSpec(rows=3, cols=3, tile_shape=(192, 256), pixel_size_um=0.5, jitter_um=1.5, backlash_um=2.5, seed=3)


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
