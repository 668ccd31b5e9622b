"""Whole-slide image: a scan folder stitched into one pyramidal OME-TIFF.

``stitch(DIR)`` registers overlapping neighbours by phase correlation
(:mod:`.register`), solves every tile's position globally with the stage as a weak
prior (:mod:`.solve`), corrects vignetting from the scan's own glass (:mod:`.flatfield`),
blends the overlaps and streams the mosaic into ``DIR/slide.ome.tif`` (:mod:`.compose`,
:mod:`.pyramid`, :mod:`.ometiff`), with a thumbnail, a focus map (:mod:`.focusmap`) and
``report.html`` (:mod:`.report`). :mod:`.synthetic` writes scan folders with known tile
positions; ``python -m deepaf_host.wsi.bench`` measures a large one.
"""

from .folder import ScanFolder, StitchError
from .stitch import SLIDE, StitchOptions, stitch

__all__ = ["SLIDE", "ScanFolder", "StitchError", "StitchOptions", "stitch"]
