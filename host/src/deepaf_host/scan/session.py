"""Build a scan from user options (the CLI's ``scan``, the benchmark and the tests).

The order guarantees that a bad option never moves anything: options, the autofocus
strategy (a missing single-shot model), a non-virtual camera, the port and its
handshake, the virtual camera, the tile plan (an area outside the travel) and the
output folder (a used folder without ``--resume``) are all checked before the runner
homes the stage.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2

from ..autofocus import DEFAULT_STRATEGY, FocusLimits, make_strategy
from ..camera.base import Camera
from ..camera.open import open_camera
from ..errors import ConfigError
from ..tissue import DEFAULT_THRESHOLDS, calibrate
from .manifest import MANIFEST
from .plan import DEMO_AREA_MM, Area, plan_tiles
from .runner import ScanConfig, ScanEvents, ScanRunner
from .timing import PI_HQ_TIMING, CameraTiming, TimedCamera


@dataclass
class ScanOptions:
    port: str
    out_dir: Path
    camera: str | None = None
    area_mm: str = DEMO_AREA_MM
    objective: str = "20x"
    autofocus: str = DEFAULT_STRATEGY
    autofocus_options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    measure: str | None = None
    overlap: float = 0.1
    resume: bool = False
    z_min_um: float | None = None
    z_start_um: float = -4000.0
    max_correction_um: float = 30.0
    settle_s: float = 0.2
    image_format: str = "jpg"
    blank_image: Path | None = None
    pixel_size_um: float | None = None
    home: bool = True
    #: Simulated scans only: the camera time model (None: frames take no simulated time).
    camera_timing: CameraTiming | None = PI_HQ_TIMING


def _strategy_options(opts: ScanOptions) -> dict[str, Any]:
    options = dict(opts.autofocus_options)
    if opts.autofocus == "single-shot":
        options.setdefault("model", opts.model)
        options.setdefault("model_options", {"objective": opts.objective})
    elif opts.measure is not None:
        options.setdefault("measure", opts.measure)
    return options


def _thresholds(opts: ScanOptions) -> Any:
    if opts.blank_image is None:
        return DEFAULT_THRESHOLDS
    bgr = cv2.imread(str(opts.blank_image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError("blank", f"cannot read the image {opts.blank_image}")
    try:
        return calibrate(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    except ValueError as exc:
        raise ConfigError("blank", str(exc)) from None


@contextlib.contextmanager
def open_microscope(
    port: str, camera_spec: str | None, *, z_min_um: float | None = None, objective: str = "20x",
    pixel_size_um: float | None = None, camera_timing: CameraTiming | None = PI_HQ_TIMING,
) -> Iterator[tuple[Any, Camera, Callable[[], float], Callable[[float], None], bool]]:
    """Connect the stage and open the camera: yields ``(stage, camera, clock, sleep, simulated)``.

    A non-virtual camera is opened before the port, so a missing camera fails before
    anything talks to the board. Nothing moves here.
    """
    from ..stage import Connection, Stage  # helper-3's package

    virtual_camera = camera_spec is None and port.startswith("sim://") or (camera_spec or "").startswith("sim://")
    spec = camera_spec if camera_spec is not None else ("sim://" if port.startswith("sim://") else "0")
    if virtual_camera and urlsplit(spec).netloc + urlsplit(spec).path.strip("/") == "":
        # A virtual camera URL without an objective takes --objective's.
        spec = f"sim://{objective}" + (f"?{urlsplit(spec).query}" if urlsplit(spec).query else "")
    with contextlib.ExitStack() as stack:
        camera: Camera | None = None
        if not virtual_camera:
            options: dict[str, Any] = {}
            if pixel_size_um is None:
                from ..optics.presets import (
                    CAMERA_MODES,
                    get_objective,
                    specimen_pixel_um,
                )

                pixel_size_um = specimen_pixel_um(get_objective(objective), CAMERA_MODES["low"])
            options["pixel_size_um"] = pixel_size_um
            camera = stack.enter_context(open_camera(spec, **options))
        conn = Connection(port)
        stack.callback(conn.close)
        stage = Stage(conn, z_min_um=z_min_um)
        board = conn.pose_source
        clock: Callable[[], float] = time.monotonic
        sleep: Callable[[float], None] = time.sleep
        # A virtual board keeps its own clock; at any speed but real time, motion and
        # exposures are timed on it (simulated seconds) and host computation is added.
        simulated = board is not None and getattr(board, "speed", 1.0) != 1.0
        if board is not None and hasattr(board, "seconds") and hasattr(board, "sleep"):
            clock, sleep = board.seconds, board.sleep
        if camera is None:
            if board is None:
                raise ConfigError("camera", f"the virtual camera {spec!r} follows a virtual board; {port!r} is not one (use --port sim://)")
            camera = stack.enter_context(open_camera(spec, pose_source=board))
        if simulated and getattr(board, "speed", None) == "max" and camera_timing is not None:
            # Event-driven clock: frames would take no time at all without a camera model.
            camera = TimedCamera(camera, sleep, camera_timing)
        yield stage, camera, clock, sleep, simulated


def run_scan(opts: ScanOptions, events: ScanEvents | Any | None = None) -> dict[str, Any]:
    """Check everything, connect, plan, and run the scan; returns the report."""
    area = Area.parse_mm(opts.area_mm)
    strategy = make_strategy(opts.autofocus, **_strategy_options(opts))
    thresholds = _thresholds(opts)
    limits = FocusLimits(opts.max_correction_um)
    config = ScanConfig(
        autofocus=strategy, z_start_um=opts.z_start_um, limits=limits, thresholds=thresholds,
        settle_s=opts.settle_s, image_format=opts.image_format, home=opts.home,
    )
    if (Path(opts.out_dir) / MANIFEST).exists() and not opts.resume:
        raise ConfigError("out", f"{opts.out_dir} already holds a scan ({MANIFEST}); use --resume to continue it or choose another folder")
    with open_microscope(
        opts.port, opts.camera, z_min_um=opts.z_min_um, objective=opts.objective,
        pixel_size_um=opts.pixel_size_um, camera_timing=opts.camera_timing,
    ) as (stage, camera, clock, sleep, simulated):
        card = getattr(getattr(strategy, "predictor", None), "card", None)
        if card is not None:
            # The model must see the defocus at the pixel scale it was trained on.
            card.check_scan(opts.objective, camera.pixel_size_um("low"))
        h, w = camera.frame_shape("high")
        p = camera.pixel_size_um("high")
        plan = plan_tiles(area, (w * p, h * p), opts.overlap)
        metadata = {
            "port": opts.port, "camera": camera.name, "objective": opts.objective,
            "autofocus_options": {k: v for k, v in _strategy_options(opts).items() if isinstance(v, (str, int, float, bool, type(None)))},
            "model": getattr(getattr(strategy, "predictor", None), "name", None),
            "tissue_thresholds": thresholds.to_dict(),
            "camera_timing": None if not simulated or opts.camera_timing is None else asdict(opts.camera_timing),
        }
        runner = ScanRunner(
            stage, camera, plan, opts.out_dir, config, resume=opts.resume, events=events,
            clock=clock, sleep=sleep, simulated_clock=simulated, metadata=metadata,
        )
        return runner.run()
