"""Write the tiny refocus model the tests use (tests/refocus/data/tiny-refocus.*).

A residual U-Net of widths 4-8 (one pooling level) with fixed random weights, full int8,
exported by the same code as the shipped model (``deepaf_host.refocus.train``). Its
receptive field reaches 11 pixels from a pixel (two 3x3 convolutions at full scale, two
at half scale and one at half scale on the way up, two at full scale: 2 + 2*2 + 2*2 +
1 + 2, rounded up for the pooling grid), so a margin of 12 joins tiles exactly.

    .venv/bin/python tests/refocus/make_tiny_model.py   (needs the train extra)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "data"


def main() -> None:
    import keras

    from deepaf_host.model.card import sha256_of
    from deepaf_host.refocus.card import RefocusCard
    from deepaf_host.refocus.train import build_unet, convert

    keras.utils.set_random_seed(7)
    model = build_unet((4, 8), dynamic=True)
    rng = np.random.default_rng(7)
    # A visible residual: the output is not the input (random small weights everywhere).
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    calib = rng.random((8, 48, 48, 3)).astype(np.float32)
    OUT.mkdir(exist_ok=True)
    path = OUT / "tiny-refocus.tflite"
    path.write_bytes(convert(model, calib))
    card = RefocusCard(name="tiny-refocus", file=path.name, sha256=sha256_of(path), tile=48, margin=12, objective="20x/0.75",
                       pixel_size_um=0.18057, range_um=5.0, stride=2, arch_config={"widths": [4, 8]},
                       params=int(model.count_params()), guard={"kind": "detail_ratio", "min_detail_ratio": 0.0},
                       training={"note": "random weights, for tests only"})
    card.save(path.with_suffix(".json"))
    print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
