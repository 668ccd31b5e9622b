"""The virtual slide: deterministic, consistent across frames, tissue and glass, focus surface."""

from __future__ import annotations

import numpy as np
import pytest
from deepaf_host.optics import ImageSpecimen, VirtualSlide, get_protocol

SAME = get_protocol("same")
X0, Y0 = -30000.0, -20000.0


def test_same_seed_same_tissue_other_seed_other_tissue() -> None:
    a = VirtualSlide(seed=5).region(X0, Y0, (48, 64), 0.18, SAME)
    b = VirtualSlide(seed=5).region(X0, Y0, (48, 64), 0.18, SAME)
    c = VirtualSlide(seed=6).region(X0, Y0, (48, 64), 0.18, SAME)
    assert np.array_equal(a.transmission, b.transmission) and np.array_equal(a.offset_um, b.offset_um)
    assert np.abs(a.transmission - c.transmission).mean() > 0.02


@pytest.mark.parametrize("specimen", ["procedural", "ihc"])
def test_overlapping_frames_agree(specimen: str) -> None:
    spec = None if specimen == "procedural" else ImageSpecimen.ihc()
    slide = VirtualSlide(seed=2, specimen=spec)
    p = 0.18
    big = slide.region(X0, Y0, (60, 80), p, SAME).transmission
    # A frame 10 columns to the right (+X) and 7 rows down (+Y), rendered on its own.
    small = slide.region(X0 + 10 * p, Y0 + 7 * p, (40, 50), p, SAME).transmission
    r0, c0 = (60 - 40) // 2 + 7, (80 - 50) // 2 + 10
    assert np.allclose(big[r0 : r0 + 40, c0 : c0 + 50], small, atol=2e-4)


def test_tissue_near_the_centre_and_glass_far_away() -> None:
    slide = VirtualSlide(seed=1)
    assert float(slide.tissue_at(X0, Y0)) == pytest.approx(1.0)
    assert float(slide.tissue_at(-55000.0, -35000.0)) == 0.0
    tissue = slide.region(X0 + 50.0, Y0, (64, 64), 0.5, SAME).transmission
    glass = slide.region(-55000.0, -35000.0, (64, 64), 0.5, SAME).transmission
    assert np.all(glass == 1.0)
    assert tissue.mean() < 0.9
    # Several millimetres of tissue: the outline spans millimetres along both axes.
    xs = np.linspace(-45000, -15000, 301)
    inside = xs[slide.tissue_at(xs, np.full_like(xs, Y0)) > 0.5]
    assert inside.max() - inside.min() > 5000.0


def test_focal_surface_varies_across_the_slide() -> None:
    slide = VirtualSlide(seed=1)
    xs, ys = np.meshgrid(np.linspace(-36000, -24000, 13), np.linspace(-24000, -16000, 9))
    z = np.asarray(slide.focus_z_um(xs, ys))
    assert np.all((z > -4100) & (z < -3900))  # around -4000 um, inside Z travel
    assert z.max() - z.min() > 10.0  # tens of micrometres over the tissue
    # Smooth: neighbouring fields (1 mm apart) differ by a few micrometres at most.
    assert np.abs(np.diff(z, axis=1)).max() < 8.0
    # Each slide has its own surface.
    other = np.asarray(VirtualSlide(seed=2).focus_z_um(xs, ys))
    assert np.abs(other - z).max() > 5.0


def test_region_offsets_follow_the_focal_surface() -> None:
    """Pixels where the surface is higher need a higher z: their offset is z_f(c) - z_f(p)."""
    slide = VirtualSlide(seed=1, tilt_um_per_mm=50.0, warp_um=0.0)
    p = 0.5
    reg = slide.region(-55000.0, -35000.0, (32, 400), p, SAME)  # glass: no section depth
    xs, _ = slide.grid(-55000.0, -35000.0, (32, 400), p)
    expected = slide.focus_z_um(-55000.0, -35000.0) - slide.focus_z_um(xs, np.full_like(xs, -35000.0))
    assert np.allclose(reg.offset_um[16], expected, atol=1e-3)
    assert np.ptp(reg.offset_um[16]) > 1.0


def test_image_orientation_columns_are_x() -> None:
    """A frame's column index grows with +X: the frame at x + d equals the first shifted by d."""
    slide = VirtualSlide(seed=3)
    p = 0.25
    a = slide.region(X0, Y0, (32, 64), p, SAME).transmission
    b = slide.region(X0 + 16 * p, Y0, (32, 64), p, SAME).transmission
    assert np.allclose(a[:, 16:], b[:, :-16], atol=2e-4)
    c = slide.region(X0, Y0 + 8 * p, (32, 64), p, SAME).transmission
    assert np.allclose(a[8:], c[:-8], atol=2e-4)


def test_folder_of_images_as_specimen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import cv2
    from deepaf_host.optics import load_specimen

    rng = np.random.default_rng(0)
    for i in range(2):
        img = np.full((40, 50, 3), 230, np.uint8)
        img[10:30, 10 + 10 * i : 25 + 10 * i] = (120, 60, 150)  # a purple blob, RGB
        img += rng.integers(0, 10, img.shape, dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"tile{i}.png"), img[..., ::-1])
    spec = load_specimen(str(tmp_path), seed=1, pixel_um=0.5)
    slide = VirtualSlide(seed=1, specimen=spec)
    reg = slide.region(X0, Y0, (80, 100), 0.5, SAME)
    # The `same` protocol reproduces the images' colours: dark purple blobs on light glass.
    t = reg.transmission
    assert t.min() < 0.6 and np.percentile(t, 90) > 0.85
    blob = t[t[..., 1] < 0.4]
    assert len(blob) and blob[:, 1].mean() < blob[:, 0].mean()  # green absorbed most
