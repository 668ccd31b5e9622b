"""``deepaf-host eval`` refuses stacks the model was not trained for, survives a stack whose
sharpest plane is its last, and checks ``--out`` before evaluating (issue 12, item 5).

The shipped model (20x/0.75, 0.1806 um/pixel) on tiny datasets: one simulated 256 x 256
stack of five planes, copied with the optics in its ``index.json`` changed, and a
synthetic stack that gets sharper toward its last plane.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deepaf_host.cli import main
from deepaf_host.errors import OpticsMismatchError
from deepaf_host.model import evaluate as evaluate_module
from deepaf_host.model.card import ModelCard
from deepaf_host.model.evaluate import evaluate_model, evaluate_stack_reference
from deepaf_host.model.runtime import TFLitePredictor, card_path_for, default_model_path, load_model
from deepaf_host.stacks import StackWriter, simulate_dataset


@pytest.fixture(scope="module")
def matching(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated stack with the optics of the shipped model's card."""
    out = tmp_path_factory.mktemp("data") / "matching"
    simulate_dataset(out, stacks=1, z_range_um=(-2.0, 2.0, 1.0), size=(256, 256), seed=1)
    return out


def with_optics(src: Path, dst: Path, **changes: Any) -> Path:
    """A copy of dataset ``src`` whose stacks declare other optics (``objective``, ``pixel_size_um``)."""
    shutil.copytree(src, dst)
    index = json.loads((dst / "index.json").read_text())
    for entry in index["stacks"]:
        entry.update(changes)
    (dst / "index.json").write_text(json.dumps(index))
    return dst


@pytest.fixture(scope="module")
def model() -> TFLitePredictor:
    return load_model(default_model_path())


class Spy:
    """Counts the predictions asked of the model."""

    def __init__(self, predictor: TFLitePredictor) -> None:
        self.predictor = predictor
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        self.calls += 1
        return TFLitePredictor.predict(self.predictor, *args, **kwargs)


def test_the_card_check_is_the_scanners_and_words_unknown_optics() -> None:
    card = ModelCard.load(card_path_for(default_model_path()))
    assert card.optics_mismatches("20x", card.pixel_size_um * 1.09) == []
    assert card.optics_mismatches(None, None) == []  # the scan passes None for "not checked"
    (px,) = card.optics_mismatches("20X/0.75", 0.286)
    assert (px.quantity, px.actual, px.trained) == ("pixel_size_um", 0.286, card.pixel_size_um)
    assert "58% apart" in px.reason
    (obj,) = card.optics_mismatches("unknown", card.pixel_size_um)
    assert (obj.quantity, obj.actual, obj.trained) == ("objective", "unknown", "20x/0.75")
    both = card.optics_mismatches(None, None, unknown_is_mismatch=True)
    assert [m.quantity for m in both] == ["objective", "pixel_size_um"]


def test_another_pixel_size_is_refused_before_any_inference(
    matching: Path, model: TFLitePredictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide = with_optics(matching, tmp_path / "wide", pixel_size_um=0.286)
    spy = Spy(model)
    monkeypatch.setattr(model, "predict", spy)
    with pytest.raises(OpticsMismatchError) as info:
        # The matching set first: the check covers every dataset before running any.
        evaluate_model([matching, wide], model, patches_per_image=1)
    err = info.value
    assert spy.calls == 0
    assert (err.path, err.stack, err.quantity) == (str(wide), "stack_0000.ome.tif", "pixel_size_um")
    assert (err.stack_value, err.card_value) == (0.286, model.card.pixel_size_um)
    assert "0.2860 um/pixel" in str(err) and "0.1806 um/pixel" in str(err) and str(wide) in str(err)


def test_allow_mismatch_evaluates_and_lists_the_mismatched_stacks(
    matching: Path, model: TFLitePredictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide = with_optics(matching, tmp_path / "wide", pixel_size_um=0.286)
    spy = Spy(model)
    monkeypatch.setattr(model, "predict", spy)
    result = evaluate_model([matching, wide], model, patches_per_image=1, allow_mismatch=True)
    assert spy.calls > 0 and result["n_images"] == spy.calls
    (entry,) = result["optics_mismatch"]
    assert (entry["data"], entry["stack"], entry["pixel_size_um"], entry["mismatch"]) == (
        str(wide), "stack_0000.ome.tif", 0.286, ["pixel_size_um"])
    assert result["card_optics"] == {"objective": "20x/0.75", "pixel_size_um": model.card.pixel_size_um}
    assert evaluate_model([matching], model, patches_per_image=1)["optics_mismatch"] == []


@pytest.mark.parametrize(("changes", "quantity"), [
    ({"objective": "unknown"}, "objective"),
    ({"objective": "40x/0.95"}, "objective"),
    ({"pixel_size_um": None}, "pixel_size_um"),
])
def test_unknown_or_other_optics_are_refused(
    matching: Path, model: TFLitePredictor, tmp_path: Path, changes: dict[str, Any], quantity: str
) -> None:
    other = with_optics(matching, tmp_path / "other", **changes)
    with pytest.raises(OpticsMismatchError) as info:
        evaluate_model([other], model, patches_per_image=1)
    assert info.value.quantity == quantity
    assert info.value.stack_value == changes[quantity]


def sharper_toward_the_end(root: Path, planes: int = 5) -> Path:
    """A stack whose last plane is the sharpest (blurred less and less), focus at that plane."""
    rng = np.random.default_rng(4)
    texture = cv2.resize(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (128, 128), interpolation=cv2.INTER_NEAREST)
    frames = np.stack([cv2.GaussianBlur(texture, (0, 0), sigmaX=0.5 + 1.5 * (planes - 1 - k)) for k in range(planes)])
    z = 100.0 + np.arange(planes, dtype=np.float64)
    with StackWriter(root) as writer:
        writer.add(frames, z_um=z, focus_z_um=float(z[-1]), objective="20x/0.75", pixel_size_um=0.1806,
                   protocol=None, source="synthetic")
    return root


def test_the_stack_reference_scores_a_stack_whose_sharpest_plane_is_the_last(tmp_path: Path, matching: Path) -> None:
    edge = sharper_toward_the_end(tmp_path / "edge")
    result = evaluate_stack_reference([matching, edge])
    assert result["stacks_peak_at_edge"] == 1
    assert result["peak_at_edge"] == [str(edge / "stack_0000.ome.tif")]
    assert result["n_images"] == 2  # scored with its last plane, not skipped


def test_cli_mismatch_is_a_one_line_error(matching: Path, tmp_path: Path) -> None:
    wide = with_optics(matching, tmp_path / "wide", pixel_size_um=0.286)
    result = CliRunner().invoke(main, ["eval", "--data", str(wide), "--patches", "1"])
    assert result.exit_code in (1, 2), result.output
    assert isinstance(result.exception, SystemExit)  # a click error, not an uncaught exception
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "--allow-mismatch" in lines[0], result.output
    ok = CliRunner().invoke(main, ["eval", "--data", str(wide), "--patches", "1", "--allow-mismatch"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["optics_mismatch"][0]["stack"] == "stack_0000.ome.tif"
    assert "--allow-mismatch" in CliRunner().invoke(main, ["eval", "--help"]).output


@pytest.mark.parametrize("folder", ["missing", "a-file", "read-only"])
def test_cli_out_is_checked_before_evaluating(
    matching: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    if folder == "a-file":
        (tmp_path / folder).write_text("")
    if folder == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / folder).mkdir(mode=0o500)
    ran: list[str] = []
    monkeypatch.setattr(evaluate_module, "evaluate_stack_reference", lambda *a, **k: ran.append("eval") or {})
    out = tmp_path / folder / "x.json"
    result = CliRunner().invoke(main, ["eval", "--data", str(matching), "--model", "stack", "--out", str(out)])
    assert ran == []
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output and str(out) in lines[0], result.output


def test_cli_out_is_untouched_by_a_refused_run_and_replaced_by_a_finished_one(matching: Path, tmp_path: Path) -> None:
    wide = with_optics(matching, tmp_path / "wide", pixel_size_um=0.286)
    folder = tmp_path / "results"
    folder.mkdir()
    out = folder / "r.json"
    out.write_text("old")
    refused = CliRunner().invoke(main, ["eval", "--data", str(wide), "--patches", "1", "--out", str(out)])
    assert refused.exit_code != 0
    assert out.read_text() == "old" and sorted(p.name for p in folder.iterdir()) == ["r.json"]  # no temporary file left
    result = CliRunner().invoke(main, ["eval", "--data", str(matching), "--model", "stack", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == json.loads(result.output)
    assert sorted(p.name for p in folder.iterdir()) == ["r.json"]
