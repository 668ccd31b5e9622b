"""Focus measures (pure functions on gray images)."""

from .measures import DEFAULT_MEASURE, MEASURES, FocusMeasure, get, gray

__all__ = ["DEFAULT_MEASURE", "MEASURES", "FocusMeasure", "get", "gray"]
