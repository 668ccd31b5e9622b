"""The refocus model card: a small JSON beside the ``.tflite`` (``<name>.json``).

It holds what the autofocus cards hold (``model.card``: name, architecture, file,
sha256, objective, pixel size, training data, metrics, latency) plus what an
image-to-image network needs: the tile the model file takes, the margin of every tile
that is thrown away (so tiles join without seams), the input scaling, and the guard that
passes frames already in focus through unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..model.card import check_model_file, read_card_json, save_card_json
from .metrics import SHOT_ORDERS

CARD_FORMAT = "deepaf-refocus/1"

#: Distance between the two shots of the two-shot refocus (um): TSVA's shots 0.5 um
#: either side of its first guess of the focus (seed 003, section III), 1 um apart.
TWO_SHOT_SEPARATION_UM = 1.0
#: Where a two-shot model's second shot is: ``above`` the tile (+Z, ``separation_um``
#: above: how ``deepaf-host scan --two-shot`` takes it, and TSVA's two shots at
#: "prefixed focal distances") or on ``either`` side (trained on both, at random).
SECOND_SIDES = ("above", "either")

#: The shipped refocus model (models/ in the repository).
DEFAULT_REFOCUS_MODEL = "deepaf-refocus-20x.tflite"
#: The shipped two-shot model (seed 003, TSVA).
DEFAULT_TWO_SHOT_MODEL = "deepaf-tsva-20x.tflite"


@dataclass
class RefocusCard:
    name: str
    file: str
    sha256: str
    #: Side of the square tile the model file takes (pixels at ``pixel_size_um``).
    tile: int
    #: Pixels of each tile's border that are discarded when tiles are joined.
    margin: int
    objective: str
    pixel_size_um: float
    #: |dz| range (um) the network was trained on.
    range_um: float
    architecture: str = "residual-unet"
    channels: int = 3
    input_dtype: str = "int8"
    #: The network's input: RGB / 255, output the same scale.
    scaling: str = "RGB / 255"
    #: Downsampling factor of the network (tile origins must be multiples of it).
    stride: int = 8
    arch_config: dict[str, Any] = field(default_factory=dict)
    params: int = 0
    #: Pass-through guard (``runtime.guard``): {"kind": ..., parameters}; {} = none.
    guard: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    #: Frames the network takes: 1 (the tile), or 2 (TSVA: the tile and a second shot
    #: ``separation_um`` away, on the ``second_side``).
    shots: int = 1
    separation_um: float | None = None
    second_side: str = "either"
    #: Two shots: which goes first, the one the output adds its residual to
    #: (``metrics.SHOT_ORDERS``).
    order: str = "brenner"

    def to_json(self) -> dict[str, Any]:
        return {"format": CARD_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any], path: str = "<card>") -> RefocusCard:
        if data.get("format") != CARD_FORMAT:
            raise ModelError(path, f"not a refocus model card (format {data.get('format')!r}, expected {CARD_FORMAT!r})")
        fields = {k: v for k, v in data.items() if k != "format"}
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown:
            raise ModelError(path, f"unknown key(s) in the refocus card: {sorted(unknown)}")
        try:
            card = cls(**fields)
        except TypeError as exc:
            raise ModelError(path, f"refocus card is incomplete: {exc}") from None
        if card.tile < 16 or not 0 <= card.margin < card.tile // 2 or card.stride < 1:
            raise ModelError(path, f"tile {card.tile} with margin {card.margin} and stride {card.stride} cannot be tiled")
        if card.shots not in (1, 2) or (card.shots == 2) != (card.separation_um is not None and card.separation_um > 0):
            raise ModelError(path, f"shots {card.shots} with separation {card.separation_um} um: expected 1 shot, or 2 "
                             "shots a positive distance apart")
        if card.second_side not in SECOND_SIDES:
            raise ModelError(path, f"second shot side {card.second_side!r}: expected one of {list(SECOND_SIDES)}")
        if card.order not in SHOT_ORDERS:
            raise ModelError(path, f"shot order {card.order!r}: expected one of {list(SHOT_ORDERS)}")
        if (card.tile - 2 * card.margin) % card.stride:
            raise ModelError(path, f"tile - 2 margin ({card.tile - 2 * card.margin}) must be a multiple of the stride {card.stride}")
        return card

    def save(self, path: str | Path) -> None:
        save_card_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> RefocusCard:
        return cls.from_json(read_card_json(path, "refocus model card"), str(path))

    def check_file(self, model_path: str | Path) -> None:
        """The card describes this very file (name and sha256)."""
        check_model_file(model_path, self.file, self.sha256)
