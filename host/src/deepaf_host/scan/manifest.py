"""The scan's output folder: tile images, ``manifest.jsonl`` and ``report.json``.

Files are written atomically: an image goes to a temporary file in the same folder,
is flushed to disk and renamed over its final name (``os.replace``); only then is its
manifest line appended and fsynced. A crash therefore leaves either no trace of a
tile or a complete image with its line, never a line without its image. A crash in
the middle of appending can leave a partial last line: :meth:`Manifest.open` drops it
(and any leftover temporary files) when a scan resumes.

Manifest keys (one JSON object per line; keys are stable, new keys may be added):

======================  ===============================================================
``tile``                index of the tile in the scan order (0 = bottom-right corner)
``row``, ``col``        the tile's grid row (0 = bottom) and column (0 = right)
``x_um``, ``y_um``      stage position of the tile centre (machine coordinates, um)
``z_um``                stage z where the high-res frame was taken (empty tiles: z of
                        the low-res frame)
``tissue_fraction``     fraction of tissue pixels in the low-res frame
``empty``               true when the tile was skipped as empty glass (no image)
``image``               file name of the tile image in DIR, null for empty tiles
``focus_source``        where ``z_um`` came from: ``autofocus`` (this tile's autofocus
                        succeeded), ``neighbour`` (autofocus failed or too little
                        tissue: the nearest focused tile's z), ``start`` (no focused
                        tile yet: the scan's start z), ``none`` (empty tile)
``autofocus``           the strategy's record (:class:`AutofocusResult`: ``strategy``,
                        ``ok``, ``reason``, ``z_um``, ``start_z_um``, ``correction_um``,
                        ``frames``, ``seconds``, ``measure``, ``score``, ``details``);
                        null when autofocus did not run
``initial_focus``       the first tissue tile only: the coarse focus that ran before
                        ``autofocus`` (an ``AutofocusResult`` too)
``timings_s``           seconds per phase on the scan's clock: ``move``, ``settle``,
                        ``low_capture``, ``tissue``, ``autofocus`` (its frames and moves),
                        ``inference`` (model compute, part of ``autofocus``),
                        ``high_capture``, ``write``, ``total``
``true_focus_z_um``     simulated camera only: the true focal z at the tile centre
``focus_error_um``      simulated camera only: ``z_um - true_focus_z_um``
======================  ===============================================================
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile

from ..errors import ConfigError

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
REPORT = "report.json"
IMAGE_FORMATS = ("jpg", "png", "tif")
_TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    tmp = path.with_name(f"{_TMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def encode_image(rgb: np.ndarray, fmt: str, jpeg_quality: int = 95) -> bytes:
    """An RGB uint8 frame encoded as ``jpg``, ``png`` or ``tif`` (uncompressed TIFF)."""
    if fmt == "tif":
        import io

        buf = io.BytesIO()
        tifffile.imwrite(buf, rgb, photometric="rgb")
        return buf.getvalue()
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, encoded = cv2.imencode("." + fmt, bgr, params)
    if not ok:
        raise ConfigError("format", f"OpenCV could not encode a {fmt} image")
    return encoded.tobytes()


def tile_image_name(tile: int, row: int, col: int, fmt: str) -> str:
    return f"tile_{tile:05d}_r{row:03d}_c{col:03d}.{fmt}"


def second_shot_name(image: str) -> str:
    """The name of a tile's second shot (``--two-shot``): ``<stem>.shot2.<ext>``."""
    stem, _, ext = image.rpartition(".")
    return f"{stem}.shot2.{ext}"


class Manifest:
    """``DIR/manifest.jsonl``: read the finished tiles, append one line per tile."""

    def __init__(self, directory: Path, records: dict[int, dict[str, Any]]) -> None:
        self.directory = directory
        self.path = directory / MANIFEST
        self.records = records
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    @classmethod
    def open(cls, directory: str | Path, resume: bool) -> Manifest:
        """Open the manifest of ``directory`` (created when missing).

        With ``resume`` the finished tiles are read back (a partial last line is dropped,
        as are records whose image is missing); without it, a folder that already has a
        manifest is an error, so that a scan never mixes with an old one.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        path = d / MANIFEST
        for tmp in d.glob(_TMP_PREFIX + "*"):
            tmp.unlink()
        records: dict[int, dict[str, Any]] = {}
        if path.exists():
            if not resume:
                raise ConfigError("out", f"{d} already holds a scan ({MANIFEST}); use --resume to continue it or choose another folder")
            records, clean = cls._read(path, d)
            if not clean:
                lines = "".join(json.dumps(r) + "\n" for r in sorted(records.values(), key=lambda r: r["tile"]))
                write_atomic(path, lines.encode("utf-8"))
        return cls(d, records)

    @staticmethod
    def _read(path: Path, directory: Path) -> tuple[dict[int, dict[str, Any]], bool]:
        records: dict[int, dict[str, Any]] = {}
        clean = True
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                tile = int(rec["tile"])
            except (ValueError, KeyError, TypeError):
                if n == len(lines) - 1:  # the last line, cut by a crash: drop it
                    log.warning("dropping a partial last line of %s", path)
                    clean = False
                    continue
                raise ConfigError("resume", f"{path} line {n + 1} is not a manifest record") from None
            if rec.get("image") and not (directory / rec["image"]).exists():
                log.warning("tile %d: image %s is missing; it will be imaged again", tile, rec["image"])
                clean = False
                continue
            if tile in records:
                clean = False
            records[tile] = rec
        return records, clean

    def done(self) -> set[int]:
        return set(self.records)

    def write_image(self, name: str, rgb: np.ndarray, fmt: str, jpeg_quality: int = 95) -> None:
        write_atomic(self.directory / name, encode_image(rgb, fmt, jpeg_quality))

    def append(self, record: dict[str, Any]) -> None:
        """Append one tile's line and fsync it (after its image is in place)."""
        tile = int(record["tile"])
        if tile in self.records:
            raise ConfigError("manifest", f"tile {tile} is already in {self.path}")
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records[tile] = record

    def close(self) -> None:
        self._file.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(sorted(self.records.values(), key=lambda r: r["tile"]))


def write_report(directory: str | Path, report: dict[str, Any]) -> Path:
    path = Path(directory) / REPORT
    write_atomic(path, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    return path
