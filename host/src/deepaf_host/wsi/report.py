"""``report.html``: one self-contained page (images inline as data URIs, no scripts, no
external files) with the thumbnail, the focus map, the stitch figures, the scan's
settings and a per-tile table (focus source, QC, focus error where simulated, timings,
placement)."""

from __future__ import annotations

import base64
import json
from html import escape
from typing import Any

from .focusmap import FOCUS_MAP_PNG
from .folder import ScanFolder, write_atomic

REPORT_HTML = "report.html"

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f3f3f3;position:sticky;top:0}td.l,th.l{text-align:left}
.figs{display:flex;flex-wrap:wrap;gap:1.5em}.figs figure{margin:0}.figs img{max-width:640px;border:1px solid #ccc}
.ok{color:#207520}.suspect{color:#c06000}.failed{color:#c02020;font-weight:bold}.muted{color:#888}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}dt{font-weight:600}dd{margin:0}
"""


def _img(folder: ScanFolder, name: str, alt: str) -> str:
    path = folder.path / name
    if not path.is_file():
        return f'<p class="muted">({escape(name)} missing)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _dl(items: dict[str, Any]) -> str:
    rows = []
    for k, v in items.items():
        if isinstance(v, dict):
            text = ", ".join(f"{a}: {b if isinstance(b, str) else json.dumps(b)}" for a, b in v.items()) or "none"
        else:
            text = v if isinstance(v, str) else json.dumps(v)
        rows.append(f"<dt>{escape(str(k))}</dt><dd>{escape(text)}</dd>")
    return "<dl>" + "".join(rows) + "</dl>"


def _num(v: float | None, nd: int = 2) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def report_html(folder: ScanFolder, summary: dict[str, Any]) -> str:
    rep = folder.report
    reg = summary["registration"]["summary"]
    positions = {p["tile"]: p for p in summary.get("positions", [])}
    gt = summary.get("ground_truth")
    stitch_items: dict[str, Any] = {
        "slide": summary["slide"], "levels (H x W)": " / ".join(f"{h}x{w}" for h, w in summary.get("levels", [])),
        "pixel size": f"{summary['pixel_size_um']:.5g} um", "mosaic": f"{summary.get('mosaic_megapixels', 0):.1f} megapixels",
        "tiles": summary["tiles"], "pairs registered / rejected": f"{reg['accepted']} / {reg['pairs'] - reg['accepted']}",
        "rejections": reg["rejected"], "outlier pairs dropped": reg["dropped_outliers"],
        "residual after solve (px)": reg["residual_px"], "shift from stage (px)": reg["shift_from_stage_px"],
        "flat field": "applied" if summary["flat_field"]["applied"] else f"not applied: {summary['flat_field']['note']}",
        "time (s)": summary.get("timings_s"), "throughput": f"{summary.get('megapixels_per_s')} megapixels/s",
    }
    if summary["registration"].get("camera_axes"):
        stitch_items["camera axes on the stage"] = summary["registration"]["camera_axes"]
    if gt:
        for name, stats in gt["seam_error_px"].items():
            stitch_items[f"seam error vs truth, {name.replace('_', ' ')} (px)"] = stats
    scan_items: dict[str, Any] = {k: rep[k] for k in ("status", "started", "finished", "objective", "camera", "port", "autofocus",
                                      "model", "plan", "tiles", "focus_error_um", "autofocus_options",
                                      "tissue_thresholds", "version") if k in rep}
    rows = []
    for t in folder.tiles:
        pos = positions.get(t.index, {})
        timings = t.timings_s
        qc = t.qc or ""
        rows.append(
            "<tr>" + "".join([
                f"<td>{t.index}</td><td>{t.row}</td><td>{t.col}</td>",
                f'<td class="l">{escape(t.image or "(glass)")}</td>',
                f"<td>{_num(t.tissue_fraction, 3)}</td><td>{_num(t.z_um, 2)}</td>",
                f'<td class="l">{escape(t.focus_source or "")}</td>',
                f'<td class="l {escape(qc)}">{escape(qc)}</td>',
                f"<td>{_num(t.focus_error_um, 2)}</td>",
                f"<td>{_num(timings.get('autofocus'), 2)}</td><td>{_num(timings.get('total'), 2)}</td>",
                f"<td>{pos.get('x_px', '')}</td><td>{pos.get('y_px', '')}</td>",
                f"<td>{_num(pos['from_stage_px'][0], 1) if pos else ''}</td><td>{_num(pos['from_stage_px'][1], 1) if pos else ''}</td>",
            ]) + "</tr>"
        )
    head = ("<tr><th>tile</th><th>row</th><th>col</th><th class=l>image</th><th>tissue</th><th>z (um)</th>"
            "<th class=l>focus source</th><th class=l>QC</th><th>focus error (um)</th><th>autofocus (s)</th>"
            "<th>total (s)</th><th>x (px)</th><th>y (px)</th><th>dx stage (px)</th><th>dy stage (px)</th></tr>")
    title = f"Slide {folder.path.name}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
        f'<div class="figs"><figure>{_img(folder, "thumbnail.png", "thumbnail")}<figcaption>Thumbnail (smallest pyramid level)</figcaption></figure>'
        f'<figure>{_img(folder, FOCUS_MAP_PNG, "focus map")}<figcaption>Focus map: stage z per tile, with QC / focus-source marks</figcaption></figure></div>'
        f"<h2>Stitch</h2>{_dl(stitch_items)}<h2>Scan</h2>{_dl(scan_items)}"
        f"<h2>Tiles</h2><table>{head}{''.join(rows)}</table></body></html>\n"
    )


def write_report_html(folder: ScanFolder, summary: dict[str, Any]) -> str:
    write_atomic(folder.path / REPORT_HTML, report_html(folder, summary).encode("utf-8"))
    return REPORT_HTML
