"""What a patch goes through before the network, shared by training and the scanner.

Pure numpy: the runtime uses it on the Raspberry Pi, training uses it on the same
patches, so the two can never drift apart. The model card names the input kind.
"""

from __future__ import annotations

import numpy as np

#: Side of the central crop of the centred Fourier magnitude fed to FCFNN (seed 001).
FOURIER_CROP = 64

#: Floor of a channel's standard deviation (in 8-bit grey levels): a nearly uniform
#: patch (glass, a saturated area) is not amplified into pure noise.
STD_FLOOR = 2.0

#: Inputs are clipped to this many standard deviations; it is also the int8 range the
#: exported models are calibrated for.
CLIP_SIGMA = 6.0

INPUT_KINDS = ("patch", "pair", "fourier")


def standardize(patches: np.ndarray) -> np.ndarray:
    """Channel-wise normalisation per patch (seed 000's "channel-wise normalization").

    ``patches``: (K, H, W, C) uint8 (or float in 0..255). Each channel of each patch
    gets zero mean and unit standard deviation, which removes the stain intensity and
    illumination level of a lab while keeping the spatial frequency content that carries
    the defocus. Returns float32, clipped to +-CLIP_SIGMA.
    """
    x = np.asarray(patches, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"patches must be (K, H, W, C), got shape {x.shape}")
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = np.maximum(x.std(axis=(1, 2), keepdims=True), STD_FLOOR)
    return np.clip((x - mean) / std, -CLIP_SIGMA, CLIP_SIGMA)


def fourier_magnitude(patches: np.ndarray, crop: int = FOURIER_CROP) -> np.ndarray:
    """FCFNN's input (seed 001): magnitude of the centred 2-D Fourier transform of the
    grey patch, central ``crop`` x ``crop`` region, normalised to unit mean (seed 001's
    normalisation against the illumination's brightness), then ``log(1 + m)``.

    The logarithm is this project's, for the int8 runtime: the magnitude spans about
    100:1 between the low-frequency peak and the median bin, so a linear int8 input
    spends its 256 levels on the peak and rounds most bins to 0 or 1 (a model 1.06 um
    float scored 2.18 um int8); after ``log1p`` the range is about 4 and the median bin
    keeps ten levels. It is monotonic per bin, so it keeps what the magnitude says.

    Returns (K, crop, crop, 1) float32.
    """
    x = np.asarray(patches, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"patches must be (K, H, W, C), got shape {x.shape}")
    grey = x.mean(axis=-1)
    grey = grey - grey.mean(axis=(1, 2), keepdims=True)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(grey), axes=(1, 2)))
    h, w = spectrum.shape[1:]
    if crop > min(h, w):
        raise ValueError(f"Fourier crop {crop} is larger than the patch {h}x{w}")
    top, left = (h - crop) // 2, (w - crop) // 2
    spectrum = spectrum[:, top : top + crop, left : left + crop]
    spectrum /= np.maximum(spectrum.mean(axis=(1, 2), keepdims=True), 1e-6)
    return np.log1p(spectrum)[..., None].astype(np.float32)


def pair(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two-shot input: both frames standardised, stacked on the channel axis (the
    network takes their difference)."""
    return np.concatenate([standardize(first), standardize(second)], axis=-1)


def prepare(kind: str, patches: np.ndarray, second: np.ndarray | None = None) -> np.ndarray:
    """The network input for ``kind`` (one of INPUT_KINDS)."""
    if kind == "patch":
        return standardize(patches)
    if kind == "fourier":
        return fourier_magnitude(patches)
    if kind == "pair":
        if second is None:
            raise ValueError("a two-shot model needs the second frame's patches")
        return pair(patches, second)
    raise ValueError(f"unknown input kind {kind!r}; expected one of {INPUT_KINDS}")


def input_kind(architecture: str) -> str:
    """The input kind an architecture takes."""
    return {"fcfnn": "fourier", "two-shot": "pair"}.get(architecture, "patch")
