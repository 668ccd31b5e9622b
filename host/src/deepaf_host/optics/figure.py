"""A picture of the simulator: ``python -m deepaf_host.optics.figure OUT.png``.

Rows: the same field of a virtual slide through 20x/0.75 under the ``same`` and ``diff``
protocols, a real H&E image of the corpus (``deepaf-host corpus fetch --split train``
downloads it), the same field unstained (its phase alone, the condenser at 0.7 of the
NA), and 4x/0.10; columns: defocus from -4 to +4 depths of field. Note how +dz and -dz differ (phase contrast flips across focus, axial
colour, spherical aberration) and how the thick section keeps some structure sharp over
about a depth of field.
"""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import DatasetError
from .render import Renderer
from .slide import VirtualSlide
from .corpus import corpus_images, read_image
from .presets import get_protocol
from .specimen import ImageSpecimen

DEPTHS_OF_FIELD = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)


def montage(size: int = 224) -> np.ndarray:
    """The figure as an RGB uint8 array."""
    import cv2

    slide = VirtualSlide(seed=1)
    image = next(img for img in corpus_images("train") if img.id == "openslide_os1_detail")
    real = VirtualSlide(seed=1, specimen=ImageSpecimen([read_image(image)], pixel_um=image.pixel_um, name=image.id))
    unstained = get_protocol("same").with_(stain_strength=(0.0, 0.0, 0.0), tissue_index_excess=0.02)
    x, y = slide.tissue_center_um[0] + 40.0, slide.tissue_center_um[1] - 15.0
    rows = [
        ("20x/0.75 same", Renderer("20x", "low", "same", shape=(size, size)), slide),
        ("20x/0.75 diff", Renderer("20x", "low", "diff", shape=(size, size)), slide),
        (f"20x/0.75 same, real H&E ({image.id})", Renderer("20x", "low", "same", shape=(size, size)), real),
        ("20x/0.75 unstained (phase only)", Renderer("20x", "low", unstained, shape=(size, size)), slide),
        ("4x/0.10 same", Renderer("4x", "low", "same", shape=(size, size)), slide),
    ]
    label_h = 22
    out = np.full((len(rows) * (size + label_h) + label_h, len(DEPTHS_OF_FIELD) * size, 3), 255, np.uint8)
    for j, k in enumerate(DEPTHS_OF_FIELD):
        cv2.putText(out, f"dz = {k:+g} DoF", (j * size + 6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, renderer, sl) in enumerate(rows):
        focus = float(sl.focus_z_um(x, y))
        zs = [focus + k * renderer.depth_of_field_um for k in DEPTHS_OF_FIELD]
        frames = renderer.render_stack(sl, x, y, zs, rng=i)
        top = label_h + i * (size + label_h)
        for j, f in enumerate(frames):
            out[top + label_h : top + label_h + size, j * size : (j + 1) * size] = f
        cv2.putText(out, f"{name}  (DoF {renderer.depth_of_field_um:.2f} um, pixel {renderer.pixel_um:.3f} um)",
                    (6, top + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> None:
    import cv2

    ap = argparse.ArgumentParser(prog="python -m deepaf_host.optics.figure", description=__doc__.split("\n")[0])
    ap.add_argument("out", help="PNG file to write")
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    try:
        picture = montage(args.size)
    except DatasetError as exc:  # e.g. the corpus image is not fetched: the message names the command
        raise SystemExit(f"error: {exc}") from None
    cv2.imwrite(args.out, picture[..., ::-1])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
