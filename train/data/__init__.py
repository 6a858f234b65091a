"""Datasets (CamVid, Cityscapes, plain folders) and training augmentations."""

from .base import DatasetInfo, Sample, SegDataset
from .layouts import LAYOUTS, load_dataset
from .transforms import AugmentConfig, EvalTransform, TrainTransform, normalize

__all__ = [
    "DatasetInfo", "Sample", "SegDataset", "LAYOUTS", "load_dataset",
    "AugmentConfig", "EvalTransform", "TrainTransform", "normalize",
]  # fmt: skip
