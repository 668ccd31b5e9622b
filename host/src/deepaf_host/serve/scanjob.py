"""A scan started from the page: the same ``prepare_scan`` and runner as ``deepaf-host
scan``, in a thread, its events turned into the progress the page polls.

The scan runs on the page's own board connection (:meth:`Microscope.lend`): the port
is not opened again, which would reset the board (an Uno's DTR reset) and lose its
position; the page takes the board back (:meth:`Microscope.take_back`) when the scan
ends, and the readout shows where the scan left the stage. The runner's camera
is wrapped in a :class:`FrameTee`: the live view shows the scan's low-res frames, and
Stop makes the next grab raise ``KeyboardInterrupt`` -- the runner's Ctrl-C path, so
the scan is ``interrupted``, parked, its report written, and it can be resumed. After a
complete scan the tiles are stitched into ``slide.ome.tif`` (as the CLI does).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from ..scan.listeners import qc_verdict
from ..scan.plan import Plan, Tile
from ..scan.runner import ScanEvents
from ..scan.session import ScanOptions, prepare_scan
from .device import FrameTee, Microscope

log = logging.getLogger(__name__)


class ScanJob(ScanEvents):
    """One scan run from the page; :meth:`snapshot` is what ``/api/scan`` returns."""

    def __init__(self, microscope: Microscope, options: ScanOptions, *, stitch: bool = True) -> None:
        self.microscope = microscope
        self.options = options
        self.stitch = stitch
        self.name = Path(options.out_dir).name
        self._lock = threading.Lock()
        self._tee: FrameTee | None = None
        self._stop = False
        self.status = "starting"  # starting, running, stopping, stitching, then the report's status or "refused"
        self.error: str | None = None
        self.plan: dict[str, Any] | None = None
        self.tiles: dict[int, dict[str, Any]] = {}
        self.current: dict[str, Any] | None = None  # the tile being imaged: index, col, row, x_um, y_um
        self.thread = threading.Thread(target=self._run, name=f"scan-{self.name}", daemon=True)

    # --- control -----------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    @property
    def active(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        """Ask the scan to stop at its next frame (it parks and writes its report)."""
        with self._lock:
            self._stop = True
            if self.status in ("starting", "running"):
                self.status = "stopping"
            if self._tee is not None:
                self._tee.stop_requested = True

    def _run(self) -> None:
        m = self.microscope
        with m.lock:
            m.owner = "scan"
            connection = m.lend()
        stage: Any = None
        try:
            with prepare_scan(self.options, self, connection=connection) as scan:
                stage = scan.runner.stage
                with self._lock:
                    self._tee = FrameTee(scan.runner.camera, m._keep)
                    self._tee.stop_requested = self._stop
                scan.runner.camera = self._tee
                report = scan.run()
            self._set(status=report.get("status", "failed"), error=report.get("error"))
            if self.stitch and self.status.startswith("complete"):
                self._stitch()
        except KeyboardInterrupt:
            self._set(status="interrupted", error="stopped from the page")
        except Exception as exc:  # a refusal before the scan, or what stopped it
            log.exception("scan %s failed", self.name)
            refused = self.status in ("starting", "stopping") and self.plan is None
            self._set(status="refused" if refused else "failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            homed = None
            if stage is not None and connection is not None:
                try:
                    homed = bool(stage.is_homed)  # the scan homed the board it shares with the page
                except Exception:  # noqa: BLE001 - a lost board is found again below
                    homed = None
            with m.lock:
                m.owner = None
                try:
                    m.take_back(homed)
                except Exception as exc:  # shown on the page as a disconnected board
                    log.warning("could not reopen the microscope after the scan: %s", exc)

    def _stitch(self) -> None:
        from ..wsi import stitch

        status = self.status
        self._set(status="stitching")
        try:
            stitch(self.options.out_dir)
            self._set(status=status)
        except Exception as exc:
            log.exception("stitching %s failed", self.name)
            self._set(status=status, error=f"stitching failed (the tiles are safe): {exc}")

    def _set(self, **values: Any) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(self, k, v)

    # --- events (the scan's thread) ----------------------------------------------------

    def scan_started(self, plan: Plan, done: int) -> None:
        with self._lock:
            self.plan = {"tiles": len(plan.tiles), "cols": plan.cols, "rows": plan.rows, "fov_um": list(plan.fov_um)}
            if self.status == "starting":
                self.status = "running"

    def _record(self, tile: Tile, record: dict[str, Any]) -> None:
        verdict, _ = qc_verdict(record)
        af = record.get("autofocus") or {}
        with self._lock:
            self.tiles[tile.index] = {
                "index": tile.index, "col": tile.col, "row": tile.row, "empty": bool(record.get("empty")),
                "z_um": record.get("z_um"), "qc": verdict, "autofocus_ok": af.get("ok") if af else None,
            }
            self.current = None

    def tile_resumed(self, tile: Tile, record: dict[str, Any]) -> None:
        self._record(tile, record)

    def tile_started(self, tile: Tile) -> None:
        with self._lock:
            self.current = {"index": tile.index, "col": tile.col, "row": tile.row, "x_um": tile.x_um, "y_um": tile.y_um}

    def tile_finished(self, tile: Tile, record: dict[str, Any]) -> None:
        self._record(tile, record)

    def scan_finished(self, report: dict[str, Any]) -> None:
        pass  # the thread sets the final status (after stitching)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.name, "status": self.status, "error": self.error, "plan": self.plan,
                "done": len(self.tiles), "current": self.current, "active": self.active,
                "tiles": [self.tiles[i] for i in sorted(self.tiles)],
            }
