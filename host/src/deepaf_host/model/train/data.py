"""Training data: tissue patches from focal stacks, split by field, with augmentations.

Patches are cut at the same places in every plane of a stack (chosen on the sharpest
plane, where the tissue mask is cleanest), labelled with the plane's signed distance to
focus ``focus_z_um - z_um``. Splits are by stack (one stack = one field of view), so no
field is in two splits. Patch arrays live in ``.npy`` files (memory-mapped), so a
dataset larger than RAM trains too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("patches", "dz_um", "image", "stack") + (("second",) if self.second is not None else ()):
            tmp = directory / f"{name}.tmp.npy"
            np.save(tmp, getattr(self, name))
            tmp.replace(directory / f"{name}.npy")

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


def extract_patches(
    stacks: Iterable[tuple[Any, np.ndarray]],
    *,
    patch_size: int = 224,
    patches_per_plane: int = 4,
    min_tissue: float = 0.5,
    pair_offset_um: float | None = None,
    range_um: tuple[float, float] | None = None,
) -> PatchSet:
    """Cut tissue patches from every plane of every stack.

    ``stacks``: (record, frames) pairs as :func:`iter_stacks` gives them: a
    ``deepaf_host.stacks.StackRecord`` (``z_um``, ``focus_z_um``) and its (Z, Y, X, 3)
    uint8 frames. Planes whose distance to focus is outside
    ``range_um`` are skipped. With ``pair_offset_um`` (two-shot), each patch comes with
    the same place in the plane ``pair_offset_um`` higher, when the stack has it.
    """
    patches: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    dz: list[float] = []
    image: list[int] = []
    stack_ids: list[int] = []
    for s_index, (stack, frames) in enumerate(stacks):
        if stack.focus_z_um is None:
            raise DatasetError(str(stack.file), "stack has no focus_z_um; it cannot train a model")
        planes = np.asarray(frames)
        z = np.asarray(stack.z_um, dtype=np.float64)
        mask = tissue_mask(planes[sharpest_plane(planes)])
        # The greedy layout (about 1.2 patches per 512x512 stack here, where a packed one
        # gives up to 4): the patch cache stays in memory during training, and packing would
        # quadruple it (2.8 GB -> about 11 GB for the shipped model's 800 stacks) and
        # change the patch sets the shipped models were trained on.
        chosen = select_patches(mask, patch_size, patches_per_plane, min_tissue, pack=False)
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
            for patch in chosen:
                patches.append(patch.crop(planes[p_index]))
                if partner is not None:
                    seconds.append(patch.crop(partner))
                dz.append(d)
                image.append(s_index * 100_000 + p_index)
                stack_ids.append(s_index)
    if not patches:
        raise DatasetError("<stacks>", "no tissue patch found in any stack")
    return PatchSet(
        np.stack(patches),
        np.asarray(dz, np.float32),
        np.asarray(image, np.int64),
        np.asarray(stack_ids, np.int64),
        np.stack(seconds) if seconds else None,
    )


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
        gamma = rng.uniform(0.75, 1.35, size=out.shape[-1]).astype(np.float32)
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
