"""Model cards: what a ``.tflite`` file takes and gives, how it was made, how good it is.

A card is ``<model>.json`` beside ``<model>.tflite`` (machine-checked by the scanner)
and ``<model>.md`` (the same facts for people, rendered from the JSON). The scanner
refuses a model whose card is missing, names another file, has another sha256, or does
not match the scan (objective, pixel size, units).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError
from .preprocess import INPUT_KINDS

CARD_FORMAT = "deepaf-model/1"

#: A scan's pixel size may differ this much (relative) from the training pixel size.
PIXEL_SIZE_TOLERANCE = 0.10


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelCard:
    name: str
    architecture: str
    file: str
    sha256: str
    input_kind: str
    patch_size: int
    channels: int
    objective: str
    pixel_size_um: float
    range_um: tuple[float, float]
    dof_um: float
    units: str = "um"
    convention: str = "dz = z_focus - z_now: move Z by +dz to reach focus"
    arch_config: dict[str, Any] = field(default_factory=dict)
    params: int = 0
    input_dtype: str = "int8"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    #: The light the low-res frames were taken under (``optics.illumination``): the
    #: condenser (``koehler``) or seed 001's LED(s). Frames under other light are refused.
    illumination: str = "koehler"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CARD_FORMAT,
            "name": self.name,
            "architecture": self.architecture,
            "file": self.file,
            "sha256": self.sha256,
            "input": {
                "kind": self.input_kind,
                "patch_size": self.patch_size,
                "channels": self.channels,
                "color": "RGB",
                "dtype": self.input_dtype,
                "objective": self.objective,
                "pixel_size_um": self.pixel_size_um,
                "illumination": self.illumination,
                "preprocessing": "deepaf_host.model.preprocess.prepare(kind, patches)",
            },
            "output": {"units": self.units, "convention": self.convention, "range_um": list(self.range_um)},
            "dof_um": self.dof_um,
            "arch_config": self.arch_config,
            "params": self.params,
            "training": self.training,
            "metrics": self.metrics,
            "latency": self.latency,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: str = "<card>") -> ModelCard:
        try:
            if data.get("format") != CARD_FORMAT:
                raise ModelError(path, f"card format is {data.get('format')!r}, expected {CARD_FORMAT!r}")
            inp, out = data["input"], data["output"]
            card = cls(
                name=str(data["name"]),
                architecture=str(data["architecture"]),
                file=str(data["file"]),
                sha256=str(data["sha256"]),
                input_kind=str(inp["kind"]),
                patch_size=int(inp["patch_size"]),
                channels=int(inp["channels"]),
                objective=str(inp["objective"]),
                pixel_size_um=float(inp["pixel_size_um"]),
                illumination=str(inp.get("illumination", "koehler")),
                input_dtype=str(inp.get("dtype", "int8")),
                units=str(out["units"]),
                convention=str(out.get("convention", "")),
                range_um=(float(out["range_um"][0]), float(out["range_um"][1])),
                dof_um=float(data["dof_um"]),
                arch_config=dict(data.get("arch_config", {})),
                params=int(data.get("params", 0)),
                training=dict(data.get("training", {})),
                metrics=dict(data.get("metrics", {})),
                latency=dict(data.get("latency", {})),
            )
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(path, f"card is incomplete or malformed ({type(exc).__name__}: {exc})") from None
        if card.input_kind not in INPUT_KINDS:
            raise ModelError(path, f"unknown input kind {card.input_kind!r}")
        if card.units != "um":
            raise ModelError(path, f"output units are {card.units!r}; the scanner works in 'um'")
        if not card.range_um[0] < card.range_um[1]:
            raise ModelError(path, f"trained range {card.range_um} is empty")
        return card

    def save(self, path: str | Path) -> None:
        save_card_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        return cls.from_json(read_card_json(path, "model card"), str(path))

    def check_file(self, model_path: str | Path) -> None:
        """The card describes this very file (name and sha256)."""
        check_model_file(model_path, self.file, self.sha256)

    def check_scan(self, objective: str | None = None, pixel_size_um: float | None = None,
                   illumination: str | None = None) -> None:
        """The model was trained for this optical setup (None: not checked)."""
        problems = self.optics_mismatches(objective, pixel_size_um, illumination=illumination)
        if problems:
            raise ModelError(self.file, problems[0].reason)

    def optics_mismatches(
        self,
        objective: str | None,
        pixel_size_um: float | None,
        *,
        subject: str = "the scan",
        frames: str = "the scan's low-res frames are",
        unknown_is_mismatch: bool = False,
        illumination: str | None = None,
    ) -> list[OpticsMismatch]:
        """How an optical setup differs from the one this model was trained for: another
        objective, a pixel size more than ``PIXEL_SIZE_TOLERANCE`` apart (relative), or
        other illumination (None: not checked; a model of seed 001's LED reads nothing
        useful from condenser frames, and the reverse).

        The one check of both the scanner (``check_scan``) and ``deepaf-host eval`` (per
        stack). ``subject`` and ``frames`` word the reasons (``"the stack"``, ``"its
        planes are"``). The objective ``"unknown"`` is a mismatch; a value of None is not
        checked, unless ``unknown_is_mismatch`` (then it is one too: nothing shows that it
        matches).
        """
        out: list[OpticsMismatch] = []
        if objective is None or objective_key(objective) in ("", "unknown"):
            if objective is not None or unknown_is_mismatch:
                reason = f"trained for objective {self.objective}, the objective of {subject} is unknown"
                out.append(OpticsMismatch("objective", objective, self.objective, reason))
        elif objective_key(objective) != objective_key(self.objective):
            out.append(OpticsMismatch("objective", objective, self.objective,
                                      f"trained for objective {self.objective}, {subject} uses {objective}"))
        if pixel_size_um is None:
            if unknown_is_mismatch:
                reason = f"trained at {self.pixel_size_um:.4f} um/pixel, the pixel size of {subject} is unknown"
                out.append(OpticsMismatch("pixel_size_um", None, self.pixel_size_um, reason))
        else:
            rel = abs(pixel_size_um - self.pixel_size_um) / self.pixel_size_um
            if rel > PIXEL_SIZE_TOLERANCE:
                out.append(OpticsMismatch(
                    "pixel_size_um", pixel_size_um, self.pixel_size_um,
                    f"trained at {self.pixel_size_um:.4f} um/pixel, {frames} "
                    f"{pixel_size_um:.4f} um/pixel ({rel:.0%} apart, at most {PIXEL_SIZE_TOLERANCE:.0%})",
                ))
        if illumination is not None and illumination != self.illumination:
            out.append(OpticsMismatch("illumination", illumination, self.illumination,
                                      f"trained under {self.illumination} illumination, {subject} is lit by {illumination}"))
        return out


@dataclass(frozen=True)
class OpticsMismatch:
    """One way an optical setup differs from a model card's (``ModelCard.optics_mismatches``)."""

    #: "objective" or "pixel_size_um".
    quantity: str
    #: The setup's value (None: unknown).
    actual: str | float | None
    #: The card's value.
    trained: str | float
    #: The sentence for people.
    reason: str


def objective_key(objective: str) -> str:
    """'20x', '20x/0.75' and '20X/0.75' name the same preset."""
    return objective.lower().split("/")[0].strip()


def save_card_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write a card atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def read_card_json(path: str | Path, what: str) -> dict[str, Any]:
    """A card's JSON object; ``ModelError`` naming ``what`` when missing or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(str(path), f"{what} not found (every model needs its <name>.json card)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(str(path), f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(str(path), f"{what} must be a JSON object")
    return data


def check_model_file(model_path: str | Path, file: str, sha256: str) -> None:
    """The model file is the one a card describes: its name and sha256."""
    model_path = Path(model_path)
    if model_path.name != file:
        raise ModelError(str(model_path), f"card describes {file!r}, not {model_path.name!r}")
    actual = sha256_of(model_path)
    if actual != sha256:
        raise ModelError(str(model_path), f"sha256 {actual[:12]}... does not match the card's {sha256[:12]}... "
                         "(a corrupt or replaced model file)")


def render_markdown(card: ModelCard) -> str:
    """The human-readable model card."""
    data = card.to_json()
    preprocessing = {
        "patch": "per-patch channel-wise standardisation",
        "pair": "both frames standardised per channel",
        "fourier": "log(1 + unit-mean magnitude) of the grey patch's centred Fourier transform",
    }.get(card.input_kind, card.input_kind)
    lines = [
        f"# Model card: {card.name}",
        "",
        f"- **File**: `{card.file}` (sha256 `{card.sha256}`)",
        f"- **Architecture**: {card.architecture}, {card.params:,} parameters",
        f"- **Input**: {card.input_kind} {card.patch_size}x{card.patch_size}x{card.channels} RGB "
        f"patch of the low-resolution frame, {card.input_dtype}, after "
        f"`deepaf_host.model.preprocess.prepare` ({preprocessing})",
        f"- **Optics**: objective {card.objective}, {card.pixel_size_um:.4f} um per pixel in the specimen plane, "
        f"depth of field {card.dof_um:.2f} um, {card.illumination} illumination",
        f"- **Output**: signed distance to focus in {card.units} ({card.convention}), "
        f"trained on [{card.range_um[0]:g}, {card.range_um[1]:g}] um",
        "",
        "## Training",
        "",
        "```json",
        json.dumps(data["training"], indent=2),
        "```",
        "",
        "## Metrics",
        "",
        "```json",
        json.dumps(data["metrics"], indent=2),
        "```",
    ]
    if card.latency:
        lines += ["", "## Latency", "", "```json", json.dumps(card.latency, indent=2), "```"]
    return "\n".join(lines) + "\n"
