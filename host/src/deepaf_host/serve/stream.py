"""The live view: one producer grabs frames while someone watches, encodes each once
(JPEG, downscaled) and every ``/stream.mjpg`` client gets the newest (MJPEG: a
``multipart/x-mixed-replace`` response any ``<img>`` shows).

The producer never waits for the device: when an autofocus or a scan holds it, the
view shows the frames they grab (:class:`~deepaf_host.serve.device.FrameTee`).
"""

from __future__ import annotations

import asyncio
import logging
import time

import cv2
import numpy as np

from .device import Microscope

log = logging.getLogger(__name__)

#: Widest frame the page gets; wider frames are downscaled before encoding.
MAX_WIDTH = 640
#: Upper bound of the preview rate (frames per second).
MAX_FPS = 25.0
JPEG_QUALITY = 80
BOUNDARY = "deepafframe"


def encode(rgb: np.ndarray, max_width: int = MAX_WIDTH) -> bytes:
    """RGB uint8 -> JPEG bytes, at most ``max_width`` wide."""
    h, w = rgb.shape[:2]
    if w > max_width:
        rgb = cv2.resize(rgb, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


class Preview:
    """The newest encoded frame and the clients waiting for the next one."""

    def __init__(self, microscope: Microscope) -> None:
        self.microscope = microscope
        self.jpeg: bytes | None = None
        self.seq = 0
        self.watchers = 0
        self._frame_seq = -1
        self._new = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def watch(self) -> None:
        self.watchers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._produce())

    def unwatch(self) -> None:
        self.watchers -= 1

    async def _produce(self) -> None:
        period = 1.0 / MAX_FPS
        while self.watchers > 0:
            t0 = time.monotonic()
            try:
                frame = await asyncio.to_thread(self.microscope.grab_live)
                if frame is not None and frame.seq != self._frame_seq:
                    self._frame_seq = frame.seq
                    jpeg = await asyncio.to_thread(encode, frame.rgb)
                    async with self._new:
                        self.jpeg, self.seq = jpeg, self.seq + 1
                        self._new.notify_all()
            except Exception:
                log.exception("preview frame failed")
                await asyncio.sleep(0.5)
            await asyncio.sleep(max(0.0, period - (time.monotonic() - t0)))

    async def next(self, after: int, timeout_s: float = 1.0) -> tuple[int, bytes | None]:
        """The first frame newer than ``after`` (or the current one after a timeout)."""
        async with self._new:
            if self.seq <= after:
                try:
                    await asyncio.wait_for(self._new.wait_for(lambda: self.seq > after), timeout_s)
                except asyncio.TimeoutError:  # TimeoutError from 3.11; its own class on 3.10
                    pass
            return self.seq, self.jpeg
