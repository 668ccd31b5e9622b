"""The CLI's errors and the scan's summary, log lines and listeners (issue 13, items 5-6):
bad input is one line and exit status 2, errors name the flag, a scan's end maps to
its documented exit status, a listener that raises never silences the others."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from deepaf_host.cli import LazyGroup, main
from deepaf_host.cli.scan import EXIT_DEFECTS, refusal_message, summarize
from deepaf_host.errors import ConfigError, FirmwareError, OptionError, PortUnavailable, StageLimitError
from deepaf_host.model import evaluate as evaluate_module
from deepaf_host.scan.listeners import Listeners, TileLogger, tile_line
from rich.console import Console


def one_line(result: Any) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_eval_out_in_proc_is_refused_before_evaluating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(evaluate_module, "evaluate_stack_reference", lambda *a, **k: ran.append("stack") or {})
    monkeypatch.setattr(evaluate_module, "evaluate_model", lambda *a, **k: ran.append("model") or {})
    for model in ("stack", None):
        args = ["eval", "--data", str(tmp_path), "--out", "/proc/x.json"] + (["--model", model] if model else [])
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "--out" in one_line(result) and "/proc/x.json" in one_line(result)
    assert ran == []


def test_a_click_usage_error_is_one_line_with_exit_status_2() -> None:
    result = CliRunner().invoke(main, ["scan", "--port", "sim://", "--out", "x", "--overlap", "lots"])
    assert result.exit_code == 2
    line = one_line(result)
    assert "'--overlap'" in line and "'lots'" in line and "scan --help" in line
    result = CliRunner().invoke(main, ["scan", "--out", "x"])
    assert result.exit_code == 2 and "Missing option '--port'" in one_line(result)


@pytest.mark.parametrize(
    ("error", "code"),
    [(ConfigError("key", "bad value"), 2), (FirmwareError(9, "G0 X1"), 1)],
)
def test_typed_errors_of_any_command_are_one_line(monkeypatch: pytest.MonkeyPatch, error: Exception, code: int) -> None:
    @click.command("boom")
    def boom() -> None:
        raise error

    monkeypatch.setattr(LazyGroup, "get_command", lambda self, ctx, name: boom)
    result = CliRunner().invoke(main, ["boom"])
    assert result.exit_code == code
    assert str(error) in one_line(result)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (OptionError("--settle", "-1 is out of range"), "--settle: -1 is out of range"),
        (ConfigError("settle_s", "must not be negative"), "--settle: must not be negative"),
        (ConfigError("max_correction_um", "must be positive, got 0.0"), "--max-correction: must be positive, got 0.0"),
        (ConfigError("focus_measure", "unknown measure 'foo'"), "--measure: unknown measure 'foo'"),
        (ConfigError("mystery", "odd"), "configuration 'mystery': odd"),
        (StageLimitError("z", -4000.0, 0.0, reason="z safety (scan start z)"), "--z-start: z = -4000.00 um"),
        (StageLimitError("x", 500.0, 0.0), "--area: x = 500.00 um"),
        (PortUnavailable("/dev/ttyX", "no such file"), "--port: cannot open port '/dev/ttyX'"),
    ],
)
def test_refusals_name_the_flag(error: Exception, message: str) -> None:
    assert refusal_message(error).startswith(message)


def _report(status: str, qc: dict[str, Any] | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"status": status, "tiles": {"imaged": 3, "empty": 1, "autofocus_failed": 0}, "time_s": {}}
    if qc is not None:
        report["qc"] = qc
    return report


def _summary(report: dict[str, Any]) -> tuple[int, str]:
    console = Console(record=True, width=200, file=io.StringIO())
    code = summarize(console, report, Path("out"))
    return code, console.export_text()


def test_summary_exit_status() -> None:
    assert _summary(_report("complete"))[0] == 0  # no qc at all (older runner): tolerated
    assert _summary(_report("failed"))[0] == 1
    assert _summary(_report("interrupted"))[0] == 130
    suspects = [{"tile": i, "row": 0, "col": i, "reason": f"why {i}"} for i in range(11)]
    code, text = _summary(_report("complete_with_defects", {"ok": 2, "suspect": 10, "failed": 1, "suspect_tiles": suspects}))
    assert code == EXIT_DEFECTS == 3
    assert "2 ok, 10 suspect, 1 failed" in text and "11 tiles did not pass focus QC" in text
    assert "tile 9 (row 0, col 9) suspect: why 9" in text and "tile 10 " not in text and "and 1 more" in text


def test_tile_line_holds_what_an_operator_needs() -> None:
    record = {
        "tile": 7, "row": 1, "col": 3, "tissue_fraction": 0.4123, "empty": False, "z_um": -4012.3456,
        "focus_source": "autofocus", "initial_focus": {"windows": [{"frames": 25, "ok": False}, {"frames": 25, "ok": True}]},
        "autofocus": {"strategy": "search", "frames": 8, "ok": True, "reason": ""},
        "qc": {"verdict": "suspect", "reason": "detail 0.3 of the neighbours'"},
    }
    assert tile_line(record) == (
        "tile 7 (row 1, col 3), tissue 41%, initial focus 2 windows 50 frames ok, search 8 frames ok, "
        "z -4012.35 um by autofocus, qc suspect (detail 0.3 of the neighbours')"
    )
    empty = {"tile": 0, "row": 0, "col": 0, "tissue_fraction": 0.001, "empty": True, "focus_error_um": 3.0}
    assert tile_line(empty) == "tile 0 (row 0, col 0), tissue 0%, empty glass, skipped"


class Broken:
    def tile_finished(self, tile: Any, record: dict[str, Any]) -> None:
        raise RuntimeError("progress bar broke")


def test_a_listener_that_raises_does_not_silence_the_others(caplog: pytest.LogCaptureFixture) -> None:
    record = {"tile": 2, "row": 0, "col": 2, "tissue_fraction": 0.5, "empty": False, "z_um": -4000.0,
              "focus_source": "neighbour", "autofocus": {"strategy": "stack", "frames": 13, "ok": False, "reason": "no peak"}}
    with caplog.at_level(logging.INFO, logger="deepaf_host"):
        Listeners(Broken(), TileLogger()).tile_finished(None, record)
    failures = [r for r in caplog.records if "failed (ignored)" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    tiles = [r for r in caplog.records if r.name == "deepaf_host.scan.tiles"]
    assert len(tiles) == 1 and tiles[0].levelno == logging.WARNING  # a failed autofocus is seen without -v
    assert "stack 13 frames failed (no peak)" in tiles[0].getMessage()
