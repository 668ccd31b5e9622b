"""The focal-stack interchange format "deepaf-stacks/1" (DESIGN.md).

A dataset is a folder with ``index.json``::

    {"format": "deepaf-stacks/1",
     "stacks": [{"file": "stack_0000.ome.tif",
                 "z_um": [-4010.12, -4009.62, ...],
                 "focus_z_um": -4000.37,
                 "objective": "20x/0.75",
                 "pixel_size_um": 0.1806,
                 "protocol": "same",
                 "source": "simulated",
                 ...optional extra keys (x_um, y_um, slide_seed, ...)}, ...],
     ...optional extra keys ("generator", ...)}

and one OME-TIFF per stack: shape (Z, Y, X, 3), uint8 RGB, planes in the order of
``z_um``. ``z_um`` are stage positions (micrometres); ``focus_z_um`` is the stage z at
which the specimen is in focus (null when unknown), so the signed distance to focus of
plane i is ``focus_z_um - z_um[i]`` (positive: the stage must move up, +Z, to focus).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import DatasetError

FORMAT = "deepaf-stacks/1"
INDEX = "index.json"
REQUIRED_KEYS = ("file", "z_um", "focus_z_um", "objective", "pixel_size_um", "protocol", "source")


@dataclass(frozen=True)
class StackRecord:
    """One focal stack's metadata (an entry of ``index.json``)."""

    file: str
    z_um: tuple[float, ...]
    focus_z_um: float | None
    objective: str
    pixel_size_um: float | None
    protocol: str | None
    source: str
    #: Further keys of the entry, kept as they were (x_um, y_um, slide_seed, ...).
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def planes(self) -> int:
        return len(self.z_um)

    @property
    def illumination(self) -> str:
        """The light the planes were taken under (``koehler`` unless the entry says)."""
        return str(self.extra.get("illumination", "koehler"))

    def distance_to_focus_um(self) -> np.ndarray | None:
        """Signed distance to focus of each plane, ``focus_z_um - z_um[i]`` (None if unknown)."""
        if self.focus_z_um is None:
            return None
        return self.focus_z_um - np.asarray(self.z_um, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "z_um": list(self.z_um),
            "focus_z_um": self.focus_z_um,
            "objective": self.objective,
            "pixel_size_um": self.pixel_size_um,
            "protocol": self.protocol,
            "source": self.source,
        }
        out.update(self.extra)
        return out


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_record(entry: object, where: str, path: str) -> StackRecord:
    """Validate one ``stacks`` entry; ``where`` names it in messages (``stacks[3]``)."""
    if not isinstance(entry, dict):
        raise DatasetError(path, f"{where} must be an object, got {type(entry).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise DatasetError(path, f"{where} lacks {', '.join(repr(k) for k in missing)}")
    name = entry["file"]
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
        raise DatasetError(path, f"{where}: 'file' must be a relative path inside the dataset, got {name!r}")
    where = f"{where} ({name})"
    z = entry["z_um"]
    if not isinstance(z, list) or not z or not all(_number(v) for v in z):
        raise DatasetError(path, f"{where}: 'z_um' must be a non-empty list of finite numbers, got {_short(z)}")
    if len(set(z)) != len(z):
        raise DatasetError(path, f"{where}: 'z_um' has repeated positions")
    focus = entry["focus_z_um"]
    if focus is not None and not _number(focus):
        raise DatasetError(path, f"{where}: 'focus_z_um' must be a number or null, got {focus!r}")
    pixel = entry["pixel_size_um"]
    if pixel is not None and not (_number(pixel) and pixel > 0):
        raise DatasetError(path, f"{where}: 'pixel_size_um' must be a positive number or null, got {pixel!r}")
    for key in ("objective", "source"):
        if not isinstance(entry[key], str):
            raise DatasetError(path, f"{where}: {key!r} must be a string, got {entry[key]!r}")
    if entry["protocol"] is not None and not isinstance(entry["protocol"], str):
        raise DatasetError(path, f"{where}: 'protocol' must be a string or null, got {entry['protocol']!r}")
    extra = {k: v for k, v in entry.items() if k not in REQUIRED_KEYS}
    return StackRecord(
        file=name,
        z_um=tuple(float(v) for v in z),
        focus_z_um=None if focus is None else float(focus),
        objective=entry["objective"],
        pixel_size_um=None if pixel is None else float(pixel),
        protocol=entry["protocol"],
        source=entry["source"],
        extra=extra,
    )


def parse_index(doc: object, path: str) -> tuple[list[StackRecord], dict[str, Any]]:
    """Validate a parsed ``index.json``: (records, the document's other keys)."""
    if not isinstance(doc, dict):
        raise DatasetError(path, f"must hold a JSON object, got {type(doc).__name__}")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise DatasetError(path, f"'format' must be {FORMAT!r}, got {fmt!r}")
    stacks = doc.get("stacks")
    if not isinstance(stacks, list):
        raise DatasetError(path, f"'stacks' must be a list, got {_short(stacks)}")
    records = [parse_record(e, f"stacks[{i}]", path) for i, e in enumerate(stacks)]
    files = [r.file for r in records]
    dup = sorted({f for f in files if files.count(f) > 1})
    if dup:
        raise DatasetError(path, f"several stacks use the same file: {', '.join(dup)}")
    meta = {k: v for k, v in doc.items() if k not in ("format", "stacks")}
    return records, meta


class Shaped(Protocol):
    """What :func:`check_frames` reads of a stack: an array, or a file header's shape and dtype."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def ndim(self) -> int: ...


def check_frames(frames: Shaped, planes: int, path: str) -> None:
    """A stack's pixels must be (Z, Y, X, 3) uint8 with one plane per z position."""
    if frames.dtype != np.uint8:
        raise DatasetError(path, f"pixels must be uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise DatasetError(path, f"must hold a (Z, Y, X, 3) RGB stack, got shape {frames.shape}")
    if frames.shape[0] != planes:
        raise DatasetError(path, f"has {frames.shape[0]} planes but the index lists {planes} z positions")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
