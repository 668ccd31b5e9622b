"""The microscope behind the page: one stage and one camera, ONE lock around both.

Every request that talks to the board or the camera takes :attr:`Microscope.lock`
(an autofocus or a jog from the page, the preview, the readout). A scan runs on the
page's own board connection: :meth:`Microscope.lend` hands it over (and closes the
camera, which the scan opens itself), :meth:`Microscope.take_back` takes it back. The
port is never opened again for a scan, since that resets the board (an Uno's DTR
reset) and its position would read 0, 0, 0.

Jogs and moves are validated against the travel and the Z safety limit here, before
a line is sent; the stage validates them again (``Stage.move_to``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np

from ..camera.base import Camera, FrameMode
from ..errors import ConnectionLost, DeepAfError, FirmwareAlarm, PortUnavailable, ProtocolTimeout, StageLimitError

log = logging.getLogger(__name__)

#: Frame size of the live view on the virtual camera (it renders every frame: a smaller
#: frame keeps the preview well above 10 fps; a real camera streams its low-res mode).
PREVIEW_SIZE = (480, 270)

#: Largest single jog per axis, micrometres (a typo of "50000" should not cross the slide).
MAX_JOG_UM = {"x": 20000.0, "y": 20000.0, "z": 2000.0}

#: Errors that mean the board is gone (unplugged, reset, silent): the page shows it.
LOST = (ConnectionLost, PortUnavailable, ProtocolTimeout)


class BusyError(DeepAfError):
    """The microscope is in use (a scan owns it, or it is not connected)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StopRequested(KeyboardInterrupt):
    """The operator pressed Stop: the next camera frame of an autofocus or a scan raises
    this. A ``KeyboardInterrupt``, so that it takes the Ctrl-C path everywhere: the
    autofocus strategies let it through at once, the scan runner parks and reports."""


class Stopped(DeepAfError):
    """A homing or an autofocus ended by the page's Stop (``what``: "home", "autofocus")."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(reason)
        self.what = what
        self.reason = reason


@dataclass
class Frame:
    """The latest camera frame: RGB uint8, a sequence number, when it was taken."""

    seq: int
    rgb: np.ndarray
    t: float


class FrameTee(Camera):
    """Wraps a camera: every low-res frame anyone grabs (an autofocus, a scan) becomes
    the live view's latest frame, and ``stop_requested`` makes the next grab raise
    :class:`StopRequested` (how the page stops a scan or an autofocus)."""

    def __init__(self, inner: Camera, sink: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self._sink = sink
        self.stop_requested = False
        self.illumination = inner.illumination

    def grab(self, mode: FrameMode = "low") -> np.ndarray:
        if self.stop_requested:
            raise StopRequested("stopped from the page")
        frame = self.inner.grab(mode)
        if mode == "low":
            self._sink(frame)
        return frame

    def frame_shape(self, mode: FrameMode = "low") -> tuple[int, int]:
        return self.inner.frame_shape(mode)

    def pixel_size_um(self, mode: FrameMode = "low") -> float:
        return self.inner.pixel_size_um(mode)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # camera extras (e.g. the virtual slide)
        return getattr(self.__dict__["inner"], name)


def live_camera_spec(spec: str | None, port: str, size: tuple[int, int] = PREVIEW_SIZE) -> str | None:
    """The camera the live view opens: a virtual camera renders at ``size`` unless its
    URL names a low-res size; any other camera as given."""
    virtual = (spec or "").startswith("sim://") or (spec is None and port.startswith("sim://"))
    if not virtual:
        return spec
    parts = urlsplit(spec or "sim://")
    keys = dict(parse_qsl(parts.query, keep_blank_values=True))
    if "low" in keys:
        return spec
    query = "&".join(q for q in (parts.query, f"low={size[0]}x{size[1]}") if q)
    return f"sim://{parts.netloc}{parts.path}?{query}"


def shared_sim_port(port: str, name: str) -> str:
    """A ``sim://`` port without a board name gets ``name``: the page and the scans it
    starts (which open the port again) then drive ONE virtual board, as they would one
    real board. Any other port as given."""
    parts = urlsplit(port)
    if parts.scheme != "sim" or parts.netloc:
        return port
    return urlunsplit(parts._replace(netloc=name))


class Microscope:
    """The stage and camera the page drives (see the module docstring).

    Args:
        port: the board's port (``--port``), reopened as is after a scan.
        camera: the camera spec (``--camera``); None: the port's default.
        z_min_um: the Z safety limit (None: the bottom of the travel).
        objective: objective preset of a virtual camera.
        backlash_um: host-side backlash (the profile's).
        low_size: a real camera's low-res frame size (the profile's); a virtual camera's
            live view renders at :data:`PREVIEW_SIZE` unless its URL says ``low=``.
    """

    def __init__(
        self, port: str, camera: str | None, *, z_min_um: float | None = None, objective: str = "20x",
        backlash_um: tuple[float, float, float] | None = None, low_size: tuple[int, int] | None = None,
    ) -> None:
        self.port = port
        self.camera_spec = camera
        self.z_min_um = z_min_um
        self.objective = objective
        self.backlash_um = backlash_um
        self.low_size = low_size
        self.lock = threading.RLock()
        self.connection: Any = None  # the board's Connection, held across scans
        self.stage: Any = None
        self.camera: FrameTee | None = None
        self.error: str | None = None
        self.owner: str | None = None  # "scan" while a scan holds the port
        self._stack: contextlib.ExitStack | None = None
        self._frame_lock = threading.Lock()
        self._frame: Frame | None = None
        self._seq = 0
        self.homed = False
        # The homing or autofocus in progress (it holds ``lock``); Stop does not wait for
        # the lock: see :meth:`interrupt`.
        self._task_lock = threading.Lock()
        self.task: str | None = None
        self._stop_task = False

    # --- connection --------------------------------------------------------------------

    def open(self) -> None:
        """Connect the board and open the camera (nothing moves). On failure the error
        is kept for the page (:attr:`error`) and raised. Opening the port resets a board
        whose port resets it (an Uno's DTR reset): it forgets its position."""
        from ..stage import Connection

        with self.lock:
            self.close()
            try:
                self.connection = Connection(self.port)
            except BaseException as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                raise
            parts = urlsplit(self.port)
            if parts.scheme == "sim" and parts.netloc:
                # The named board exists now: reopening it takes no board options (they
                # were set when it was created), and no connection options either.
                self.port = f"sim://{parts.netloc}"
            try:
                self._open_devices()
            except BaseException:
                self.close()
                raise
            self.homed = False

    def _open_devices(self) -> None:
        """The camera and a Stage on the connection held (the stage's state fresh)."""
        from ..scan.session import open_microscope

        stack = contextlib.ExitStack()
        spec = live_camera_spec(self.camera_spec, self.port)
        virtual = spec is not None and spec.startswith("sim://")
        try:
            stage, camera, _clock, _sleep, _sim = stack.enter_context(open_microscope(
                self.port, spec, z_min_um=self.z_min_um, objective=self.objective, camera_timing=None,
                backlash_um=self.backlash_um, low_size=None if virtual else self.low_size, connection=self.connection,
            ))
        except BaseException as exc:
            stack.close()
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        self._stack, self.stage, self.camera = stack, stage, FrameTee(camera, self._keep)
        self.error = None

    def _close_devices(self) -> None:
        stack, self._stack, self.stage, self.camera = self._stack, None, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.close()

    def close(self) -> None:
        """Release the camera and the port."""
        with self.lock:
            self._close_devices()
            connection, self.connection = self.connection, None
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()

    def lend(self) -> Any:
        """Hand the board's connection to a scan (``owner`` is set by the caller): the
        camera is closed (a real camera opens once), the port stays open, so the board
        keeps its position and homing. Returns the connection, or None when the board
        is not connected (the scan then opens the port itself)."""
        with self.lock:
            self._close_devices()
            return self.connection

    def take_back(self, homed: bool | None = None) -> None:
        """After a scan: the camera again and a fresh Stage on the same connection (the
        scan moved the board; what the old Stage object remembered is stale). A board
        lost meanwhile is opened again (:meth:`open`)."""
        with self.lock:
            if self.connection is not None:
                try:
                    self._open_devices()
                    if homed is not None:
                        self.homed = homed
                    return
                except LOST as exc:
                    log.warning("the board was lost during the scan: %s; opening it again", exc)
            self.open()

    @property
    def connected(self) -> bool:
        return self.stage is not None

    def _lost(self, exc: BaseException) -> None:
        log.warning("board lost: %s", exc)
        self.close()
        self.error = f"{type(exc).__name__}: {exc}"

    @contextlib.contextmanager
    def using(self) -> Any:
        """Hold the device for one operation: raises ``BusyError`` when a scan owns it or
        it is not connected; a lost board is closed and shown as such."""
        with self.lock:
            if self.owner is not None:
                raise BusyError(f"the {self.owner} is using the microscope")
            if self.stage is None:
                raise BusyError(f"the board is not connected ({self.error or 'closed'})")
            try:
                yield self.stage
            except LOST as exc:
                self._lost(exc)
                raise BusyError(f"the board was lost: {exc}") from exc

    # --- frames ------------------------------------------------------------------------

    def _keep(self, rgb: np.ndarray) -> None:
        with self._frame_lock:
            self._seq += 1
            self._frame = Frame(self._seq, rgb, time.monotonic())

    def latest(self) -> Frame | None:
        with self._frame_lock:
            return self._frame

    def grab_live(self) -> Frame | None:
        """Grab a fresh low-res frame if the device is free now; else the latest frame
        someone else grabbed (an autofocus or a scan in progress)."""
        if self.owner is None and self.lock.acquire(timeout=0.05):
            try:
                if self.camera is not None and self.owner is None:
                    try:
                        self.camera.grab("low")
                    except DeepAfError as exc:
                        log.warning("preview frame failed: %s", exc)
            finally:
                self.lock.release()
        return self.latest()

    # --- readout and motion --------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Position, board state and limits for the readout (does not wait for a busy
        device: it says so)."""
        out: dict[str, Any] = {"connected": self.connected, "error": self.error, "owner": self.owner}
        if self.owner is not None or not self.lock.acquire(timeout=0.2):
            out["busy"] = True
            return out
        try:
            if self.stage is None:
                return out
            try:
                report = self.stage.status()
            except LOST as exc:
                self._lost(exc)
                out.update(connected=False, error=self.error)
                return out
            self.homed = self.homed and report.base_state != "Alarm"
            out.update(
                busy=False, state=report.state, locked=report.base_state == "Alarm", homed=self.homed,
                position_um=None if report.mpos_mm is None else {a: round(v * 1000.0, 1) for a, v in zip("xyz", report.mpos_mm)},
                limits_um={a: list(v) for a, v in self.stage.limits_um.items()}, z_min_um=self.stage.z_min_um,
            )
            return out
        finally:
            self.lock.release()

    def check_target(self, target: dict[str, float]) -> None:
        """Raise ``StageLimitError`` when a target leaves the travel or goes below the Z
        safety limit (before anything moves)."""
        limits = self.stage.limits_um
        for axis, value in target.items():
            low, high = limits[axis]
            if not math.isfinite(value):
                raise ValueError(f"{axis}_um must be a finite number")
            if value < low:
                raise StageLimitError(axis, value, low)
            if value > high:
                raise StageLimitError(axis, value, high)
            if axis == "z" and self.stage.z_min_um is not None and value < self.stage.z_min_um:
                raise StageLimitError("z", value, self.stage.z_min_um, reason="z safety")

    def jog(self, delta_um: dict[str, float]) -> dict[str, float]:
        """Move by ``delta_um`` (axes x, y, z) from where the board says it is; returns
        the target. Refused before any motion when it leaves the travel."""
        for axis, d in delta_um.items():
            if abs(d) > MAX_JOG_UM[axis]:
                raise StageLimitError(axis, d, math.copysign(MAX_JOG_UM[axis], d), reason="largest jog")
        with self.using() as stage:
            stage.wait_idle()
            start = stage.position()
            here = {"x": start.x_um, "y": start.y_um, "z": start.z_um}
            target = {a: round(here[a] + d, 1) for a, d in delta_um.items() if d != 0}
            self.check_target(target)
            stage.move_to(**{f"{a}_um": v for a, v in target.items()}, wait=False)
            return target

    def move_to(self, target_um: dict[str, float]) -> None:
        with self.using() as stage:
            self.check_target(target_um)
            stage.move_to(**{f"{a}_um": v for a, v in target_um.items()}, wait=False)

    @contextlib.contextmanager
    def _running(self, task: str) -> Any:
        with self._task_lock:
            self.task, self._stop_task = task, False
        try:
            yield
        finally:
            with self._task_lock:
                self.task, self._stop_task = None, False
                if self.camera is not None:
                    self.camera.stop_requested = False

    def interrupt(self) -> str | None:
        """Stop the homing or the autofocus in progress now, without waiting for the
        lock it holds; returns which ("home", "autofocus") or None when neither runs.

        A homing is ended by a soft reset (Ctrl-X) written straight to the port: the
        board takes realtime bytes in its receive interrupt, even while ``$H`` waits for
        its ``ok``; GRBL then raises alarm 6 (homing reset) and stays locked, its motors
        stopped. An autofocus is stopped at its next camera frame (:class:`StopRequested`);
        :meth:`autofocus` then stops whatever move is still running."""
        with self._task_lock:
            task = self.task
            if task is None:
                return None
            self._stop_task = True
            if task == "autofocus" and self.camera is not None:
                self.camera.stop_requested = True
            elif task == "home" and self.connection is not None:
                log.info("stop from the page during homing: soft reset")
                try:
                    self.connection.serial.write(b"\x18")
                except Exception as exc:  # noqa: BLE001 - a lost port: the homing thread finds out
                    log.warning("could not send the soft reset: %s", exc)
            return task

    def home(self) -> None:
        with self.using() as stage, self._running("home"):
            if self._stop_task:
                raise Stopped("home", "homing stopped from the page before it started")
            try:
                stage.home()
            except FirmwareAlarm as exc:
                if not self._stop_task:
                    raise
                raise Stopped("home", f"homing stopped from the page (alarm {exc.code}): the board is locked; "
                              "home again, or unlock at your own risk") from None
            self.homed = True

    def unlock(self) -> None:
        with self.using() as stage:
            stage.connection.command("$X")

    def stop(self) -> None:
        with self.using() as stage:
            stage.stop()

    def autofocus(self, strategy_name: str, max_correction_um: float | None = None) -> dict[str, Any]:
        """Run one autofocus strategy from the current Z; returns its result record
        (``ok`` false, ``reason`` "stopped from the page", when :meth:`interrupt` ended it)."""
        from ..autofocus import FocusContext, FocusLimits, make_strategy

        strategy = make_strategy(strategy_name)
        limits = FocusLimits() if max_correction_um is None else FocusLimits(max_correction_um)
        with self.using() as stage, self._running("autofocus"):
            camera = self.camera
            if camera is None:
                raise BusyError("the camera is not open")
            stage.wait_idle()
            z = stage.position().z_um
            first = self._seq
            try:
                if self._stop_task:
                    raise StopRequested("stopped from the page")
                result = strategy.run(stage, camera, z, FocusContext(limits=limits))
            except StopRequested:
                # A sweep's move may still run: feed hold, then reset (the position is kept).
                stage.stop()
                here = stage.position().z_um
                return {
                    "strategy": strategy_name, "ok": False, "reason": "stopped from the page", "z_um": here,
                    "start_z_um": z, "correction_um": here - z, "frames": self._seq - first, "stopped": True,
                }
            return result.to_dict()
