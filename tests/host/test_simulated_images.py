"""Tissue detection and focus measures on frames of the optics simulator (simulated H&E)."""

from __future__ import annotations

import numpy as np
import pytest
from deepaf_host import tissue
from deepaf_host.focus import measures as fm
from deepaf_host.optics.render import Renderer
from deepaf_host.optics.slide import VirtualSlide

EDGE = (-30025.0, -15572.0)  # a field on the upper edge of the default slide's section


@pytest.fixture(scope="module")
def slide() -> VirtualSlide:
    return VirtualSlide(seed=0)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("20x", "low", shape=(360, 640))


def test_tissue_on_simulated_he(slide: VirtualSlide, renderer: Renderer) -> None:
    x, y = EDGE
    field = renderer.render(slide, x, y, float(slide.focus_z_um(x, y)), rng=1)
    blank = renderer.render(slide, -50000.0, -20000.0, float(slide.focus_z_um(-50000.0, -20000.0)), rng=2)
    glass = slide.region(x, y, renderer.shape, renderer.pixel_um, renderer.protocol).transmission.min(axis=2) > 0.97
    assert 0.2 < glass.mean() < 0.8  # the field really straddles the edge
    th = tissue.calibrate(blank)
    mask = tissue.tissue_mask(field, th)
    assert mask[glass].mean() < 0.02
    assert mask[~glass].mean() > 0.9
    assert tissue.tissue_fraction(tissue.tissue_mask(blank, th)) == 0.0
    # Eosin is nearly as bright as glass: the saturation test is what finds most of it.
    _, s = tissue.value_saturation(field)
    assert np.median(s[~glass]) > np.median(s[glass]) + 0.2
    assert tissue.mean_value(field) < th.mean_value_max < tissue.mean_value(blank)  # eq. 1, brightfield direction


@pytest.mark.parametrize("name", sorted(fm.MEASURES))
def test_measures_peak_near_the_true_focus_of_a_simulated_stack(name: str, slide: VirtualSlide, renderer: Renderer) -> None:
    x, y = -30000.0, -20000.0
    focus = float(slide.focus_z_um(x, y))
    dz = np.arange(-4.0, 4.01, 0.5)
    scores = [fm.get(name)(fm.gray(renderer.render(slide, x, y, focus + d, rng=i))) for i, d in enumerate(dz)]
    # Within a micrometre (the depth of field) of the section's mid-plane, and a real peak.
    assert abs(dz[int(np.argmax(scores))]) <= 1.0
    assert max(scores) > max(scores[0], scores[-1])
