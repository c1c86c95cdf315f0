"""Demonstration datasets in LeRobot's format: ``DatasetWriter`` writes v2.1, ``DemoDataset`` reads v2.0/v2.1/v3.0.

A dataset directory holds parquet tables (one row per control step), mp4 videos (one per
episode and camera) and JSON metadata; see ``sim.dataset.meta`` for the layout. Datasets
recorded with LeRobot load with ``DemoDataset`` as they are, and LeRobot loads ours.
"""

from sim.dataset.meta import CODEBASE_VERSION, READABLE_VERSIONS, DatasetInfo, load_info
from sim.dataset.reader import DemoDataset, EpisodeInfo, EpisodeShuffleSampler
from sim.dataset.writer import DatasetWriter

__all__ = [
    "CODEBASE_VERSION",
    "READABLE_VERSIONS",
    "DatasetInfo",
    "DatasetWriter",
    "DemoDataset",
    "EpisodeInfo",
    "EpisodeShuffleSampler",
    "load_info",
]
