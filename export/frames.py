"""Frames for calibration and verification: a labelled dataset (CamVid, Cityscapes or folder
layout, detected from its files), a folder of images, or a video. Frames come back as BGR uint8
at the graph's frame size (masks resized with nearest neighbour), as a deployed camera sends them.
Images are found and decoded, and videos opened, by the runtime (roadseg.core.images and its
video reader), so `roadseg export` reads a folder or video exactly as `roadseg run` does."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from roadseg.core.errors import RoadsegError
from roadseg.core.images import list_images, read_bgr8, to_bgr8


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
    """([(frame BGR, mask)], DatasetInfo, [image file names]) from a labelled dataset; at `size`, or
    (None) at the first frame's own size, so the frames stack into batches."""
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
        size = size or mask.shape[:2]
        pairs.append((_fit(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), size, cv2.INTER_LINEAR), _fit(mask, size, cv2.INTER_NEAREST)))
    return pairs, ds.info, [s.image.name for s in ds.samples[:n]]


def unlabelled(src: str | Path, size: tuple[int, int] | None, count: int) -> list[np.ndarray]:
    """Up to `count` BGR frames, evenly spaced, from image files (a folder and its subfolders, a glob
    or one image; natural order) or a video. Files that cannot be decoded are skipped."""
    return [frame for _, frame in unlabelled_named(src, size, count)]


def unlabelled_named(src: str | Path, size: tuple[int, int] | None, count: int) -> list[tuple[str, np.ndarray]]:
    """unlabelled(), each frame with its name: the image file's name, or "frame N" of a video."""
    images = list_images(src, recursive=True)
    if images is not None:
        if len(images) > count:
            images = [images[int(i)] for i in np.linspace(0, len(images) - 1, count)]
        named = [(Path(f).name, read_bgr8(f)) for f in images]
        return [(name, _fit(img, size, cv2.INTER_LINEAR)) for name, img in named if img is not None]
    path = Path(src).expanduser()
    if not path.is_file():
        raise RoadsegError(f"{src}: not a folder of images, an image or a video file")
    return _video_frames(path, size, count)


def _video_frames(path: Path, size: tuple[int, int] | None, count: int) -> list[tuple[str, np.ndarray]]:
    from roadseg.runtime.readers import CaptureReader

    reader = CaptureReader(str(path), "file")
    reader.open()  # a RoadsegError naming the file when OpenCV cannot open it as a video
    frames: list[tuple[str, np.ndarray]] = []
    try:
        total = int(reader.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        total = total if total > 0 else count  # unknown length: the first `count` frames
        want = set(np.linspace(0, max(total - 1, 0), min(count, max(total, 1))).astype(int).tolist())
        i = 0
        while len(frames) < count:
            item = reader.read()
            if item is None:
                break
            if i in want:
                img = to_bgr8(item[0])[0]
                if img is not None:
                    frames.append((f"frame {i}", _fit(img, size, cv2.INTER_LINEAR)))
            i += 1
    finally:
        reader.release()
    return frames
