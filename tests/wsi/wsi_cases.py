"""The synthetic scans the stitcher tests share (a module of its own, not conftest, so
that test modules can import it whatever other conftest.py the suite has loaded)."""

from __future__ import annotations

from deepaf_host.wsi.synthetic import SyntheticSpec

#: 3 x 3 tiles of 256 x 192 px with stage errors of several pixels (jitter 1.5 um = 3 px
#: sigma at 0.5 um/px, and 2.5 um = 5 px of backlash on every other row).
GRID = SyntheticSpec(rows=3, cols=3, tile_shape=(192, 256), pixel_size_um=0.5, jitter_um=1.5, backlash_um=2.5, seed=3)
