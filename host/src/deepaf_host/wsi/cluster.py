"""Many slides on a Dask distributed cluster: ``deepaf-host stitch DIR... --scheduler ADDRESS``.

A lab that scans overnight on several microscopes ends the night with several scan
folders; stitching one takes minutes on a 2-core machine. Each folder is one task
(``stitch(DIR)`` as the local command runs it, with its own resumable cache), handed to
the workers of an existing ``dask.distributed`` scheduler; results come back as each
slide finishes. Whole slides, not tiles, are the unit: a slide's two passes stream its
tiles from disk, so a worker needs the folder on a shared file system (the same path on
every worker) and about one tile row of memory, and nothing but a summary travels back.

Optional: ``pip install 'deepaf-host[cluster]'``. Without ``--scheduler`` the command
stitches the folders here, one after another.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DeepAfError
from .folder import StitchError
from .stitch import StitchOptions, stitch

#: Seconds to wait for the scheduler before giving up.
CONNECT_TIMEOUT_S = 10


def _stitch_one(directory: str, options: StitchOptions) -> dict[str, Any]:
    """One slide, on a worker."""
    return stitch(directory, options)


def stitch_on_cluster(
    directories: list[str], options: StitchOptions, scheduler: str
) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
    """Stitch ``directories`` on the scheduler at ``scheduler``; yields ``(directory,
    summary, None)`` or ``(directory, None, error)`` as each slide finishes.

    Raises :class:`StitchError` when the cluster extra is missing or the scheduler
    cannot be reached (before any slide is submitted).
    """
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise StitchError(scheduler, "--scheduler needs the cluster extra: pip install 'deepaf-host[cluster]'") from None
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise StitchError(scheduler, f"cannot reach the Dask scheduler: {exc}") from None
    with client:
        futures = {
            client.submit(_stitch_one, str(Path(d).resolve()), options, key=f"stitch-{i}-{Path(d).name}", pure=False): d
            for i, d in enumerate(directories)
        }
        for future in as_completed(futures):
            directory = futures[future]
            try:
                yield directory, future.result(), None
            except DeepAfError as exc:
                yield directory, None, str(exc)
            except Exception as exc:  # noqa: BLE001 - one slide's failure must not stop the others
                yield directory, None, f"{type(exc).__name__}: {exc}"
