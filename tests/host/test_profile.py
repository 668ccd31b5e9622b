"""The microscope profile (issue 15 item 1): the template, the checks of a profile that
contradicts itself, writing values back with the comments kept, and the order in which
a scan's options are filled: flags, a resumed folder, the profile, the defaults."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from deepaf_host import profile as profiles
from deepaf_host.cli import main
from deepaf_host.errors import OptionError
from deepaf_host.profile import ProfileError
from deepaf_host.scan.options import OPTIONS_FILE, OPTIONS_FORMAT, ScanOptions, resolve_options


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
[microscope]
port = "/dev/ttyACM0"
camera = "1"
low_size = "1280x720"
objective = "40x"

[stage]
travel_mm = [60, 40, 8]
area_mm = [-32, -22, -28, -18]
z_start_um = -4100.0
z_min_um = -7500.0
backlash_um = [0, 0, 3.5]

[scan]
settle_s = 0.5

[objectives.40x]
pixel_size_um = 0.0903
model = "m.tflite"

[objectives."20x/0.75"]
pixel_size_um = 0.1806
"""


def test_init_writes_a_valid_commented_template_and_keeps_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "cfg" / "profile.toml"
    result = CliRunner().invoke(main, ["profile", "init", str(target), "--port", "sim://", "--objective", "10x"])
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert text.count("#") > 20  # every key explained
    p = profiles.load(target)
    assert p.port == "sim://" and p.objective == "10x" and p.camera is None and "10x" in p.objectives
    again = CliRunner().invoke(main, ["profile", "init", str(target)])
    assert again.exit_code == 2 and "already exists" in again.output and target.read_text() == text


def test_a_good_profile_reads_with_units_and_paths(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"x")
    p = profiles.load(write(tmp_path, GOOD))
    assert p.low_size == (1280, 720) and p.area_text == "-32,-22,-28,-18" and p.backlash_um == (0.0, 0.0, 3.5)
    assert p.for_objective(None).pixel_size_um == 0.0903  # the objective in use
    assert p.for_objective("20x").pixel_size_um == 0.1806  # "20x/0.75" names the 20x preset
    assert p.for_objective("40x").model == str(tmp_path / "m.tflite")  # relative to the profile
    assert p.for_objective("10x") is None and p.scan == {"settle_s": 0.5}


@pytest.mark.parametrize(
    ("change", "where", "why"),
    [
        (("z_start_um = -4100.0", "z_start_um = -7600.0"), "[stage] z_start_um", "below z_min_um"),
        (("area_mm = [-32, -22, -28, -18]", "area_mm = [-62, -22, -28, -18]"), "[stage] area_mm", "outside the travel_mm X"),
        (("z_min_um = -7500.0", "z_min_um = -9000.0"), "[stage] z_min_um", "outside the travel_mm Z"),
        (('objective = "40x"', 'objective = "10x"'), "[microscope] objective", "has no [objectives.10x] table"),
        (('objective = "40x"', 'objective = "63x"'), "[microscope] objective", "unknown objective"),
        (('camera = "1"', 'camera = "sim://40x"'), "[microscope] camera", "follows a virtual board"),
        (('low_size = "1280x720"', 'low_size = "1280 by 720"'), "[microscope] low_size", "WIDTHxHEIGHT"),
        (("settle_s = 0.5", "settle = 0.5"), "[scan] settle", "unknown key"),
        (("backlash_um = [0, 0, 3.5]", "backlash_um = [0, 3.5]"), "[stage] backlash_um", "list of 3 numbers"),
        (('model = "m.tflite"', 'model = "gone.tflite"'), "[objectives.40x] model", "does not exist"),
        (("[objectives.\"20x/0.75\"]", "[objectives.20x]\npixel_size_um = 1\n[objectives.\"20x/0.75\"]"), "[objectives.20x/0.75]", "a second table"),
        (("[scan]", "[scans]"), "[scans]", "unknown table"),
        (('objective = "40x"', 'objective = "40x"\nillumination = "ring"'), "[microscope] illumination", "unknown light 'ring'"),
    ],
)
def test_a_profile_that_contradicts_itself_is_refused_naming_the_file_and_key(
    tmp_path: Path, change: tuple[str, str], where: str, why: str
) -> None:
    (tmp_path / "m.tflite").write_bytes(b"x")
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ProfileError) as err:
        profiles.load(path)
    message = str(err.value)
    assert message.startswith("--profile: ") and str(path) in message and where in message and why in message


def test_invalid_toml_and_a_sim_camera_of_another_objective(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not valid TOML"):
        profiles.load(write(tmp_path, "[stage\nz_min_um = 1"))
    text = '[microscope]\nport = "sim://"\ncamera = "sim://20x"\nobjective = "40x"\n'
    with pytest.raises(ProfileError, match=r"\[microscope\] camera: sim://20x renders the 20x objective"):
        profiles.load(write(tmp_path, text))


def test_values_are_written_back_keeping_comments_and_read_back_checked(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    profiles.write_template(path, port="sim://")
    before = path.read_text()
    profiles.update_file(path, {
        ("objectives.20x", "pixel_size_um"): 0.18123, ("stage", "backlash_um"): [1.5, 2.0, 3.25],
        ("objectives.40x", "rotation_deg"): -1.25, ("microscope", "port"): 'sim://x?a="b"',
    })
    text = path.read_text()
    assert "pixel_size_um = 0.18123" in text and "# low-res pixel in the specimen" in text
    assert text.count("\n#") >= before.count("\n#") - 3  # only the uncommented keys lost their '#'
    doc = tomllib.loads(text)
    assert doc["objectives"]["40x"] == {"rotation_deg": -1.25}
    assert doc["microscope"]["port"] == 'sim://x?a="b"' and doc["stage"]["backlash_um"] == [1.5, 2.0, 3.25]
    profiles.update_file(path, {("objectives.20x", "pixel_size_um"): 0.2})
    lines = path.read_text().splitlines()
    assert [ln for ln in lines if ln.startswith("pixel_size_um")] == [next(ln for ln in lines if ln.startswith("pixel_size_um = 0.2 "))]
    with pytest.raises(ProfileError):  # a value that makes the profile contradict itself is not written
        profiles.update_file(path, {("stage", "z_start_um"): -5000.0, ("stage", "z_min_um"): -4000.0})
    assert "z_min_um = -4000" not in path.read_text()


def test_the_default_profile_is_read_only_for_its_own_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert profiles.default_path() == tmp_path / "deepaf" / "profile.toml"
    assert profiles.find(None, "/dev/ttyACM0") is None  # none there
    profiles.write_template(profiles.default_path(), port="/dev/ttyACM0")
    assert profiles.find(None, "/dev/ttyACM0") is not None and profiles.find(None, None) is not None
    assert profiles.find(None, "sim://") is None  # the virtual demo stays the demo
    explicit = write(tmp_path, '[microscope]\nport = "/dev/ttyUSB3"\n')
    assert profiles.find(explicit, "sim://").port == "/dev/ttyUSB3"  # a named profile is always read


def _opts(tmp_path: Path, profile: object, **given: object) -> ScanOptions:
    return resolve_options(ScanOptions(port=str(given.pop("port", "")), out_dir=tmp_path / "scan", profile=profile, **given))  # type: ignore[arg-type]


def test_scan_options_flags_over_profile_over_defaults(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"x")
    p = profiles.load(write(tmp_path, GOOD))
    o = _opts(tmp_path, p)
    assert (o.port, o.camera, o.objective, o.area_mm) == ("/dev/ttyACM0", "1", "40x", "-32,-22,-28,-18")
    assert (o.z_start_um, o.z_min_um, o.settle_s, o.pixel_size_um) == (-4100.0, -7500.0, 0.5, 0.0903)
    assert o.low_size == (1280, 720) and o.model is None  # the model is for single-shot only
    assert o.overlap == 0.1  # not in the profile: the default
    o = _opts(tmp_path, p, objective="20x", z_start_um=-4000.0, settle_s=0.1, autofocus="single-shot")
    assert (o.objective, o.pixel_size_um, o.z_start_um, o.settle_s) == ("20x", 0.1806, -4000.0, 0.1)
    o = _opts(tmp_path, p, objective="40x", autofocus="single-shot")
    assert o.model == str(tmp_path / "m.tflite")
    assert o.illumination is None  # not in the profile: the camera's own (the condenser)
    lit = profiles.load(write(tmp_path, GOOD.replace('objective = "40x"', 'objective = "40x"\nillumination = "off-axis"')))
    assert _opts(tmp_path, lit).illumination == "off-axis"
    assert _opts(tmp_path, lit, illumination="koehler").illumination == "koehler"  # the flag wins


def test_a_virtual_camera_takes_no_pixel_size_and_a_resumed_scan_keeps_its_plan(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"x")
    text = GOOD.replace('port = "/dev/ttyACM0"', 'port = "sim://"').replace('camera = "1"', 'camera = "sim://40x"')
    p = profiles.load(write(tmp_path, text.replace('low_size = "1280x720"\n', "")))
    o = _opts(tmp_path, p)
    assert o.camera == "sim://40x" and o.pixel_size_um is None and o.objective == "40x"
    out = tmp_path / "scan"
    out.mkdir()
    saved = {"area_mm": "-30,-20,-29,-19", "overlap": 0.2, "objective": "40x", "autofocus": "search", "model": None,
             "measure": None, "image_format": "jpg", "pixel_size_um": None, "low_size": None, "high_size": None,
             "camera": "sim://40x", "z_start_um": -3990.0, "z_min_um": None, "max_correction_um": 30.0, "settle_s": 0.2,
             "blank_image": None}
    (out / OPTIONS_FILE).write_text(json.dumps({"format": OPTIONS_FORMAT, "options": saved}))
    o = _opts(tmp_path, p, resume=True)
    assert (o.area_mm, o.z_start_um, o.z_min_um, o.settle_s) == ("-30,-20,-29,-19", -3990.0, None, 0.2)


def test_scan_reads_the_profile_given_and_a_bad_one_is_refused_before_anything(tmp_path: Path) -> None:
    path = write(tmp_path, '[microscope]\nport = "sim://"\ncamera = "sim://20x?low=320x180&high=320x240"\n'
                           '[stage]\nz_start_um = -9000.0\n')
    out = tmp_path / "scan"
    result = CliRunner().invoke(main, ["scan", "--profile", str(path), "--out", str(out)])
    assert result.exit_code == 2 and "--z-start" in result.output and "-9000" in result.output  # the profile's value
    assert not out.exists()
    bad = write(tmp_path, '[stage]\nz_start_um = "low"\n', "bad.toml")
    result = CliRunner().invoke(main, ["scan", "--port", "sim://", "--profile", str(bad), "--out", str(out)])
    assert result.exit_code == 2 and "[stage] z_start_um: must be a number" in result.output


def test_calibrate_and_collect_take_their_microscope_from_flags_then_the_profile(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"x")
    p = profiles.load(write(tmp_path, GOOD))
    s = profiles.resolve_setup(p, need=("z_start_um", "z_min_um", "area_mm"))
    assert (s.port, s.camera, s.objective, s.pixel_size_um, s.area_mm) == ("/dev/ttyACM0", "1", "40x", 0.0903, "-32,-22,-28,-18")
    s = profiles.resolve_setup(p, objective="20x", z_start_um=-4000.0, low_size="640x360")
    assert (s.objective, s.pixel_size_um, s.z_start_um, s.low_size) == ("20x", 0.1806, -4000.0, (640, 360))
    with pytest.raises(OptionError, match="--area: required on a real port"):
        profiles.resolve_setup(None, port="/dev/ttyACM0", z_start_um=-4000.0, z_min_um=-7000.0, need=("area_mm",))
    with pytest.raises(OptionError, match="--port: required"):
        profiles.resolve_setup(None)
    with pytest.raises(OptionError, match="--camera: the virtual camera"):
        profiles.resolve_setup(p, camera="sim://40x")
    s = profiles.resolve_setup(None, port="sim://", camera="sim://10x?low=320x180")
    assert (s.objective, s.z_start_um, s.pixel_size_um) == ("10x", -4000.0, None)  # the virtual slide's defaults


def test_the_profiles_backlash_reaches_the_scans_stage(tmp_path: Path) -> None:
    from deepaf_host.board import VirtualBoard
    from deepaf_host.scan.session import prepare_scan

    board = VirtualBoard(speed="max", name="profile-backlash")
    path = write(tmp_path, '[microscope]\nport = "%s"\ncamera = "sim://20x?low=320x180&high=320x240"\n'
                           '[stage]\nbacklash_um = [1.0, 2.0, 3.5]\n' % board.url)
    with prepare_scan(ScanOptions(port="", profile=profiles.load(path), out_dir=tmp_path / "scan")) as prepared:
        assert prepared.runner.stage.backlash_um == (1.0, 2.0, 3.5)
    assert not (tmp_path / "scan" / "manifest.jsonl").exists()
