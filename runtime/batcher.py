"""One round-robin batcher over N sources, shared by the CLI pipeline (runtime.pipeline) and the
Python API (runtime.iterate): it takes at most one frame from each stream per round and runs them
through `backend.infer` in as few calls as their sizes allow.

Files, folders and frames from Python drop nothing: a round waits for each of them, so they are
always batched together. Live streams never wait: a round takes their newest frame if they have one.
A stream whose source ends is marked done (with the source's error, if it failed); the others go on.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roadseg.core.errors import RoadsegError, UsageError

from .backends.base import fit_frames
from .redact import redact
from .sources import Frame, Source, open_source
from .stats import Stats

WAIT_STEP = 0.1  # seconds a round waits for a frame before it checks `stop` again


def fixed_frame_size(backend: Any) -> tuple[int, int] | None:
    """(H, W) when the backend's graph takes frames of one fixed size, else None."""
    try:
        shape = tuple(backend.inputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        return None
    if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:3]):
        return int(shape[1]), int(shape[2])
    return None


def fixed_batch(backend: Any) -> int | None:
    """The batch a graph with a fixed batch dimension takes, else None (dynamic)."""
    try:
        n = tuple(backend.inputs[0].shape)[0]
    except (AttributeError, IndexError, TypeError):
        return None
    return int(n) if isinstance(n, int) and n > 0 else None


def backend_name(backend: Any) -> str:
    return getattr(backend, "name", type(backend).__name__)


def model_label(backend: Any) -> str:
    """The model file and its precision (`ddrnet23s_camvid_int8.onnx, INT8`), so a summary says
    which variant ran on which backend; "" for a backend without a file."""
    path, card = getattr(backend, "path", None), getattr(backend, "card", None)
    if not isinstance(path, (str, os.PathLike)) or card is None:
        return ""
    return f"{Path(path).name}, {str(getattr(card, 'precision', '')).upper()}".rstrip(", ")


def infer_frames(backend: Any, images: Sequence[np.ndarray], size: tuple[int, int] | None) -> list[np.ndarray]:
    """Frames of any sizes -> their labels at their own sizes, in as few `backend.infer` calls as
    their sizes allow: a fixed-size graph (`size`) gets every frame resized to it first (bilinear;
    labels back with nearest neighbour: base.fit_frames), so all share one call; a dynamic graph
    gets one call per distinct frame size."""
    fitted, restores = [], []
    for image in images:
        x, restore = fit_frames(image[None], size)
        fitted.append(x[0])
        restores.append(restore)
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(fitted):
        groups.setdefault(x.shape, []).append(i)
    out: list[Any] = [None] * len(images)
    for idx in groups.values():
        # one frame goes as a view (no copy, and the strides a batch-1 caller gives: torch.compile's
        # guards recompile on a stride change); several are stacked into one batch
        batch = fitted[idx[0]][None] if len(idx) == 1 else np.stack([fitted[i] for i in idx])
        labels = np.asarray(backend.infer(batch))
        if labels.ndim == 2:
            labels = labels[None]
        if labels.shape[0] != len(idx):
            raise RoadsegError(f"backend {backend_name(backend)} returned {labels.shape[0]} label maps for "
                               f"{len(idx)} frames; a backend returns one per frame")  # fmt: skip
        for j, i in enumerate(idx):
            out[i] = restores[i](labels[j : j + 1])[0]
    for image, labels in zip(images, out):
        if labels.shape != image.shape[:2]:
            raise RoadsegError(
                f"backend {backend_name(backend)} returned labels {list(labels.shape)} for a frame "
                f"{list(image.shape[:2])}; a backend returns labels at the frame size"
            )
    return [m if m.dtype == np.uint8 else m.astype(np.uint8) for m in out]


class StreamState:
    """One source's state in a run: its capture, Stats, and where it stands."""

    def __init__(self, name: str, spec: Any, total: Stats | None):
        self.name, self.spec = name, spec
        self.stats = Stats(parent=total)
        self.src: Source | None = None
        self.owned = False  # opened here (so closed here), not a Source the caller passed
        self.frames = 0  # frames inferred
        self.done = False  # no more frames will be taken from it
        self.ended_reported = False  # its end was handled (failure logged, capture closed)
        self.error: BaseException | None = None

    def end(self, error: BaseException | None = None) -> None:
        """Take no more frames; the first error is kept."""
        self.done = True
        self.error = self.error or error

    def close_source(self) -> None:
        if self.src is not None and self.owned:
            self.src.close()


def open_all(streams: Sequence[StreamState], live: bool | None, options: dict, stop: threading.Event) -> None:
    """Open every stream's source. With several streams, one that cannot open fails alone (the
    others start; a camera or URL retries with the reconnect policy on its own thread); a single
    one raises at once. A stop (Ctrl-C) while one opens leaves the rest unopened, and the run ends
    as stopped."""
    several = len(streams) > 1
    options = {"stop": stop, **options, **({"retry_open": True} if several else {})}
    for s in streams:
        try:
            if isinstance(s.spec, Source):
                s.src, s.owned = s.spec, False
            else:
                s.src, s.owned = open_source(s.spec, live, **options), True
        except KeyboardInterrupt:
            if not stop.is_set():
                raise
            for rest in streams:
                rest.done = True
            return
        except UsageError:
            raise
        except RoadsegError as e:
            if not several:
                raise
            s.end(e)


def report_failure(s: StreamState, log: Callable[[str], None] | None) -> None:
    """Log a failed stream of several, once it is handled: the others go on."""
    if s.error is not None and log is not None:
        log(f"stream {s.name} failed: {redact(s.error)}; the other streams go on")


Batch = list[tuple[StreamState, Frame, np.ndarray, float]]


class Batcher:
    """Batches of (stream, frame, labels, infer ms) from `streams` through `backend` until every
    stream is done or `stop` is set. `calls` counts the inference rounds; `wait_step` is how long a
    round waits for a frame before it looks at `stop` again."""

    def __init__(self, backend: Any, streams: Sequence[StreamState], stop: threading.Event,
                 max_frames: int | None = None, wait_step: float = WAIT_STEP):  # fmt: skip
        self.backend, self.streams, self.stop = backend, list(streams), stop
        self.max_frames, self.wait_step = max_frames, wait_step
        self.size = fixed_frame_size(backend)
        self.calls = 0
        self.turn = 0
        self.ready = threading.Event()  # set by every source's buffer when it gets a frame
        for s in self.streams:
            if s.src is not None:
                s.src.buffer.listeners.append(self.ready.set)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            got = self.take()
            if not got:
                return
            self.turn += 1
            yield self._infer(got)

    def _infer(self, got: list[tuple[StreamState, Frame]]) -> Batch:
        for s, frame in got:
            s.stats.record("read", frame.read_ms)
            if self.size is not None and frame.image.shape[:2] != self.size:
                s.stats.count_resized()
        t0 = time.perf_counter()
        labels = infer_frames(self.backend, [f.image for _, f in got], self.size)
        ms = (time.perf_counter() - t0) * 1000.0
        self.calls += 1
        for s, _ in got:
            s.stats.record("infer", ms)
            s.frames += 1
        return [(s, f, m, ms) for (s, f), m in zip(got, labels)]

    def take(self) -> list[tuple[StreamState, Frame]]:
        """One round: a frame from each stream that drops nothing and from each live stream that has
        one now, in round-robin order from `turn`. Waits until the round has a frame, every stream
        is done, or `stop` is set. Streams whose source ended are marked done here."""
        streams, got = self.streams, {}
        while not self.stop.is_set():
            self.ready.clear()  # before looking: a frame put after the look sets it again, so the wait ends at once
            for i, s in enumerate(streams):
                if not (s.done or i in got or s.src is None):
                    frame = self._read(s)
                    if frame is not None:
                        got[i] = frame
            waiting = any(not s.done and i not in got and not s.src.live for i, s in enumerate(streams))  # type: ignore[union-attr]
            if got and not waiting:
                order = sorted(got, key=lambda i: (i - self.turn) % len(streams))
                return [(streams[i], got[i]) for i in order]
            if not got and all(s.done for s in streams):
                return []
            self.ready.wait(self.wait_step)
        return []

    def _read(self, s: StreamState) -> Frame | None:
        """The stream's next frame if it has one now; marks it done at its end or at max_frames."""
        if self.max_frames is not None and s.frames >= self.max_frames:
            s.end()
            return None
        frame = s.src.read(0)  # type: ignore[union-attr]
        if frame is None and s.src.ended:  # type: ignore[union-attr]
            s.end(s.src.error)  # type: ignore[union-attr]
        return frame
