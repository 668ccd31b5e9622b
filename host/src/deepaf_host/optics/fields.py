"""Deterministic random fields in world coordinates (the building blocks of the specimen).

Everything is a pure function of (world position, seed): the same place on a slide
always gets the same value, whatever frame, resolution or order it is rendered in.
Randomness comes from an integer hash (splitmix64) of lattice or cell indices.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from . import _blas

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_P1 = np.uint64(0x8CB92BA72F3D8DD7)
_P2 = np.uint64(0xD6E8FEB86659FD93)
_P3 = np.uint64(0xA0761D6478BD642F)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)


def _u64(a: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    return np.atleast_1d(np.asarray(a, dtype=np.int64)).astype(np.uint64)


def hash_u64(ix: npt.ArrayLike, iy: npt.ArrayLike, seed: int, stream: int = 0) -> npt.NDArray[np.uint64]:
    """splitmix64 of (ix, iy, seed, stream); arrays broadcast. Returns uint64."""
    x = _u64(ix) * _P1 + _u64(iy) * _P2 + _u64(np.int64(seed)) * _P3 + _u64(np.int64(stream)) * _GOLD
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def hash_uniform(ix: npt.ArrayLike, iy: npt.ArrayLike, seed: int, stream: int = 0) -> np.ndarray:
    """Uniform numbers in [0, 1) (float64) from the hash of (ix, iy, seed, stream)."""
    return (hash_u64(ix, iy, seed, stream) >> _S11).astype(np.float64) * (1.0 / (1 << 53))


def _bspline_weights(u: np.ndarray, n_lattice: int, i0: int) -> np.ndarray:
    """Dense (len(u), n_lattice) matrix of cubic B-spline weights; lattice index i0 first."""
    fl = np.floor(u)
    t = u - fl
    base = fl.astype(np.int64) - 1 - i0
    w = np.empty((4, u.size))
    t2 = t * t
    t3 = t2 * t
    w[0] = (1 - t) ** 3 / 6
    w[1] = (3 * t3 - 6 * t2 + 4) / 6
    w[2] = (-3 * t3 + 3 * t2 + 3 * t + 1) / 6
    w[3] = t3 / 6
    out = np.zeros((u.size, n_lattice), dtype=np.float32)
    rows = np.arange(u.size)
    for k in range(4):
        out[rows, base + k] = w[k]
    return out


@lru_cache(maxsize=48)
def _axis_weights(coords: bytes, spacing_um: float) -> tuple[np.ndarray, int]:
    """B-spline weight matrix of one axis (cached: fields of one region share axes)."""
    u = np.frombuffer(coords, dtype=np.float64) / spacing_um
    i0 = int(np.floor(u.min())) - 1
    n = int(np.floor(u.max())) + 3 - i0
    w = _bspline_weights(u, n, i0)
    w.flags.writeable = False
    return w, i0


def value_noise(xs_um: np.ndarray, ys_um: np.ndarray, spacing_um: float, seed: int, stream: int = 0) -> np.ndarray:
    """Smooth noise on the grid ``ys_um x xs_um`` (H, W), float32 with values about in [-1, 1].

    Random values on a square lattice of ``spacing_um``, interpolated by cubic B-splines
    (C2-smooth; the weights are separable, so the field is two small matrix products).
    """
    wx, i0 = _axis_weights(np.ascontiguousarray(xs_um, dtype=np.float64).tobytes(), float(spacing_um))
    wy, j0 = _axis_weights(np.ascontiguousarray(ys_um, dtype=np.float64).tobytes(), float(spacing_um))
    ii = np.arange(i0, i0 + wx.shape[1])
    jj = np.arange(j0, j0 + wy.shape[1])
    # B-splines shrink the variance of the lattice; 1.6 brings the spread back near [-1, 1].
    lattice = (3.2 * hash_uniform(ii[None, :], jj[:, None], seed, stream) - 1.6).astype(np.float32)
    with _blas.single_thread():
        if wy.shape[1] * wy.shape[0] < wx.shape[1] * wx.shape[0]:
            return (wy @ lattice) @ wx.T
        return wy @ (lattice @ wx.T)


def fbm(
    xs_um: np.ndarray,
    ys_um: np.ndarray,
    spacing_um: float,
    seed: int,
    stream: int = 0,
    octaves: int = 3,
    min_spacing_um: float = 0.0,
) -> np.ndarray:
    """Fractal sum of ``octaves`` value noises (spacing halves, amplitude halves).

    Octaves finer than ``min_spacing_um`` are left out (they would alias at the pixel
    pitch; a camera pixel averages them away). Normalised to about [-1, 1].
    """
    total = np.zeros((np.size(ys_um), np.size(xs_um)), dtype=np.float32)
    norm = 0.0
    amp = 1.0
    for k in range(octaves):
        s = spacing_um / (2**k)
        norm += amp
        if s >= min_spacing_um:
            total += amp * value_noise(xs_um, ys_um, s, seed, stream * 16 + k)
        amp *= 0.5
    return total / np.float32(norm)


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def value_noise_at(x_um: npt.ArrayLike, y_um: npt.ArrayLike, spacing_um: float, seed: int, stream: int = 0) -> np.ndarray:
    """``value_noise`` at scattered points (same lattice, same values as on a grid)."""
    x = np.asarray(x_um, dtype=np.float64) / spacing_um
    y = np.asarray(y_um, dtype=np.float64) / spacing_um
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = x - fx, y - fy

    def weights(t: np.ndarray) -> list[np.ndarray]:
        t2 = t * t
        t3 = t2 * t
        return [(1 - t) ** 3 / 6, (3 * t3 - 6 * t2 + 4) / 6, (-3 * t3 + 3 * t2 + 3 * t + 1) / 6, t3 / 6]

    wx, wy = np.stack(weights(tx)), np.stack(weights(ty))  # (4, ...)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    shape = np.broadcast(x, y).shape
    off = np.arange(-1, 3).reshape((4,) + (1,) * len(shape))
    # All 16 lattice neighbours of every point in one hash call: (4 rows, 4 cols, ...).
    lat = 2.0 * hash_uniform((ix + off)[None], (iy + off)[:, None], seed, stream) - 1.0
    lat = lat.reshape((4, 4) + shape)
    out = np.einsum("b...,a...,ba...->...", wy, wx, lat)
    return 1.6 * out
