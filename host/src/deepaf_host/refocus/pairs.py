"""Training and test pairs for virtual refocusing, rendered by the virtual microscope.

A pair is a defocused camera frame of a field and the true in-focus image of the SAME
field: one ``Renderer.optical_stack`` call computes both planes at one stage (x, y)
(stage z = focus + dz and z = focus), so they share the specimen, the lab, the
vignetting and the illumination and differ only by the defocus and the camera noise.

The input goes through the lab's camera (shot and read noise, gamma, JPEG where the lab
has it). The truth goes through the same camera with ``noise=False`` and no JPEG: the
noise-free, lossless in-focus render. The network therefore learns to refocus AND to
denoise, and the figures score against what the optics would give with a perfect
sensor (a noisy truth would cap SSIM below 1 even for a perfect refocus).

Two-shot sets (seed 003, TSVA): each input is a PAIR of frames of the field, the tile's
own at stage z = focus + dz and a second shot ``separation_um`` away (above or below,
at random), rendered in the same ``optical_stack`` call as the truth. TSVA captures its
two shots on either side of a first guess of the focus, 0.5 um from it (1 um apart);
the scan here takes the second shot 1 um from the tile it could not verify.

Sampling: pairs are rendered at the low-res camera mode's pixel (0.18 um at 20x/0.75,
the Nyquist pixel of the optics' incoherent cutoff 2 NA / lambda for blue light); see
host/docs/refocus/README.md for why the network works at that scale.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..optics.fields import hash_u64
from ..optics.presets import DEFAULT_RELAY, Protocol, get_protocol, random_protocol
from ..optics.render import Renderer
from ..optics.slide import VirtualSlide
from ..optics.specimen import ProceduralTissue, Specimen
from .card import SECOND_SIDES, TWO_SHOT_SEPARATION_UM

#: Training range of |dz| (um), as Deep-R's +-5 um network (seed 002, Fig. 8).
TRAIN_RANGE_UM = 5.0


@dataclass
class PairSet:
    """Pairs of one field: ``inputs`` (N, H, W, 3) uint8 at ``dz_um`` (N,), ``truth`` (H, W, 3) uint8.
    Two-shot sets: ``inputs`` (N, 2, H, W, 3), the second shot of each at ``second_dz_um`` (N,)."""

    inputs: np.ndarray
    truth: np.ndarray
    dz_um: np.ndarray
    slide_seed: int
    specimen: str
    lab: str
    x_um: float
    y_um: float
    second_dz_um: np.ndarray | None = None


class PairRenderer:
    """Renders pair sets of one lab (``protocol``) at ``shape`` pixels of the ``mode`` frame."""

    def __init__(self, protocol: str | Protocol = "same", shape: tuple[int, int] = (160, 160), objective: str = "20x",
                 mode: str = "low", relay: float = DEFAULT_RELAY, max_dz_um: float = 10.0) -> None:
        lab = get_protocol(protocol)
        reach = float(max_dz_um) + 1.0
        common = dict(relay=relay, shape=shape, margin_defocus_um=reach, max_defocus_um=max(reach, 50.0), cache_mb=64)
        self.lab = lab
        self.renderer = Renderer(objective, mode, lab, **common)  # type: ignore[arg-type]
        # The truth's camera: the same gain map (illumination, vignetting), no noise, no JPEG.
        self.truth_renderer = Renderer(objective, mode, lab.with_(noise=False, jpeg_quality=None), **common)  # type: ignore[arg-type]
        self.pixel_um = self.renderer.pixel_um

    def render(self, slide: VirtualSlide, x_um: float, y_um: float, dz_um: np.ndarray | list[float],
               rng: np.random.Generator) -> PairSet:
        """Frames at stage z = focus + dz for each dz, and the noise-free frame at dz = 0."""
        dz = np.asarray(dz_um, dtype=np.float64).reshape(-1)
        focus = float(slide.focus_z_um(x_um, y_um))
        optical = self.renderer.optical_stack(slide, x_um, y_um, [focus, *(focus + dz)])
        truth = self.truth_renderer.camera(optical[:1].copy(), rng)[0]
        inputs = self.renderer.camera(optical[1:], rng)
        self.renderer.clear_cache()
        return PairSet(inputs, truth, dz, slide.seed, getattr(slide.specimen, "name", type(slide.specimen).__name__),
                       self.lab.name, x_um, y_um)


def tissue_position(slide: VirtualSlide, rng: np.random.Generator, min_tissue: float = 0.99) -> tuple[float, float]:
    """A random stage (x, y) inside the slide's tissue outline."""
    cx, cy = slide.tissue_center_um
    ax, ay = slide.tissue_size_um[0] / 2, slide.tissue_size_um[1] / 2
    for _ in range(1000):
        x = float(rng.uniform(cx - ax, cx + ax))
        y = float(rng.uniform(cy - ay, cy + ay))
        if float(slide.tissue_at(x, y)) >= min_tissue:
            return x, y
    raise ConfigError("slide", "found no tissue on the virtual slide")  # pragma: no cover


def sample_dz(rng: np.random.Generator, n: int, range_um: float = TRAIN_RANGE_UM, p_focus: float = 0.15) -> np.ndarray:
    """``n`` defocus values: |dz| uniform in [0, range], either sign; a share ``p_focus``
    exactly in focus (dz = 0) so that the network learns to leave sharp frames alone."""
    dz = rng.uniform(0.0, range_um, n) * rng.choice([-1.0, 1.0], n)
    dz[rng.random(n) < p_focus] = 0.0
    return np.round(dz, 3)


def slide_seed(base: int, index: int) -> int:
    """The seed of slide ``index`` of a set drawn from ``base`` (disjoint sets: other bases)."""
    return int(hash_u64(index, 0, base, 4242)[0] >> np.uint64(33))


def corpus_specimens(split: str) -> Any:
    """One real image of the corpus split per slide, as ``deepaf-host simulate`` draws
    them (a random turn, flip and pixel scale in [0.8, 1.2]); ``corpus_images`` and
    ``read_image`` underneath, so the images come from wherever the corpus keeps them."""
    from ..stacks.simulate import _CorpusSpecimens

    return _CorpusSpecimens(split)


def iter_pair_sets(
    *,
    seed: int,
    slides: int,
    fields_per_slide: int,
    planes_per_field: int,
    specimen: str = "procedural",
    labs: str = "mixed",
    shape: tuple[int, int] = (160, 160),
    range_um: float = TRAIN_RANGE_UM,
    p_focus: float = 0.15,
    dz_fixed: np.ndarray | None = None,
    mode: str = "low",
    separation_um: float | None = None,
    second_side: str = "either",
) -> Iterator[PairSet]:
    """Pair sets over ``slides`` slides drawn from ``seed`` (the slide seeds of one set are
    disjoint from another set's when their ``seed`` differ: hold-out by slide).

    ``specimen``: ``procedural`` or ``corpus:train`` / ``corpus:heldout``. ``labs``:
    ``same`` (the training lab), ``random`` (``random_protocol`` per slide) or ``mixed``
    (every other slide random). ``dz_fixed``: the same dz list for every field (tests and
    benchmarks) instead of random draws. ``separation_um``: two-shot sets, each frame's
    second shot that far away, ``above`` it (+Z, as the scan takes it) or on ``either``
    side (drawn at random).
    """
    if second_side not in SECOND_SIDES:
        raise ConfigError("second_side", f"expected one of {list(SECOND_SIDES)}, got {second_side!r}")
    corpus = corpus_specimens(specimen.split(":", 1)[1]) if specimen.startswith("corpus:") else None
    if corpus is None and specimen != "procedural":
        raise ConfigError("specimen", f"expected procedural or corpus:<split>, got {specimen!r}")
    renderers: dict[str, PairRenderer] = {}
    for s in range(slides):
        sseed = slide_seed(seed, s)
        spec: Specimen
        if corpus is not None:
            spec, _ = corpus.for_slide(sseed)
        else:
            spec = ProceduralTissue(sseed)
        slide = VirtualSlide(sseed, spec)
        rng = np.random.default_rng([seed, s, 17])
        if labs == "same" or (labs == "mixed" and s % 2 == 0):
            key, lab = "same", get_protocol("same")
        elif labs in ("random", "mixed"):
            lab = random_protocol(np.random.default_rng([seed, s, 23]))
            key = f"random-{seed}-{s}"
        else:
            raise ConfigError("labs", f"expected same, random or mixed, got {labs!r}")
        pr = renderers.get(key) or PairRenderer(lab, shape=shape, mode=mode, max_dz_um=max(range_um, 10.0))
        if key == "same":
            renderers[key] = pr
        for _ in range(fields_per_slide):
            x, y = tissue_position(slide, rng)
            dz = dz_fixed if dz_fixed is not None else sample_dz(rng, planes_per_field, range_um, p_focus)
            if separation_um is None:
                yield pr.render(slide, x, y, dz, rng)
                continue
            side = np.ones(len(dz)) if second_side == "above" else rng.choice([-1.0, 1.0], len(dz))
            second = np.round(dz + separation_um * side, 3)
            ps = pr.render(slide, x, y, np.concatenate([dz, second]), rng)
            n = len(dz)
            ps.inputs = np.stack([ps.inputs[:n], ps.inputs[n:]], axis=1)
            ps.dz_um, ps.second_dz_um = ps.dz_um[:n], second
            yield ps


def build_dataset(out: str | Path, *, seed: int, slides: int, fields_per_slide: int, planes_per_field: int,
                  specimen: str, labs: str = "mixed", shape: tuple[int, int] = (160, 160),
                  range_um: float = TRAIN_RANGE_UM, separation_um: float | None = None, p_focus: float = 0.15,
                  second_side: str = "either", progress: bool = False) -> Path:
    """Render pair sets into one ``.npz``: ``inputs`` (N, P, H, W, 3), ``truth`` (N, H, W, 3),
    ``dz_um`` (N, P), ``slide_seed`` (N,), and the generator's arguments. Two-shot sets
    (``separation_um``): ``inputs`` (N, P, 2, H, W, 3) and ``second_dz_um`` (N, P)."""
    inputs, truth, dz, second, seeds = [], [], [], [], []
    total = slides * fields_per_slide
    for k, ps in enumerate(iter_pair_sets(seed=seed, slides=slides, fields_per_slide=fields_per_slide,
                                          planes_per_field=planes_per_field, specimen=specimen, labs=labs,
                                          shape=shape, range_um=range_um, separation_um=separation_um,
                                          p_focus=p_focus, second_side=second_side)):
        inputs.append(ps.inputs)
        truth.append(ps.truth)
        dz.append(ps.dz_um)
        if ps.second_dz_um is not None:
            second.append(ps.second_dz_um)
        seeds.append(ps.slide_seed)
        if progress and (k + 1) % 50 == 0:
            print(f"{specimen} seed {seed}: {k + 1}/{total} fields", flush=True)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        "inputs": np.stack(inputs), "truth": np.stack(truth), "dz_um": np.stack(dz), "slide_seed": np.asarray(seeds),
        "generator": np.asarray(repr(dict(seed=seed, slides=slides, fields_per_slide=fields_per_slide,
                                          planes_per_field=planes_per_field, specimen=specimen, labs=labs,
                                          shape=shape, range_um=range_um, separation_um=separation_um,
                                          p_focus=p_focus, second_side=second_side))),
    }
    if second:
        arrays["second_dz_um"] = np.stack(second)
    np.savez(path, **arrays)
    return path


if __name__ == "__main__":  # pragma: no cover - data generation for training
    import argparse

    ap = argparse.ArgumentParser(description="render refocus training pairs into an .npz")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--slides", type=int, default=100)
    ap.add_argument("--fields", type=int, default=10)
    ap.add_argument("--planes", type=int, default=3)
    ap.add_argument("--specimen", default="procedural")
    ap.add_argument("--labs", default="mixed")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--two-shot", action="store_true", help=f"two-shot sets, shots {TWO_SHOT_SEPARATION_UM} um apart")
    ap.add_argument("--p-focus", type=float, default=0.15, help="share of planes exactly in focus (dz = 0)")
    ap.add_argument("--second-side", choices=SECOND_SIDES, default="either",
                    help="two-shot sets: the second shot above the tile (+Z, as the scan takes it) or on either side")
    a = ap.parse_args()
    build_dataset(a.out, seed=a.seed, slides=a.slides, fields_per_slide=a.fields, planes_per_field=a.planes,
                  specimen=a.specimen, labs=a.labs, shape=(a.size, a.size),
                  separation_um=TWO_SHOT_SEPARATION_UM if a.two_shot else None, p_focus=a.p_focus,
                  second_side=a.second_side, progress=True)
