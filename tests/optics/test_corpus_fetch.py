"""``deepaf-host corpus fetch`` and ``corpus list`` against a local HTTP server (no network):
the URL comes from the manifest, the sha256 is checked before a file is kept, a refused or
unreachable download leaves nothing behind, and the errors are one line."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from deepaf_host.cli import main
from deepaf_host.optics import corpus
from deepaf_host.optics.corpus import CorpusChecksumError, CorpusDownloadError, fetch_image, load_manifest, read_image

REPO, COMMIT = "someone/tiles", "0123456789abcdef0123456789abcdef01234567"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves) of a local HTTP server on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _png_bytes(seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rgb = (np.random.default_rng(seed).random((20, 30, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, www: Path, *, bad_sha: bool = False) -> tuple[Path, bytes]:
    """A manifest of two heldout images served by the local server (one with a wrong sha256
    if bad_sha) and one shipped train image; returns the cache folder and the first image's bytes."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    good, other, shipped = _png_bytes(1), _png_bytes(2), _png_bytes(3)
    (pkg / "shipped.png").write_bytes(shipped)

    def entry(i: str, file: str, data: bytes, split: str, path: str, **kw: object) -> dict[str, object]:
        return {"id": i, "file": file, "sha256": hashlib.sha256(data).hexdigest(), "width": 30, "height": 20,
                "pixel_um": 0.5, "pixel_um_source": "declared: test", "split": split, "licence": "CC-BY-4.0",
                "licence_evidence": "test", "repository": REPO, "path": path, "commit": COMMIT, **kw}

    entries = [
        entry("one", "one.png", good, "heldout", "img/one tile.png", shipped=False),
        entry("two", "two.png", other, "heldout", "img/two.png", shipped=False),
        entry("kept", "shipped.png", shipped, "train", "img/shipped.png", shipped=True),
    ]
    if bad_sha:
        entries[1]["sha256"] = "0" * 64
    (pkg / "manifest.json").write_text(json.dumps(entries), encoding="utf-8")
    served = www / REPO / COMMIT / "img"
    served.mkdir(parents=True)
    (served / "one tile.png").write_bytes(good)
    (served / "two.png").write_bytes(other)
    cache = tmp_path / "cache"
    monkeypatch.setattr(corpus, "MANIFEST", pkg / "manifest.json")
    monkeypatch.setenv("DEEPAF_CORPUS_DIR", str(cache))
    return cache, good


def test_fetch_downloads_from_the_manifest_url_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: tuple[str, Path]
) -> None:
    url, www = server
    cache, good = _setup(tmp_path, monkeypatch, www)
    monkeypatch.setenv("DEEPAF_CORPUS_URL", url + "/")
    assert not (cache / "one.png").exists()
    result = CliRunner().invoke(main, ["corpus", "fetch", "--split", "heldout"])
    assert result.exit_code == 0, result.output
    assert (cache / "one.png").read_bytes() == good
    assert f"downloaded, sha256 ok, to {cache / 'one.png'}" in result.output
    assert f"downloaded, sha256 ok, to {cache / 'two.png'}" in result.output
    assert "2 downloaded, 0 already present" in result.output
    assert sorted(p.name for p in cache.iterdir()) == ["one.png", "two.png"]  # no temporary file left
    assert all(read_image(img).shape == (20, 30, 3) for img in corpus.corpus_images("heldout"))
    # Again: nothing to download; the shipped image is found beside the manifest.
    result = CliRunner().invoke(main, ["corpus", "fetch"])
    assert result.exit_code == 0 and "0 downloaded, 3 already present" in result.output
    assert f"already present at {tmp_path / 'pkg' / 'shipped.png'}" in result.output
    # A cached file with other bytes is replaced by the download.
    (cache / "one.png").write_bytes(b"stale")
    (img,) = [i for i in load_manifest() if i.id == "one"]
    assert fetch_image(img, base=url) == (cache / "one.png", True)
    assert (cache / "one.png").read_bytes() == good


def test_fetch_reports_progress_with_the_byte_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: tuple[str, Path]
) -> None:
    url, www = server
    _, good = _setup(tmp_path, monkeypatch, www)
    seen: list[tuple[int, int | None]] = []
    (img,) = [i for i in load_manifest() if i.id == "one"]
    fetch_image(img, base=url, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, len(good)) and seen[-1] == (len(good), len(good))


def test_a_download_with_the_wrong_sha256_is_refused_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: tuple[str, Path]
) -> None:
    url, www = server
    cache, _ = _setup(tmp_path, monkeypatch, www, bad_sha=True)
    monkeypatch.setenv("DEEPAF_CORPUS_URL", url)
    (img,) = [i for i in load_manifest() if i.id == "two"]
    with pytest.raises(CorpusChecksumError, match="the download was deleted") as info:
        fetch_image(img)
    assert info.value.url == f"{url}/{REPO}/{COMMIT}/img/two.png" and info.value.expected == "0" * 64
    assert not (cache / "two.png").exists() and list(cache.iterdir()) == []
    result = CliRunner().invoke(main, ["corpus", "fetch", "--split", "heldout"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: corpus image 'two'")
    assert sorted(p.name for p in cache.iterdir()) == ["one.png"]  # the good one kept, nothing of the bad one


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_one_line_naming_the_url_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, _ = _setup(tmp_path, monkeypatch, tmp_path)  # files laid out, but no server
    base = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("DEEPAF_CORPUS_URL", base)
    result = CliRunner().invoke(main, ["corpus", "fetch", "--split", "heldout", "--timeout", "5"])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: cannot download {base}/{REPO}/{COMMIT}/img/one%20tile.png: ")
    assert "Traceback" not in result.output
    assert not cache.exists() or list(cache.iterdir()) == []
    (img,) = [i for i in load_manifest() if i.id == "one"]
    with pytest.raises(CorpusDownloadError) as info:
        fetch_image(img, timeout_s=5)
    assert info.value.url.startswith(base)


def test_a_missing_file_on_the_server_is_an_http_error_naming_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: tuple[str, Path]
) -> None:
    url, www = server
    cache, _ = _setup(tmp_path, monkeypatch, www)
    (www / REPO / COMMIT / "img" / "one tile.png").unlink()
    monkeypatch.setenv("DEEPAF_CORPUS_URL", url)
    result = CliRunner().invoke(main, ["corpus", "fetch", "--split", "heldout"])
    assert result.exit_code == 2
    assert f"Error: cannot download {url}/{REPO}/{COMMIT}/img/one%20tile.png: HTTP 404" in result.output
    assert list(cache.iterdir()) == []


def test_list_shows_split_licence_presence_and_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, good = _setup(tmp_path, monkeypatch, tmp_path)
    result = CliRunner().invoke(main, ["corpus", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = {line.split()[0]: line.split() for line in lines[1:] if line and not line.startswith(" ")}
    assert row["one"][1:3] == ["heldout", "no"] and str(cache / "one.png") in " ".join(row["one"])
    assert row["kept"][1:4] == ["train", "yes", str(tmp_path / "pkg" / "shipped.png")]
    assert sum("licence: CC-BY-4.0" in line for line in lines) == 3
    assert "1 of 3 present" in result.output and "deepaf-host corpus fetch --split all" in result.output
    cache.mkdir()
    (cache / "one.png").write_bytes(good)
    result = CliRunner().invoke(main, ["corpus", "list", "--split", "heldout"])
    row = {line.split()[0]: line.split() for line in result.output.splitlines()[1:] if line and not line.startswith(" ")}
    assert row["one"][1:4] == ["heldout", "yes", str(cache / "one.png")]
    assert "kept" not in row and "1 of 2 present" in result.output


def test_corpus_is_a_command_of_the_cli() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "corpus" in result.output
    result = CliRunner().invoke(main, ["corpus", "--help"])
    assert "fetch" in result.output and "list" in result.output
