"""Training data: tissue patches from focal stacks, split by field, with augmentations.

Patches are cut at the same places in every plane of a stack (chosen on the sharpest
plane, where the tissue mask is cleanest), labelled with the plane's signed distance to
focus ``focus_z_um - z_um``. Splits are by stack (one stack = one field of view), so no
field is in two splits. Patch arrays live in ``.npy`` files (memory-mapped), so a
dataset larger than RAM trains too.

The patch cache is written as the stacks are read (:func:`write_patch_cache`): each
plane's patches are appended to ``patches.npy`` on disk, whose header is written last,
so the memory needed is about one stack plus the labels (tens of bytes per patch), not
the dataset. The earlier extraction kept the patches in a list and stacked them: the
cache twice in RAM, and, the patches being views of their frames, every stack read so
far too (40 simulated stacks of 21 planes of 512 x 512: 848 MiB above the start for a
181 MiB cache; streamed, 84 MiB, the same for 5 as for 40 stacks). That is why the
shipped models were trained on the greedy layout (about 1.2 patches per 512 x 512
plane), not the packed one (up to 4, :func:`~deepaf_host.tissue.select_patches`), which
holds about 2.1 times as many patches on those stacks. ``patches.npy`` is the
cache's completion mark: it is removed first and renamed into place last, so a crash
never leaves a cache that :meth:`PatchSet.load` reads as complete.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import DTypeLike

from ...errors import DatasetError
from ...focus import measures
from ...tissue import select_patches, tissue_mask
from ..preprocess import prepare


@dataclass
class PatchSet:
    """Patches and labels. ``image`` identifies the plane a patch comes from (for the
    median over patches), ``stack`` its stack (for splits)."""

    patches: np.ndarray  # (N, S, S, 3) uint8
    dz_um: np.ndarray  # (N,) float32, signed distance to focus
    image: np.ndarray  # (N,) int64
    stack: np.ndarray  # (N,) int64
    second: np.ndarray | None = None  # (N, S, S, 3) uint8: the frame pair_offset_um above (two-shot)

    def __len__(self) -> int:
        return int(self.dz_um.size)

    def subset(self, index: np.ndarray) -> PatchSet:
        index = np.sort(np.asarray(index))
        return PatchSet(
            np.asarray(self.patches[index]),
            self.dz_um[index],
            self.image[index],
            self.stack[index],
            None if self.second is None else np.asarray(self.second[index]),
        )

    def save(self, directory: Path) -> None:
        """Write the arrays as ``.npy`` files, ``patches.npy`` (the completion mark) last."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "patches.npy").unlink(missing_ok=True)
        (directory / "second.npy").unlink(missing_ok=True)
        for name in ("dz_um", "image", "stack") + (("second",) if self.second is not None else ()) + ("patches",):
            _save_atomic(directory / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, directory: Path) -> PatchSet:
        def arr(name: str, mmap: bool = False) -> np.ndarray:
            return np.load(directory / f"{name}.npy", mmap_mode="r" if mmap else None)

        second = arr("second", True) if (directory / "second.npy").exists() else None
        return cls(arr("patches", True), arr("dz_um"), arr("image"), arr("stack"), second)


def sharpest_plane(planes: np.ndarray) -> int:
    """Index of the sharpest plane by the variance of the Laplacian (a robust choice)."""
    scores = [measures.laplacian(p.mean(axis=-1)) for p in planes]
    return int(np.argmax(scores))


def iter_stacks(paths: Iterable[str | Path]) -> Iterator[tuple[Any, np.ndarray]]:
    """(record, frames) of every stack of the datasets, one stack in memory at a time."""
    from ...stacks import open_stacks

    for path in paths:
        dataset = open_stacks(path)
        for record in dataset:
            yield record, dataset.load(record)


@dataclass
class _PlanePatches:
    """The patches of one plane: (n, S, S, 3) uint8, the partner plane's (two-shot), labels."""

    patches: np.ndarray
    second: np.ndarray | None
    dz_um: float
    image: int
    stack: int


def _iter_plane_patches(
    stacks: Iterable[tuple[Any, np.ndarray]],
    *,
    patch_size: int,
    patches_per_plane: int,
    min_tissue: float,
    pair_offset_um: float | None,
    range_um: tuple[float, float] | None,
    pack: bool,
) -> Iterator[_PlanePatches]:
    """The patches of every kept plane, in stack then plane order, one stack in memory."""
    for s_index, (stack, frames) in enumerate(stacks):
        if stack.focus_z_um is None:
            raise DatasetError(str(stack.file), "stack has no focus_z_um; it cannot train a model")
        planes = np.asarray(frames)
        z = np.asarray(stack.z_um, dtype=np.float64)
        mask = tissue_mask(planes[sharpest_plane(planes)])
        chosen = select_patches(mask, patch_size, patches_per_plane, min_tissue, pack=pack)
        if not chosen:
            continue
        for p_index in range(len(planes)):
            d = float(stack.focus_z_um - z[p_index])
            if range_um is not None and not range_um[0] <= d <= range_um[1]:
                continue
            partner = None
            if pair_offset_um is not None:
                match = np.flatnonzero(np.isclose(z, z[p_index] + pair_offset_um, atol=1e-3))
                if match.size == 0:
                    continue
                partner = planes[int(match[0])]
            yield _PlanePatches(
                np.stack([patch.crop(planes[p_index]) for patch in chosen]),
                None if partner is None else np.stack([patch.crop(partner) for patch in chosen]),
                d,
                s_index * 100_000 + p_index,
                s_index,
            )


def extract_patches(
    stacks: Iterable[tuple[Any, np.ndarray]],
    *,
    patch_size: int = 224,
    patches_per_plane: int = 4,
    min_tissue: float = 0.5,
    pair_offset_um: float | None = None,
    range_um: tuple[float, float] | None = None,
    pack: bool = True,
) -> PatchSet:
    """Cut tissue patches from every plane of every stack, in memory.

    ``stacks``: (record, frames) pairs as :func:`iter_stacks` gives them: a
    ``deepaf_host.stacks.StackRecord`` (``z_um``, ``focus_z_um``) and its (Z, Y, X, 3)
    uint8 frames. Planes whose distance to focus is outside
    ``range_um`` are skipped. With ``pair_offset_um`` (two-shot), each patch comes with
    the same place in the plane ``pair_offset_um`` higher, when the stack has it.
    ``pack`` chooses the patch layout (:func:`~deepaf_host.tissue.select_patches`).

    Holds every patch in RAM (twice, while stacking): for small sets and tests. Training
    writes its cache with :func:`write_patch_cache`, which gives the same arrays.
    """
    planes = list(_iter_plane_patches(
        stacks, patch_size=patch_size, patches_per_plane=patches_per_plane, min_tissue=min_tissue,
        pair_offset_um=pair_offset_um, range_um=range_um, pack=pack,
    ))
    if not planes:
        raise DatasetError("<stacks>", "no tissue patch found in any stack")
    counts = [len(p.patches) for p in planes]
    return PatchSet(
        np.concatenate([p.patches for p in planes]),
        np.repeat(np.asarray([p.dz_um for p in planes], np.float32), counts),
        np.repeat(np.asarray([p.image for p in planes], np.int64), counts),
        np.repeat(np.asarray([p.stack for p in planes], np.int64), counts),
        np.concatenate([p.second for p in planes]) if planes[0].second is not None else None,
    )


def write_patch_cache(
    directory: Path,
    stacks: Iterable[tuple[Any, np.ndarray]],
    *,
    patch_size: int = 224,
    patches_per_plane: int = 4,
    min_tissue: float = 0.5,
    pair_offset_um: float | None = None,
    range_um: tuple[float, float] | None = None,
    pack: bool = True,
) -> PatchSet:
    """Extract the patches as :func:`extract_patches` does, streaming them to ``directory``.

    Each plane's patches are appended to ``patches.tmp.npy`` (and ``second.tmp.npy``,
    two-shot) as the stacks are read; the labels, 8 bytes a patch, stay in memory. At
    the end the labels are saved, then ``patches.npy`` is renamed into place, last.
    Anything that was a cache in ``directory`` is invalidated first, and on an error the
    temporary files are removed, so an interrupted extraction leaves no ``patches.npy``.
    Returns the cache, memory-mapped (:meth:`PatchSet.load`); its arrays are byte for
    byte those :func:`extract_patches` returns for the same stacks and settings.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("patches", "second"):  # the completion mark first: from here on, no cache
        (directory / f"{name}.npy").unlink(missing_ok=True)
    row = (patch_size, patch_size, 3)
    patches = _NpyAppender(directory / "patches.tmp.npy", row, np.uint8)
    second: _NpyAppender | None = None
    dz: list[float] = []
    image: list[int] = []
    stack_ids: list[int] = []
    try:
        for plane in _iter_plane_patches(
            stacks, patch_size=patch_size, patches_per_plane=patches_per_plane, min_tissue=min_tissue,
            pair_offset_um=pair_offset_um, range_um=range_um, pack=pack,
        ):
            patches.append(plane.patches)
            if plane.second is not None:
                if second is None:
                    second = _NpyAppender(directory / "second.tmp.npy", row, np.uint8)
                second.append(plane.second)
            n = len(plane.patches)
            dz += [plane.dz_um] * n
            image += [plane.image] * n
            stack_ids += [plane.stack] * n
        if not dz:
            raise DatasetError("<stacks>", "no tissue patch found in any stack")
        _save_atomic(directory / "dz_um.npy", np.asarray(dz, np.float32))
        _save_atomic(directory / "image.npy", np.asarray(image, np.int64))
        _save_atomic(directory / "stack.npy", np.asarray(stack_ids, np.int64))
        if second is not None:
            second.finish(directory / "second.npy")
        patches.finish(directory / "patches.npy")
    except BaseException:
        patches.discard()
        if second is not None:
            second.discard()
        raise
    return PatchSet.load(directory)


# --- .npy files written row block by row block ----------------------------------------


def _npy_header(shape: tuple[int, ...], dtype: np.dtype, length: int | None = None) -> bytes:
    """A version 1.0 ``.npy`` header, padded to ``length`` bytes (default: the next
    multiple of 64, as NumPy pads). The format allows any padding of spaces before the
    closing newline, so a header written for the final row count can take the place of
    one reserved for the largest."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                 "shape": tuple(int(n) for n in shape)}).encode("latin1")
    fixed = len(np.lib.format.MAGIC_PREFIX) + 2 + 2 + len(text) + 1  # magic, version, length, text, newline
    if length is None:
        length = -(-fixed // 64) * 64
    if fixed > length or length % 64 or length - 10 > 0xFFFF:
        raise ValueError(f"a .npy header of {fixed} bytes cannot be padded to {length}")
    text += b" " * (length - fixed) + b"\n"
    return np.lib.format.MAGIC_PREFIX + bytes([1, 0]) + struct.pack("<H", len(text)) + text


class _NpyAppender:
    """A C-order ``.npy`` file grown by appending rows, its header written on ``finish``.

    The space of a header for the largest possible row count is reserved at the start;
    rows are written after it with ordinary file writes (no memory map: the pages of a
    written map count as the process's resident memory until they are flushed)."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: DTypeLike) -> None:
        self.path, self.row_shape, self.dtype, self.rows = path, tuple(row_shape), np.dtype(dtype), 0
        self._header = len(_npy_header((sys.maxsize, *self.row_shape), self.dtype))
        self._fh: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed by finish/discard
        self._fh.seek(self._header)

    def append(self, block: np.ndarray) -> None:
        if block.shape[1:] != self.row_shape or block.dtype != self.dtype:
            raise ValueError(f"rows of {block.shape[1:]} {block.dtype} do not fit {self.row_shape} {self.dtype}")
        assert self._fh is not None
        self._fh.write(np.ascontiguousarray(block).data)
        self.rows += len(block)

    def finish(self, final: Path) -> None:
        """Write the header, make the file durable and rename it to ``final``."""
        assert self._fh is not None
        self._fh.seek(0)
        self._fh.write(_npy_header((self.rows, *self.row_shape), self.dtype, self._header))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        os.replace(self.path, final)

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.path.unlink(missing_ok=True)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file, made durable, then renamed over ``path``."""
    tmp = path.with_name(path.name.removesuffix(".npy") + ".tmp.npy")
    with open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def split_by_stack(patchset: PatchSet, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/validation split in which no stack (field) is in both."""
    stacks = np.unique(patchset.stack)
    rng = np.random.default_rng(seed)
    rng.shuffle(stacks)
    n_val = max(1, int(round(len(stacks) * val_fraction))) if len(stacks) > 1 else 0
    val_stacks = set(stacks[:n_val].tolist())
    is_val = np.array([s in val_stacks for s in patchset.stack])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# --- augmentations -------------------------------------------------------------------
# Seed 000 trains with channel-wise normalisation, random erasing, Gaussian blur, random
# perspective, random auto contrast and colour jitter. Blur and perspective are left
# out: blur IS defocus (it would teach the network wrong labels) and perspective changes
# the pixel scale the defocus blur is measured in. Flips and 90-degree rotations,
# per-channel gamma (stain intensity, auto contrast), sensor noise and random erasing
# keep the label true.


def augment(batch: np.ndarray, rng: np.random.Generator, second: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Augment a uint8 batch (K, S, S, C); the same geometric transform for ``second``."""
    out = batch.astype(np.float32)
    sec = None if second is None else second.astype(np.float32)
    for i in range(len(out)):
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        gamma = rng.uniform(0.75, 1.35, size=int(out.shape[-1])).astype(np.float32)
        noise = float(rng.uniform(0.0, 3.0))

        def geometric(img: np.ndarray) -> np.ndarray:
            img = np.rot90(img, k, axes=(0, 1))
            return img[:, ::-1] if flip else img

        def photometric(img: np.ndarray) -> np.ndarray:
            img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
            return img + rng.normal(0.0, noise, size=img.shape).astype(np.float32)

        out[i] = photometric(geometric(out[i]))
        if sec is not None:
            sec[i] = photometric(geometric(sec[i]))
        if rng.random() < 0.25:  # random erasing (one rectangle, filled with the patch mean)
            s = out.shape[1]
            h, w = (int(v) for v in rng.integers(s // 8, s // 3, size=2))
            y, x = (int(v) for v in rng.integers(0, s - max(h, w), size=2))
            out[i, y : y + h, x : x + w] = out[i].mean(axis=(0, 1))
            if sec is not None:
                sec[i, y : y + h, x : x + w] = sec[i].mean(axis=(0, 1))
    return np.clip(out, 0, 255), None if sec is None else np.clip(sec, 0, 255)


def batches(
    patchset: PatchSet,
    index: np.ndarray,
    kind: str,
    batch_size: int,
    *,
    seed: int,
    train: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless (train) or single-pass (validation) batches of prepared network inputs."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(index) if train else np.asarray(index)
        for start in range(0, len(order), batch_size):
            sel = np.sort(order[start : start + batch_size])
            x = np.asarray(patchset.patches[sel])
            second = None if patchset.second is None else np.asarray(patchset.second[sel])
            if train:
                x, second = augment(x, rng, second)
            yield prepare(kind, x, second), patchset.dz_um[sel].astype(np.float32)
        if not train:
            return
