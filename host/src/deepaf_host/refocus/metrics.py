"""Image quality against the true in-focus render: SSIM and PSNR (pure numpy/OpenCV).

SSIM is Wang et al.'s (2004): an 11-tap Gaussian window of sigma 1.5, K1 = 0.01,
K2 = 0.03, data range 255, computed per RGB channel and averaged over the channels and
the image (the window's valid region only, no padding). PSNR over all pixels and
channels, peak 255. Brenner's gradient (``focus.measures``) orders the two shots of a
two-shot set.
"""

from __future__ import annotations

import numpy as np

from ..focus.measures import brenner, gray


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM of two (H, W) or (H, W, C) images of the same shape."""
    import cv2

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} and {y.shape}")
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    g = cv2.getGaussianKernel(11, 1.5)
    win = g @ g.T

    def filt(img: np.ndarray) -> np.ndarray:
        return cv2.filter2D(img, -1, win, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]

    vals = []
    for c in range(x.shape[2]):
        xc, yc = x[..., c], y[..., c]
        mx, my = filt(xc), filt(yc)
        sxx = filt(xc * xc) - mx * mx
        syy = filt(yc * yc) - my * my
        sxy = filt(xc * yc) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        vals.append(float(m.mean()))
    return float(np.mean(vals))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB (inf for identical images)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(d * d))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


#: How a two-shot network's inputs are ordered (its card's ``order``): ``brenner``, TSVA's
#: rule, the sharper shot by Brenner's gradient first; ``tile``, the scan's tile first and
#: its second shot after, whichever is sharper.
SHOT_ORDERS = ("brenner", "tile")


def order_shots(a: np.ndarray, b: np.ndarray, order: str = "brenner") -> tuple[np.ndarray, np.ndarray, bool]:
    """The tile ``a`` and its second shot ``b`` -> (Y1, Y2, swapped): the network's output
    is Y1 plus its residual. TSVA's Y1 is the sharper shot by Brenner's gradient."""
    if order not in SHOT_ORDERS:
        raise ValueError(f"shot order {order!r}: expected one of {SHOT_ORDERS}")
    if order == "brenner" and brenner(gray(b)) > brenner(gray(a)):
        return b, a, True
    return a, b, False
