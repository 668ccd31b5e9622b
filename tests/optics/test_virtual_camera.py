"""The virtual camera follows the stage and renders the same tissue for the same pose."""

from __future__ import annotations

import numpy as np
import pytest
from deepaf_host.camera import Camera
from deepaf_host.camera.open import open_camera
from deepaf_host.camera.virtual import VirtualCamera
from deepaf_host.errors import CameraError


class Stage:
    """A PoseSource: where the stage truly is."""

    def __init__(self, x: float = -30000.0, y: float = -20000.0, z: float = -4000.0) -> None:
        self.pos = (x, y, z)

    def true_position_um(self) -> tuple[float, float, float]:
        return self.pos


SMALL = "low=160x90&high=320x240"


def test_same_pose_same_tissue() -> None:
    stage = Stage()
    cam = open_camera(f"sim://20x?seed=4&noise=0&{SMALL}", pose_source=stage)
    assert isinstance(cam, Camera) and isinstance(cam, VirtualCamera)
    x, y, _ = stage.pos
    stage.pos = (x, y, cam.true_focus_z_um(x, y))
    a = cam.grab()
    stage.pos = (x + 100.0, y, stage.pos[2])
    elsewhere = cam.grab()
    stage.pos = (x, y, cam.true_focus_z_um(x, y))
    b = cam.grab()
    assert a.shape == (90, 160, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - elsewhere.astype(int)).mean() > 5
    # With noise on, two grabs differ only by noise.
    noisy = VirtualCamera.from_url(f"sim://20x?seed=4&{SMALL}", stage)
    n1, n2 = noisy.grab().astype(float), noisy.grab().astype(float)
    assert not np.array_equal(n1, n2)
    assert np.corrcoef(n1.ravel(), n2.ravel())[0, 1] > 0.95


def test_follows_the_stage_in_x_and_z() -> None:
    stage = Stage()
    cam = VirtualCamera.from_url(f"sim://20x?seed=4&protocol=clean&{SMALL}", stage)  # no vignetting
    p = cam.pixel_size_um()
    x, y, _ = stage.pos
    zf = cam.true_focus_z_um(x, y)
    stage.pos = (x, y, zf)
    a = cam.grab().astype(int)
    stage.pos = (x + 20 * p, y, zf + (cam.true_focus_z_um(x + 20 * p, y) - zf))
    b = cam.grab().astype(int)
    # Moving the stage +X by 20 pixels moves the image content 20 columns to the left.
    assert np.abs(a[:, 20:] - b[:, :-20]).mean() < 1.0
    # Defocus blurs: the frame 4 um away from focus has less high-frequency content.
    stage.pos = (x, y, zf + 4.0)
    c = cam.grab().astype(float).mean(-1)
    g = a.astype(float).mean(-1)

    def brenner(im: np.ndarray) -> float:
        return float(((im[:, 2:] - im[:, :-2]) ** 2).mean())

    assert brenner(c) < 0.5 * brenner(g)
    assert cam.true_defocus_um() == pytest.approx(4.0)


def test_modes_shapes_and_pixel_sizes() -> None:
    cam = VirtualCamera.from_url(f"sim://?{SMALL}", Stage())
    assert cam.frame_shape("low") == (90, 160) and cam.frame_shape("high") == (240, 320)
    # Both modes see the same field width.
    assert cam.pixel_size_um("low") * 160 == pytest.approx(cam.pixel_size_um("high") * 320)
    assert cam.grab("high").shape == (240, 320, 3)
    default = VirtualCamera(Stage())
    assert default.frame_shape("low") == (720, 1280) and default.frame_shape("high") == (3040, 4056)
    # 20x/0.75 low resolution samples near Nyquist, lambda / 4 NA = 0.18 um.
    assert default.pixel_size_um("low") == pytest.approx(0.18, rel=0.02)


def test_true_focus_varies_and_matches_the_slide() -> None:
    cam = VirtualCamera.from_url("sim://20x?seed=9", Stage())
    zs = [cam.true_focus_z_um(x, -20000.0) for x in (-34000.0, -30000.0, -26000.0)]
    assert all(-4100 < z < -3900 for z in zs) and max(zs) - min(zs) > 1.0
    assert zs[1] == pytest.approx(float(cam.slide.focus_z_um(-30000.0, -20000.0)))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sim://20x?colour=red", "unknown option 'colour'"),
        ("sim://15x", "unknown objective"),
        ("sim://?seed=abc", "malformed"),
        ("sim://?low=10", "malformed"),
        ("sim://?protocol=other", "unknown protocol"),
        ("sim://?relay=-1", "positive"),
        ("sim://?specimen=/no/such/folder", "no images"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(CameraError, match=message):
        VirtualCamera.from_url(url, Stage())


def test_open_camera_needs_a_pose_source() -> None:
    with pytest.raises(CameraError):
        open_camera("sim://")
