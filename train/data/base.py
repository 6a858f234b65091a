"""A segmentation dataset = a list of (image, mask) file pairs plus the class metadata that flows
into the model card. Layout-specific readers (CamVid, Cityscapes, plain folder) only build the list.

Bad samples (unreadable file, image/mask size mismatch, label values outside the classes) raise one
clear error naming the file, or with `skip_bad=True` are dropped and counted in `self.skipped`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from roadseg.core.errors import RoadsegError


@dataclass
class DatasetInfo:
    name: str
    classes: list[str]
    palette: list[list[int]]
    ignore_index: int


@dataclass
class Sample:
    image: Path
    mask: Path


def _imread(path: Path, flags: int) -> np.ndarray | None:
    """cv2.imread, None when it cannot decode: OpenCV raises (instead of returning None) when a
    header claims more pixels than its limit or more memory than it can get."""
    try:
        return cv2.imread(str(path), flags)
    except cv2.error:
        return None


def read_image_rgb(path: Path) -> np.ndarray:
    img = _imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise RoadsegError(f"{path}: cannot read image (missing or corrupt); fix or remove it, or pass --skip-bad")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    m = _imread(path, cv2.IMREAD_UNCHANGED)
    if m is None:
        raise RoadsegError(f"{path}: cannot read mask (missing or corrupt); fix or remove it, or pass --skip-bad")
    if m.ndim != 2 or m.dtype != np.uint8:
        raise RoadsegError(
            f"{path}: mask must be a single-channel 8-bit PNG of class indices, got shape {m.shape} {m.dtype}"
        )
    return m


@dataclass
class SegDataset:
    """Image/mask pairs with validation. `transform(rng-free image, mask, index)` is applied on
    read; `cache=True` keeps decoded pairs in memory (CamVid fits in ~200 MB)."""

    info: DatasetInfo
    samples: list[Sample]
    split: str
    root: Path
    transform: Callable[[np.ndarray, np.ndarray, int], tuple] | None = None
    skip_bad: bool = False
    cache: bool = False
    skipped: list[str] = field(default_factory=list)
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.samples:
            raise RoadsegError(f"{self.root}: the '{self.split}' split has no samples; check the path and --dataset layout")
        if self.skip_bad or self.cache:
            good = []
            for s in self.samples:
                try:
                    pair = self._read(s)
                except RoadsegError as e:
                    if not self.skip_bad:
                        raise
                    self.skipped.append(str(e))
                    continue
                if self.cache:
                    self._cache[len(good)] = pair
                good.append(s)
            self.samples = good
            if not self.samples:
                raise RoadsegError(f"{self.root}: every sample of the '{self.split}' split is unreadable or invalid")

    @property
    def num_classes(self) -> int:
        return len(self.info.classes)

    def _read(self, s: Sample) -> tuple[np.ndarray, np.ndarray]:
        img, mask = read_image_rgb(s.image), read_mask(s.mask)
        if img.shape[:2] != mask.shape:
            raise RoadsegError(f"{s.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {img.shape[1]}x{img.shape[0]}")
        bad = (mask >= self.num_classes) & (mask != self.info.ignore_index)
        if bad.any():
            vals = sorted(set(np.unique(mask[bad]).tolist()))[:5]
            raise RoadsegError(
                f"{s.mask}: label values {vals} are outside classes 0..{self.num_classes - 1} "
                f"(ignore index {self.info.ignore_index}); fix the mask or pass --skip-bad"
            )
        return img, mask

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed (RGB uint8 image, uint8 mask) pair."""
        if i in self._cache:
            return self._cache[i]
        return self._read(self.samples[i])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]):
        """Sample `i`, transformed; `(epoch, i)` (train/sampling.EpochIndexed) hands the epoch to
        the training transform, whatever epoch a loader worker's copy of it was made in."""
        epoch, i = key if isinstance(key, tuple) else (None, key)
        img, mask = self.read(i)
        if self.transform is None:
            return img, mask
        return self.transform(img, mask, i) if epoch is None else self.transform(img, mask, i, epoch)  # type: ignore[call-arg]
