"""Image files, found and decoded in one place for every stage (the runtime's folder source, export's
calibration and verification frames, the benchmark's frames, the training layouts' extensions).

- `IMAGE_EXTS` / `VIDEO_EXTS`: the file types roadseg treats as images / videos.
- `list_images(spec)`: the images named by a folder, a glob or one image file, in natural order
  (frame_2 before frame_10); None when `spec` is none of these.
- `read_image(path)`: the decoded file as stored (any depth, channels), None when it cannot be decoded;
  `to_bgr8(image)`: any decoded image -> 8-bit BGR, or None (with the reason) when it must be skipped;
  `read_bgr8(path)`: both.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import RoadsegError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
MIN_SIDE = 8  # images smaller than this on either side are skipped as corrupt


def natural_key(path: Path) -> list:
    """Sort key: digit runs compare as numbers, the rest case-insensitively (frame_2 < frame_10)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def list_images(spec: str | os.PathLike, recursive: bool = False) -> list[Path] | None:
    """The images named by a folder (its files; with `recursive`, those of its subfolders too), a glob
    (`**` matches subfolders) or one image file, naturally sorted; None if `spec` is none of these.
    A folder or glob without images is a RoadsegError."""
    text = os.fspath(spec)
    p = Path(text).expanduser()
    if p.is_dir():
        found = p.rglob("*") if recursive else p.iterdir()
        paths = [q for q in found if q.is_file() and is_image(q)]
        if not paths:
            where = "this folder or its subfolders" if recursive else "this folder"
            raise RoadsegError(f"{text}: no images ({', '.join(sorted(IMAGE_EXTS))}) in {where}")
    elif p.is_file():  # before the glob branch: `drive[1].mp4` is a file name, not a pattern
        if not is_image(p):
            return None
        paths = [p]
    elif any(c in text for c in "*?["):
        paths = [Path(q) for q in glob.glob(os.path.expanduser(text), recursive=True)]
        paths = [q for q in paths if q.is_file() and is_image(q)]
        if not paths:
            raise RoadsegError(f"{text}: the pattern matches no image files")
    else:
        return None
    return sorted(paths, key=lambda q: (natural_key(q), str(q)))


def read_image(path: str | os.PathLike) -> np.ndarray | None:
    """The decoded file as stored (cv2.IMREAD_UNCHANGED), None when it cannot be decoded (OpenCV
    raises instead of returning None for some broken files)."""
    try:
        return cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


def to_bgr8(image: Any) -> tuple[np.ndarray | None, str | None]:
    """Any decoded image -> (uint8 [H, W, 3] BGR or None when it must be skipped, why or None).

    `why` names the conversion ("gray", "BGRA", "16-bit", ...) or the reason it was skipped
    ("empty", "tiny", "dtype float32", ...); (image, None) means it was already fine."""
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        return None, "empty"
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        return None, f"shape {tuple(image.shape)}"
    if image.shape[0] < MIN_SIDE or image.shape[1] < MIN_SIDE:
        return None, "tiny"
    why = []
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
        why.append("16-bit")
    elif image.dtype != np.uint8:
        return None, f"dtype {image.dtype}"
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
        why.append("gray")
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        why.append("BGRA")
    if not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    return image, " ".join(why) or None


def read_bgr8(path: str | os.PathLike) -> np.ndarray | None:
    """An image file as uint8 [H, W, 3] BGR (gray, BGRA and 16-bit converted), None when it cannot be
    decoded or is not a usable frame (tiny, float)."""
    return to_bgr8(read_image(path))[0]


__all__ = [
    "IMAGE_EXTS", "MIN_SIDE", "VIDEO_EXTS", "is_image", "list_images", "natural_key", "read_bgr8", "read_image",
    "to_bgr8",
]  # fmt: skip
