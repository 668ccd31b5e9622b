"""Per-tile focus QC: is the image a scan is about to write really in focus?

On a real microscope nothing reveals the true focus, so a scan has to judge each tile
from the evidence it has. Two kinds, recorded in the tile's ``qc`` object:

Autofocus evidence
    Did the strategy find a focus (a peak that stands out of the noise, not at the edge
    of its range), and for single-shot, did the verification frame confirm it (the
    model's residual within DoF/2 and the focus measure not worse than at the start)?
    A tile imaged at a neighbour's z because its autofocus failed has no such evidence.

Image evidence, against the focused neighbours
    Defocus is a low-pass filter: it takes the fine detail (the power spectrum's band at
    0.2-0.45 of Nyquist) away long before the coarse contrast (0.03-0.1 of Nyquist).
    ``detail`` is the ratio of those two bands' power, which does not depend much on
    how much tissue or stain a field holds; ``contrast`` is the coarse band's power per
    unit of tissue fraction, which collapses when a tile is far (tens of um) from focus,
    where ``detail`` is only camera noise over nothing. A tile whose detail is below
    ``min_detail_ratio`` of its focused neighbours' median, or whose contrast is below
    ``min_contrast_ratio`` of theirs, is suspect. Measured on the virtual microscope
    (procedural tissue and the held-out real H&E images, five fields each) at the scan
    bench's high-res sampling (1014 x 760, 0.23 um per pixel): in the `same` lab
    ``detail`` falls to 0.3-0.5 of focus at 1 um of defocus and below 0.03 at 2 um; in
    the `diff` lab (JPEG frames, coloured noise) only to 0.7-0.9 at 1 um, 0.25-0.65 at
    2 um and 0.14-0.95 at 4 um; ``contrast`` to about 0.03 at 10 um in both (checked on tiles with at least a quarter of
tissue: a sparse edge tile's pale tissue has little contrast in focus too). So the
image check catches errors of a few
    micrometres and more; errors within a depth of field are the autofocus evidence's.

Verdicts: ``ok``; ``suspect`` (focus found but not confirmed, or the image is less
sharp than its neighbours'); ``failed`` (no focus was found for the tile: it was imaged
at a guessed z). The runner refocuses a tile that is not ``ok`` once with the classical
strategy and judges it again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

#: Power-spectrum bands as fractions of the Nyquist frequency.
DETAIL_BAND = (0.2, 0.45)
COARSE_BAND = (0.03, 0.1)


@dataclass(frozen=True)
class Sharpness:
    """Image evidence of one tile (see the module docstring)."""

    detail: float
    contrast: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(f"{v:.6g}") for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Sharpness | None:
        if not d:
            return None
        try:
            return cls(float(d["detail"]), float(d["contrast"]))
        except (KeyError, TypeError, ValueError):
            return None


def image_sharpness(rgb: np.ndarray, tissue_fraction: float, max_width: int = 1024) -> Sharpness:
    """The ``detail`` and ``contrast`` of an RGB ``uint8`` image, binned to at most
    ``max_width`` pixels wide so that every camera size costs about the same (~20 ms)."""
    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32) * np.float32(1 / 255)
    k = max(1, -(-g.shape[1] // max_width))
    if k > 1:
        h, w = (g.shape[0] // k) * k, (g.shape[1] // k) * k
        g = g[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))
    g = g - g.mean()
    h, w = g.shape
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    power = np.abs(np.fft.rfft2(g * window)) ** 2
    radius = np.hypot(np.fft.fftfreq(h)[:, None] * 2, np.fft.rfftfreq(w)[None, :] * 2)

    def band(lo: float, hi: float) -> float:
        sel = (radius >= lo) & (radius < hi)
        return float(power[sel].mean()) if sel.any() else 0.0

    coarse = band(*COARSE_BAND)
    detail = band(*DETAIL_BAND) / coarse if coarse > 0 else 0.0
    return Sharpness(detail=detail, contrast=coarse / max(float(tissue_fraction), 0.01))


@dataclass(frozen=True)
class QCRules:
    """Thresholds of the QC; ``dof_um`` is the objective's depth of field."""

    dof_um: float
    min_detail_ratio: float = 0.4
    min_contrast_ratio: float = 0.1
    #: How many nearest focused tiles make the reference (at least 2 are needed).
    neighbours: int = 6
    #: The contrast check needs this much tissue: on a sparse edge tile the coarse
    #: band per unit of tissue is no measure of focus (pale, thin tissue).
    min_tissue_for_contrast: float = 0.25


def judge(
    autofocus: dict[str, Any] | None,
    sharpness: Sharpness | None,
    neighbours: list[Sharpness],
    rules: QCRules,
    tissue_fraction: float = 1.0,
) -> dict[str, Any]:
    """The ``qc`` object of a tile: ``verdict``, ``reason`` and the evidence.

    ``autofocus`` is the tile's autofocus record (``AutofocusResult.to_dict()``; None
    when the tile had too little tissue to focus on and was imaged at a neighbour's z);
    ``neighbours`` the sharpness of the nearest tiles whose QC was ``ok``.
    """
    reasons: list[str] = []
    verdict = "ok"
    evidence: dict[str, Any] = {}
    if autofocus is None:
        evidence["autofocus"] = "none (too little tissue; imaged at the nearest focused tile's z)"
    elif not autofocus.get("ok"):
        verdict = "failed"
        reasons.append(f"no focus found ({autofocus.get('reason') or 'autofocus failed'}); imaged at a guessed z")
        evidence["autofocus"] = "failed"
    else:
        evidence["autofocus"] = "ok"
        verify = (autofocus.get("details") or {}).get("verify")
        if verify is not None:
            evidence["residual_um"] = verify.get("residual_um")
            if not verify.get("passed"):
                verdict = "suspect"
                reasons.append(f"single-shot focus not confirmed ({verify.get('reason')})")

    if sharpness is not None:
        evidence["sharpness"] = sharpness.to_dict()
    if sharpness is not None and len(neighbours) >= 2:
        ref_detail = float(np.median([n.detail for n in neighbours]))
        ref_contrast = float(np.median([n.contrast for n in neighbours]))
        detail_ratio = sharpness.detail / ref_detail if ref_detail > 0 else 1.0
        contrast_ratio = sharpness.contrast / ref_contrast if ref_contrast > 0 else 1.0
        evidence.update(detail_ratio=round(detail_ratio, 4), contrast_ratio=round(contrast_ratio, 4), neighbours=len(neighbours))
        low_detail = detail_ratio < rules.min_detail_ratio
        low_contrast = contrast_ratio < rules.min_contrast_ratio and tissue_fraction >= rules.min_tissue_for_contrast
        if low_detail:
            reasons.append(f"fine detail {detail_ratio:.2f} x the focused neighbours' (< {rules.min_detail_ratio})")
        if low_contrast:
            reasons.append(f"contrast {contrast_ratio:.2f} x the focused neighbours' (< {rules.min_contrast_ratio})")
        if (low_detail or low_contrast) and verdict == "ok":
            verdict = "suspect"
    else:
        evidence["neighbours"] = len(neighbours)
    return {"verdict": verdict, "reason": "; ".join(reasons), **evidence}
