"""The slide file: a pyramidal, tiled, JPEG-compressed OME-TIFF (BigTIFF).

Layout (the OME-TIFF sub-resolution rule): IFD 0 is the full-resolution RGB image in
``tile_px`` tiles, with the OME-XML in its ImageDescription; the lower levels are its
SubIFDs, each half the size of the one above. Every level carries the TIFF resolution
tags (pixels per centimetre), so readers that ignore OME-XML still know the pixel size.

OpenSlide (4.0) reads a generic tiled TIFF's levels from the main IFD chain only and
does not follow SubIFDs. After writing, :func:`link_levels_in_main_chain` points IFD 0's
next-IFD field at the first SubIFD (the SubIFDs are already chained to each other): the
same level IFDs are then reachable both ways. OME readers (tifffile, tiffslide,
Bio-Formats) map planes through the OME-XML ``TiffData`` (IFD 0 only) and take levels
from SubIFDs; OpenSlide walks the chain and sees every level.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import tifffile

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


@dataclass
class SlideMetadata:
    """What the OME-XML says about the slide."""

    pixel_size_um: float
    name: str = "slide"
    description: str = ""
    acquired: datetime | None = None
    objective_name: str | None = None
    objective_magnification: float | None = None
    objective_na: float | None = None
    #: Free key -> value pairs (a MapAnnotation: scan settings, stitch figures).
    annotations: dict[str, str] = field(default_factory=dict)


def ome_xml(meta: SlideMetadata, shape: tuple[int, int]) -> str:
    """OME-XML (2016-06 schema) for one RGB uint8 image of ``shape`` (H, W)."""
    h, w = shape
    px = f"{meta.pixel_size_um:.9g}"
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<OME xmlns="{OME_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{OME_NS} {OME_NS}/ome.xsd" UUID="urn:uuid:{uuid.uuid4()}" Creator="deepaf-host">',
    ]
    has_objective = meta.objective_name or meta.objective_magnification or meta.objective_na
    if has_objective:
        attrs = ' ID="Objective:0:0"'
        if meta.objective_name:
            attrs += f" Model={quoteattr(meta.objective_name)}"
        if meta.objective_magnification:
            attrs += f' NominalMagnification="{meta.objective_magnification:g}"'
        if meta.objective_na:
            attrs += f' LensNA="{meta.objective_na:g}"'
        parts.append(f'<Instrument ID="Instrument:0"><Objective{attrs}/></Instrument>')
    parts.append(f'<Image ID="Image:0" Name={quoteattr(meta.name)}>')
    if meta.acquired is not None:
        parts.append(f"<AcquisitionDate>{meta.acquired.replace(tzinfo=None).isoformat(timespec='seconds')}</AcquisitionDate>")
    if meta.description:
        parts.append(f"<Description>{escape(meta.description)}</Description>")
    if has_objective:
        parts.append('<InstrumentRef ID="Instrument:0"/><ObjectiveSettings ID="Objective:0:0"/>')
    parts.append(
        f'<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{w}" SizeY="{h}" SizeC="3" SizeZ="1" '
        f'SizeT="1" Interleaved="true" PhysicalSizeX="{px}" PhysicalSizeXUnit="µm" PhysicalSizeY="{px}" '
        f'PhysicalSizeYUnit="µm" SignificantBits="8">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="3"><LightPath/></Channel>'
        '<TiffData IFD="0" PlaneCount="1"/></Pixels>'
    )
    if meta.annotations:
        parts.append('<AnnotationRef ID="Annotation:0"/>')
    parts.append("</Image>")
    if meta.annotations:
        parts.append('<StructuredAnnotations><MapAnnotation ID="Annotation:0" Namespace="deepaf-host/scan"><Value>')
        parts += [f"<M K={quoteattr(k)}>{escape(v)}</M>" for k, v in meta.annotations.items()]
        parts.append("</Value></MapAnnotation></StructuredAnnotations>")
    parts.append("</OME>")
    return "".join(parts)


def write_pyramid(
    path: str | Path,
    levels: Iterable[tuple[tuple[int, int], Iterator[np.ndarray]]],
    n_levels: int,
    meta: SlideMetadata,
    *,
    tile_px: int = 512,
    jpeg_quality: int = 90,
    workers: int = 2,
) -> None:
    """Write the levels ((H, W), row-major tile iterator), level 0 first, to ``path``.

    The iterators are consumed lazily, one level after the other, so level k+1 may be
    produced while level k is written.
    """
    res_per_cm = 1e4 / meta.pixel_size_um
    common: dict[str, Any] = {
        "dtype": np.uint8, "tile": (tile_px, tile_px), "photometric": "rgb", "compression": "jpeg",
        "compressionargs": {"level": jpeg_quality}, "resolutionunit": "CENTIMETER", "maxworkers": workers,
        "buffersize": 16 * tile_px * tile_px * 3 * max(1, workers), "metadata": None,
    }
    with tifffile.TiffWriter(path, bigtiff=True, ome=False) as tw:
        for k, (shape, tiles) in enumerate(levels):
            scale = 2**k
            kwargs = dict(common, shape=(*shape, 3), resolution=(res_per_cm / scale, res_per_cm / scale))
            if k == 0:
                kwargs.update(subifds=n_levels - 1, description=ome_xml(meta, shape).encode("utf-8"), software="deepaf-host")
            else:
                kwargs.update(subfiletype=1)
            tw.write(tiles, **kwargs)
    if n_levels > 1:
        link_levels_in_main_chain(path)


def link_levels_in_main_chain(path: str | Path) -> None:
    """Point IFD 0's next-IFD offset at its first SubIFD (BigTIFF, little-endian; see
    the module docstring). The SubIFDs must already chain to one another."""
    with tifffile.TiffFile(path) as tf:
        if not tf.is_bigtiff or tf.byteorder != "<":
            raise ValueError(f"{path}: expected a little-endian BigTIFF")
        page = tf.pages.first
        subifds = list(page.tags["SubIFDs"].value)
        offset = page.offset
        tf.filehandle.seek(offset)
        (ntags,) = struct.unpack("<Q", tf.filehandle.read(8))
        chained = [offset, *subifds]
        nexts = []
        for o in subifds:
            tf.filehandle.seek(o)
            (n,) = struct.unpack("<Q", tf.filehandle.read(8))
            tf.filehandle.seek(o + 8 + n * 20)
            (nxt,) = struct.unpack("<Q", tf.filehandle.read(8))
            nexts.append(nxt)
    if nexts != [*chained[2:], 0]:
        raise ValueError(f"{path}: SubIFDs are not chained as expected ({nexts})")
    with open(path, "r+b") as f:
        f.seek(offset + 8 + ntags * 20)
        f.write(struct.pack("<Q", subifds[0]))
