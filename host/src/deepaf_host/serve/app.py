"""The web application (aiohttp): the page, the live stream and a small JSON API.

=========================  ====================================================  =========
``GET /``                  the page (static/index.html)                          anyone
``GET /stream.mjpg``       the live view (MJPEG)                                 token
``GET /api/state``         readout, who controls, scan progress, last autofocus  token
``POST /api/control``      ``{"action": "claim" | "release"}``                   token
``POST /api/jog``          ``{"dx_um", "dy_um", "dz_um"}`` (any of them)         controller
``POST /api/move``         ``{"x_um", "y_um", "z_um"}`` (any of them)            controller
``POST /api/home``         ``$H``; ``/api/unlock``: ``$X``                       controller
``POST /api/stop``         ends a homing, an autofocus or the queued moves       controller
``POST /api/reconnect``    reopen a lost board                                   controller
``POST /api/autofocus``    ``{"strategy": "search", "max_correction_um": 30}``   controller
``POST /api/scan/start``   ``{"name", "area_mm", "z_start_um", "autofocus",      controller
                           "resume"}`` (what is left out: the profile's, or the
                           virtual slide's defaults on ``sim://``)
``POST /api/scan/stop``                                                          controller
``GET /api/slides``        finished scans under the output root                  token
``GET /slides/NAME/FILE``  focus_map.png, report.html, report.json, levels,      token
                           ``tile/LEVEL/ROW/COL.jpg`` (the slide's own tiles)
=========================  ====================================================  =========

"token": off loopback only (see :mod:`.access`). "controller": the token, and the
``X-DeepAf-Client`` header naming the browser that holds control. Every POST must
be ``application/json`` (a cross-site form cannot send that without the browser
asking first, and nothing here answers that question) from the page's own origin;
its body is checked field by field (unknown fields, wrong types: 400) before anything
is done. Errors are ``{"error": ..., ...}`` with a 4xx status; nothing changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ConfigError, DeepAfError, FirmwareAlarm, FirmwareError, NotHomedError, StageLimitError
from .access import Access
from .device import BusyError, Microscope, Stopped
from .scanjob import ScanJob
from .slides import Slides, SlideError
from .stream import BOUNDARY, Preview

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
#: A scan's folder name under the output root.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
AREA_RE = re.compile(r"^-?\d+(\.\d+)?(,-?\d+(\.\d+)?){3}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    """A malformed request: 400 and nothing done."""


@dataclass
class ServeConfig:
    """What ``deepaf-host serve`` was started with."""

    port: str
    camera: str | None
    out_root: Path
    token: str | None = None
    objective: str = "20x"
    z_min_um: float | None = None
    profile: Any = None
    #: ScanOptions fields the page cannot change (tests make scans small and fast).
    scan_defaults: dict[str, Any] = field(default_factory=dict)
    stitch: bool = True


class Server:
    """State shared by the handlers."""

    def __init__(self, config: ServeConfig, microscope: Microscope) -> None:
        self.config = config
        self.microscope = microscope
        self.access = Access(config.token)
        self.preview = Preview(microscope)
        self.slides = Slides(config.out_root)
        self.scan: ScanJob | None = None
        self.autofocus: dict[str, Any] | None = None
        self.busy: str | None = None  # "autofocus", "home" while one runs
        self.closing = False  # the server stops: streams end


#: The application's state (aiohttp's typed key).
SERVER = web.AppKey("server", Server)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _client(request: web.Request) -> str | None:
    return request.headers.get("X-DeepAf-Client")


def _token(request: web.Request) -> str | None:
    return request.headers.get("X-DeepAf-Token") or request.query.get("token")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    server: Server = request.app[SERVER]
    path = request.path
    protected = path.startswith(("/api/", "/stream", "/slides/"))
    if protected and not server.access.token_ok(_token(request)):
        return _error(401, "this server needs its token (the ?token= of the URL it printed)")
    if request.method == "POST":
        if request.content_type != "application/json":
            return _error(415, "POST bodies are application/json")
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            return _error(403, f"cross-origin request from {origin} refused")
        client = _client(request)
        if not client or len(client) > 64:
            return _error(400, "the X-DeepAf-Client header names the browser")
        if path != "/api/control" and not server.access.controls(client):
            return _error(409, "read-only: another browser controls the microscope (or take control first)")
    client = _client(request)
    if client and len(client) <= 64:
        server.access.seen(client)
    try:
        return await handler(request)
    except BadRequest as exc:
        return _error(400, str(exc))
    except StageLimitError as exc:
        return _error(422, str(exc), axis=exc.axis, requested_um=exc.requested_um, limit_um=exc.limit_um, reason=exc.reason)
    except (NotHomedError, BusyError) as exc:
        return _error(409, str(exc))
    except Stopped as exc:
        return _error(409, exc.reason, stopped=exc.what)
    except FirmwareAlarm as exc:  # e.g. a homing that found no switch: the board is locked
        return _error(409, f"the board raised an alarm: {exc}", alarm=exc.code)
    except FirmwareError as exc:
        return _error(409, f"the board refused it: {exc}", code=exc.code)
    except SlideError as exc:
        return _error(exc.status, str(exc))
    except ConfigError as exc:
        return _error(400, str(exc))


async def _body(request: web.Request, fields: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """The JSON object of a POST: only ``fields``, each of its type; numbers finite."""
    try:
        body = await request.json() if request.can_read_body else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body is a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    for key, value in body.items():
        kinds = fields[key]
        if value is None or isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise BadRequest(f"{key} must be {' or '.join(k.__name__ for k in kinds)}, not {json.dumps(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadRequest(f"{key} must be finite")
    return body


NUMBER: tuple[type, ...] = (int, float)
TEXT: tuple[type, ...] = (str,)
FLAG: tuple[type, ...] = (bool,)


# --- pages and stream ---------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def stream(request: web.Request) -> web.StreamResponse:
    server: Server = request.app[SERVER]
    response = web.StreamResponse(headers={
        "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-store",
    })
    await response.prepare(request)
    preview = server.preview
    preview.watch()
    seq = -1
    try:
        while not server.closing:
            seq, jpeg = await preview.next(seq)
            if jpeg is None:
                continue
            await response.write(
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n"
            )
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        preview.unwatch()
    return response


# --- state and control -------------------------------------------------------------------


async def state(request: web.Request) -> web.Response:
    server: Server = request.app[SERVER]
    client = _client(request)
    controller = server.access.controller
    return web.json_response({
        "microscope": await asyncio.to_thread(server.microscope.state),
        "control": {"you": controller is not None and controller == client, "held": controller is not None},
        "busy": server.busy,
        "autofocus": server.autofocus,
        "scan": None if server.scan is None else server.scan.snapshot(),
        "strategies": _strategies(),
    })


def _strategies() -> list[str]:
    from ..autofocus import STRATEGIES

    return list(STRATEGIES)


async def control(request: web.Request) -> web.Response:
    server: Server = request.app[SERVER]
    body = await _body(request, {"action": TEXT})
    client = _client(request) or ""  # the guard refused a POST without one
    action = body.get("action")
    if action == "claim":
        if not server.access.claim(client):
            return _error(409, "another browser controls the microscope")
    elif action == "release":
        server.access.release(client)
    else:
        raise BadRequest("action is claim or release")
    return web.json_response({"you": server.access.controls(client)})


def _not_busy(server: Server) -> None:
    """A jog during a homing or an autofocus is refused, not queued behind it."""
    if server.busy is not None:
        raise BusyError(f"the {server.busy} is still running")


async def _run(server: Server, what: str, fn: Callable[[], Any]) -> Any:
    _not_busy(server)
    server.busy = what
    try:
        return await asyncio.to_thread(fn)
    finally:
        server.busy = None


async def jog(request: web.Request) -> web.Response:
    server: Server = request.app[SERVER]
    body = await _body(request, {"dx_um": NUMBER, "dy_um": NUMBER, "dz_um": NUMBER})
    delta = {k[1]: float(v) for k, v in body.items()}
    if not delta:
        raise BadRequest("give dx_um, dy_um or dz_um")
    _not_busy(server)
    target = await asyncio.to_thread(server.microscope.jog, delta)
    return web.json_response({"target_um": target})


async def move(request: web.Request) -> web.Response:
    server: Server = request.app[SERVER]
    body = await _body(request, {"x_um": NUMBER, "y_um": NUMBER, "z_um": NUMBER})
    target = {k[0]: float(v) for k, v in body.items()}
    if not target:
        raise BadRequest("give x_um, y_um or z_um")
    _not_busy(server)
    await asyncio.to_thread(server.microscope.move_to, target)
    return web.json_response({"target_um": target})


def _simple(what: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        server: Server = request.app[SERVER]
        await _body(request, {})
        m = server.microscope
        fn = {"home": m.home, "unlock": m.unlock, "reconnect": _reconnect(m)}[what]
        await _run(server, what, fn) if what == "home" else await asyncio.to_thread(fn)
        return web.json_response({"ok": True})

    return handler


#: How long Stop waits for a homing or an autofocus to end after interrupting it.
STOP_WAIT_S = 30.0


async def stop(request: web.Request) -> web.Response:
    """Stop motion: a homing or an autofocus in progress is interrupted without waiting
    for it (:meth:`Microscope.interrupt`), and the reply comes once it has ended; else
    feed hold + soft reset of the moves the page queued (the position is kept)."""
    server: Server = request.app[SERVER]
    await _body(request, {})
    m = server.microscope
    task = m.interrupt()
    if task is None:
        await asyncio.to_thread(m.stop)
        return web.json_response({"ok": True, "stopped": "motion"})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_WAIT_S
    while (server.busy is not None or m.task is not None) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if server.busy is not None or m.task is not None:
        return _error(409, f"the {task} did not end within {STOP_WAIT_S:g} s of the stop", stopped=task)
    return web.json_response({"ok": True, "stopped": task})


def _reconnect(m: Microscope) -> Callable[[], None]:
    def reopen() -> None:
        with m.lock:
            if m.owner is not None:
                raise BusyError(f"the {m.owner} is using the microscope")
            try:
                m.open()
            except DeepAfError as exc:
                raise BusyError(f"the board is still not reachable: {exc}") from exc
    return reopen


async def autofocus(request: web.Request) -> web.Response:
    server: Server = request.app[SERVER]
    body = await _body(request, {"strategy": TEXT, "max_correction_um": NUMBER})
    strategy = body.get("strategy", "search")
    if strategy not in _strategies():
        raise BadRequest(f"strategy is one of {', '.join(_strategies())}")
    correction = body.get("max_correction_um")
    if correction is not None and not 0 < correction <= 500:
        raise BadRequest("max_correction_um is in (0, 500]")
    result = await _run(server, "autofocus", lambda: server.microscope.autofocus(strategy, correction))
    server.autofocus = result
    return web.json_response(result)


async def scan_start(request: web.Request) -> web.Response:
    from ..scan.session import ScanOptions

    server: Server = request.app[SERVER]
    body = await _body(request, {"name": TEXT, "area_mm": TEXT, "z_start_um": NUMBER, "autofocus": TEXT, "resume": FLAG})
    name = body.get("name", "")
    if not NAME_RE.match(name):
        raise BadRequest("name: 1 to 64 letters, digits, '.', '_' or '-' (a folder under the output root)")
    area = body.get("area_mm")
    if area is not None and not AREA_RE.match(area.replace(" ", "")):
        raise BadRequest("area_mm is X0,Y0,X1,Y1 in mm")
    strategy = body.get("autofocus")
    if strategy is not None and strategy not in _strategies():
        raise BadRequest(f"autofocus is one of {', '.join(_strategies())}")
    if server.scan is not None and server.scan.active:
        raise BusyError("a scan is running")
    if server.busy is not None:
        raise BusyError(f"the {server.busy} is still running")
    cfg = server.config
    options = {
        # the port the page holds (a virtual board is reopened by its name)
        "port": server.microscope.port, "camera": cfg.camera, "out_dir": cfg.out_root / name, "profile": cfg.profile,
        "objective": cfg.objective, "z_min_um": cfg.z_min_um, **cfg.scan_defaults,
    }
    if area is not None:
        options["area_mm"] = area.replace(" ", "")
    if strategy is not None:
        options["autofocus"] = strategy
    if "z_start_um" in body:
        options["z_start_um"] = float(body["z_start_um"])  # the scan's pre-flight checks it against travel and --z-min
    options["resume"] = bool(body.get("resume", False))
    job = ScanJob(server.microscope, ScanOptions(**options), stitch=cfg.stitch)
    server.scan = job
    job.start()
    return web.json_response(job.snapshot(), status=202)


async def scan_stop(request: web.Request) -> web.Response:
    server: Server = request.app[SERVER]
    await _body(request, {})
    if server.scan is None or not server.scan.active:
        return _error(409, "no scan is running")
    server.scan.stop()
    return web.json_response(server.scan.snapshot())


# --- slides -------------------------------------------------------------------------------


async def slides_list(request: web.Request) -> web.Response:
    server: Server = request.app[SERVER]
    return web.json_response({"slides": await asyncio.to_thread(server.slides.list)})


async def slide_file(request: web.Request) -> web.StreamResponse:
    server: Server = request.app[SERVER]
    path = server.slides.file(request.match_info["name"], request.match_info["file"])
    return web.FileResponse(path)


async def slide_levels(request: web.Request) -> web.Response:
    server: Server = request.app[SERVER]
    return web.json_response(await asyncio.to_thread(server.slides.levels, request.match_info["name"]))


async def slide_tile(request: web.Request) -> web.Response:
    server: Server = request.app[SERVER]
    try:
        level, row, col = (int(request.match_info[k]) for k in ("level", "row", "col"))
    except ValueError:
        raise BadRequest("level, row and col are integers") from None
    jpeg = await asyncio.to_thread(server.slides.tile, request.match_info["name"], level, row, col)
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


# --- the application ----------------------------------------------------------------------


def make_app(config: ServeConfig, microscope: Microscope) -> web.Application:
    """The aiohttp application (``microscope`` opened or not: a closed one is shown as
    disconnected until ``/api/reconnect``)."""
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[SERVER] = Server(config, microscope)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.router.add_get("/stream.mjpg", stream)
    app.router.add_get("/api/state", state)
    app.router.add_post("/api/control", control)
    app.router.add_post("/api/jog", jog)
    app.router.add_post("/api/move", move)
    for what in ("home", "unlock", "reconnect"):
        app.router.add_post(f"/api/{what}", _simple(what))
    app.router.add_post("/api/stop", stop)
    app.router.add_post("/api/autofocus", autofocus)
    app.router.add_post("/api/scan/start", scan_start)
    app.router.add_post("/api/scan/stop", scan_stop)
    app.router.add_get("/api/slides", slides_list)
    app.router.add_get("/slides/{name}/levels", slide_levels)
    app.router.add_get("/slides/{name}/tile/{level}/{row}/{col}.jpg", slide_tile)
    app.router.add_get("/slides/{name}/{file}", slide_file)

    async def shutdown(app: web.Application) -> None:
        server: Server = app[SERVER]
        server.closing = True
        if server.scan is not None and server.scan.active:
            server.scan.stop()
            await asyncio.to_thread(server.scan.thread.join, 30)

    app.on_shutdown.append(shutdown)
    return app
