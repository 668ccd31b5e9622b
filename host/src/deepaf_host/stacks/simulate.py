"""Simulated focal-stack datasets for training and benchmarks (``deepaf-host simulate``).

Each stack is taken at a random tissue position of a virtual slide (a new slide, with
its own tissue and focal surface, every ``stacks_per_slide`` stacks). The stage z grid
is ``focus + u + offsets`` with ``u`` uniform in half a step either side, so the focus
falls between planes as on a real stage and the distance to focus is continuous, not a
multiple of the step. Planes are the centre crop (``size``) of the camera frame.
Everything derives from ``seed``: the same seed writes the same bytes.

``specimen="corpus:train"`` (or ``corpus:heldout``, ``corpus:all``) renders the shipped
real H&E images (``optics.corpus``): every slide takes one image of that split, turned
by a random multiple of 90 degrees and flipped, at its declared pixel size scaled by a
random factor in [0.8, 1.2] (pixel sizes are declared or estimated, and tissue shrinks
differently in every lab); the image id and scale are recorded with each stack.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ConfigError
from ..optics.fields import hash_u64
from ..optics.illumination import DEFAULT_ILLUMINATION, check_leds, get_illumination
from ..optics.presets import DEFAULT_RELAY, RANDOM_PROTOCOL, Protocol, get_objective, get_protocol, random_protocol
from ..optics.render import Renderer
from ..optics.slide import VirtualSlide
from ..optics.specimen import ProceduralTissue, Specimen, load_specimen
from .io import StackDataset, StackWriter, open_stacks

#: Default plane size: the centre 512 x 512 of the low-resolution frame. It holds four
#: non-overlapping 224 x 224 model patches (or nine at a stride of 144) for a median over
#: patches, as the scanner does over a frame, while keeping a 41-plane stack at 32 MB.
DEFAULT_SIZE = (512, 512)


def parse_z_range(text: str) -> tuple[float, float, float]:
    """``"start:stop:step"`` (micrometres from focus, stop included) -> floats."""
    try:
        start, stop, step = (float(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError("z", f"expected start:stop:step in micrometres, e.g. -10:10:0.5, got {text!r}") from None
    if not step > 0 or stop < start:
        raise ConfigError("z", f"need step > 0 and stop >= start, got {text!r}")
    if (stop - start) / step > 10000:
        raise ConfigError("z", f"more than 10000 planes in {text!r}")
    return start, stop, step


def z_offsets(start: float, stop: float, step: float) -> np.ndarray:
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return start + step * np.arange(n)


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError("size", f"expected HxW in pixels, e.g. 512x512, got {text!r}") from None
    if h < 16 or w < 16:
        raise ConfigError("size", f"planes must be at least 16x16, got {text!r}")
    return h, w


def _slide_seed(seed: int, index: int) -> int:
    return int(hash_u64(index, 0, seed, 777)[0] >> np.uint64(33))


CORPUS_PREFIX = "corpus:"

#: Range of the random factor on a corpus image's pixel size (per slide).
PIXEL_SCALE_RANGE = (0.8, 1.2)


class _CorpusSpecimens:
    """One real image per slide from a split of the corpus (``deepaf-host corpus fetch``)."""

    def __init__(self, split: str) -> None:
        from ..optics.corpus import corpus_images, read_image

        self.images = corpus_images(split)
        if not self.images:
            raise ConfigError("specimen", f"the corpus has no {split!r} images")
        self.pixels = [read_image(img) for img in self.images]

    def for_slide(self, slide_seed: int) -> tuple[Specimen, dict[str, object]]:
        from ..optics.specimen import ImageSpecimen

        rng = np.random.default_rng([slide_seed, 31])
        k = int(rng.integers(len(self.images)))
        img = self.images[k]
        scale = float(rng.uniform(*PIXEL_SCALE_RANGE))
        pixels = np.rot90(self.pixels[k], int(rng.integers(4)))
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        pixel_um = round(img.pixel_um * scale, 5)
        spec = ImageSpecimen([np.ascontiguousarray(pixels)], pixel_um=pixel_um, seed=slide_seed, name=f"corpus:{img.id}")
        return spec, {"specimen_image": img.id, "specimen_pixel_um": pixel_um}


def simulate_dataset(
    out: str | Path,
    *,
    stacks: int,
    objective: str = "20x",
    z_range_um: tuple[float, float, float] = (-10.0, 10.0, 0.5),
    protocol: str = "same",
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    specimen: str = "procedural",
    mode: str = "low",
    relay: float = DEFAULT_RELAY,
    stacks_per_slide: int = 10,
    illumination: str = DEFAULT_ILLUMINATION,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> StackDataset:
    """Write ``stacks`` simulated focal stacks to ``out`` and return the dataset.

    ``illumination`` names the light source (``optics.illumination.ILLUMINATIONS``):
    the condenser (``koehler``) or seed 001's LED(s); it applies to every lab drawn.
    """
    if stacks < 1:
        raise ConfigError("stacks", f"must be >= 1, got {stacks}")
    obj = get_objective(objective)
    leds = get_illumination(illumination)
    check_leds(leds, obj.na)
    randomised = protocol == RANDOM_PROTOCOL
    proto = get_protocol("same" if randomised else protocol).with_(led_na=leds)
    offsets = z_offsets(*z_range_um)
    step = z_range_um[2]
    reach = float(np.max(np.abs(offsets))) + step

    def make_renderer(lab: Protocol) -> Renderer:
        return Renderer(obj, mode, lab, relay=relay, shape=size, margin_defocus_um=reach,
                        max_defocus_um=max(reach, 50 * obj.depth_of_field_um()), cache_mb=64)

    renderer = make_renderer(proto)
    corpus = _CorpusSpecimens(specimen[len(CORPUS_PREFIX):]) if specimen.startswith(CORPUS_PREFIX) else None
    shared: Specimen | None = None if specimen == "procedural" or corpus else load_specimen(specimen, seed)
    slide_info: dict[str, object] = {}
    metadata = {
        "generator": {
            "tool": "deepaf-host simulate",
            "version": __version__,
            "objective": obj.name,
            "mode": mode,
            "relay": relay,
            "protocol": protocol if randomised else proto.name,
            "z_offsets_um": list(z_range_um),
            "seed": seed,
            "size": list(size),
            "specimen": specimen,
            "stacks_per_slide": stacks_per_slide,
            "illumination": illumination,
        }
    }
    rng = np.random.default_rng([seed, 0])
    slide: VirtualSlide | None = None
    with StackWriter(out, overwrite=overwrite, metadata=metadata, uuid_seed=f"{seed}") as writer:
        for k in range(stacks):
            if k % stacks_per_slide == 0:
                sseed = _slide_seed(seed, k // stacks_per_slide)
                if corpus is not None:
                    slide_specimen, slide_info = corpus.for_slide(sseed)
                else:
                    slide_specimen = shared if shared is not None else ProceduralTissue(sseed)
                slide = VirtualSlide(sseed, slide_specimen)
                renderer.clear_cache()
                if randomised:  # a new lab for every slide, drawn from the slide's seed
                    proto = random_protocol(np.random.default_rng([seed, 2, k // stacks_per_slide])).with_(led_na=leds)
                    renderer = make_renderer(proto)
            assert slide is not None
            x, y = _tissue_position(slide, rng)
            focus = float(slide.focus_z_um(x, y))
            u = float(rng.uniform(-0.5 * step, 0.5 * step))
            z_um = np.round(focus + u + offsets, 4)
            frames = renderer.render_stack(slide, x, y, z_um, rng=np.random.default_rng([seed, k + 1]))
            renderer.clear_cache()
            # The record's extra fields, in the order the manifest lists them.
            extra: dict[str, Any] = {"protocol_params": proto.to_dict()} if randomised else {}
            extra.update(x_um=round(x, 3), y_um=round(y, 3), slide_seed=slide.seed, specimen=specimen, mode=mode)
            if leds:
                extra["illumination"] = illumination
            extra.update(slide_info)
            writer.add(
                frames,
                z_um=z_um,
                focus_z_um=round(focus, 4),
                objective=obj.name,
                pixel_size_um=round(renderer.pixel_um, 6),
                protocol=proto.name,
                source="simulated",
                **extra,
            )
            if progress is not None:
                progress(k + 1, stacks)
    return open_stacks(out)


def _tissue_position(slide: VirtualSlide, rng: np.random.Generator) -> tuple[float, float]:
    """A random stage (x, y) well inside the slide's tissue outline."""
    cx, cy = slide.tissue_center_um
    ax, ay = slide.tissue_size_um[0] / 2, slide.tissue_size_um[1] / 2
    for _ in range(1000):
        x = float(rng.uniform(cx - ax, cx + ax))
        y = float(rng.uniform(cy - ay, cy + ay))
        if float(slide.tissue_at(x, y)) > 0.99:
            return x, y
    raise ConfigError("slide", "found no tissue on the virtual slide")  # pragma: no cover
