"""Evaluation: mIoU, per-class IoU and pixel accuracy of a PyTorch model on a labelled split, with
the same numpy metric code (core/metrics.py) every other stage uses. Frames are resized to the
model input size and the network asked for its logits at the label size (one bilinear upsampling,
align_corners=False), exactly as the exported graph does."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from roadseg.core.atomic import atomic_path, check_folder
from roadseg.core.card import ModelCard
from roadseg.core.metrics import ConfusionMatrix

from .data import EvalTransform, SegDataset


@torch.no_grad()
def evaluate(model: nn.Module, dataset: SegDataset, card: ModelCard, device: str = "cpu",
             progress: bool = True, limit: int | None = None) -> ConfusionMatrix:  # fmt: skip
    """Score `model` on a labelled split, the frames pre-processed as its card says.

    Args:
        model: the network (eval mode); dataset: the labelled split; card: the model's card;
        device: where to run; progress: a progress bar; limit: score only the first N frames.
    Returns:
        The split's confusion matrix (`.miou()`, `.summary(classes)`).
    Raises:
        RoadsegError: an unreadable or invalid sample (unless the dataset skips bad ones).
    """
    return evaluate_groups(model, dataset, card, None, device, progress, limit)[0]


def evaluate_groups(model: nn.Module, dataset: SegDataset, card: ModelCard, key: Callable[[int], str] | None,
                    device: str = "cpu", progress: bool = True,
                    limit: int | None = None) -> tuple[ConfusionMatrix, dict[str, ConfusionMatrix]]:  # fmt: skip
    """The split's confusion matrix and, with `key` (frame index -> group, e.g. its drive), one per
    group from the same pass (a model that does well on the drives it trained on can hide a weak one
    in the total)."""
    model.eval()
    tf = EvalTransform(card.mean, card.std, card.input_size)
    cm = ConfusionMatrix(card.num_classes, card.ignore_index)
    groups: dict[str, ConfusionMatrix] = {}
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc=f"eval {dataset.split}", disable=not progress, leave=False):
        img, mask = dataset.read(i)
        x, target = tf(img, mask, i)
        x = torch.from_numpy(x)[None].to(device)
        # logits straight at the label size (one upsampling from the head's stride), as in the graph
        logits = model(x) if x.shape[-2:] == target.shape else model(x, target.shape)
        pred = logits.argmax(1)[0].cpu().numpy()
        cm.update(pred, target)
        if key is not None:
            groups.setdefault(key(i), ConfusionMatrix(card.num_classes, card.ignore_index)).update(pred, target)
    return cm, groups


def format_groups(groups: dict[str, ConfusionMatrix], counts: dict[str, int], classes: list[str], what: str) -> str:
    """One row per group: frames, mIoU, pixel accuracy and each class's IoU."""
    short = [c[:6] for c in classes]
    lines = [f"{what:<8} {'frames':>6} {'mIoU':>6} {'pixacc':>6}  " + " ".join(f"{c:>6}" for c in short)]
    for name, g in sorted(groups.items()):
        ious = " ".join(f"{'n/a' if np.isnan(v) else f'{v:.3f}':>6}" for v in g.iou())
        lines.append(f"{name:<8} {counts[name]:>6} {g.miou():>6.4f} {g.pixel_accuracy():>6.4f}  {ious}")
    return "\n".join(lines)


def write_confusion(cm: ConfusionMatrix, classes: list[str], out: str | os.PathLike) -> tuple[Path, Path]:
    """Confusion matrix as CSV (raw pixel counts) and as a row-normalised PNG heat map, each
    written to a temporary file and renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = check_folder(out, "--confusion")
    csv_path, png_path = out / "confusion.csv", out / "confusion.png"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["gt\\pred", *classes])
        for name, row in zip(classes, cm.mat):
            w.writerow([name, *row.tolist()])
    norm = cm.mat / np.maximum(cm.mat.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(classes), 1 + 0.5 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for (r, c), v in np.ndenumerate(norm):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(f"mIoU {cm.miou():.3f}")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return csv_path, png_path


def format_report(cm: ConfusionMatrix, classes: list[str]) -> str:
    lines = [f"mIoU {cm.miou():.4f}   pixel accuracy {cm.pixel_accuracy():.4f}"]
    for name, v in zip(classes, cm.iou()):
        lines.append(f"  {name:<14} {'n/a' if np.isnan(v) else f'{v:.4f}'}")
    return "\n".join(lines)
