"""Calibration of a microscope (``deepaf-host calibrate``): the camera's pixel size and
its rotation on the stage from known XY jogs and phase correlation, the stage's lost
motion (Z from one focus peak approached from both sides; X and Y from reversing jogs),
and a flat field and blank image from clean glass.

``measure`` holds the maths (pure functions), ``run`` the sequence of moves and frames,
``focus`` the coarse-to-fine focus search it shares with ``collect``.
"""

from .measure import CameraAxes, fit_peak, flat_field, image_shift
from .run import STEPS, Calibration, CalibrationError, CalibrationPlan, run_calibration

__all__ = [
    "STEPS", "Calibration", "CalibrationError", "CalibrationPlan", "CameraAxes", "fit_peak", "flat_field",
    "image_shift", "run_calibration",
]
