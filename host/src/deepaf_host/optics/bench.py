"""Speed benchmark of the virtual camera: ``python -m deepaf_host.optics.bench``.

Prints milliseconds (best and median of several runs; the machine may be shared) for:

- a 224 x 224 training patch rendered on its own: cold (a new slide position: specimen,
  layer spectra and OTFs), as a plane of a 41-plane z-stack over +-10 um (layer spectra
  cached, new defocus values), and fully cached (same pose again);
- 224 x 224 patches cut from 512 x 512 z-stack planes (4 per plane), the way
  ``deepaf-host simulate`` makes training data;
- a 1280 x 720 low-resolution frame (cold, z-stack plane, cached), and per 224 x 224
  patch when the 15 non-overlapping patches of its z-stack planes are used;
- a 4056 x 3040 high-resolution frame (cold, cached).

Noise is on (protocol ``same``); figures include the camera model. Nothing is asserted.
Wall-clock figures depend on what else runs on the machine; the CPU time (all threads
of this process) is given alongside.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from .presets import DEFAULT_RELAY
from .render import Renderer
from .slide import VirtualSlide


def _timed(fn: Callable[[int], object], repeat: int) -> tuple[float, float, float]:
    """(best wall, median wall, best CPU) milliseconds over ``repeat`` calls."""
    walls, cpus = [], []
    for i in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        walls.append((time.perf_counter() - t0) * 1e3)
        cpus.append((time.process_time() - c0) * 1e3)
    return min(walls), statistics.median(walls), min(cpus)


def _line(name: str, best: float, median: float, cpu: float) -> None:
    print(f"  {name:<40s} best {best:8.2f} ms   median {median:8.2f} ms   (CPU {cpu:8.2f} ms)")


def run(objective: str = "20x", protocol: str = "same", repeat: int = 7, high: bool = True) -> None:
    import os

    import scipy

    slide = VirtualSlide(seed=1)
    x0, y0 = slide.tissue_center_um
    z0 = float(slide.focus_z_um(x0, y0))
    rng = np.random.default_rng(0)
    print(f"deepaf_host.optics.bench: objective {objective}, protocol {protocol}, relay {DEFAULT_RELAY}")
    print(f"  numpy {np.__version__}, scipy {scipy.__version__}, {os.cpu_count()} CPUs; best/median of {repeat} runs")

    def section(name: str, renderer: Renderer) -> None:
        h, w = renderer.shape
        print(
            f"{name}: {w}x{h} px of {renderer.pixel_um:.4f} um, FFT grid {renderer.padded[1]}x{renderer.padded[0]} "
            f"(margin {renderer.margin_px} px)"
        )

    def cases(renderer: Renderer, reps: int, step_um: float, patches: int = 1) -> None:
        # Warm the OTF tiers and tables used below, so "cold" measures a new position.
        renderer.render_stack(slide, x0, y0, [z0 + d for d in np.arange(-10, 10.01, 0.25)])
        renderer.clear_cache()
        _line(
            "cold (new position)",
            *_timed(lambda i: renderer.render(slide, x0 + step_um * (i + 1), y0, z0 + 0.3, rng), reps),
        )
        renderer.render(slide, x0, y0, z0, rng)
        zs = z0 + np.arange(-10.0, 10.01, 0.5)
        n = len(zs)
        # A 41-plane stack at the cached position; each repeat shifts it (new OTF tables).
        best, med, cpu = _timed(lambda i: renderer.render_stack(slide, x0, y0, zs + 0.031 * (i + 1), rng), max(2, reps // 3))
        _line("z-stack plane (+-10 um, cached specimen)", best / n, med / n, cpu / n)
        if patches > 1:
            _line(f"  per 224x224 patch ({patches} per plane)", best / n / patches, med / n / patches, cpu / n / patches)
        _line("cached (same pose again)", *_timed(lambda i: renderer.render(slide, x0, y0, z0 + 0.5, rng), reps))

    patch = Renderer(objective, "low", protocol, shape=(224, 224))
    section("224x224 patch", patch)
    cases(patch, repeat * 3, 300.0)

    plane = Renderer(objective, "low", protocol, shape=(512, 512))
    section("512x512 z-stack planes (41 planes, 4 patches of 224x224 each)", plane)
    zs = z0 + np.arange(-10.0, 10.01, 0.5) + 0.123
    plane.render_stack(slide, x0, y0, zs, rng)

    def stack(i: int) -> None:
        plane.clear_cache()
        plane.render_stack(slide, x0 + 400.0 * (i + 1), y0, zs, rng)

    best, med, cpu = _timed(stack, max(2, repeat // 2))
    n = len(zs)
    _line("whole stack, cold position", best, med, cpu)
    _line("per plane", best / n, med / n, cpu / n)
    _line("per 224x224 patch", best / n / 4, med / n / 4, cpu / n / 4)

    frame = Renderer(objective, "low", protocol)
    section("1280x720 low-resolution frame", frame)
    cases(frame, repeat, 400.0, patches=(720 // 224) * (1280 // 224))

    if high:
        hi = Renderer(objective, "high", protocol, cache_mb=400)
        section("4056x3040 high-resolution frame", hi)
        hi.render(slide, x0, y0, z0, rng)

        def cold_high(i: int) -> None:
            hi.clear_cache()
            hi.render(slide, x0 + 300.0 * (i + 1), y0, z0 + 0.2, rng)

        _line("cold (new position)", *_timed(cold_high, 2))
        hi.render(slide, x0, y0, z0, rng)
        _line("cached (same pose again)", *_timed(lambda i: hi.render(slide, x0, y0, z0, rng), 2))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m deepaf_host.optics.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--objective", default="20x")
    ap.add_argument("--protocol", default="same")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-high", action="store_true", help="skip the 4056x3040 frame")
    args = ap.parse_args(argv)
    run(args.objective, args.protocol, args.repeat, not args.no_high)


if __name__ == "__main__":
    main()
