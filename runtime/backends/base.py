"""The Backend protocol every inference backend implements, and the helpers they share.

A backend opens one model file made by roadseg (the ONNX contract: input `frames` uint8
[N,H,W,3] BGR -> output `labels` uint8 [N,H,W]), reports its tensor specs, and maps a batch of
frames to a batch of label maps. Backends never fall back silently: a requested provider or
library that is missing raises MissingDependencyError saying what to install.

Every backend takes frames of any size: a graph with a fixed frame size gets them through
`fit_frames` (bilinear in, labels back with nearest neighbour), the one place that convention lives;
`batch_chunks` splits a batch for a graph with a bounded (or fixed) batch. `BaseBackend.infer` does
both, with the frame checks and the padding, once for every backend: a backend implements only how it
opens, runs one ready batch, and closes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError


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


class TensorSpecs:
    """The `inputs`/`outputs` of the Backend protocol, from `_inputs`/`_outputs` (copies, so callers
    cannot change them); shared by every backend and the bench's PyTorch runner."""

    _inputs: list[TensorSpec]
    _outputs: list[TensorSpec]

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self._outputs)


class BaseBackend(TensorSpecs):
    """What every roadseg backend does around its own run: `infer(frames)` checks the frames once
    (closed backend, dtype and shape), takes one frame or a batch, fits the frames to the size the
    graph runs at (`run_size`), splits the batch into the chunks the graph takes (`batch_range`),
    padding a short chunk with its last frame and dropping the padding's labels, and checks that the
    labels came back as uint8 [N,H,W].

    A subclass sets `name`, `path`, `card` and the tensor specs (`_inputs`, `_outputs`), and implements
    `_run(batch)` (uint8 [B,H,W,3] contiguous, B within `batch_range` -> labels [B,H,W]), `closed` and
    `close()`; it overrides `run_size`, `batch_range` or `_active` where its graph or library needs it.
    """

    name: str
    path: Path
    card: ModelCard

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def run_size(self, h: int, w: int) -> tuple[int, int] | None:
        """The (H, W) the graph runs frames of h x w at; None: their own size."""
        return None

    def batch_range(self, n: int) -> tuple[int, int]:
        """(smallest, largest) batch one run takes, for a call with n frames (default: any)."""
        return 1, max(n, 1)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _active(self) -> contextlib.AbstractContextManager[Any]:
        """Held around one infer() call's runs (a lock and a current CUDA context, say)."""
        return contextlib.nullcontext()

    def closed_error(self) -> RoadsegError:
        return RoadsegError(f"{self.path}: backend {self.name} is closed")

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [H,W,3] or [N,H,W,3] BGR -> uint8 [H,W] or [N,H,W] class indices."""
        if self.closed:
            raise self.closed_error()
        x = check_frames(frames)
        single = x.ndim == 3
        if single:
            x = x[None]
        with self._active():
            x, restore = fit_frames(x, self.run_size(*x.shape[1:3]))
            parts = list(self._chunks(np.ascontiguousarray(x)))
            labels = restore(parts[0] if len(parts) == 1 else np.concatenate(parts))
        return labels[0] if single else labels

    def _chunks(self, x: np.ndarray) -> Iterator[np.ndarray]:
        lo, hi = self.batch_range(len(x))
        for start, stop, size in batch_chunks(len(x), lo, hi):
            chunk, k = x[start:stop], stop - start
            if k < size:  # pad the last chunk by repeating its last frame; the extra labels are dropped
                chunk = np.ascontiguousarray(np.concatenate([chunk, np.repeat(chunk[-1:], size - k, axis=0)]))
            yield self._checked(self._run(chunk), chunk)[:k]

    def _checked(self, labels: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        if labels.dtype != np.uint8 or labels.shape != chunk.shape[:3]:
            raise RoadsegError(
                f"{self.path}: the graph returned {labels.dtype} {list(labels.shape)} for frames {list(chunk.shape)}; "
                "expected uint8 [N,H,W]: export it again with `roadseg export`"
            )
        return labels

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
