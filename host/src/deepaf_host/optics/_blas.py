"""Run small BLAS products single-threaded (best effort).

The Hankel transforms multiply matrices of a few hundred rows: a second BLAS thread
gains nothing there, and on a shared machine it can stall a 0.2 ms product for a whole
scheduler time slice while it waits for its partner thread. OpenBLAS (as bundled with
numpy wheels) has a thread-local thread count; where it is not found this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from collections.abc import Iterator
from typing import Any

_setter: Any = None
_looked = False


def _find() -> Any:
    global _setter, _looked
    if not _looked:
        _looked = True
        import numpy as np

        for lib in glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*.so*")):
            try:
                fn = ctypes.CDLL(lib).openblas_set_num_threads_local
            except (OSError, AttributeError):
                continue
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_int]
            _setter = fn
            break
    return _setter


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    fn = _find()
    if fn is None:
        yield
        return
    old = fn(1)
    try:
        yield
    finally:
        fn(old)
