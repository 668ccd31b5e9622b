"""The OpenCV camera on a recorded video file, and the camera chooser's errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from deepaf_host.camera.open import open_camera
from deepaf_host.camera.opencv import OpenCVCamera
from deepaf_host.errors import CameraError


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    """Three 64x48 frames: pure red in RGB, with the blue channel counting 0, 60, 120."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[..., 2] = 200  # red in BGR
        bgr[..., 0] = 60 * i
        writer.write(bgr)
    writer.release()
    return path


def test_file_camera_returns_rgb_frames_and_loops(video: Path) -> None:
    cam = open_camera(str(video), pixel_size_um=0.5, warmup_frames=0)
    assert isinstance(cam, OpenCVCamera)
    with cam:
        blues = []
        for _ in range(5):
            frame = cam.grab("low")
            assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
            assert abs(int(frame[10, 10, 0]) - 200) < 8  # red first: BGR was converted
            blues.append(int(frame[10, 10, 2]))
        # The configure step read frame 0; grabs continue 1, 2, then loop 0, 1, 2.
        assert [round(b / 60) for b in blues] == [1, 2, 0, 1, 2]
        assert cam.frame_shape("high") == (48, 64)
        assert cam.pixel_size_um("low") == 0.5


def test_pixel_size_must_be_given(video: Path) -> None:
    with OpenCVCamera(str(video)) as cam, pytest.raises(CameraError, match="pixel size is unknown"):
        cam.pixel_size_um()


def test_missing_and_unknown_cameras_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="no such device or file"):
        open_camera(str(tmp_path / "nothing.mp4"))
    with pytest.raises(CameraError, match="cannot open the camera"):
        open_camera("97")  # no such device index
    with pytest.raises(CameraError, match="unknown camera scheme"):
        open_camera("rtsp://example/stream")
    with pytest.raises(CameraError, match="needs a virtual stage"):
        open_camera("sim://")
    with pytest.raises(CameraError, match="empty camera name"):
        open_camera("  ")


def test_a_file_that_is_not_a_video_gives_no_frame(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 10)
    with pytest.raises(CameraError):
        open_camera(str(junk))
