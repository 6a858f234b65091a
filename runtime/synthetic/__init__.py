"""Synthetic driving scenes with exact CamVid labels, drawn with numpy and OpenCV.

The tests need driving frames with pixel-exact labels (to train tiny models and check the whole
pipeline) and `roadseg demo` needs a clip to play, but the project ships no data. This module draws
them: a straight street seen from a car, with road and lane markings, pavements, buildings with
windows, sky, trees, poles, signs, fences, cars, pedestrians and bicyclists, in the 11 CamVid
classes of `card.CAMVID_CLASSES`. Colours, sizes and layout are random per seed, so class is not a
function of colour, yet a small CNN learns it.

The world is 3-D (metres: X to the right, Y up, Z forward, filmed by a pinhole camera looking down
the road) and every visible surface is one polygon, disc or thick line drawn once into the frame and,
with the same pixel coordinates and no anti-aliasing, once into the mask, so labels are exact.
Texture-only details (windows, markings, shadows, lights) are drawn into the frame alone, inside
the surface they belong to. A clip moves the camera forward through the same world: markings and
houses slide past, cars drive, people walk.

The package: geometry.py is the scene model in metres (parts, items, primitives, colours);
street.py generates a random street from a seed, with movers.py for its traffic and people;
camera.py films it into a frame and its mask. This module is the API: `make_scene`,
`SyntheticClip`, `make_dataset` and the class ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from roadseg.core.errors import UsageError

from .geometry import BICYCLIST, BUILDING, CAR, FENCE, PAVEMENT, PEDESTRIAN, POLE, ROAD, SIGN, SKY, TREE
from .movers import add_people, add_traffic
from .street import _NOISE_PAD, _World

__all__ = [
    "BICYCLIST", "BUILDING", "CAR", "FENCE", "PAVEMENT", "PEDESTRIAN", "POLE", "ROAD", "SIGN", "SKY", "TREE",
    "SyntheticClip", "make_dataset", "make_scene",
]  # fmt: skip


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 16:
        raise UsageError(f"synthetic frames must be at least 16x16 pixels, not {h}x{w}")
    return h, w


def _street(seed: int, size: tuple[int, int], duration: float) -> _World:
    """A random street with its traffic and people, drawn in that fixed order (street.py, then movers.py)."""
    world = _World(seed, size, duration)
    add_traffic(world)
    add_people(world)
    return world


def make_scene(seed: int, size: tuple[int, int] = (360, 480)) -> tuple[np.ndarray, np.ndarray]:
    """One random street scene: (frame uint8 [H, W, 3] BGR, mask uint8 [H, W] CamVid class ids).

    The same seed gives identical arrays; every pixel has a class in 0..10."""
    return _street(seed, _check_size(size), duration=0.0).render(0.0)


class SyntheticClip:
    """A clip of a camera driving down one random street; frames are drawn on demand.

    `clip[i]` is deterministic and equals the i-th item of `iter(clip)`; both give (frame, mask)
    as `make_scene` does."""

    def __init__(self, num_frames: int = 120, size: tuple[int, int] = (360, 480), seed: int = 0, fps: float = 30.0):
        if num_frames < 1 or not fps > 0:
            raise UsageError(f"a synthetic clip needs at least 1 frame and fps > 0, not {num_frames} at {fps}")
        self._n = int(num_frames)
        self._fps = float(fps)
        self._world = _street(seed, _check_size(size), duration=(self._n - 1) / self._fps)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return self._world.size

    @property
    def fps(self) -> float:
        return self._fps

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        i = index + self._n if index < 0 else index
        if not 0 <= i < self._n:
            raise IndexError(f"frame {index} is outside a clip of {self._n} frames")
        noise_at = ((7 * i) % _NOISE_PAD, (13 * i) % _NOISE_PAD)
        return self._world.render(i / self._fps, noise_at)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(self._n):
            yield self[i]


def make_dataset(root: str | Path, n_train: int, n_val: int, size: tuple[int, int] = (360, 480), seed: int = 0) -> Path:
    """Write a CamVid-layout folder of synthetic scenes under `root` and return it:
    train/, trainannot/, val/, valannot/ (BGR PNG frames, 8-bit class-id PNG masks) and
    train.txt, val.txt with lines "train/synth_00000.png trainannot/synth_00000.png"."""
    root = Path(root)
    for split_id, (split, count) in enumerate((("train", n_train), ("val", n_val))):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            scene_seed = int(np.random.SeedSequence([seed, split_id, i]).generate_state(1)[0])
            frame, mask = make_scene(scene_seed, size)
            name = f"synth_{i:05d}.png"
            for path, image in ((root / split / name, frame), (root / f"{split}annot" / name, mask)):
                if not cv2.imwrite(str(path), image):
                    raise OSError(f"could not write {path}")
            lines.append(f"{split}/{name} {split}annot/{name}\n")
        (root / f"{split}.txt").write_text("".join(lines))
    return root
