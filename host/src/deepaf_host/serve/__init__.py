"""``deepaf-host serve``: a local web page that drives the microscope.

- :mod:`.device`: the stage and camera, one lock around both; jog validation.
- :mod:`.access`: the token (off loopback) and the one controlling browser.
- :mod:`.stream`: the live view (MJPEG).
- :mod:`.scanjob`: a scan from the page, in a thread, progress from its events.
- :mod:`.slides`: finished scans and their pyramid tiles for the viewer.
- :mod:`.app`: the aiohttp application (routes listed there); ``static/`` the page.

The server stack (aiohttp) is the ``serve`` extra: ``pip install 'deepaf-host[serve]'``.
"""

from __future__ import annotations

__all__ = ["make_app", "ServeConfig", "Microscope"]


def __getattr__(name: str) -> object:
    if name in ("make_app", "ServeConfig"):
        from . import app

        return getattr(app, name)
    if name == "Microscope":
        from .device import Microscope

        return Microscope
    raise AttributeError(name)
