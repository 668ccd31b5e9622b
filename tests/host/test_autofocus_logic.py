"""Autofocus control logic on a small fake microscope (fast): peaks, limits, failures.

The virtual-microscope tests (tests/e2e) check the strategies against real optics;
these check the bookkeeping and the safety rules, which need a stage we can break.
"""

from __future__ import annotations

import numpy as np
import pytest
from deepaf_host.autofocus import (
    AutofocusResult,
    FocusContext,
    FocusLimits,
    SearchAutofocus,
    SingleShotAutofocus,
    StackAutofocus,
    Strategy,
    SweepAutofocus,
    make_strategy,
)
from deepaf_host.autofocus.fit import quadratic_peak, refine_peak, three_point_peak
from deepaf_host.errors import ConfigError
from fakescope import FakeCamera, FakeStage

FOCUS = -4003.3


def scope(start: float = -4000.0, focus: float = FOCUS, blank: bool = False) -> tuple[FakeStage, FakeCamera, FocusContext]:
    stage = FakeStage(z_um=start)
    cam = FakeCamera(stage, focus, blank=blank)
    return stage, cam, FocusContext(clock=stage.clock, sleep=stage.sleep)


def test_three_point_peak_is_exact_for_gaussians_and_parabolas() -> None:
    g = lambda z: np.exp(-((z - 0.3) ** 2) / 2)
    assert three_point_peak([-1, 0, 1], [g(-1), g(0), g(1)]) == pytest.approx(0.3)
    assert three_point_peak([-2, 0, 1], [-(2.3**2), -(0.3**2), -(0.7**2)]) == pytest.approx(0.3)  # negative: parabola
    assert three_point_peak([0, 1, 2], [1, 0.5, 1]) is None  # a minimum
    z, i = refine_peak([2, 0, 1], [1, 2, 3])  # unsorted input; best at z=1 (index 2)
    assert i == 2 and 0 <= z <= 2
    with pytest.raises(ValueError, match="upper end"):
        refine_peak([0, 1, 2], [1, 2, 3])
    zs = np.linspace(-3, 3, 61)
    assert quadratic_peak(zs, -((zs - 0.42) ** 2), 1.0) == pytest.approx(0.42, abs=1e-6)


@pytest.mark.parametrize(
    "strategy",
    [StackAutofocus(), SearchAutofocus(), SweepAutofocus()],
    ids=lambda s: s.name,
)
def test_strategies_find_focus_and_keep_the_books(strategy: Strategy) -> None:
    stage, cam, ctx = scope()
    assert isinstance(strategy, Strategy)
    result = strategy.run(stage, cam, -4000.0, ctx)
    assert isinstance(result, AutofocusResult)
    assert result.ok, result.reason
    assert result.z_um == pytest.approx(FOCUS, abs=0.4)
    assert stage.position().z_um == pytest.approx(result.z_um)
    assert result.frames == cam.grabs  # no context frame given: every frame was grabbed
    assert result.seconds == pytest.approx(stage.t)  # the context's clock
    assert result.measure == "laplacian"
    d = result.to_dict()
    assert d["correction_um"] == pytest.approx(result.z_um + 4000.0)
    assert len(d["details"]["z_um"]) == len(d["details"]["scores"]) == result.frames
    # Every move stayed within the maximum correction.
    assert all(abs(z + 4000.0) <= ctx.limits.max_correction_um for _, _, z in stage.moves)


def test_stack_reuses_the_frame_taken_at_the_start() -> None:
    stage, cam, ctx = scope()
    ctx.frame = cam.grab()
    n = cam.grabs
    result = StackAutofocus(planes=5, step_um=2.5).run(stage, cam, -4000.0, ctx)
    assert result.ok and result.frames == 5 and cam.grabs - n == 4


def test_a_peak_beyond_the_range_fails_and_leaves_the_stage_at_the_start() -> None:
    stage, cam, ctx = scope(focus=-4007.5)  # 7.5 um away, the stack covers +-6
    result = StackAutofocus().run(stage, cam, -4000.0, ctx)
    assert not result.ok and "lower end" in result.reason
    assert result.z_um == -4000.0 and stage.position().z_um == -4000.0
    assert stage.moves[-1][2] == -4000.0


def test_blank_glass_gives_a_flat_curve_and_no_focus() -> None:
    stage, cam, ctx = scope(blank=True)
    result = SearchAutofocus().run(stage, cam, -4000.0, ctx)
    assert not result.ok and "flat" in result.reason
    assert stage.position().z_um == -4000.0


def test_max_correction_refuses_before_moving() -> None:
    stage, cam, ctx = scope()
    ctx.limits = FocusLimits(max_correction_um=5.0)
    result = StackAutofocus(planes=11, step_um=2.0).run(stage, cam, -4000.0, ctx)  # needs +-10
    assert not result.ok and "maximum correction" in result.reason
    assert cam.grabs == 0
    assert all(z == -4000.0 for _, _, z in stage.moves)  # only the "restore" to where it was
    with pytest.raises(ConfigError):
        FocusLimits(max_correction_um=0)


def test_a_hardware_error_propagates_after_trying_to_restore() -> None:
    stage, cam, ctx = scope()
    stage.fail_after_moves = 3
    with pytest.raises(ConnectionError):
        StackAutofocus().run(stage, cam, -4000.0, ctx)


class OraclePredictor:
    """A test double of the model runtime: knows the true focus, adds a set error."""

    name = "oracle"
    patch_size = 64
    range_um = (-10.0, 10.0)

    def __init__(self, cam: FakeCamera, errors_um: list[float]) -> None:
        self.cam, self.errors = cam, np.asarray(errors_um)

    def predict(self, patches: np.ndarray) -> np.ndarray:
        assert patches.shape[1:] == (64, 64, 3) and patches.dtype == np.uint8
        dz = self.cam.focus_z_um - self.cam.stage.position().z_um
        return dz + self.errors[: len(patches)]


def test_single_shot_moves_by_the_median_in_one_frame() -> None:
    stage, cam, ctx = scope()
    pred = OraclePredictor(cam, [0.1, -0.2, 0.05, 5.0] * 4)  # one wild patch: the median ignores it
    result = SingleShotAutofocus(pred, patches=4, min_patch_tissue=0.3, verify=False).run(stage, cam, -4000.0, ctx)
    assert result.ok, result.reason
    assert result.frames == 1
    assert result.z_um == pytest.approx(FOCUS + 0.075, abs=1e-6)
    assert result.details["model"] == "oracle" and result.details["shots"][0]["patches"] == 4
    assert result.details["inference_s"] >= 0


class WrongSidePredictor(OraclePredictor):
    """Confident and wrong: the right distance, on the wrong side of focus, every patch agreeing."""

    def predict(self, patches: np.ndarray) -> np.ndarray:
        return -super().predict(patches)


def test_single_shot_verifies_its_move_with_a_second_frame() -> None:
    stage, cam, ctx = scope()
    result = SingleShotAutofocus(OraclePredictor(cam, [0.05] * 4), patches=4, min_patch_tissue=0.3, dof_um=1.0).run(stage, cam, -4000.0, ctx)
    assert result.ok and result.frames == 2 and result.strategy == "single-shot"
    verify = result.details["verify"]
    assert verify["passed"] and abs(verify["residual_um"]) <= 0.5
    assert verify["score_after"] > verify["score_start"]


def test_single_shot_that_is_confidently_wrong_falls_back_from_the_better_plane() -> None:
    stage, cam, ctx = scope()
    ss = SingleShotAutofocus(WrongSidePredictor(cam, [0.0] * 4), patches=4, min_patch_tissue=0.3, dof_um=1.0,
                             fallback=SearchAutofocus(), learn_offset=0)
    result = ss.run(stage, cam, -4000.0, ctx)
    # The move went 3.3 um the wrong way; the second frame is blurrier, so it is not trusted.
    assert result.strategy == "single-shot>search" and result.ok, result.reason
    assert "not confirmed" in result.details["fallback_reason"]
    assert result.details["verify"]["passed"] is False
    assert result.details["fallback_start_z_um"] == pytest.approx(-4000.0)  # the start was the sharper plane
    assert result.z_um == pytest.approx(FOCUS, abs=0.4)
    assert result.start_z_um == pytest.approx(-4000.0)
    without = SingleShotAutofocus(WrongSidePredictor(cam, [0.0] * 4), patches=4, min_patch_tissue=0.3, dof_um=1.0)
    failed = without.run(stage, cam, -4000.0, ctx)
    assert not failed.ok and failed.reason.startswith("not confirmed")
    assert stage.position().z_um == pytest.approx(-4000.0)  # back at the start


def test_single_shot_learns_the_models_offset_from_its_fallbacks() -> None:
    # A model that reads "in focus" 0.6 um off (more than DoF/2): the second frame alone
    # cannot see that, its residual carries the same offset.
    stage, cam, ctx = scope()
    ss = SingleShotAutofocus(OraclePredictor(cam, [0.6] * 4), patches=4, min_patch_tissue=0.3, dof_um=1.0,
                             fallback=SearchAutofocus())
    def run_from(start: float, strategy: SingleShotAutofocus = ss) -> AutofocusResult:
        stage.move_to(z_um=start)  # as a scan does: the stage is at the start
        return strategy.run(stage, cam, start, ctx)

    first = [run_from(start) for start in (-4000.0, -4001.0)]
    assert all(r.strategy == "single-shot>search" and "learning the model's offset" in r.details["fallback_reason"] for r in first)
    assert ss.offset_um == pytest.approx(0.6, abs=0.25)
    later = run_from(-4002.0)
    assert later.strategy == "single-shot" and later.frames == 2
    assert later.z_um == pytest.approx(FOCUS, abs=0.25)  # without the offset: 0.6 um off
    blind = run_from(-4002.0, SingleShotAutofocus(OraclePredictor(cam, [0.6] * 4), patches=4, min_patch_tissue=0.3,
                                                   dof_um=1.0, fallback=SearchAutofocus(), learn_offset=0))
    assert blind.strategy == "single-shot" and blind.z_um == pytest.approx(FOCUS + 0.6, abs=1e-6)


def test_single_shot_falls_back_when_the_patches_disagree() -> None:
    stage, cam, ctx = scope()
    pred = OraclePredictor(cam, [-4.0, 4.0, -3.0, 3.0])
    ss = SingleShotAutofocus(pred, patches=4, min_patch_tissue=0.3, fallback=SearchAutofocus(), learn_offset=0)
    result = ss.run(stage, cam, -4000.0, ctx)
    assert result.ok and result.strategy == "single-shot>search"
    assert "disagree" in result.details["fallback_reason"]
    assert result.z_um == pytest.approx(FOCUS, abs=0.4)
    no_fb = SingleShotAutofocus(pred, patches=4, min_patch_tissue=0.3).run(stage, cam, result.z_um, ctx)
    assert not no_fb.ok and no_fb.reason.startswith("patch predictions disagree")


def test_single_shot_trusts_a_spread_in_depths_of_field() -> None:
    # Patches 2.5 um apart: most of a 20x depth of field (0.96 um), a quarter of a 10x
    # one (8.64 um), where a model's patches disagree by as many microns per DoF.
    errors = [-1.0, 1.0, -1.5, 1.5]
    stage, cam, ctx = scope()
    at_20x = SingleShotAutofocus(OraclePredictor(cam, errors), patches=4, min_patch_tissue=0.3, dof_um=0.96)
    assert at_20x.run(stage, cam, -4000.0, ctx).reason.startswith("patch predictions disagree (spread 1.85 um > 1.50 um)")
    stage, cam, ctx = scope()
    at_10x = SingleShotAutofocus(OraclePredictor(cam, errors), patches=4, min_patch_tissue=0.3, dof_um=8.64, verify=False)
    result = at_10x.run(stage, cam, -4000.0, ctx)
    assert result.ok and result.frames == 1, result.reason


def test_single_shot_takes_the_predictor_it_is_given() -> None:
    stage, cam, ctx = scope()
    strategy = make_strategy("single-shot", predictor=OraclePredictor(cam, [0.0] * 8), patches=2, min_patch_tissue=0.3,
                             learn_offset=0)
    assert strategy.run(stage, cam, -4000.0, ctx).z_um == pytest.approx(FOCUS)


def test_unknown_strategies_and_options() -> None:
    with pytest.raises(ConfigError, match="unknown strategy"):
        make_strategy("guess")
    with pytest.raises(ConfigError, match="bad options"):
        make_strategy("stack", planes_per_um=3)
    with pytest.raises(ConfigError):
        make_strategy("stack", planes=2)


def test_the_stage_z_safety_limit_is_respected_before_moving() -> None:
    stage, cam, ctx = scope()
    stage.z_min_um = -4003.0  # the stack would reach -4006
    result = StackAutofocus().run(stage, cam, -4000.0, ctx)
    assert not result.ok and "Z safety limit" in result.reason
    assert cam.grabs == 0 and min(z for _, _, z in stage.moves) >= -4003.0
