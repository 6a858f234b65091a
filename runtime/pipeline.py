"""The streaming pipeline: capture thread -> inference -> overlay + write thread, bounded queues between.

- `iterate(backend, source)` yields (frame, labels, timings) for the Python API (`Segmenter.stream`):
  the capture thread reads ahead while the caller's thread runs inference.
- `run_stream(backend, source, save=, save_masks=, show=)` adds a writer thread that draws the
  overlay and feeds the sinks, so decoding, inference and writing overlap and throughput on a file
  approaches the slowest stage. Inference stays on the calling thread (GPU backends own their
  context there).

Stopping: set the `stop` event (the CLI's SIGINT/SIGTERM handlers do) and the pipeline drains what
is in flight, finalises the video, and returns its Summary with `interrupted=True`. A
KeyboardInterrupt raised inside is finalised the same way and re-raised; one that arrives during
finalisation (a second Ctrl-C) does not skip it: every finalisation step runs in its own
try/finally. An error (a source lost for good, a full disk) also finalises everything written so
far, then raises a RoadsegError whose `.summary` holds the Summary.

The sinks are written on the writer thread and closed on the caller's thread only once the writer
has ended; a writer that does not end within WRITER_TIMEOUT seconds (a blocked sink) is abandoned
with an error instead, and drops its unfinished video when it does end. The window lives wholly on
the writer thread (OpenCV's GUI calls belong to one thread): created at the first frame, destroyed
when the writer ends.
"""

from __future__ import annotations

import collections
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RoadsegError
from .sources import Frame, Source, open_source
from .stats import Stats, Summary

WRITE_QUEUE = 4  # frames between inference and the writer thread
WRITER_TIMEOUT = 30.0  # seconds the writer gets to write what is queued once the stream ends
REPORT_EVERY = 5.0  # seconds between progress tables with verbose / show


def _stderr(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def fixed_frame_size(backend: Any) -> tuple[int, int] | None:
    """(H, W) when the backend's graph takes frames of one fixed size, else None."""
    try:
        shape = tuple(backend.inputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        return None
    if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:3]):
        return int(shape[1]), int(shape[2])
    return None


class Inferer:
    """One frame -> labels at the frame's size: `backend.infer` on a batch of one. Every backend
    takes frames of any size (a fixed-size graph gets them resized in, bilinear, and its labels
    resized back, nearest neighbour: runtime.backends.base.fit_frames) and pads a fixed batch itself;
    frames that the backend resizes are counted in `stats`."""

    def __init__(self, backend: Any, stats: Stats | None = None):
        self.backend = backend
        self.size = fixed_frame_size(backend)
        self.stats = stats

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.stats is not None and self.size is not None and image.shape[:2] != self.size:
            self.stats.count_resized()
        labels = np.asarray(self.backend.infer(image[None]))
        labels = labels[0] if labels.ndim == 3 else labels
        if labels.shape != image.shape[:2]:
            raise RoadsegError(
                f"backend {getattr(self.backend, 'name', type(self.backend).__name__)} returned labels "
                f"{list(labels.shape)} for a frame {list(image.shape[:2])}; a backend returns labels at the frame size"
            )
        return labels if labels.dtype == np.uint8 else labels.astype(np.uint8)


def _as_source(source: Source | str | Any, live: bool | None, options: dict) -> tuple[Source, bool]:
    if isinstance(source, Source):
        return source, False
    return open_source(source, live, **options), True


def _frames(
    backend: Any, source: Source, stats: Stats, stop: threading.Event, max_frames: int | None
) -> Iterator[tuple[Frame, np.ndarray, float]]:
    """(frame, labels, infer ms) until the source ends, `stop` is set or max_frames were inferred."""
    infer = Inferer(backend, stats)
    n = 0
    while not stop.is_set() and (max_frames is None or n < max_frames):
        frame = source.read(0.1)
        if frame is None:
            if source.ended:
                if source.error is not None:
                    raise source.error
                return
            continue
        stats.record("read", frame.read_ms)
        t0 = time.perf_counter()
        labels = infer(frame.image)
        ms = (time.perf_counter() - t0) * 1000.0
        stats.record("infer", ms)
        n += 1
        yield frame, labels, ms


def iterate(
    backend: Any,
    source: Source | str | Any,
    *,
    live: bool | None = None,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    stats: Stats | None = None,
    **source_options: Any,
) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """Yield (frame BGR uint8 [H,W,3], labels uint8 [H,W], timings) for each frame of `source`.

    source: a Source, or anything `open_source` takes (then opened with `live` and
    `source_options`, and closed when the iterator ends or is closed). timings: index, name,
    timestamp (capture, perf_counter), read_ms, infer_ms, latency_ms (capture -> labels ready).
    Raises the RoadsegError that ended the source, if one did."""
    stats = stats if stats is not None else Stats()
    stop = stop if stop is not None else threading.Event()
    src, owned = _as_source(source, live, source_options)
    try:
        for frame, labels, infer_ms in _frames(backend, src, stats, stop, max_frames):
            latency = (time.perf_counter() - frame.timestamp) * 1000.0
            stats.frame_out(latency)
            yield frame.image, labels, {
                "index": frame.index, "name": frame.name, "timestamp": frame.timestamp,
                "read_ms": frame.read_ms, "infer_ms": infer_ms, "latency_ms": latency,
            }  # fmt: skip
    finally:
        stats.stop()
        if owned:
            src.close()


class _Writer(threading.Thread):
    """Overlay + sinks on its own thread, fed by a bounded queue."""

    def __init__(
        self,
        stats: Stats,
        overlay: Any,
        video: Any,
        masks: Any,
        window: Any,
        on_frame: Callable | None,
        stop: threading.Event,
    ):
        super().__init__(name="roadseg-writer", daemon=True)
        self.q: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)
        self.stats, self.overlay, self.video, self.masks, self.window = stats, overlay, video, masks, window
        self.on_frame, self.stop = on_frame, stop
        self.error: BaseException | None = None
        self.window_closed = False
        self.high_water = 0
        self._end_lock = threading.Lock()
        self._ended = False  # run() is over: the caller may close the sinks
        self._abandoned = False  # the caller gave up waiting: run() drops the unfinished video itself
        self._times: collections.deque[float] = collections.deque(maxlen=30)
        self._latency = float("nan")

    def put(self, item: Any) -> bool:
        """Blocks while the queue is full; False when the writer has failed."""
        while self.is_alive():
            try:
                self.q.put(item, timeout=0.1)
                self.high_water = max(self.high_water, self.q.qsize())
                return True
            except queue.Full:
                continue
        return False

    def finish(self, timeout: float | None = None) -> None:
        """Ask the writer to end after what is queued and wait up to `timeout` s (WRITER_TIMEOUT)
        for it (then `settle()`). A KeyboardInterrupt while waiting does not cut the wait short
        (closing sinks under a running writer is what the wait prevents); it is raised once the
        wait is over."""
        deadline = time.monotonic() + (WRITER_TIMEOUT if timeout is None else timeout)
        queued = False
        pending: BaseException | None = None
        while self.is_alive() and time.monotonic() < deadline:
            try:
                if not queued:
                    self.q.put(None, timeout=0.1)
                    queued = True
                else:
                    self.join(min(0.1, max(0.0, deadline - time.monotonic())))
            except queue.Full:
                continue
            except KeyboardInterrupt as e:
                pending = pending or e
        if pending is not None:
            raise pending

    def settle(self) -> bool:
        """True when the writer has ended (the caller may close the sinks); else it is abandoned
        from now on (it drops its unfinished video when it ends) and False."""
        with self._end_lock:
            if not self._ended:
                self._abandoned = True
            return self._ended

    def _fps(self) -> float:
        t = self._times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else float("nan")

    def run(self) -> None:
        try:
            while True:
                item = self.q.get()
                if item is None:
                    return
                frame, labels = item
                image = None
                if self.overlay is not None:
                    t0 = time.perf_counter()
                    image = self.overlay(frame.image, labels, fps=self._fps(), latency_ms=self._latency)
                    self.stats.record("overlay", (time.perf_counter() - t0) * 1000.0)
                t0 = time.perf_counter()
                if self.video is not None:
                    self.video.write(image)
                if self.masks is not None:
                    self.masks.write(frame.name, labels)
                if self.on_frame is not None:
                    self.on_frame(frame, labels, image)
                if self.window is not None and not self.window.write(image):
                    self.window_closed = True
                    self.stop.set()
                now = time.perf_counter()
                self.stats.record("write", (now - t0) * 1000.0)
                self._latency = (now - frame.timestamp) * 1000.0
                self._times.append(now)
                self.stats.frame_out(self._latency)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = e
            self.stop.set()
        finally:
            self._end()

    def _end(self) -> None:
        """The window is destroyed on the thread that created it; then the caller may close the
        other sinks, unless it gave up waiting, in which case the unfinished video is dropped here."""
        try:
            if self.window is not None:
                self.window.close()
        finally:
            with self._end_lock:
                self._ended = True
                abandoned = self._abandoned
            if abandoned and self.video is not None:
                self.video.abort()


def _run_all(steps: list[Callable[[], None]]) -> None:
    """Run every step, each in its own try/finally: an exception (a KeyboardInterrupt included)
    raised in one, or between two, does not skip the ones after it."""
    if not steps:
        return
    try:
        steps[0]()
    finally:
        _run_all(steps[1:])


def run_stream(
    backend: Any,
    source: Source | str | Any,
    save: str | os.PathLike | None = None,
    save_masks: str | os.PathLike | None = None,
    show: bool = False,
    alpha: float = 0.5,
    max_frames: int | None = None,
    live: bool | None = None,
    verbose: bool = False,
    *,
    stop: threading.Event | None = None,
    log: Callable[[str], None] | None = _stderr,
    report_every: float = REPORT_EVERY,
    on_frame: Callable[[Frame, np.ndarray, np.ndarray | None], None] | None = None,
    overlay: bool | None = None,
    source_options: dict | None = None,
) -> Summary:
    """Stream `source` through `backend` into the sinks; returns the Summary (also on a requested stop).

    save: overlay video path (.mp4 or .avi). save_masks: folder of 8-bit class-index PNGs.
    show: a window. alpha: mask opacity. max_frames: stop after this many frames. live: see
    `open_source`. verbose: a progress table every `report_every` s (also with show) and source
    events on `log`. stop: an Event that ends the stream cleanly when set. on_frame(frame, labels,
    overlay image or None) runs on the writer thread for each frame. source_options go to
    `open_source`. Every output path is checked before the source is opened."""
    from .overlay import Overlay
    from .sinks import MaskSink, VideoSink, WindowSink, check_outputs

    stop = stop if stop is not None else threading.Event()
    stats = Stats()
    video = masks = window = None
    src: Source | None = None
    owned = False
    writer: _Writer | None = None
    interrupted = False
    error: BaseException | None = None
    try:
        check_outputs(source, save, save_masks)
        painter = Overlay(backend.card, alpha) if (overlay if overlay is not None else (save or show)) else None
        video = VideoSink(save) if save else None
        masks = MaskSink(save_masks) if save_masks else None
        window = WindowSink() if show else None
        options = dict(source_options or {})
        options.setdefault("log", log)
        src, owned = _as_source(source, live, options)
        if video is not None and src.fps > 0:
            video.fps = src.fps
        writer = _Writer(stats, painter, video, masks, window, on_frame, stop)
        writer.start()
        stats.start = time.perf_counter()  # FPS from the moment frames can flow, not from model/sink setup
        next_report = time.perf_counter() + report_every
        try:
            for frame, labels, _ in _frames(backend, src, stats, stop, max_frames):
                if not writer.put((frame, labels)):
                    break
                if (verbose or show) and log is not None and time.perf_counter() >= next_report:
                    next_report += report_every
                    log(stats.summary(src, backend=getattr(backend, "name", "")).table())
        except KeyboardInterrupt:
            interrupted = True
            raise
        except BaseException as e:  # noqa: BLE001 - finalised below, then raised
            error = e
    finally:
        # each step runs even when an earlier one raised (a second Ctrl-C included); a step's error
        # is kept (the first one wins) and raised after the summary
        outputs: dict[str, str] = {}
        pending: list[BaseException] = []  # a KeyboardInterrupt during finalisation, raised at the end
        writer_ended = True

        def step(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                nonlocal error
                try:
                    fn()
                except KeyboardInterrupt as e:
                    pending.append(e)
                except BaseException as e:  # noqa: BLE001 - raised after the summary
                    error = error or e

            return run

        def finish_writer() -> None:
            nonlocal error, writer_ended
            if writer is None:
                return
            try:
                writer.finish()
            finally:
                writer_ended = writer.settle()
                error = error or writer.error
                if not writer_ended:
                    error = error or RoadsegError(
                        f"the writer thread did not finish within {WRITER_TIMEOUT:g} s (a sink is blocked: a slow or "
                        "hung disk or display); the outputs were not finalised"
                    )

        def close_source() -> None:
            if src is not None and owned:
                src.close()

        def close_video() -> None:
            if video is not None and writer_ended:
                done = video.close()
                if done is not None:
                    outputs["video"] = str(done)

        def close_masks() -> None:
            if masks is not None and writer_ended:
                masks.close()
                if masks.frames:
                    outputs["masks"] = f"{save_masks}/ ({masks.frames} PNG)"

        def close_window() -> None:  # the writer destroys the window it made; this only covers a writer never started
            if window is not None and writer is None:
                window.close()

        _run_all([step(finish_writer), step(close_source), step(stats.stop), step(close_video), step(close_masks),
                  step(close_window)])  # fmt: skip
    interrupted = interrupted or bool(pending)
    interrupted = interrupted or (stop.is_set() and error is None and not (writer is not None and writer.window_closed))
    summary = stats.summary(
        src, interrupted=interrupted, outputs=outputs, backend=getattr(backend, "name", ""),
        source=str(source) if isinstance(source, (str, Path)) else "",
        error=str(error) if error is not None else None,
    )  # fmt: skip
    if pending:
        raise pending[0]  # a Ctrl-C during finalisation: everything was finalised first
    if error is not None:
        if isinstance(error, RoadsegError):
            error.summary = summary  # type: ignore[attr-defined]
            raise error
        raise error
    return summary
