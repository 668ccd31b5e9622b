"""The live page's API on the virtual microscope: who may change what, and that a
refused request moves nothing (the virtual board's motor step counters are the judge)."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deepaf_host import codes
from deepaf_host.serve.app import SERVER

from .servelive import TISSUE_UM, Live


def _home(live: Live, client: str = "a", token: str | None = None) -> None:
    assert live.call("POST", "/api/control", {"action": "claim"}, client=client, token=token)[0] == 200
    status, body = live.call("POST", "/api/home", client=client, token=token)
    assert status == 200, body


def _settled(live: Live) -> tuple[int, int, int]:
    live.microscope.stage.wait_idle()
    return live.board.motor_steps()


def test_jog_moves_by_the_step_and_the_readout_follows(live: Live) -> None:
    _home(live)
    before = live.state()["microscope"]["position_um"]
    status, body = live.call("POST", "/api/jog", {"dx_um": -250, "dz_um": -12.5})
    assert status == 200, body
    live.microscope.stage.wait_idle()
    after = live.state()["microscope"]["position_um"]
    assert after == {"x": before["x"] - 250, "y": before["y"], "z": before["z"] - 12.5}


@pytest.mark.parametrize("body, status", [
    ({"dx_um": 1500.0}, 422),  # homing pulls off 1 mm below the top of the travel: +1.5 mm leaves it
    ({"dz_um": 1000.5}, 422),  # Z likewise
    ({"dy_um": -50000.0}, 422),  # beyond the largest jog
    ({"dx_um": "10"}, 400),  # a string
    ({"dx_um": True}, 400),  # a boolean is not a number
    ({"dx_um": 10, "speed": 5}, 400),  # an unknown field
    ({}, 400),  # nothing to do
])
def test_refused_jog_moves_nothing(live: Live, body: dict, status: int) -> None:
    _home(live)
    steps = _settled(live)
    code, reply = live.call("POST", "/api/jog", body)
    assert code == status, reply
    assert "error" in reply
    assert _settled(live) == steps


def test_malformed_posts_are_4xx_and_move_nothing(live: Live) -> None:
    _home(live)
    steps = _settled(live)
    assert live.call("POST", "/api/jog", raw=b"{not json")[0] == 400
    assert live.call("POST", "/api/jog", raw=b'{"dx_um": NaN}')[0] == 400
    assert live.call("POST", "/api/jog", raw=b"[1, 2]")[0] == 400
    assert live.call("POST", "/api/jog", {"dx_um": -10}, content_type="text/plain")[0] == 415  # a cross-site form
    assert live.call("POST", "/api/jog", {"dx_um": -10}, extra={"Origin": "http://evil.example"})[0] == 403
    assert live.call("POST", "/api/jog", {"dx_um": -10}, client=None)[0] == 400
    assert live.call("POST", "/api/move", {"z_um": -9000})[0] == 422
    assert live.call("POST", "/api/autofocus", {"strategy": "guess"})[0] == 400
    assert live.call("POST", "/api/scan/start", {"name": "../up"})[0] == 400
    assert live.call("POST", "/api/scan/start", {"name": "a", "area_mm": "1,2"})[0] == 400
    assert _settled(live) == steps
    assert not any((live.app[SERVER].config.out_root.parent / "up").exists() for _ in [0])


def test_z_safety_limit_refuses_before_anything_moves(live_token: Live) -> None:
    live = live_token
    t = live.token
    _home(live, token=t)
    assert live.call("POST", "/api/move", {"z_um": -5990}, token=t)[0] == 200
    steps = _settled(live)
    status, body = live.call("POST", "/api/jog", {"dz_um": -20}, token=t)
    assert status == 422 and body["reason"] == "z safety" and body["limit_um"] == -6000
    assert _settled(live) == steps


def test_token_required_on_every_call_and_the_stream(live_token: Live) -> None:
    live = live_token
    steps = _settled(live)
    for token in (None, "wrong", live.token + "x"):
        assert live.call("GET", "/api/state", token=token)[0] == 401
        assert live.call("POST", "/api/control", {"action": "claim"}, token=token)[0] == 401
        assert live.call("POST", "/api/home", token=token)[0] == 401
        assert live.call("POST", "/api/jog", {"dx_um": -100}, token=token)[0] == 401
        assert live.call("POST", "/api/unlock", token=token)[0] == 401
        assert live.call("GET", "/stream.mjpg", token=token)[0] == 401
        assert live.call("GET", "/api/slides", token=token)[0] == 401
        assert live.call("POST", "/api/autofocus", {"strategy": "search"}, token=token)[0] == 401
        assert live.call("POST", "/api/scan/start", {"name": "intruder"}, token=token)[0] == 401
        assert live.call("POST", "/api/reconnect", token=token)[0] == 401
    assert _settled(live) == steps
    assert list(live.app[SERVER].config.out_root.iterdir()) == [] and live.app[SERVER].scan is None
    assert live.app[SERVER].autofocus is None
    assert live.state(token=live.token)["microscope"]["locked"]  # no unlock got through
    assert live.app[SERVER].access.controller is None
    # the token in the URL, as the printed link carries it
    with urllib.request.urlopen(f"{live.url}/stream.mjpg?token={live.token}", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        assert b"Content-Type: image/jpeg" in r.read(4000)


def test_one_controller_others_read_only(live: Live) -> None:
    _home(live, client="a")
    steps = _settled(live)
    assert live.call("POST", "/api/control", {"action": "claim"}, client="b")[0] == 409
    for path, body in (("/api/jog", {"dx_um": -100}), ("/api/home", {}), ("/api/unlock", {}),
                       ("/api/autofocus", {}), ("/api/scan/start", {"name": "x"})):
        status, reply = live.call("POST", path, body, client="b")
        assert status == 409 and "read-only" in reply["error"]
    assert _settled(live) == steps
    viewer = live.state(client="b")
    assert viewer["control"] == {"you": False, "held": True}
    assert viewer["microscope"]["position_um"] == live.state(client="a")["microscope"]["position_um"]
    assert live.state(client="a")["control"]["you"]
    assert live.call("POST", "/api/control", {"action": "release"}, client="a")[0] == 200
    assert live.call("POST", "/api/control", {"action": "claim"}, client="b")[0] == 200
    assert live.call("POST", "/api/jog", {"dx_um": -100}, client="b")[0] == 200
    assert live.call("POST", "/api/jog", {"dx_um": -100}, client="a")[0] == 409


def test_slide_files_only_from_under_the_output_root(live: Live, tmp_path: Path) -> None:
    root = live.app[SERVER].config.out_root
    (root / "s1").mkdir()
    (root / "s1" / "report.json").write_text('{"status": "complete"}')
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "report.json").write_text('{"secret": 1}')
    os.symlink(secret, root / "link")
    assert live.call("GET", "/slides/s1/report.json")[0] == 200
    for path in ("/slides/..%2Fsecret/report.json", "/slides/%2e%2e/secret/report.json", "/slides/link/report.json",
                 "/slides/s1/..%2F..%2Fsecret%2Freport.json", "/slides/s1/manifest.jsonl", "/slides/..%2F..%2F..%2Fetc/passwd",
                 "/slides/s1/tile/0/0/0.jpg", "/slides/s1/tile/x/0/0.jpg", "/static/..%2F..%2Fapp.py"):
        status, body = live.call("GET", path)
        assert status in (400, 403, 404), (path, status)
        assert b"secret" not in (body if isinstance(body, bytes) else str(body).encode())
    names = [s["name"] for s in live.call("GET", "/api/slides")[1]["slides"]]
    assert names == ["s1"]


def test_lost_board_shown_and_recovered(live: Live) -> None:
    _home(live)
    live.microscope.stage.connection.serial.inject_disconnect()
    state = live.state()["microscope"]
    assert state["connected"] is False and "ConnectionLost" in state["error"]
    assert live.call("POST", "/api/jog", {"dx_um": -100})[0] == 409
    status, body = live.call("POST", "/api/reconnect")
    assert status == 200, body
    state = live.state()["microscope"]
    assert state["connected"] and state["position_um"] is not None


def test_autofocus_finds_focus_and_reports_it(live: Live) -> None:
    _home(live)
    assert live.call("POST", "/api/move", TISSUE_UM)[0] == 200
    status, result = live.call("POST", "/api/autofocus", {"strategy": "search"})
    assert status == 200, result
    assert result["ok"] and result["strategy"] == "search" and result["frames"] > 2
    true_z = live.microscope.camera.true_focus_z_um(TISSUE_UM["x_um"], TISSUE_UM["y_um"])
    assert abs(result["z_um"] - true_z) < 3.0
    assert live.state()["autofocus"]["z_um"] == result["z_um"]


def test_jog_during_autofocus_is_refused_not_queued(live: Live) -> None:
    _home(live)
    assert live.call("POST", "/api/move", TISSUE_UM)[0] == 200
    live.app[SERVER].busy = "autofocus"  # as while one runs
    steps = _settled(live)
    status, body = live.call("POST", "/api/jog", {"dx_um": -100})
    assert status == 409 and "autofocus" in body["error"]
    assert live.call("POST", "/api/autofocus", {})[0] == 409
    assert _settled(live) == steps
    live.app[SERVER].busy = None


def test_scan_stops_from_the_page_and_hands_the_board_back(live: Live) -> None:
    _home(live)
    status, job = live.call("POST", "/api/scan/start", {"name": "stopme"})
    assert status == 202, job
    deadline = time.monotonic() + 30
    while live.state()["scan"]["done"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.call("POST", "/api/scan/stop")[0] == 200
    while live.state()["scan"]["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    scan = live.state()["scan"]
    assert scan["status"] == "interrupted", scan
    assert 1 <= scan["done"] < scan["plan"]["tiles"]
    assert live.state()["microscope"]["connected"]
    done = scan["done"]

    # the folder is used: a new scan there is refused (and the board handed back) ...
    assert live.call("POST", "/api/scan/start", {"name": "stopme"})[0] == 202
    while live.state()["scan"]["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    scan = live.state()["scan"]
    assert scan["status"] == "refused" and "--resume" in scan["error"], scan
    assert live.state()["microscope"]["connected"]
    # ... resuming finishes it without imaging the done tiles again
    assert live.call("POST", "/api/scan/start", {"name": "stopme", "resume": True})[0] == 202
    while live.state()["scan"]["active"] and time.monotonic() < deadline + 30:
        time.sleep(0.05)
    scan = live.state()["scan"]
    assert scan["status"].startswith("complete"), scan
    assert scan["done"] == scan["plan"]["tiles"]
    manifest = (live.app[SERVER].config.out_root / "stopme" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == scan["plan"]["tiles"] > done


def test_readout_after_a_scan_is_where_the_scan_left_the_stage(live: Live) -> None:
    """The scan runs on the page's connection: the board is not reset by a reopened port
    (which zeroed its position: the readout said 0, 0, 0 after every scan)."""
    _home(live)
    assert live.call("POST", "/api/scan/start", {"name": "where"})[0] == 202
    deadline = time.monotonic() + 60
    while live.state()["scan"]["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    scan = live.state()["scan"]
    assert scan["status"].startswith("complete"), scan
    state = live.state()["microscope"]
    assert state["connected"] and not state["locked"], state  # still homed: no reset
    true_um = live.board.true_position_um()
    shown = state["position_um"]
    assert [abs(shown[a] - t) < 0.5 for a, t in zip("xyz", true_um)] == [True] * 3, (shown, true_um)
    # parked over the last tile of the area (-30.20..-29.95 mm, -15.80..-15.60 mm), Z lifted
    assert -30300 < shown["x"] < -29850 and -15900 < shown["y"] < -15500, shown
    # and the page drives the board from there without homing again
    assert live.call("POST", "/api/jog", {"dx_um": -100})[0] == 200
    live.microscope.stage.wait_idle()
    assert live.state()["microscope"]["position_um"]["x"] == round(shown["x"] - 100, 1)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(result=fn()), daemon=True)
    thread.start()
    return thread, box


def _wait(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_stop_during_homing_ends_it_and_leaves_the_board_locked_and_still(live_slow: Live) -> None:
    live = live_slow
    server = live.app[SERVER]
    assert live.call("POST", "/api/control", {"action": "claim"})[0] == 200
    thread, box = _in_thread(lambda: live.call("POST", "/api/home"))
    _wait(lambda: server.busy == "home" and live.board.state() == "Home")
    time.sleep(0.3)  # the first axis is on its way to the switch
    status, body = live.call("POST", "/api/stop")
    assert status == 200 and body["stopped"] == "home", body
    thread.join(10)
    status, reply = box["result"]
    assert status == 409 and reply["stopped"] == "home" and "locked" in reply["error"], reply
    # the homing did not go on: alarm 6 (homing reset), locked, nothing moving
    assert live.board.state() == "Alarm" and live.microscope.connection.last_alarm == codes.alarm_number("HOMING_FAIL_RESET")
    state = live.state()
    assert state["busy"] is None and state["microscope"]["locked"] and not state["microscope"]["homed"]
    steps = live.board.motor_steps()
    time.sleep(0.3)
    assert live.board.motor_steps() == steps
    # the connection is in step with the board afterwards: unlock, move (Z went up from
    # the boot's 0 towards its switch: the position is not known, as after any stopped homing)
    assert live.call("POST", "/api/unlock")[0] == 200
    assert live.call("POST", "/api/move", {"z_um": -200})[0] == 200, live.state()
    live.microscope.stage.wait_idle()
    assert live.state()["microscope"]["position_um"]["z"] == -200


def test_stop_during_autofocus_ends_it_at_the_next_frame(live_slow: Live) -> None:
    live = live_slow
    server = live.app[SERVER]
    _home(live)
    assert live.call("POST", "/api/move", TISSUE_UM)[0] == 200
    live.microscope.stage.wait_idle()
    first = live.microscope.latest()
    seq0 = first.seq if first is not None else 0
    thread, box = _in_thread(lambda: live.call("POST", "/api/autofocus", {"strategy": "search"}))

    def frames() -> int:
        latest = live.microscope.latest()
        return 0 if latest is None else latest.seq - seq0

    _wait(lambda: server.busy == "autofocus" and frames() >= 2)
    status, body = live.call("POST", "/api/stop")
    assert status == 200 and body["stopped"] == "autofocus", body
    thread.join(10)
    status, result = box["result"]
    assert status == 200, result
    # a whole search takes 9 frames here; it stopped at the next one
    assert not result["ok"] and result["reason"] == "stopped from the page" and 2 <= result["frames"] < 9, result
    state = live.state()
    assert state["busy"] is None and state["autofocus"]["reason"] == "stopped from the page"
    board = state["microscope"]
    assert board["state"] == "Idle" and not board["locked"], board  # the position is kept: no alarm
    assert abs(board["position_um"]["z"] - result["z_um"]) < 0.1
    steps = live.board.motor_steps()
    time.sleep(0.3)
    assert live.board.motor_steps() == steps
    # nothing left over: the live view grabs again, and a new autofocus runs to the end
    assert live.microscope.camera is not None and not live.microscope.camera.stop_requested
    status, again = live.call("POST", "/api/autofocus", {"strategy": "search"})
    assert status == 200 and again["ok"], again["reason"]


def test_the_page_loads_nothing_from_elsewhere(live: Live) -> None:
    """OpenSeadragon is vendored in the package (no CDN): every script and stylesheet of the
    page is served by the page's own server."""
    status, html = live.call("GET", "/")
    assert status == 200
    text = html.decode()
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert '<script src="/static/openseadragon.min.js">' in text
    status, js = live.call("GET", "/static/openseadragon.min.js")
    assert status == 200 and js.startswith(b"//! openseadragon 6.1.1")
    status, license_text = live.call("GET", "/static/openseadragon.LICENSE.txt")
    assert status == 200 and b"Redistribution and use in source and binary forms" in license_text
