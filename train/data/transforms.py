"""Training augmentations on numpy arrays (OpenCV), seeded per (seed, epoch, index) so a run is
reproducible whatever the number of loader workers.

Optional class paste first (the pixels of rare classes cut from another training frame and pasted
at the same place, ClassMix-style, Olsson et al. 2021), then random scale, crop padded with the
ignore index (the image with the mean colour, which becomes 0 after normalisation), horizontal flip
and photometric jitter; then normalisation to a CHW float array with the model card's mean/std.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np


@dataclass
class AugmentConfig:
    crop: tuple[int, int] = (352, 480)  # (H, W)
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    jitter: float = 0.3  # brightness/contrast/saturation strength, 0 disables
    hue: float = 0.05  # fraction of the hue circle
    paste: float = 0.0  # probability of pasting rare-class pixels from another frame
    paste_classes: tuple[int, ...] = ()


class Pool(Protocol):
    """Where pasted pixels come from: the training set's untransformed (image, mask) pairs."""

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...
    def __len__(self) -> int: ...


def paste_classes(img: np.ndarray, mask: np.ndarray, src_img: np.ndarray, src_mask: np.ndarray,
                  classes: Sequence[int], flip: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Copy the pixels of `classes` from (src_img, src_mask) onto (img, mask) at the same place.

    Driving frames share a viewpoint, so a pole or pedestrian pasted where it stood in another
    frame stays plausible (on the pavement, at a plausible size). The source is resized to the
    target's size (nearest for labels) and optionally mirrored first."""
    h, w = mask.shape
    if src_mask.shape != (h, w):
        src_img = cv2.resize(src_img, (w, h), interpolation=cv2.INTER_LINEAR)
        src_mask = cv2.resize(src_mask, (w, h), interpolation=cv2.INTER_NEAREST)
    if flip:
        src_img, src_mask = src_img[:, ::-1], src_mask[:, ::-1]
    sel = np.isin(src_mask, np.asarray(classes, dtype=src_mask.dtype))
    if not sel.any():
        return img, mask
    img, mask = img.copy(), mask.copy()
    img[sel], mask[sel] = src_img[sel], src_mask[sel]
    return img, mask


def normalize(img_rgb: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HWC RGB -> float32 CHW, (x/255 - mean) / std."""
    x = img_rgb.astype(np.float32) * (1.0 / 255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def photometric(img: np.ndarray, rng: np.random.Generator, strength: float, hue: float) -> np.ndarray:
    x = img.astype(np.float32)
    b = 1.0 + rng.uniform(-strength, strength)
    c = 1.0 + rng.uniform(-strength, strength)
    x = (x * b - x.mean()) * c + x.mean()
    s = 1.0 + rng.uniform(-strength, strength)
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * s
    x = np.clip(x, 0, 255).astype(np.uint8)
    if hue > 0:
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
        shift = int(round(rng.uniform(-hue, hue) * 180))
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return x


class TrainTransform:
    """Augment + normalise. Call `set_epoch(e)` each epoch so the random stream changes."""

    def __init__(self, cfg: AugmentConfig, mean, std, ignore_index: int, seed: int = 0, pool: Pool | None = None):
        if cfg.paste > 0 and (pool is None or not cfg.paste_classes):
            raise ValueError("class paste needs a pool of training frames and the classes to paste")
        self.cfg, self.mean, self.std, self.ignore, self.seed, self.pool = cfg, mean, std, ignore_index, seed, pool
        self.epoch = 0
        self.fill = tuple(int(round(m * 255)) for m in mean)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, img: np.ndarray, mask: np.ndarray, index: int, epoch: int | None = None):
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])
        if cfg.paste > 0 and rng.random() < cfg.paste:  # draws nothing when off: old runs replay
            other = int(rng.integers(0, len(self.pool) - 1))  # type: ignore[arg-type]
            other += other >= index  # never the frame itself
            src_img, src_mask = self.pool.read(other)  # type: ignore[union-attr]
            img, mask = paste_classes(img, mask, src_img, src_mask, cfg.paste_classes, bool(rng.random() < 0.5))
        s = rng.uniform(*cfg.scale)
        h, w = mask.shape
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST)
        ch, cw = cfg.crop
        ph, pw = max(ch - nh, 0), max(cw - nw, 0)
        if ph or pw:
            img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=self.fill)
            mask = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=self.ignore)
        y = int(rng.integers(0, img.shape[0] - ch + 1))
        x = int(rng.integers(0, img.shape[1] - cw + 1))
        img, mask = img[y : y + ch, x : x + cw], mask[y : y + ch, x : x + cw]
        if cfg.flip and rng.random() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
        if cfg.jitter > 0:
            img = photometric(np.ascontiguousarray(img), rng, cfg.jitter, cfg.hue)
        return normalize(img, self.mean, self.std), np.ascontiguousarray(mask).astype(np.int64)


class EvalTransform:
    """Whole frames resized to the model input size (bilinear, as the exported graph does), the
    mask kept at its own size: evaluation upsamples logits back to it, as deployment does."""

    def __init__(self, mean, std, size: tuple[int, int] | None = None):
        self.mean, self.std, self.size = mean, std, size

    def __call__(self, img: np.ndarray, mask: np.ndarray, index: int):
        if self.size is not None and img.shape[:2] != tuple(self.size):
            img = cv2.resize(img, (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)
        return normalize(img, self.mean, self.std), mask.astype(np.int64)
