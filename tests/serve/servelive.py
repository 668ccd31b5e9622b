"""The live page's server on the virtual microscope, run in a thread on a free port of
127.0.0.1 (its own asyncio loop), as ``deepaf-host serve`` would run it. (A module of
its own name: ``conftest`` is a name every test folder uses.)"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from deepaf_host.board import VirtualBoard
from deepaf_host.serve.app import ServeConfig, make_app
from deepaf_host.serve.device import Microscope

#: The 20x virtual camera, small frames: fast to render and to scan.
CAMERA = "sim://20x?low=480x270&high=256x192"
#: 2 x 2 tiles of tissue on the virtual slide (the e2e scans' area, smaller).
AREA_MM = "-30.20,-15.80,-29.95,-15.60"
#: Where the virtual slide shows tissue, within 4 um of focus (machine um; focus is
#: near -4037 um there).
TISSUE_UM = {"x_um": -30100.0, "y_um": -15700.0, "z_um": -4034.0}

_names = itertools.count()


@dataclass
class Live:
    """A running server: its URL, the board under it, the microscope it drives."""

    url: str
    board: VirtualBoard
    microscope: Microscope
    app: web.Application
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, body: Any = None, *, client: str | None = "a", token: str | None = None,
             content_type: str = "application/json", raw: bytes | None = None,
             extra: dict[str, str] | None = None) -> tuple[int, Any]:
        """One request; returns (status, parsed JSON or bytes)."""
        headers = {"Content-Type": content_type} if method == "POST" else {}
        if client is not None:
            headers["X-DeepAf-Client"] = client
        if token is not None:
            headers["X-DeepAf-Token"] = token
        headers.update(extra or {})
        data = raw if raw is not None else (None if method == "GET" else json.dumps(body or {}).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                status, payload, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, payload, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        return status, json.loads(payload) if "json" in ctype else payload

    def state(self, client: str = "a", token: str | None = None) -> dict[str, Any]:
        status, s = self.call("GET", "/api/state", client=client, token=token)
        assert status == 200, s
        return s


def _serve(app: web.Application) -> tuple[str, Any]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, shutdown_timeout=5)
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        box["port"] = runner.addresses[0][1]
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return f"http://127.0.0.1:{box['port']}", stop


def start(tmp_path: Path, *, token: str | None = None, camera: str = CAMERA, z_min_um: float | None = None,
          board_kwargs: dict[str, Any] | None = None) -> tuple[Live, Any]:
    board = VirtualBoard(name=f"serve-{next(_names)}", **(board_kwargs or {"speed": "max"}))
    microscope = Microscope(board.url, camera, z_min_um=z_min_um)
    microscope.open()
    config = ServeConfig(port=board.url, camera=camera, out_root=tmp_path / "scans", token=token, z_min_um=z_min_um,
                         scan_defaults={"area_mm": AREA_MM, "autofocus": "stack"})
    config.out_root.mkdir()
    app = make_app(config, microscope)
    url, stop = _serve(app)

    def close() -> None:
        stop()
        microscope.close()

    return Live(url, board, microscope, app, token), close


