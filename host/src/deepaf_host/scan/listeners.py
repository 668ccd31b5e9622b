"""Scan event listeners that are not the runner's business: a log line per tile, and
several listeners behind one.

:class:`TileLogger` writes one line per tile to the ``deepaf_host.scan.tiles`` logger
(INFO; WARNING when the tile's autofocus failed or its focus QC is not ``ok``, so that
an operator sees those even without ``-v``)::

    tile 4 (row 1, col 2): tissue 41%, search 8 frames ok, z -3998.21 um by autofocus, qc ok

:class:`Listeners` calls several listeners in turn; one that raises is logged and the
others still hear the event (a broken progress bar never silences the log).
"""

from __future__ import annotations

import logging
from typing import Any

from .plan import Plan, Tile
from .runner import ScanEvents

log = logging.getLogger(__name__)
#: The per-tile lines (``-v``) have a logger of their own.
tiles_log = logging.getLogger("deepaf_host.scan.tiles")


def qc_verdict(record: dict[str, Any]) -> tuple[str | None, str]:
    """(verdict, reason) of a manifest record's ``qc`` (None when it has none)."""
    qc = record.get("qc")
    if isinstance(qc, str):
        return qc, ""
    if isinstance(qc, dict):
        verdict = qc.get("verdict")
        return (str(verdict) if verdict is not None else None), str(qc.get("reason") or "")
    return None, ""


def _autofocus_text(result: dict[str, Any], label: str = "") -> str:
    state = "ok" if result.get("ok") else f"failed ({result.get('reason') or 'no reason given'})"
    return f"{label}{result.get('strategy', '?')} {result.get('frames', '?')} frames {state}"


def tile_line(record: dict[str, Any]) -> str:
    """The log line of one tile's manifest record (tolerates missing keys)."""
    parts = [f"tile {record.get('tile')} (row {record.get('row')}, col {record.get('col')})"]
    fraction = record.get("tissue_fraction")
    parts.append(f"tissue {fraction:.0%}" if isinstance(fraction, (int, float)) else "tissue ?")
    if record.get("empty"):
        parts.append("empty glass, skipped")
    else:
        initial = record.get("initial_focus")
        if isinstance(initial, dict) and isinstance(initial.get("windows"), list):
            windows = [w for w in initial["windows"] if isinstance(w, dict)]
            frames = sum(int(w.get("frames") or 0) for w in windows)
            found = "ok" if any(w.get("ok") for w in windows) else "failed"
            parts.append(f"initial focus {len(windows)} window{'s' if len(windows) != 1 else ''} {frames} frames {found}")
        elif isinstance(initial, dict) and "strategy" in initial:
            parts.append(_autofocus_text(initial, "initial "))
        af = record.get("autofocus")
        parts.append(_autofocus_text(af) if isinstance(af, dict) else "no autofocus (little tissue)")
        z = record.get("z_um")
        parts.append(f"z {z:.2f} um by {record.get('focus_source')}" if isinstance(z, (int, float)) else "z ?")
    verdict, reason = qc_verdict(record)
    if verdict is not None:
        parts.append(f"qc {verdict}" + (f" ({reason})" if reason and verdict != "ok" else ""))
    error = record.get("focus_error_um")
    if isinstance(error, (int, float)) and not record.get("empty"):
        parts.append(f"true focus error {error:+.2f} um")
    return ", ".join(parts)


class TileLogger(ScanEvents):
    """One log line per tile, and one at the start and at the end of the scan."""

    def __init__(self, logger: logging.Logger = tiles_log) -> None:
        self.log = logger

    def scan_started(self, plan: Plan, done: int) -> None:
        already = f", {done} done before (resumed)" if done else ""
        self.log.info("scan: %d tiles, %d rows x %d cols%s", len(plan.tiles), plan.rows, plan.cols, already)

    def tile_resumed(self, tile: Tile, record: dict[str, Any]) -> None:
        self.log.debug("tile %d: done before, not imaged again", tile.index)

    def tile_finished(self, tile: Tile, record: dict[str, Any]) -> None:
        af = record.get("autofocus")
        verdict, _ = qc_verdict(record)
        bad = (isinstance(af, dict) and not af.get("ok")) or verdict not in (None, "ok")
        self.log.log(logging.WARNING if bad else logging.INFO, "%s", tile_line(record))

    def scan_finished(self, report: dict[str, Any]) -> None:
        tiles = report.get("tiles") or {}
        self.log.info(
            "scan %s: %s of %s tiles done, %s imaged, %s empty%s", report.get("status"), tiles.get("done"),
            tiles.get("planned"), tiles.get("imaged"), tiles.get("empty"),
            f"; error: {report['error']}" if report.get("error") else "",
        )


class Listeners(ScanEvents):
    """Several listeners as one: each event goes to each in turn."""

    def __init__(self, *listeners: Any) -> None:
        self.listeners = [x for x in listeners if x is not None]

    def _each(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(*args)
            except Exception:
                log.exception("scan listener %s.%s failed (ignored)", type(listener).__name__, event)

    def scan_started(self, plan: Plan, done: int) -> None:
        self._each("scan_started", plan, done)

    def tile_resumed(self, tile: Tile, record: dict[str, Any]) -> None:
        self._each("tile_resumed", tile, record)

    def tile_started(self, tile: Tile) -> None:
        self._each("tile_started", tile)

    def tile_finished(self, tile: Tile, record: dict[str, Any]) -> None:
        self._each("tile_finished", tile, record)

    def scan_finished(self, report: dict[str, Any]) -> None:
        self._each("scan_finished", report)
