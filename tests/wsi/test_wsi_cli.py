"""``deepaf-host stitch``."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from deepaf_host.cli import main


def test_stitch_command(grid_scan: Path, tmp_path: Path) -> None:
    d = tmp_path / "scan"
    shutil.copytree(grid_scan, d)
    runner = CliRunner()
    res = runner.invoke(main, ["stitch", str(d), "--smallest-level", "128"])
    assert res.exit_code == 0, res.output
    assert "12/12 pairs accepted" in res.output and "seam error vs truth" in res.output
    assert (d / "slide.ome.tif").is_file()
    res = runner.invoke(main, ["stitch", str(d)])
    assert res.exit_code == 0 and "up to date" in res.output


def test_stitch_refuses_a_folder_without_scan(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["stitch", str(tmp_path)])
    assert res.exit_code != 0
    assert "no manifest.jsonl" in res.output
