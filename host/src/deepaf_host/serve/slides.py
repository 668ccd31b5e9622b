"""Finished scans under the output root, for the page's viewer.

Only folders directly under the root whose name matches ``NAME_RE`` and only the
files in :data:`FILES` are served: a name with ``..``, a slash or a link out of the
root is refused (404) before the file system is asked. The slide's pyramid is read
with tifffile: a tile of the viewer is one tile of the TIFF level, decoded and sent as
JPEG, so the page never needs the whole slide.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..scan.manifest import REPORT

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SLIDE = "slide.ome.tif"
#: The files of a scan folder the page may fetch.
FILES = ("focus_map.png", "report.html", REPORT)


class SlideError(Exception):
    """A slide request that cannot be served (``status``: 404 or 400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Slides:
    """The scan folders under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._lock = threading.Lock()
        self._open: dict[Path, tuple[float, Any]] = {}

    def folder(self, name: str) -> Path:
        if not NAME_RE.match(name) or ".." in name:
            raise SlideError(404, "no such scan")
        path = (self.root / name).resolve()
        if path.parent != self.root or not path.is_dir():
            raise SlideError(404, "no such scan")
        return path

    def file(self, name: str, file: str) -> Path:
        if file not in FILES:
            raise SlideError(404, f"not served (only {', '.join(FILES)})")
        path = (self.folder(name) / file).resolve()
        if path.parent != self.root / name or not path.is_file():
            raise SlideError(404, f"{name} has no {file}")
        return path

    def list(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            if not d.is_dir() or not NAME_RE.match(d.name) or d.is_symlink():
                continue
            if not (d / REPORT).is_file() and not (d / SLIDE).is_file():
                continue
            status = None
            try:
                status = json.loads((d / REPORT).read_text(encoding="utf-8")).get("status")
            except (OSError, ValueError, AttributeError):
                pass
            out.append({
                "name": d.name, "status": status, "slide": (d / SLIDE).is_file(),
                "files": [f for f in FILES if (d / f).is_file()],
            })
        return out

    def _tiff(self, name: str) -> Any:
        import tifffile

        path = self.folder(name) / SLIDE
        if not path.is_file():
            raise SlideError(404, f"{name} has no stitched slide")
        mtime = path.stat().st_mtime
        with self._lock:
            cached = self._open.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            if cached is not None:
                cached[1].close()
            tif = tifffile.TiffFile(path)
            self._open[path] = (mtime, tif)
            return tif

    def levels(self, name: str) -> dict[str, Any]:
        """The pyramid: per level its size and tile size, full resolution first."""
        tif = self._tiff(name)
        with self._lock:
            out = []
            for level in tif.series[0].levels:
                page = level.keyframe
                out.append({"width": int(page.imagewidth), "height": int(page.imagelength),
                            "tile_width": int(page.tilewidth), "tile_height": int(page.tilelength)})
        return {"name": name, "levels": out}

    def tile(self, name: str, level: int, row: int, col: int) -> bytes:
        """The TIFF tile (row, col) of ``level`` as JPEG bytes (edge tiles cropped)."""
        import cv2

        tif = self._tiff(name)
        with self._lock:
            levels = tif.series[0].levels
            if not 0 <= level < len(levels):
                raise SlideError(404, f"level {level} does not exist (0 to {len(levels) - 1})")
            page = levels[level].keyframe
            if not page.is_tiled:
                raise SlideError(400, "the slide is not tiled")
            across = -(-page.imagewidth // page.tilewidth)
            down = -(-page.imagelength // page.tilelength)
            if not (0 <= row < down and 0 <= col < across):
                raise SlideError(404, f"tile ({row}, {col}) is outside level {level} ({down} x {across} tiles)")
            index = row * across + col
            fh = tif.filehandle
            fh.seek(page.dataoffsets[index])
            data = fh.read(page.databytecounts[index])
            segment, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        rgb = np.asarray(segment).reshape(page.tilelength, page.tilewidth, -1)[..., :3]
        h = min(page.tilelength, page.imagelength - row * page.tilelength)
        w = min(page.tilewidth, page.imagewidth - col * page.tilewidth)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb[:h, :w]), cv2.COLOR_RGB2BGR))
        if not ok:
            raise SlideError(400, "could not encode the tile")
        return jpeg.tobytes()
