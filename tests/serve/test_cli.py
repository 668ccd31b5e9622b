"""``deepaf-host serve`` as a user starts it: loopback without a token, any other
address with one printed in the URL and required."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from deepaf_host.cli import main
from deepaf_host.serve.access import is_loopback

pytest.importorskip("aiohttp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(tmp_path: Path, listen: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-c", "from deepaf_host.cli import main; main()", "serve", "--port", "sim://?speed=max", "--camera",
           "sim://20x?low=320x180", "--listen", listen, "--out", str(tmp_path / "scans")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "DeepAf live page:" in line:
            return proc, line.split("DeepAf live page:", 1)[1].split()[0]
        if not line and proc.poll() is not None:
            break
    output = proc.stdout.read() if proc.poll() is not None else ""
    proc.kill()
    _stop(proc)
    raise AssertionError(f"serve did not start: {output}")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(20)
    if proc.stdout is not None:
        proc.stdout.close()


def _get(url: str) -> int:
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                json.loads(r.read())
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except urllib.error.URLError:
            time.sleep(0.1)  # not listening yet
    raise AssertionError(f"nothing answers at {url}")


def test_loopback_needs_no_token(tmp_path: Path) -> None:
    port = _free_port()
    proc, url = _start(tmp_path, f"127.0.0.1:{port}")
    try:
        assert url == f"http://127.0.0.1:{port}/"
        assert _get(url + "api/state") == 200
    finally:
        _stop(proc)


def test_other_address_prints_and_requires_a_token(tmp_path: Path) -> None:
    port = _free_port()
    proc, url = _start(tmp_path, f"0.0.0.0:{port}")
    try:
        assert "?token=" in url
        token = url.split("?token=", 1)[1]
        assert len(token) >= 24
        base = f"http://127.0.0.1:{port}/"
        assert _get(base + "api/state") == 401
        assert _get(base + "api/state?token=" + token[:-1]) == 401
        assert _get(base + "api/state?token=" + token) == 200
    finally:
        _stop(proc)


@pytest.mark.parametrize("listen", ["8000", "host:", "host:99999", "127.0.0.1:x"])
def test_bad_listen_is_a_usage_error(listen: str) -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "sim://", "--listen", listen])
    assert result.exit_code == 2
    assert "--listen" in result.output


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.5") and not is_loopback("::")
