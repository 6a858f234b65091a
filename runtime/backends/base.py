"""The Backend protocol every inference backend implements, and the helpers they share.

A backend opens one model file made by roadseg (the ONNX contract: input `frames` uint8
[N,H,W,3] BGR -> output `labels` uint8 [N,H,W]), reports its tensor specs, and maps a batch of
frames to a batch of label maps. Backends never fall back silently: a requested provider or
library that is missing raises MissingDependencyError saying what to install.

Every backend takes frames of any size: a graph with a fixed frame size gets them through
`fit_frames` (bilinear in, labels back with nearest neighbour), the one place that convention lives;
`batch_chunks` splits a batch for a graph with a bounded (or fixed) batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..card import ModelCard
from ..errors import RoadsegError


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str | None, ...]  # symbolic dims as str/None
    dtype: str  # numpy dtype name, e.g. "uint8", "float32"


@runtime_checkable
class Backend(Protocol):
    name: str  # e.g. "ort-cpu", "ort-cuda", "ort-trt", "trt"
    card: ModelCard

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N,H,W,3] BGR -> uint8 [N,H,W] class indices."""
        ...

    def close(self) -> None: ...


def check_frames(frames: Any) -> np.ndarray:
    """A uint8 [H,W,3] or [N,H,W,3] array (or a list of same-sized frames), or one RoadsegError
    saying what the frame was."""
    try:
        if isinstance(frames, (list, tuple)):
            sizes = sorted({str(list(np.shape(f))) for f in frames})
            if len(sizes) > 1:
                raise RoadsegError(
                    f"frames of different sizes ({', '.join(sizes[:4])}{' ...' if len(sizes) > 4 else ''}) cannot be one "
                    "batch; pass them one at a time, or through Segmenter.stream(frames), which batches frames by size"
                )
        x = np.asarray(frames)
    except (ValueError, TypeError) as e:  # a ragged nest of lists
        raise RoadsegError(f"frames must be uint8 BGR [H,W,3] or [N,H,W,3]; got a {type(frames).__name__} numpy cannot stack ({e})") from None
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or x.shape[-1] != 3 or 0 in x.shape:
        raise RoadsegError(
            f"frames must be uint8 BGR [H,W,3] or [N,H,W,3] with H, W > 0; got {x.dtype} {list(x.shape)} "
            "(convert gray/BGRA with cv2.cvtColor and 16-bit with `>> 8` first)"
        )
    return x


def _same(labels: np.ndarray) -> np.ndarray:
    return labels


def fit_frames(
    frames: np.ndarray, size: tuple[int, int] | None
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Frames uint8 [N,H,W,3] -> (the frames at `size` (H, W), restore).

    A graph that runs at a fixed `size` gets the frames resized with bilinear interpolation;
    restore(labels [N,h,w]) resizes its labels back to the frames' H x W with nearest neighbour.
    With `size` None or equal to the frames' size, the frames come back as they are and restore
    is the identity."""
    h, w = frames.shape[1:3]
    if size is None or (h, w) == tuple(size):
        return frames, _same
    import cv2  # here, so importing the backend registry stays light

    gh, gw = int(size[0]), int(size[1])
    fitted = np.stack([cv2.resize(f, (gw, gh), interpolation=cv2.INTER_LINEAR) for f in frames])

    def restore(labels: np.ndarray) -> np.ndarray:
        return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in labels])

    return fitted, restore


def batch_chunks(n: int, smallest: int, largest: int) -> list[tuple[int, int, int]]:
    """(start, stop, batch) for `n` frames run in batches of at most `largest`: frames
    [start, stop) run as one batch of `batch` >= `smallest`, padded (with the last frame) when the
    chunk is shorter; the padding's labels are dropped. A fixed batch B is smallest = largest = B."""
    chunks = []
    for start in range(0, n, largest):
        stop = min(n, start + largest)
        chunks.append((start, stop, max(stop - start, smallest)))
    return chunks
