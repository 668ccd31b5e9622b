"""Cameras: OpenCV devices and the virtual camera, behind one interface."""

from .base import Camera, FrameMode, PoseSource

__all__ = ["Camera", "FrameMode", "PoseSource"]
