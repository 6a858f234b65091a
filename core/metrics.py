"""Segmentation metrics in numpy, shared by training, evaluation, export gates and benchmarks so
every stage reports the same number."""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Accumulates a [C, C] confusion matrix (rows = ground truth, columns = prediction) over a
    whole split; pixels whose label is the ignore index or outside 0..C-1 are left out."""

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)
        # per ground-truth class: pixels predicted as no valid class (false negatives all the same)
        self.other = np.zeros(num_classes, dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        target = np.asarray(target).reshape(-1).astype(np.int64)
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.size} pixels, target {target.size}")
        keep = (target >= 0) & (target < self.num_classes)
        if self.ignore_index is not None:
            keep &= target != self.ignore_index
        c = self.num_classes
        p = pred[keep]
        p = np.where((p >= 0) & (p < c), p, c)  # predictions outside the classes: an extra column
        counts = np.bincount(target[keep] * (c + 1) + p, minlength=c * (c + 1)).reshape(c, c + 1)
        self.mat += counts[:, :c]
        self.other += counts[:, c]

    def merge(self, other: ConfusionMatrix) -> None:
        self.mat += other.mat
        self.other += other.other

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both prediction and ground truth."""
        tp = np.diag(self.mat).astype(np.float64)
        denom = self.mat.sum(0) + self.mat.sum(1) + self.other - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else 0.0

    def pixel_accuracy(self) -> float:
        total = self.mat.sum() + self.other.sum()
        return float(np.trace(self.mat) / total) if total else 0.0

    def summary(self, class_names: list[str] | None = None) -> dict:
        names = class_names or [str(i) for i in range(self.num_classes)]
        return {
            "miou": self.miou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.iou())},
        }


def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels where two label maps agree (the accuracy proxy when no labels exist)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    return float((a == b).mean()) if a.size else 1.0
