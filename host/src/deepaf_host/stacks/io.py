"""Reading and writing focal-stack datasets.

``StackWriter`` writes the "deepaf-stacks/1" format (``format.py``): one OME-TIFF per
stack and ``index.json`` (written last, atomically). ``open_stacks`` reads it, and also
real stacks given as a folder of images plus a table of z per plane:

- ``z.csv``: a header row with the columns ``file`` and ``z_um`` (and, optionally,
  ``focus_z_um``, the same on every row or only on the first); one row per plane.
- ``z.json``: ``{"z_um": [...], "files": [...] (optional: default is the folder's
  images sorted by name), "focus_z_um": ... (optional), "objective", "pixel_size_um",
  "protocol", "source" (optional)}``.

A folder whose sub-folders are such image stacks reads as one dataset of them all.
Everything is validated; a problem raises ``DatasetError`` naming the file and what is
wrong with it.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .format import FORMAT, INDEX, StackRecord, check_frames, parse_index, parse_record

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


# --- writing ----------------------------------------------------------------------------


class StackWriter:
    """Writes stacks into ``root`` and, on ``close()``, its ``index.json``.

    Deterministic: the same stacks and metadata give the same bytes (the OME UUID is
    derived from the file name and ``uuid_seed``; no time stamps are written).
    """

    def __init__(self, root: str | Path, *, overwrite: bool = False, metadata: dict[str, Any] | None = None, uuid_seed: str = "") -> None:
        self.root = Path(root)
        if (self.root / INDEX).exists() and not overwrite:
            raise DatasetError(str(self.root / INDEX), "a dataset is already there (choose another folder or overwrite)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.records: list[StackRecord] = []
        self.metadata = dict(metadata or {})
        self._uuid_seed = uuid_seed
        self._closed = False

    def add(
        self,
        frames: np.ndarray,
        *,
        z_um: list[float] | tuple[float, ...] | np.ndarray,
        focus_z_um: float | None,
        objective: str,
        pixel_size_um: float | None,
        protocol: str | None,
        source: str,
        name: str | None = None,
        **extra: Any,
    ) -> StackRecord:
        """Write one stack (Z, Y, X, 3) uint8; returns its record."""
        if self._closed:
            raise DatasetError(str(self.root), "the writer is closed")
        file = name or f"stack_{len(self.records):04d}.ome.tif"
        record = parse_record(
            {
                "file": file,
                "z_um": [float(v) for v in np.asarray(z_um, dtype=np.float64)],
                "focus_z_um": None if focus_z_um is None else float(focus_z_um),
                "objective": objective,
                "pixel_size_um": None if pixel_size_um is None else float(pixel_size_um),
                "protocol": protocol,
                "source": source,
                **extra,
            },
            f"stack {file!r}",
            str(self.root / INDEX),
        )
        frames = np.asarray(frames)
        check_frames(frames, record.planes, str(self.root / file))
        if any(r.file == file for r in self.records):
            raise DatasetError(str(self.root / file), "a stack of this name was already written")
        _write_ome(self.root / file, frames, record, f"{self._uuid_seed}/{file}")
        self.records.append(record)
        return record

    def close(self) -> None:
        """Write ``index.json`` (atomically: a temporary file renamed into place)."""
        if self._closed:
            return
        doc = {"format": FORMAT, **self.metadata, "stacks": [r.to_json() for r in self.records]}
        tmp = self.root / (INDEX + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.root / INDEX)
        self._closed = True

    def __enter__(self) -> StackWriter:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()


def _write_ome(path: Path, frames: np.ndarray, record: StackRecord, uuid_name: str) -> None:
    import tifffile

    meta: dict[str, Any] = {
        "axes": "ZYXS",
        "UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, "deepaf-stacks:" + uuid_name)),
    }
    if record.pixel_size_um is not None:
        meta.update(PhysicalSizeX=record.pixel_size_um, PhysicalSizeXUnit="µm", PhysicalSizeY=record.pixel_size_um, PhysicalSizeYUnit="µm")
    tmp = path.with_name(path.name + ".tmp")
    tifffile.imwrite(tmp, frames, photometric="rgb", metadata=meta, ome=True)
    os.replace(tmp, path)


# --- reading ----------------------------------------------------------------------------


class StackDataset:
    """A readable set of focal stacks (``open_stacks``): records plus ``load``."""

    def __init__(self, root: Path, records: list[StackRecord], metadata: dict[str, Any] | None = None) -> None:
        self.root = root
        self.records = records
        self.metadata = metadata or {}

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[StackRecord]:
        return iter(self.records)

    def __getitem__(self, i: int) -> StackRecord:
        return self.records[i]

    def path(self, record: StackRecord) -> Path:
        return self.root / record.file

    def load(self, item: int | StackRecord) -> np.ndarray:
        """The pixels of a stack, (Z, Y, X, 3) uint8, validated against its record."""
        record = self.records[item] if isinstance(item, int) else item
        path = self.path(record)
        if "files" in record.extra:
            frames = _read_images(path, record.extra["files"])
        else:
            frames = _read_tiff(path)
        check_frames(frames, record.planes, str(path))
        return frames

    def check(self) -> None:
        """Validate every stack file's header (shape, type, plane count) without loading pixels."""
        for record in self.records:
            path = self.path(record)
            if "files" in record.extra:
                for f in record.extra["files"]:
                    if not (path / f).is_file():
                        raise DatasetError(str(path / f), "image listed for this stack is missing")
                continue
            shape, dtype = _tiff_header(path)
            check_frames(_Probe(shape, dtype), record.planes, str(path))


class _Probe:
    """Stands in for an array in ``check_frames`` (shape and dtype from a TIFF header)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape = shape
        self.dtype = dtype
        self.ndim = len(shape)


def _tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    import tifffile

    if not path.is_file():
        raise DatasetError(str(path), "stack file is missing")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return tuple(series.shape), np.dtype(series.dtype)
    except Exception as exc:  # tifffile raises many kinds on a bad file
        raise DatasetError(str(path), f"not a readable TIFF ({exc})") from exc


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    if not path.is_file():
        raise DatasetError(str(path), "stack file is missing")
    try:
        with tifffile.TiffFile(path) as tif:
            return tif.series[0].asarray()
    except Exception as exc:
        raise DatasetError(str(path), f"not a readable TIFF ({exc})") from exc


def _read_images(folder: Path, files: list[str]) -> np.ndarray:
    import cv2

    planes = []
    for name in files:
        p = folder / name
        if not p.is_file():
            raise DatasetError(str(p), "image listed for this stack is missing")
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DatasetError(str(p), "not a readable image")
        if img.dtype != np.uint8:
            raise DatasetError(str(p), f"images must be 8-bit, got {img.dtype}")
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        elif img.shape[2] == 4:
            img = img[..., :3]
        planes.append(np.ascontiguousarray(img[..., ::-1]))
        if planes[0].shape != planes[-1].shape:
            raise DatasetError(str(p), f"image size {planes[-1].shape[:2]} differs from the first plane's {planes[0].shape[:2]}")
    return np.stack(planes)


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(str(path), f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(str(path), f"cannot read: {exc}") from exc


def _folder_stack(folder: Path, base: Path) -> StackRecord:
    """An image folder with z.csv or z.json as one stack (file = folder relative to base)."""
    images = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    rel = folder.relative_to(base).as_posix() if folder != base else "."
    meta: dict[str, Any] = {}
    if (folder / "z.json").is_file():
        path = folder / "z.json"
        doc = _load_json(path)
        if not isinstance(doc, dict) or "z_um" not in doc:
            raise DatasetError(str(path), "must be an object with 'z_um' (and optionally 'files', 'focus_z_um', ...)")
        files = doc.get("files", images)
        meta = {k: v for k, v in doc.items() if k not in ("z_um", "files")}
        z = doc["z_um"]
    else:
        path = folder / "z.csv"
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(str(path), f"cannot read: {exc}") from exc
        if not rows or not {"file", "z_um"} <= set(rows[0]):
            raise DatasetError(str(path), "needs a header with the columns 'file' and 'z_um' and one row per plane")
        files = [r["file"] for r in rows]
        try:
            z = [float(r["z_um"]) for r in rows]
        except (TypeError, ValueError) as exc:
            raise DatasetError(str(path), f"'z_um' column: {exc}") from exc
        focus = {r.get("focus_z_um", "") or "" for r in rows} - {""}
        if len(focus) > 1:
            raise DatasetError(str(path), f"'focus_z_um' differs between rows: {sorted(focus)}")
        if focus:
            try:
                meta["focus_z_um"] = float(focus.pop())
            except ValueError as exc:
                raise DatasetError(str(path), f"'focus_z_um' column: {exc}") from exc
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise DatasetError(str(path), f"'files' must be a list of image names, got {files!r}")
    if not isinstance(z, list) or len(files) != len(z):
        raise DatasetError(str(path), f"{len(files)} images but {len(z) if isinstance(z, list) else z!r} z positions")
    for f in files:
        if not (folder / f).is_file():
            raise DatasetError(str(folder / f), f"image listed in {path.name} is missing")
    entry = {
        "file": rel,
        "z_um": z,
        "focus_z_um": meta.pop("focus_z_um", None),
        "objective": meta.pop("objective", "unknown"),
        "pixel_size_um": meta.pop("pixel_size_um", None),
        "protocol": meta.pop("protocol", None),
        "source": meta.pop("source", "collected"),
        **meta,
        "files": files,
    }
    return parse_record(entry, f"stack {rel!r}", str(path))


def _is_image_stack(folder: Path) -> bool:
    return (folder / "z.json").is_file() or (folder / "z.csv").is_file()


def open_stacks(path: str | Path, *, check: bool = True) -> StackDataset:
    """Open a dataset: a "deepaf-stacks/1" folder, an image stack folder (z.csv / z.json),
    or a folder of image stack folders. ``check`` validates every stack file's header."""
    root = Path(path)
    if not root.exists():
        raise DatasetError(str(root), "no such folder")
    if root.is_file() and root.name == INDEX:
        root = root.parent
    if not root.is_dir():
        raise DatasetError(str(root), f"expected a folder with {INDEX} or images with z.csv / z.json")
    if (root / INDEX).is_file():
        records, meta = parse_index(_load_json(root / INDEX), str(root / INDEX))
        dataset = StackDataset(root, records, meta)
    elif _is_image_stack(root):
        dataset = StackDataset(root, [_folder_stack(root, root)])
    else:
        subs = sorted(p for p in root.iterdir() if p.is_dir() and _is_image_stack(p))
        if not subs:
            raise DatasetError(str(root), f"no {INDEX}, no z.csv / z.json, and no sub-folders with them")
        dataset = StackDataset(root, [_folder_stack(p, root) for p in subs])
    if check:
        dataset.check()
    return dataset
