"""Pre-flight of ``deepaf-host scan`` on the virtual microscope (issue 13, items 5-6).

Every bad input is refused before the first step with ONE line that names the flag,
exit status 2, the board's motor step counters unchanged and ``--out`` exactly as it
was (not created, no manifest, no report). A scan resumes from its folder without the
options again; ``-v`` logs a line per tile, ``-vv`` the serial traffic, ``--log-file``
keeps them; the exit status says how the scan ended (0, 1, 2, 3, 130).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import CAMERA
from deepaf_host.board import VirtualBoard
from deepaf_host.cli import main
from deepaf_host.errors import ConnectionLost
from deepaf_host.scan import session
from deepaf_host.scan.manifest import MANIFEST, REPORT
from deepaf_host.scan.options import OPTIONS_FILE

#: 3 x 2 tiles of the reduced camera: 3 of tissue, 3 of glass (about 3 s at speed=max).
AREA_MM = "-30.30,-15.92,-29.75,-15.62"


def scan(*args: str) -> Result:
    return CliRunner().invoke(main, ["scan", *args])


def folder_state(path: Path) -> dict[str, str] | None:
    """Every file under ``path`` with a hash of its content (None: no such folder)."""
    if not path.exists():
        return None
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(path.rglob("*"))
    }


def assert_refused(result: Result, *needles: str) -> str:
    """Exit status 2, one line ``Error: ...`` holding every needle, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


REFUSALS: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("z-min-above-z-start", ["--z-min", "0"], ("--z-start", "-4000 um", "--z-min 0 um")),
    ("z-start-above-travel", ["--z-start", "100"], ("--z-start", "100 um is outside the Z travel", "0 um")),
    ("unknown-measure-stack", ["--autofocus", "stack", "--measure", "foo"], ("--measure", "'foo'", "laplacian")),
    ("unknown-measure-search", ["--autofocus", "search", "--measure", "foo"], ("--measure", "'foo'")),
    ("measure-with-single-shot", ["--autofocus", "single-shot", "--measure", "nvar"], ("--measure", "not single-shot")),
    ("model-with-search", ["--autofocus", "search", "--model", "m.tflite"], ("--model", "single-shot")),
    ("negative-settle", ["--settle", "-1"], ("--settle", "-1", "seconds, 0 or more")),
    ("zero-max-correction", ["--max-correction", "0"], ("--max-correction", "um, more than 0")),
    ("overlap", ["--overlap", "0.95"], ("--overlap", "0.95", "below 0.9")),
    ("area-beyond-travel", ["--area", "500,500,501,501"], ("--area", "500,500,501,501 mm", "X -60 to 0 mm, Y -40 to 0 mm")),
    ("area-malformed", ["--area", "1,2,3"], ("--area", "X0,Y0,X1,Y1 in mm")),
    ("area-empty", ["--area", "-30,-15,-30,-14"], ("--area", "no extent")),
    ("low-size-malformed", ["--low-size", "big"], ("--low-size", "WIDTHxHEIGHT")),
    ("low-size-against-url", ["--low-size", "1280x720"], ("--low-size", "1280x720", "low=640x360")),
    ("pixel-size-virtual", ["--pixel-size-um", "0.2"], ("--pixel-size-um", "OpenCV cameras")),
    ("objective-against-url", ["--objective", "10x"], ("--objective", "10x", "sim://20x")),
    ("single-shot-pixel-scale", ["--autofocus", "single-shot"], ("--model", "um/pixel", "at most 10%", "--low-size")),
    ("no-home-unhomed", ["--no-home"], ("--no-home", "not homed")),
    ("illumination-unknown", ["--illumination", "ring"], ("--illumination", "unknown light 'ring'", "off-axis")),
    ("resume-nothing", ["--resume"], ("--resume", "holds no scan")),
]


@pytest.mark.parametrize(("args", "needles"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_bad_input_is_one_line_exit_2_no_motion_and_out_untouched(
    board: VirtualBoard, tmp_path: Path, args: list[str], needles: tuple[str, ...]
) -> None:
    out = tmp_path / "slide" / "o"
    steps = board.motor_steps()
    result = scan("--port", board.url, "--camera", CAMERA, "--out", str(out), *args)
    assert_refused(result, *needles)
    assert board.motor_steps() == steps  # not a single step
    assert not (tmp_path / "slide").exists()  # the folders pre-flight created are gone again


def test_a_used_folder_is_refused_and_left_as_it_was(board: VirtualBoard, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / MANIFEST).write_text('{"tile": 0}\n')
    (out / "notes.txt").write_text("mine")
    before = folder_state(out)
    steps = board.motor_steps()
    assert_refused(scan("--port", board.url, "--camera", CAMERA, "--out", str(out)), "--out", "--resume")
    assert folder_state(out) == before and board.motor_steps() == steps


@pytest.mark.parametrize("where", ["proc", "under-a-file", "a-file", "read-only"])
def test_an_out_that_cannot_be_written_is_refused(board: VirtualBoard, tmp_path: Path, where: str) -> None:
    if where == "proc":
        out = Path("/proc/sub")
    elif where == "under-a-file":
        (tmp_path / "f").write_text("")
        out = tmp_path / "f" / "sub"
    elif where == "a-file":
        out = tmp_path / "f"
        out.write_text("x")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "ro").mkdir(mode=0o500)
        out = tmp_path / "ro" / "sub"
    before = folder_state(tmp_path)
    steps = board.motor_steps()
    line = assert_refused(scan("--port", board.url, "--camera", CAMERA, "--out", str(out)), "--out", str(out))
    assert "Traceback" not in line
    assert folder_state(tmp_path) == before and board.motor_steps() == steps


@pytest.mark.parametrize(
    ("missing", "given"),
    [
        ("--area", ["--z-start", "-4100", "--z-min", "-7500"]),
        ("--z-start", ["--area", "-32,-22,-28,-18", "--z-min", "-7500"]),
        ("--z-min", ["--area", "-32,-22,-28,-18", "--z-start", "-4100"]),
    ],
)
def test_a_real_port_needs_area_z_start_and_z_min(tmp_path: Path, missing: str, given: list[str]) -> None:
    out = tmp_path / "o"
    result = scan("--port", "/dev/ttyDEEPAF-NONE", "--camera", "/dev/video-none", "--out", str(out), *given)
    assert_refused(result, missing, "required on a real port", "/dev/ttyDEEPAF-NONE")
    assert not out.exists()


def test_a_real_port_with_them_goes_on_to_open_its_devices(tmp_path: Path) -> None:
    out = tmp_path / "o"
    result = scan(
        "--port", "/dev/ttyDEEPAF-NONE", "--camera", "/dev/video-none", "--out", str(out),
        "--area", "-32,-22,-28,-18", "--z-start", "-4100", "--z-min", "-7500",
    )
    assert_refused(result, "--camera", "no such device or file")
    assert not out.exists()


def test_virtual_defaults_only_on_sim_ports() -> None:
    real = session.resolve_options(
        session.ScanOptions(port="/dev/ttyACM0", out_dir=Path("x"), area_mm="-32,-22,-28,-18", z_start_um=-4100, z_min_um=-7500)
    )
    assert (real.z_start_um, real.z_min_um, real.area_mm) == (-4100, -7500, "-32,-22,-28,-18")
    virtual = session.resolve_options(session.ScanOptions(port="sim://", out_dir=Path("x")))
    assert virtual.z_start_um == session.VIRTUAL_Z_START_UM and virtual.z_min_um is None
    assert virtual.area_mm is not None


# --- a scan, its resume, its logs -------------------------------------------------------


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One complete scan with -v and a log file inside --out."""
    board = VirtualBoard(speed="max", name="preflight-scan")
    out = tmp_path_factory.mktemp("scan") / "slide"
    result = scan(
        "--port", board.url, "--camera", CAMERA, "--out", str(out), "--area", AREA_MM, "--autofocus", "stack",
        "--settle", "0.1", "-v", "--log-file", str(out / "scan.log"),
    )
    return out, result


def test_a_scan_saves_its_options_and_logs_one_line_per_tile(scanned: tuple[Path, Result]) -> None:
    out, result = scanned
    assert result.exit_code == 0, result.output
    saved = json.loads((out / OPTIONS_FILE).read_text())["options"]
    assert saved["area_mm"] == AREA_MM and saved["camera"] == CAMERA and saved["settle_s"] == 0.1
    assert saved["autofocus"] == "stack" and saved["z_start_um"] == -4000.0
    records = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    log_lines = (out / "scan.log").read_text().splitlines()
    tile_lines = [line for line in log_lines if "deepaf_host.scan.tiles: tile " in line]
    assert len(tile_lines) == len(records) == 6
    for rec, line in zip(records, tile_lines):
        assert f"tile {rec['tile']} (row {rec['row']}, col {rec['col']})" in line
        if rec["empty"]:
            assert "empty glass" in line
        else:
            assert f"z {rec['z_um']:.2f} um by {rec['focus_source']}" in line and "stack 13 frames ok" in line
    # -v: the same lines on the console
    assert sum("deepaf_host.scan.tiles: tile " in line for line in result.output.splitlines()) == 6
    assert " TX " not in (out / "scan.log").read_text()  # serial traffic only with -vv


def test_resume_takes_the_plan_from_the_folder(board: VirtualBoard, scanned: tuple[Path, Result]) -> None:
    out, _ = scanned
    result = scan("--port", board.url, "--out", str(out), "--resume")  # no --area, no --camera
    assert result.exit_code == 0, result.output
    report = json.loads((out / REPORT).read_text())
    assert report["tiles"]["this_run"] == 0 and report["tiles"]["done"] == 6
    assert report["plan"]["area_mm"] == [-30.3, -15.92, -29.75, -15.62]


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--area", "-30.3,-15.9,-29.7,-15.6"], "--area"), (["--overlap", "0.2"], "--overlap"),
     (["--autofocus", "search"], "--autofocus"), (["--format", "png"], "--format")],
)
def test_resume_refuses_a_different_plan_naming_the_flag(
    board: VirtualBoard, scanned: tuple[Path, Result], args: list[str], flag: str
) -> None:
    out, _ = scanned
    before = folder_state(out)
    steps = board.motor_steps()
    line = assert_refused(scan("--port", board.url, "--out", str(out), "--resume", *args), flag, "differs from the scan being resumed")
    assert "{" not in line  # not a raw dict
    assert folder_state(out) == before and board.motor_steps() == steps


def test_vv_logs_the_serial_traffic(board: VirtualBoard, tmp_path: Path) -> None:
    log_file = tmp_path / "scan.log"  # outside --out: opened at once, and holds the refusal too
    result = scan("--port", board.url, "--camera", CAMERA, "--out", str(tmp_path / "o"), "--no-home", "-vv", "--log-file", str(log_file))
    assert result.exit_code == 2
    text = log_file.read_text()
    assert " TX b'\\n$I\\n'" in text and " RX '<Alarm|" in text
    assert "scan refused: --no-home" in text
    assert not (tmp_path / "o").exists()


def test_a_refused_scan_with_a_log_file_inside_out_leaves_out_alone(board: VirtualBoard, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert_refused(scan("--port", board.url, "--camera", CAMERA, "--out", str(out), "--settle", "-2", "--log-file", str(out / "scan.log")), "--settle")
    assert not out.exists()


# --- exit status of a scan that started ------------------------------------------------


def _fake_run(outcome: Any) -> Any:
    def run(self: session.PreparedScan) -> dict[str, Any]:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run


def _report(status: str, qc: dict[str, Any] | None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "status": status, "tiles": {"imaged": 12, "empty": 0, "autofocus_failed": 0, "done": 12, "planned": 12},
        "time_s": {"per_mm2": None},
    }
    if qc is not None:
        report["qc"] = qc
    return report


SUSPECTS = [{"tile": i, "row": i // 4, "col": i % 4, "verdict": "suspect", "reason": f"detail {i}"} for i in range(12)]


@pytest.mark.parametrize(
    ("outcome", "code", "needles"),
    [
        (_report("complete", None), 0, ["done: 12 tiles imaged"]),
        (_report("complete", {"ok": 12, "suspect": 0, "failed": 0, "suspect_tiles": []}), 0, ["12 ok, 0 suspect"]),
        (_report("complete_with_defects", {"ok": 0, "suspect": 12, "failed": 0, "suspect_tiles": SUSPECTS}), 3,
         ["12 tiles did not pass focus QC", "tile 9 (row 2, col 1) suspect: detail 9", "and 2 more"]),
        (ConnectionLost("sim://x", "unplugged"), 1, ["scan failed: connection to 'sim://x' lost: unplugged", "--resume"]),
        (RuntimeError("disk on fire"), 1, ["scan failed: RuntimeError: disk on fire"]),
        (KeyboardInterrupt(), 130, ["interrupted", "--resume"]),
    ],
    ids=["complete", "complete-qc", "defects", "lost-board", "unexpected", "ctrl-c"],
)
def test_exit_status_of_a_scan_that_started(
    board: VirtualBoard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: Any, code: int, needles: list[str]
) -> None:
    monkeypatch.setattr(session.PreparedScan, "run", _fake_run(outcome))
    # --no-stitch: the stubbed scan leaves no tiles to stitch.
    result = scan("--port", board.url, "--camera", CAMERA, "--out", str(tmp_path / "o"), "--no-stitch")
    assert result.exit_code == code, result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, (needle, result.output)
    assert "Traceback" not in result.output
    if code == 3:
        assert "tile 10 (row" not in text  # the first 10 are listed, the rest counted


@pytest.mark.parametrize(("camera", "model", "needle"), [
    ("sim://20x", "deepaf-fcfnn-offaxis-20x.tflite", "trained under off-axis illumination, the scan is lit by koehler"),
    ("sim://20x?illumination=off-axis", "deepaf-spatiospectral-20x.tflite", "trained under koehler illumination, the scan is lit by off-axis"),
])
def test_a_model_is_refused_under_other_light(board: VirtualBoard, tmp_path: Path, camera: str, model: str, needle: str) -> None:
    """Seed 001's model reads the Fourier pattern of one LED: under the condenser it reads
    nothing (and the condenser model nothing under the LED); refused before any motion."""
    from deepaf_host.model.runtime import default_model_path

    steps = board.motor_steps()
    result = scan("--port", board.url, "--camera", camera, "--out", str(tmp_path / "o"), "--autofocus", "single-shot",
                  "--model", str(default_model_path().parent / model))
    assert_refused(result, "--model", needle, "illumination=")
    assert board.motor_steps() == steps and not (tmp_path / "o").exists()


def test_the_light_goes_into_the_virtual_camera_and_a_contradiction_is_refused(board: VirtualBoard, tmp_path: Path) -> None:
    assert session._virtual_camera_url("sim://20x", "20x", None, None, "off-axis") == "sim://20x?illumination=off-axis"
    assert session._virtual_camera_url("sim://20x?illumination=off-axis", "20x", None, None, "off-axis") == (
        "sim://20x?illumination=off-axis")
    steps = board.motor_steps()
    result = scan("--port", board.url, "--camera", "sim://20x?illumination=off-axis", "--out", str(tmp_path / "o"),
                  "--illumination", "koehler")
    assert_refused(result, "--illumination", "koehler differs from the virtual camera's illumination=off-axis")
    assert board.motor_steps() == steps


def test_a_scan_focused_under_an_led_is_never_called_complete(board: VirtualBoard, tmp_path: Path) -> None:
    """The checks look at frames under the LED, whose sharpest plane is not the condenser
    image's: every focused tile stays suspect (exit 3), and nothing is refocused under
    the same light."""
    out = tmp_path / "o"
    result = scan("--port", board.url, "--camera", CAMERA + "&illumination=off-axis", "--out", str(out),
                  "--area", AREA_MM, "--no-stitch")
    assert result.exit_code == 3, result.output
    report = json.loads((out / REPORT).read_text())
    assert report["status"] == "complete_with_defects"
    lines = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    focused = [r for r in lines if r.get("focus_source") == "autofocus"]
    assert focused and all(r["qc"]["verdict"] != "ok" for r in focused)
    assert all("under off-axis light" in r["qc"]["reason"] for r in focused if r["qc"]["verdict"] == "suspect")
    assert not any(r.get("refocus") for r in focused)
