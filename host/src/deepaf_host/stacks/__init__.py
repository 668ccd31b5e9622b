"""Focal-stack datasets: the "deepaf-stacks/1" interchange format, its reader and writer,
and simulated datasets from the virtual microscope."""

from .format import FORMAT, StackRecord
from .io import StackDataset, StackWriter, open_stacks
from .simulate import simulate_dataset

__all__ = ["FORMAT", "StackDataset", "StackRecord", "StackWriter", "open_stacks", "simulate_dataset"]
