"""Write the tiny refocus models the tests use (tests/refocus/data/tiny-refocus.* and,
two-shot, tiny-tsva.*).

A residual U-Net of widths 4-8 (one pooling level) with fixed random weights, full int8,
exported by the same code as the shipped model (``deepaf_host.refocus.train``). Its
receptive field reaches 11 pixels from a pixel (two 3x3 convolutions at full scale, two
at half scale and one at half scale on the way up, two at full scale: 2 + 2*2 + 2*2 +
1 + 2, rounded up for the pooling grid), so a margin of 12 joins tiles exactly. The
two-shot one (TSVA, ``build_tsva``) has the same levels, shared by its two paths.

    .venv/bin/python tests/refocus/make_tiny_model.py   (needs the train extra)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "data"


def main() -> None:
    import keras

    from deepaf_host.model.card import sha256_of
    from deepaf_host.refocus.card import TWO_SHOT_SEPARATION_UM, RefocusCard
    from deepaf_host.refocus.train import build_network, convert

    # The two-shot network sums two paths' features: smaller weights keep its output off
    # the clipping limits.
    for name, shots, spread in (("tiny-refocus", 1, 0.3), ("tiny-tsva", 2, 0.1)):
        keras.utils.set_random_seed(7)
        model = build_network(shots, (4, 8), dynamic=True)
        rng = np.random.default_rng(7)
        # A visible residual: the output is not the input (random small weights everywhere).
        model.set_weights([rng.normal(0, spread, w.shape).astype(np.float32) for w in model.get_weights()])
        calib = rng.random((8, shots, 48, 48, 3) if shots == 2 else (8, 48, 48, 3)).astype(np.float32)
        OUT.mkdir(exist_ok=True)
        path = OUT / f"{name}.tflite"
        path.write_bytes(convert(model, calib))
        card = RefocusCard(name=name, file=path.name, sha256=sha256_of(path), tile=48, margin=12, objective="20x/0.75",
                           pixel_size_um=0.18057, range_um=5.0, stride=2, arch_config={"widths": [4, 8]},
                           params=int(model.count_params()), guard={"kind": "detail_ratio", "min_detail_ratio": 0.0},
                           training={"note": "random weights, for tests only"},
                           architecture="tsva" if shots == 2 else "residual-unet", shots=shots,
                           separation_um=TWO_SHOT_SEPARATION_UM if shots == 2 else None)
        card.save(path.with_suffix(".json"))
        print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
