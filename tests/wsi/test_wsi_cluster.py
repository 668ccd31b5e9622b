"""Many slides on a Dask distributed cluster (issue 14, item 7): a local cluster, real
scheduler and worker, stitches two scan folders; a folder that cannot be stitched is
reported while the others finish; an unreachable scheduler is a one-line error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tifffile
from click.testing import CliRunner
from deepaf_host.cli import main

distributed = pytest.importorskip("distributed", reason="the cluster extra (dask distributed) is not installed")


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c


def test_slides_are_stitched_on_the_cluster_and_a_bad_folder_does_not_stop_the_others(
    cluster, grid_scan: Path, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    a, b, bad = tmp_path / "a", tmp_path / "b", tmp_path / "not-a-scan"
    shutil.copytree(grid_scan, a)
    shutil.copytree(grid_scan, b)
    bad.mkdir()
    result = CliRunner().invoke(main, ["stitch", str(a), str(bad), str(b), "--flat-field", "off",
                                       "--smallest-level", "128", "--scheduler", cluster.scheduler_address])
    assert result.exit_code == 1, result.output
    for d in (a, b):
        with tifffile.TiffFile(d / "slide.ome.tif") as tif:
            assert tif.is_ome and len(tif.series[0].levels) >= 2
        assert f"{d}/slide.ome.tif" in result.output
    assert f"{bad}:" in result.output and "manifest.jsonl" in result.output
    assert not (bad / "slide.ome.tif").exists()


def test_an_unreachable_scheduler_is_a_one_line_error(grid_scan: Path) -> None:
    result = CliRunner().invoke(main, ["stitch", str(grid_scan), "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code != 0
    assert "cannot reach the Dask scheduler" in result.output and "Traceback" not in result.output
    assert not (grid_scan / "slide.ome.tif").exists()
