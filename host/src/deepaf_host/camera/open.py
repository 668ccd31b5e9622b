"""Choose a camera by name, as the ``--camera`` option does.

=====================  ==================================================
``"0"``, ``"1"``        OpenCV device by index
``"/dev/video0"``       OpenCV device by path
``"slide.mp4"``         a video file replayed by OpenCV (loops)
``"sim://..."``         the virtual camera, following ``pose_source``
=====================  ==================================================
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import CameraError
from .base import Camera, PoseSource


def open_camera(spec: str, pose_source: PoseSource | None = None, **options: Any) -> Camera:
    """Open the camera named by ``spec``.

    ``options`` go to :class:`~deepaf_host.camera.opencv.OpenCVCamera` (``pixel_size_um``,
    ``pixel_size_width``, ``resolutions``, ``warmup_frames``, ``exposure_ms``); the
    virtual camera takes its options from the URL (``sim://20x?low=640x360&high=512x384``).
    Raises ``CameraError`` for an unknown scheme, a missing device or file, or a ``sim://``
    camera without a virtual stage to follow, and ``FrameSizeError`` for a device that
    does not deliver the resolution asked for.
    """
    spec = spec.strip()
    if not spec:
        raise CameraError(spec, "empty camera name (use an index like 0, a device path, a file, or sim://)")
    if spec.startswith("sim://"):
        if pose_source is None:
            raise CameraError(
                spec, "the virtual camera needs a virtual stage to follow: use it with --port sim:// (or a simulated firmware)"
            )
        if options:
            raise CameraError(spec, f"the virtual camera takes its options in the URL, not {sorted(options)}")
        from .virtual import VirtualCamera

        return VirtualCamera.from_url(spec, pose_source)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        raise CameraError(spec, "unknown camera scheme (known: sim://; or a device index, device path, or video file)")
    from .opencv import OpenCVCamera

    if spec.isdigit():
        return OpenCVCamera(int(spec), **options)
    if not Path(spec).exists():
        raise CameraError(spec, "no such device or file")
    return OpenCVCamera(spec, **options)
