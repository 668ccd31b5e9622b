"""Slide scanning: tile plans, the scan runner, the manifest and the benchmark."""

from .manifest import Manifest
from .plan import Area, Plan, Tile, plan_tiles
from .runner import ScanConfig, ScanEvents, ScanRunner

__all__ = ["Area", "Manifest", "Plan", "ScanConfig", "ScanEvents", "ScanRunner", "Tile", "plan_tiles"]
