"""Frames for calibration and verification: a labelled dataset (CamVid, Cityscapes or folder
layout, detected from its files), a folder of images, or a video. Frames come back as BGR uint8
at the graph's frame size (masks resized with nearest neighbour), as a deployed camera sends them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from roadseg.runtime.errors import RoadsegError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}


def detect_layout(root: Path) -> str | None:
    if (root / "val.txt").is_file() or (root / "train.txt").is_file():
        return "camvid"
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    if (root / "classes.txt").is_file():
        return "folder"
    return None


def _fit(frame: np.ndarray, size: tuple[int, int] | None, interp: int) -> np.ndarray:
    if size is None or frame.shape[:2] == tuple(size):
        return frame
    return cv2.resize(frame, (size[1], size[0]), interpolation=interp)


def labelled(root: str | Path, size: tuple[int, int] | None, split: str = "val", limit: int | None = None):
    """[(frame BGR, mask)] from a labelled dataset, with its DatasetInfo."""
    from roadseg.train.data import load_dataset

    root = Path(root)
    layout = detect_layout(root)
    if layout is None:
        raise RoadsegError(f"{root}: not a labelled dataset (no val.txt, leftImg8bit/gtFine or classes.txt)")
    ds = load_dataset(root, layout, split)
    n = len(ds) if limit is None else min(limit, len(ds))
    pairs = []
    for i in range(n):
        img, mask = ds.read(i)
        pairs.append((_fit(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), size, cv2.INTER_LINEAR), _fit(mask, size, cv2.INTER_NEAREST)))
    return pairs, ds.info


def unlabelled(src: str | Path, size: tuple[int, int] | None, count: int) -> list[np.ndarray]:
    """Up to `count` BGR frames from an image folder (sorted, evenly spaced) or a video (evenly spaced)."""
    src = Path(src)
    frames: list[np.ndarray] = []
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        if len(files) > count:
            files = [files[int(i)] for i in np.linspace(0, len(files) - 1, count)]
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is not None and img.size:
                frames.append(_fit(img, size, cv2.INTER_LINEAR))
    elif src.is_file() and src.suffix.lower() in VIDEO_EXTS:
        cap = cv2.VideoCapture(str(src))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or count
        want = set(np.linspace(0, max(total - 1, 0), min(count, max(total, 1))).astype(int).tolist())
        i = 0
        while len(frames) < count:
            ok, img = cap.read()
            if not ok:
                break
            if i in want:
                frames.append(_fit(img, size, cv2.INTER_LINEAR))
            i += 1
        cap.release()
    else:
        raise RoadsegError(f"{src}: not a folder of images or a video file ({', '.join(sorted(VIDEO_EXTS))})")
    return frames
