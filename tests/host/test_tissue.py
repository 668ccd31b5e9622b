"""Tissue detection on a real IHC image (skimage's immunohistochemistry) and hand-built frames."""

from __future__ import annotations

import numpy as np
import pytest
from deepaf_host import tissue
from skimage import data

# Glass in skimage's IHC image: the empty strip on the left edge, rows 310-460.
GLASS = np.s_[310:460, 0:30]
DAB_TISSUE = np.s_[50:200, 50:200]  # the brown-stained epithelium, top left
STROMA = np.s_[250:330, 150:250]  # pale blue connective tissue, barely darker than glass


@pytest.fixture(scope="module")
def ihc() -> np.ndarray:
    return data.immunohistochemistry()


def blank_like(rgb: tuple[float, float, float], shape: tuple[int, int] = (512, 512), vignetting: float = 0.0) -> np.ndarray:
    """A frame of blank glass of colour ``rgb`` with camera noise and optional vignetting."""
    rng = np.random.default_rng(7)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    gain = 1.0 - vignetting * r2
    frame = np.asarray(rgb, np.float64)[None, None, :] * gain[..., None] + rng.normal(0, 3.0, (h, w, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ihc_blank(ihc: np.ndarray) -> np.ndarray:
    glass_rgb = np.median(ihc[GLASS].reshape(-1, 3), axis=0)
    return blank_like(tuple(glass_rgb))


def test_on_brightfield_glass_is_bright_and_grey(ihc: np.ndarray) -> None:
    """The finding behind the direction of the test: tissue lowers V and raises S."""
    v, s = tissue.value_saturation(ihc)
    assert v[GLASS].mean() > v[DAB_TISSUE].mean() + 0.3
    assert v[GLASS].mean() > v[STROMA].mean() + 0.05
    assert np.median(s[GLASS]) < np.median(s[DAB_TISSUE]) - 0.3


def test_seed000_eq1_must_read_mean_value_below_tau(ihc: np.ndarray, ihc_blank: np.ndarray) -> None:
    th = tissue.calibrate(ihc_blank)
    assert tissue.mean_value(ihc) < th.mean_value_max < tissue.mean_value(ihc_blank)
    assert tissue.has_tissue_by_mean_value(ihc, th)
    assert not tissue.has_tissue_by_mean_value(ihc_blank, th)


def test_calibrated_mask_separates_glass_from_tissue(ihc: np.ndarray, ihc_blank: np.ndarray) -> None:
    th = tissue.calibrate(ihc_blank)
    mask = tissue.tissue_mask(ihc, th)
    assert mask.shape == ihc.shape[:2] and mask.dtype == bool
    assert mask[DAB_TISSUE].mean() > 0.99
    assert mask[STROMA].mean() > 0.75
    assert mask[GLASS].mean() < 0.15
    assert 0.8 < tissue.tissue_fraction(mask) < 0.95
    assert tissue.tissue_fraction(tissue.tissue_mask(ihc_blank, th)) == 0.0


def test_calibration_absorbs_vignetting() -> None:
    blank = blank_like((230, 232, 235), vignetting=0.25)
    th = tissue.calibrate(blank)
    assert tissue.tissue_fraction(tissue.tissue_mask(blank, th)) < 0.001
    # The same glass with a faint pink stain (H&E eosin) patch in the middle is found.
    stained = blank.copy()
    stained[200:300, 200:300] = np.clip(stained[200:300, 200:300] * np.array([1.0, 0.8, 0.9]), 0, 255).astype(np.uint8)
    frac = tissue.tissue_fraction(tissue.tissue_mask(stained, th))
    assert 0.03 < frac < 0.06  # 100x100 of 512x512 = 0.038, widened by the blur


def test_calibrate_refuses_a_dark_frame() -> None:
    with pytest.raises(ValueError, match="too dark"):
        tissue.calibrate(np.full((64, 64, 3), 10, np.uint8))
    with pytest.raises(ValueError):
        tissue.calibrate(np.full((64, 64, 3), 200, np.uint8), blur_px=4)


def test_value_saturation_rejects_non_rgb() -> None:
    with pytest.raises(ValueError):
        tissue.value_saturation(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        tissue.value_saturation(np.zeros((8, 8, 3), np.float32))


def test_select_patches_finds_the_tissue_square() -> None:
    mask = np.zeros((720, 1280), bool)
    mask[100:400, 600:900] = True
    patches = tissue.select_patches(mask, size=224, k=4, min_fraction=0.5, stride=8)
    assert patches, "the 300x300 tissue square holds a full patch"
    best = patches[0]
    assert best.tissue_fraction == 1.0
    assert 100 <= best.y and best.y + 224 <= 400 and 600 <= best.x and best.x + 224 <= 900
    assert all(p.tissue_fraction >= 0.5 for p in patches)


def test_select_patches_packs_a_frame_full_of_tissue() -> None:
    # The most-tissue-first greedy choice alone takes the central window of a 512x512
    # frame and then finds no room for a second: one patch where four fit.
    full = tissue.select_patches(np.ones((512, 512), bool), size=224, k=8)
    assert len(full) == 4
    assert sorted((p.y, p.x) for p in full) == [(32, 32), (32, 256), (256, 32), (256, 256)]  # centred
    assert [(p.y, p.x) for p in tissue.select_patches(np.ones((512, 512), bool), size=224, k=8, pack=False)] == [(168, 168)]
    # A band of tissue 300 px high holds two side by side.
    band = np.zeros((512, 512), bool)
    band[:300] = True
    patches = tissue.select_patches(band, size=224, k=8)
    assert len(patches) == 2 and all(p.tissue_fraction == 1.0 for p in patches)
    assert abs(patches[0].x - patches[1].x) >= 224
    # k still bounds the tiling.
    assert len(tissue.select_patches(np.ones((512, 512), bool), size=224, k=3)) == 3
    # More patches do not win by being emptier: a 300x300 square gives one full window
    # (greedy) or two of 84% and 50% (a tiling), and the full one is kept.
    square = np.zeros((720, 1280), bool)
    square[100:400, 600:900] = True
    one = tissue.select_patches(square, size=224, k=4, stride=8)
    assert len(one) == 1 and one[0].tissue_fraction == 1.0


def test_select_patches_order_overlap_and_limits(ihc: np.ndarray, ihc_blank: np.ndarray) -> None:
    mask = tissue.tissue_mask(np.tile(ihc, (2, 3, 1))[:720, :1280], tissue.calibrate(ihc_blank))
    patches = tissue.select_patches(mask, size=224, k=6)
    assert len(patches) == 6
    fractions = [p.tissue_fraction for p in patches]
    assert fractions == sorted(fractions, reverse=True)
    for i, a in enumerate(patches):
        assert a.crop(mask).shape == (224, 224)
        assert a.tissue_fraction == pytest.approx(a.crop(mask).mean())
        for b in patches[i + 1 :]:
            assert abs(a.y - b.y) >= 224 or abs(a.x - b.x) >= 224
    assert tissue.select_patches(np.zeros((720, 1280), bool)) == []
    assert tissue.select_patches(np.ones((100, 100), bool), size=224) == []
    assert len(tissue.select_patches(np.ones((720, 1280), bool), size=224, k=100)) == 3 * 5


def test_glass_under_a_yellow_lamp_is_blank_although_the_default_thresholds_call_it_tissue() -> None:
    """A camera without white balance (the `diff` lab's halogen lamp): the default HSV
    thresholds see glass as stained, the texture test sees it as glass; tissue in focus,
    under either lamp, is never blank."""
    from deepaf_host.camera.virtual import VirtualCamera

    class Pose:
        position = (-45000.0, -20000.0, 0.0)

        def true_position_um(self) -> tuple[float, float, float]:
            return self.position

    for protocol in ("diff", "same"):
        pose = Pose()
        camera = VirtualCamera(pose, objective="10x", protocol=protocol, seed=21)
        glass = camera.grab("low")
        assert tissue.looks_blank(glass)
        if protocol == "diff":
            assert tissue.tissue_fraction(tissue.tissue_mask(glass)) > 0.9
        pose.position = (-30000.0, -20000.0, camera.true_focus_z_um(-30000.0, -20000.0))
        assert not tissue.looks_blank(camera.grab("low"))
    assert not tissue.looks_blank(np.zeros((64, 64, 3), np.uint8))  # too dark to judge
