"""Training losses: cross-entropy (class weights, OHEM) over the main and auxiliary logits, plus an
optional Lovász-softmax term on the main logits.

Why Lovász-softmax: cross-entropy counts pixels, so a thin class (a pole is 2-4 pixels wide) weighs
little however badly it is segmented, while mIoU gives each class's IoU the same weight. The Lovász
extension of the Jaccard loss (Berman, Rannen Triki, Blaschko, "The Lovász-Softmax loss: a
tractable surrogate for the optimization of the intersection-over-union measure in neural
networks", CVPR 2018) is a convex surrogate of 1 - IoU per class that equals it exactly on one-hot
predictions; averaged over the classes present in the batch, it is a surrogate of 1 - mIoU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Pixels whose error for a class is at most this are left out of that class's sort. They sort
# last, so leaving them out keeps every other pixel's cumulative counts exact and changes the loss
# by at most this much. On the default model's val frames it leaves 12% (Bicyclist) to 65% (Pole)
# of the pixels in a class's sort.
LOVASZ_TOL = 1e-3
# The Lovász term is computed on every LOVASZ_STRIDE-th row and column, at a random phase per batch.
# 1/16 of the pixels keeps its cost small (an epoch takes no measurably longer with the term;
# docs/TRAIN.md). Ratios of pixel counts, which is all a Jaccard loss is,
# survive uniform subsampling; only roughly for a class a few pixels wide (a pole can fall between
# the sampled columns at some phases).
LOVASZ_STRIDE = 4


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Mean over the classes present in `target` of the Lovász extension of the class's Jaccard
    loss, computed over the whole batch (as mIoU is over a split). logits: N x C x H x W; target:
    N x H x W class indices, `ignore_index` pixels left out."""
    num_classes = logits.shape[1]
    probs = logits.float().softmax(1).permute(0, 2, 3, 1).reshape(-1, num_classes)
    labels = target.reshape(-1)
    valid = labels != ignore_index
    probs, labels = probs[valid], labels[valid]
    losses = []
    for c in range(num_classes):
        fg = labels == c
        n_fg = fg.sum()
        if n_fg == 0:
            continue
        err = (fg.float() - probs[:, c]).abs()
        keep = err > LOVASZ_TOL
        err_sorted, order = err[keep].sort(descending=True)
        fg_sorted = fg[keep][order].float()
        # after the first i pixels are counted wrong: intersection and union of class c
        intersection = n_fg - fg_sorted.cumsum(0)
        union = n_fg + (1 - fg_sorted).cumsum(0)
        jaccard = 1 - intersection / union
        grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])  # the Lovász extension's weights
        losses.append((err_sorted * grad).sum())  # not `@`: autocast would run a matmul in bf16
    if not losses:
        return logits.sum() * 0
    return torch.stack(losses).mean()


class SegLoss(nn.Module):
    """Cross-entropy over main + auxiliary logits; with `ohem`, only the hardest pixels count
    (those whose true-class probability is below 0.7, at least 1/16 of the valid pixels). With
    `lovasz` > 0, that multiple of the Lovász-softmax loss of the main logits (on a pixel subgrid,
    see LOVASZ_STRIDE) is added."""

    def __init__(self, ignore_index: int, weight: torch.Tensor | None, ohem: bool, aux_weight: float, lovasz: float = 0.0):
        super().__init__()
        self.ignore, self.ohem, self.aux_weight, self.lovasz = ignore_index, ohem, aux_weight, lovasz
        self.register_buffer("weight", weight if weight is not None else torch.empty(0))

    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # under autocast: softmax and the OHEM threshold in FP32
        w = self.weight if self.weight.numel() else None
        if not self.ohem:
            return F.cross_entropy(logits, target, weight=w, ignore_index=self.ignore)
        loss = F.cross_entropy(logits, target, weight=w, ignore_index=self.ignore, reduction="none").flatten()
        valid = target.flatten() != self.ignore
        loss = loss[valid]
        if loss.numel() == 0:
            return logits.sum() * 0
        thresh = -math.log(0.7)
        min_kept = max(loss.numel() // 16, 1)
        hard = loss[loss > thresh]
        if hard.numel() < min_kept:
            hard = loss.topk(min_kept).values
        return hard.mean()

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        main, *aux = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        loss = self._ce(main, target) + sum(self.aux_weight * self._ce(a, target) for a in aux)
        if self.lovasz > 0:
            s = LOVASZ_STRIDE
            oy, ox = torch.randint(0, s, (2,)).tolist()
            loss = loss + self.lovasz * lovasz_softmax(main[:, :, oy::s, ox::s], target[:, oy::s, ox::s], self.ignore)
        return loss
