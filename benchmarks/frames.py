"""The frames every row sees: a labelled dataset (--data, e.g. CamVid val: mIoU and agreement), real
unlabelled frames (--data folder, or --source video/folder: agreement only), else synthetic scenes.

All frames are BGR uint8 at the benchmark's frame size, as a camera would send them. Every row runs
the same frames; latency runs rotate among the first few of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError

UNLABELLED_COUNT = 16  # frames read from a video or folder (agreement only)


@dataclass
class BenchFrames:
    frames: np.ndarray  # uint8 [K, H, W, 3] BGR
    masks: np.ndarray | None  # uint8 [K, H, W] class ids, when labelled
    source: str  # what they are, for the report

    @property
    def labelled(self) -> bool:
        return self.masks is not None

    def save(self, folder: Path) -> tuple[Path, Path | None]:
        folder.mkdir(parents=True, exist_ok=True)
        f = folder / "frames.npy"
        np.save(f, self.frames)
        m = None
        if self.masks is not None:
            m = folder / "masks.npy"
            np.save(m, self.masks)
        return f, m


def _is_local_media(spec: str) -> bool:
    """A local folder, image or video file (read as frames), not a camera, URL or `synthetic`."""
    from roadseg.core.images import IMAGE_EXTS, VIDEO_EXTS

    p = Path(spec).expanduser()
    return p.is_dir() or (p.is_file() and p.suffix.lower() in VIDEO_EXTS + IMAGE_EXTS)


def synthetic(size: tuple[int, int], count: int = UNLABELLED_COUNT) -> np.ndarray:
    from roadseg.runtime.synthetic import make_scene

    return np.stack([make_scene(seed=2000 + i, size=size)[0] for i in range(count)])


def load(card: ModelCard, size: tuple[int, int], data: str | None = None, source: str | None = None,
         limit: int | None = None) -> BenchFrames:  # fmt: skip
    """The benchmark frames. data: a labelled dataset root (its val split, every frame unless
    `limit`) or a folder/video of frames; else source when it is a local video or folder; else
    synthetic scenes (their labels are not the model's domain, so no mIoU is reported on them)."""
    from roadseg.export import frames as framesrc

    size = (int(size[0]), int(size[1]))
    if data:
        root = Path(data)
        if not root.exists():
            raise RoadsegError(
                f"{root}: --data not found; give a labelled dataset root (e.g. CamVid) or a folder of frames"
            )
        if root.is_dir() and framesrc.detect_layout(root):
            pairs, info, _ = framesrc.labelled(root, size, split="val", limit=limit)
            if not pairs:
                raise RoadsegError(f"{root}: its val split is empty; nothing to measure accuracy on")
            if info.classes != card.classes:
                raise RoadsegError(
                    f"{root}: its classes differ from the model's; benchmark on the dataset the model was trained for"
                )
            frames = np.stack([p[0] for p in pairs])
            masks = np.stack([p[1] for p in pairs])
            return BenchFrames(frames, masks, f"{len(pairs)} labelled val frames of {root}")
        got = framesrc.unlabelled(root, size, limit or UNLABELLED_COUNT)
        if not got:
            raise RoadsegError(f"{root}: no readable frames in --data")
        return BenchFrames(np.stack(got), None, f"{len(got)} unlabelled frames of {root}")
    if source and _is_local_media(source):
        got = framesrc.unlabelled(source, size, limit or UNLABELLED_COUNT)
        if got:
            return BenchFrames(np.stack(got), None, f"{len(got)} frames of {source}")
    n = limit or UNLABELLED_COUNT
    return BenchFrames(synthetic(size, n), None, f"{n} synthetic scenes (pass --data for real frames and mIoU)")
