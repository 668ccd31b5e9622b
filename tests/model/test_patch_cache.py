"""The streamed patch cache (``write_patch_cache``) and the ``pack`` setting of runs.

The cache is written plane by plane to disk so that packed patches (about 4x as many)
fit any dataset; these tests check that it holds exactly what the in-memory extraction
gives, that an interrupted extraction never leaves a cache that loads, and that run
folders made before ``pack`` existed keep the greedy layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from deepaf_host.model.train.data import PatchSet, extract_patches, iter_stacks, write_patch_cache
from deepaf_host.stacks import simulate_dataset

PATCH = 96  # a 256-pixel frame holds 2 x 2 of them packed, and only the centred one greedy


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "stacks"
    simulate_dataset(out, stacks=3, z_range_um=(-2.0, 2.0, 1.0), protocol="same", seed=7, size=(256, 256),
                     stacks_per_slide=3)
    return out


def full_tissue_stacks(n: int = 2, planes: int = 3, size: int = 256) -> Iterator[tuple[Any, np.ndarray]]:
    """Synthetic stacks whose every pixel is stained tissue (dark, saturated texture)."""
    rng = np.random.default_rng(1)
    for i in range(n):
        frames = rng.integers(40, 160, size=(planes, size, size, 3)).astype(np.uint8)
        frames[..., 2] //= 2  # saturated: far from grey glass
        record = SimpleNamespace(file=f"s{i}.ome.tif", z_um=[float(z) for z in range(planes)], focus_z_um=1.0)
        yield record, frames


SETTINGS = dict(patch_size=PATCH, patches_per_plane=4, min_tissue=0.3, range_um=(-2.0, 2.0))


def assert_same(a: PatchSet, b: PatchSet) -> None:
    for name in ("patches", "dz_um", "image", "stack"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name
    assert (a.second is None) == (b.second is None)
    if a.second is not None:
        assert np.asarray(a.second).tobytes() == np.asarray(b.second).tobytes()


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("pair", [None, 1.0])
def test_streamed_cache_equals_the_in_memory_extraction(stacks: Path, tmp_path: Path, pack: bool,
                                                        pair: float | None) -> None:
    want = extract_patches(iter_stacks([stacks]), pair_offset_um=pair, pack=pack, **SETTINGS)
    got = write_patch_cache(tmp_path / "cache", iter_stacks([stacks]), pair_offset_um=pair, pack=pack, **SETTINGS)
    assert len(got) > 0 and isinstance(got.patches, np.memmap)
    assert_same(got, want)
    assert_same(PatchSet.load(tmp_path / "cache"), want)
    # Plain .npy files: numpy reads them without the memory map too.
    assert np.load(tmp_path / "cache" / "patches.npy").shape == (len(want), PATCH, PATCH, 3)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        ["patches.npy", "dz_um.npy", "image.npy", "stack.npy"] + (["second.npy"] if pair else []))


def test_packing_takes_more_patches_from_full_tissue_planes(tmp_path: Path) -> None:
    greedy = write_patch_cache(tmp_path / "greedy", full_tissue_stacks(), pack=False, **SETTINGS)
    packed = write_patch_cache(tmp_path / "packed", full_tissue_stacks(), pack=True, **SETTINGS)
    planes = 2 * 3
    assert len(greedy) == planes  # one centred patch per 256-pixel plane
    assert len(packed) == 4 * planes  # a 2 x 2 tiling
    assert_same(packed, extract_patches(full_tissue_stacks(), pack=True, **SETTINGS))


def test_an_interrupted_extraction_leaves_no_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    write_patch_cache(cache, full_tissue_stacks(), **SETTINGS)  # a complete cache from an earlier try

    def dying() -> Iterator[tuple[Any, np.ndarray]]:
        stream = full_tissue_stacks()
        yield next(stream)
        raise RuntimeError("disk unplugged")

    with pytest.raises(RuntimeError, match="disk unplugged"):
        write_patch_cache(cache, dying(), pair_offset_um=1.0, **SETTINGS)
    assert not (cache / "patches.npy").exists() and not (cache / "second.npy").exists()
    assert not list(cache.glob("*.tmp.npy"))
    with pytest.raises(FileNotFoundError):
        PatchSet.load(cache)


def test_a_dataset_without_tissue_writes_no_cache(tmp_path: Path) -> None:
    from deepaf_host.errors import DatasetError

    record = SimpleNamespace(file="g.ome.tif", z_um=[0.0, 1.0], focus_z_um=0.0)
    glass = [(record, np.full((2, 256, 256, 3), 240, np.uint8))]  # bright grey: no tissue
    with pytest.raises(DatasetError, match="no tissue patch"):
        write_patch_cache(tmp_path / "cache", glass, **SETTINGS)
    assert not list((tmp_path / "cache").iterdir())


def test_a_config_saved_before_pack_existed_keeps_the_greedy_layout(stacks: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="the train extra is not installed")
    from deepaf_host.errors import ConfigError
    from deepaf_host.model.train.fit import TrainConfig, _comparable, prepare_run, resolve_pack

    assert resolve_pack(TrainConfig(), tmp_path / "fresh").pack is True  # new runs pack
    old_train = TrainConfig(pack=False).to_dict()
    del old_train["pack"], old_train["quant_noise"]  # neither key existed then
    assert TrainConfig.from_dict(old_train).pack is False
    assert TrainConfig.from_dict({**old_train, "pack": True}).pack is True

    old = tmp_path / "old"
    old.mkdir()
    meta = {"train": json.loads(json.dumps(old_train)), "data": [str(stacks.resolve())], "objective": "20x/0.75"}
    (old / "config.json").write_text(json.dumps(meta))
    assert _comparable(meta) == _comparable({**meta, "train": {**meta["train"], "pack": False}})
    assert _comparable(meta) != _comparable({**meta, "train": {**meta["train"], "pack": True}})
    # The same command resumes the old run (with pack=False), and may train it longer.
    assert resolve_pack(TrainConfig(), old).pack is False
    assert prepare_run(old, [str(stacks)], TrainConfig()) == meta
    longer = prepare_run(old, [str(stacks)], TrainConfig(epochs=80))
    assert longer["train"]["epochs"] == 80 and longer["train"]["pack"] is False
    with pytest.raises(ConfigError, match="pack=False"):
        prepare_run(old, [str(stacks)], TrainConfig(pack=True))
    # A new run started from the old one takes its layout, unless told otherwise.
    assert resolve_pack(TrainConfig(), tmp_path / "tuned", init=old / "best.keras").pack is False
    assert resolve_pack(TrainConfig(pack=True), tmp_path / "tuned", init=old / "best.keras").pack is True
