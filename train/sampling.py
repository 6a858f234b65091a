"""Rare-class sampling (`roadseg train --balance T`): frames rich in rare classes are drawn more often.

After DAFormer's rare class sampling (Hoyer et al., CVPR 2022): class c is picked with probability
P(c) ∝ exp((1 - f_c) / T), f_c its share of the labelled training pixels, then a frame in
proportion to its pixels of c (DAFormer picks uniformly among frames holding c; in driving scenes
nearly every frame holds a few pixels of every class: on CamVid train+val without 0006R0, Fence is
in 227 of 367 frames and Bicyclist in 255 from 64 pixels up, so uniform picking changes the classes'
pixel shares by under 13%). A frame's probability sums over its classes. On that split, T = 0.1
draws the richest frame 2.3 times an epoch on average and raises the expected pixel share of
Bicyclist 1.24x, Fence 1.17x, Pedestrian 1.12x, Tree 1.12x; class weights in the loss cannot add
what a frame drawn again with fresh augmentation adds, new views. Large T approaches uniform.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def class_pixels(masks: Iterator[np.ndarray] | list[np.ndarray], num_classes: int) -> np.ndarray:
    """[frames, classes] labelled pixel counts (the ignore index and anything above is dropped)."""
    rows = [np.bincount(m[m < num_classes].ravel(), minlength=num_classes)[:num_classes] for m in masks]
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), num_classes)


def frame_weights(pixels: np.ndarray, temperature: float) -> np.ndarray:
    """Each frame's sampling probability (sums to 1) from its [frames, classes] pixel counts."""
    totals = pixels.sum(0)
    seen = totals > 0
    if not seen.any():  # nothing labelled: uniform
        return np.full(len(pixels), 1.0 / max(len(pixels), 1))
    shares = totals / totals.sum()
    logits = np.where(seen, (1.0 - shares) / temperature, -np.inf)
    p_class = np.exp(logits - logits[seen].max())
    p_class /= p_class.sum()
    w = (pixels / np.maximum(totals, 1)) @ p_class
    return w / w.sum()


class BalancedSampler(Sampler[int]):
    """Draws len(weights) frames an epoch with replacement by `weights`, the same draw on every
    process of a distributed run (seeded by seed and epoch), each rank taking its share."""

    def __init__(self, weights: np.ndarray, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights) // self.num_replicas

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        drawn = torch.multinomial(self.weights, len(self) * self.num_replicas, replacement=True, generator=g)
        return iter(drawn[self.rank :: self.num_replicas].tolist())


class EpochIndexed(Sampler[tuple[int, int]]):
    """(epoch, index) pairs of another sampler's indices: the epoch travels with each index to the
    loader's workers (SegDataset.__getitem__ hands it to the transform), so workers that live
    across epochs augment every epoch anew. Set `epoch` before each epoch's iteration."""

    def __init__(self, sampler: Sampler[int]):
        self.sampler, self.epoch = sampler, 0

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, i) for i in self.sampler)
