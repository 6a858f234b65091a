"""The streaming pipeline: capture threads -> batched inference -> overlay + write threads, bounded
queues between.

One or several sources run through one backend. Each source has its own capture thread (with its
own drop policy and reconnects, runtime.sources), its own writer thread (overlay and sinks) and its
own Stats; inference runs on the calling thread (GPU backends own their context there) and takes at
most one frame from each stream per call, so N streams become batches of up to N frames: one
`backend.infer` per frame size (frames a fixed-size graph would resize anyway are resized first,
so they share a call). A stream that fails (a camera lost for good, a broken file, a full disk under
its video) ends alone, its outputs finalised and its error kept; the others go on. Files drop
nothing; live streams keep only their newest frame.

- `iterate(backend, source)` yields (frame, labels, timings) for the Python API (`Segmenter.stream`),
  and (stream name, frame, labels, timings) for a list of sources.
- `run_streams(backend, sources, save=, save_masks=, ...)` runs the writers too, so decoding,
  inference and writing overlap and throughput approaches the slowest stage; `run_stream` is the
  same for one source, returning that stream's Summary.

Stopping: set the `stop` event (the CLI's SIGINT/SIGTERM handlers do) and the pipeline drains what
is in flight, finalises the videos, and returns with `interrupted=True`. A KeyboardInterrupt raised
inside is finalised the same way and re-raised; one that arrives during finalisation (a second
Ctrl-C) does not skip it: every finalisation step runs in its own try/finally. An error ending the
run (every stream failed, or the backend failed) also finalises everything written so far, then
raises a RoadsegError whose `.summary` holds the summary.

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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backends.base import fit_frames
from .errors import RoadsegError, UsageError
from .naming import check_distinct_outputs, check_stream_count, stream_name, stream_names, stream_outputs  # noqa: F401 - re-exported
from .readers import STDERR_LOCK
from .redact import redact
from .sources import Frame, Source, open_source
from .stats import Stats, StreamsSummary, Summary

WRITE_QUEUE = 4  # frames between inference and each writer thread
WRITER_TIMEOUT = 30.0  # seconds a writer gets to write what is queued once its stream ends
REPORT_EVERY = 5.0  # seconds between progress tables with verbose / show
WAIT_STEP = 0.1  # seconds the inference loop waits for a frame before it checks `stop` again


def _stderr(text: str) -> None:
    with STDERR_LOCK:  # not while an image decoder's stderr is pointed away (readers._quiet_stderr)
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


def fixed_batch(backend: Any) -> int | None:
    """The batch a graph with a fixed batch dimension takes, else None (dynamic)."""
    try:
        n = tuple(backend.inputs[0].shape)[0]
    except (AttributeError, IndexError, TypeError):
        return None
    return int(n) if isinstance(n, int) and n > 0 else None


def _backend_name(backend: Any) -> str:
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
            raise RoadsegError(f"backend {_backend_name(backend)} returned {labels.shape[0]} label maps for "
                               f"{len(idx)} frames; a backend returns one per frame")  # fmt: skip
        for j, i in enumerate(idx):
            out[i] = restores[i](labels[j : j + 1])[0]
    for image, labels in zip(images, out):
        if labels.shape != image.shape[:2]:
            raise RoadsegError(
                f"backend {_backend_name(backend)} returned labels {list(labels.shape)} for a frame "
                f"{list(image.shape[:2])}; a backend returns labels at the frame size"
            )
    return [m if m.dtype == np.uint8 else m.astype(np.uint8) for m in out]


# ---------------------------------------------------------------- streams: names, outputs, the batcher


class _Stream:
    """One source's state in a run: its capture, Stats, writer and sinks."""

    def __init__(self, name: str, spec: Any, total: Stats | None):
        self.name, self.spec = name, spec
        self.stats = Stats(parent=total)
        self.src: Source | None = None
        self.owned = False
        self.video: Any = None
        self.masks: Any = None
        self.window: Any = None
        self.save_masks: str | None = None
        self.writer: _Writer | None = None
        self.frames = 0  # frames inferred
        self.done = False  # no more frames will be taken from it
        self.told = False  # its end was handled (writer end marker, capture closed, failure logged)
        self.error: BaseException | None = None

    def end(self, error: BaseException | None = None) -> None:
        """Take no more frames; the first error is kept."""
        self.done = True
        self.error = self.error or error


def _open(spec: Any, live: bool | None, options: dict) -> tuple[Source, bool]:
    if isinstance(spec, Source):
        return spec, False
    return open_source(spec, live, **options), True


def _open_all(streams: list[_Stream], live: bool | None, options: dict, stop: threading.Event) -> None:
    """Open every stream's source. With several streams, one that cannot open fails alone (the
    others start; a camera or URL retries with the reconnect policy on its own thread); a single
    one raises at once. A stop (Ctrl-C) while one opens leaves the rest unopened, and the run ends
    as stopped."""
    several = len(streams) > 1
    options = {"stop": stop, **options, **({"retry_open": True} if several else {})}
    for s in streams:
        try:
            s.src, s.owned = _open(s.spec, live, options)
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


def _take(
    streams: list[_Stream], ready: threading.Event, stop: threading.Event, max_frames: int | None, start: int
) -> list[tuple[_Stream, Frame]]:
    """One round: a frame from each stream that drops nothing (files, folders, frames from Python:
    the round waits for them, so they are always batched together) and from each live stream that
    has one now (live streams never wait), in round-robin order from `start`. Waits until the
    round has a frame, every stream is done, or `stop` is set. Streams whose source ended are
    marked done here (with the source's error, if it failed)."""
    got: dict[int, Frame] = {}
    while not stop.is_set():
        ready.clear()  # before looking: a frame put after the look sets it again, so the wait ends at once
        for i, s in enumerate(streams):
            if s.done or i in got or s.src is None:
                continue
            if max_frames is not None and s.frames >= max_frames:
                s.end()
                continue
            frame = s.src.read(0)
            if frame is not None:
                got[i] = frame
            elif s.src.ended:
                s.end(s.src.error)
        waiting = any(not s.done and i not in got and not s.src.live for i, s in enumerate(streams))  # type: ignore[union-attr]
        if got and not waiting:
            order = sorted(got, key=lambda i: (i - start) % len(streams))
            return [(streams[i], got[i]) for i in order]
        if not got and all(s.done for s in streams):
            return []
        ready.wait(WAIT_STEP)
    return []


def _batches(backend: Any, streams: list[_Stream], stop: threading.Event, max_frames: int | None,
             calls: collections.Counter) -> Iterator[list[tuple[_Stream, Frame, np.ndarray, float]]]:
    """Batches of (stream, frame, labels, infer ms) until every stream is done or `stop` is set;
    `calls["batches"]` counts the inference rounds."""
    size = fixed_frame_size(backend)
    ready = threading.Event()
    for s in streams:
        if s.src is not None:
            s.src.buffer.listeners.append(ready.set)
    turn = 0
    while True:
        got = _take(streams, ready, stop, max_frames, turn)
        if not got:
            return
        turn += 1
        for s, frame in got:
            s.stats.record("read", frame.read_ms)
            if size is not None and frame.image.shape[:2] != size:
                s.stats.count_resized()
        t0 = time.perf_counter()
        labels = infer_frames(backend, [f.image for _, f in got], size)
        ms = (time.perf_counter() - t0) * 1000.0
        calls["batches"] += 1
        for s, _ in got:
            s.stats.record("infer", ms)
            s.frames += 1
        yield [(s, f, m, ms) for (s, f), m in zip(got, labels)]


def _several(source: Any) -> bool:
    """A list or tuple of sources (specs, Sources or iterables of frames), not a list of frames
    (arrays, or (array, name) pairs)."""

    def is_frame(x: Any) -> bool:
        return isinstance(x, np.ndarray) or (isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray))

    return isinstance(source, (list, tuple)) and bool(source) and not any(is_frame(x) or isinstance(x, bool) for x in source)


def iterate(
    backend: Any,
    source: Source | str | Any,
    *,
    live: bool | None = None,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    stats: Stats | None = None,
    **source_options: Any,
) -> Iterator[tuple]:
    """Yield (frame BGR uint8 [H,W,3], labels uint8 [H,W], timings) for each frame of `source`; for
    a list of sources, (stream name, frame, labels, timings), their frames batched into one
    inference call per round.

    source: a Source, or anything `open_source` takes (then opened with `live` and
    `source_options`, and closed when the iterator ends or is closed), or a list of those.
    max_frames: per stream. timings: index, name, timestamp (capture, perf_counter), read_ms,
    infer_ms (the batch's), latency_ms (capture -> labels ready), batch (frames in that call).
    One source: raises the RoadsegError that ended it, if one did. Several: a stream that fails
    ends alone (its error is logged through `source_options["log"]` if given); the error is raised
    only when every stream has failed."""
    several = _several(source)
    specs = list(source) if several else [source]
    check_stream_count(len(specs))
    total = stats if stats is not None else Stats()
    stop = stop if stop is not None else threading.Event()
    log = source_options.get("log")
    streams = [_Stream(n, spec, total) for n, spec in zip(stream_names(specs), specs)]
    try:
        _open_all(streams, live, source_options, stop)
        for batch in _batches(backend, streams, stop, max_frames, collections.Counter()):
            for s, frame, labels, infer_ms in batch:
                latency = (time.perf_counter() - frame.timestamp) * 1000.0
                s.stats.frame_out(latency)
                timings = {
                    "index": frame.index, "name": frame.name, "timestamp": frame.timestamp,
                    "read_ms": frame.read_ms, "infer_ms": infer_ms, "latency_ms": latency, "batch": len(batch),
                }  # fmt: skip
                yield (s.name, frame.image, labels, timings) if several else (frame.image, labels, timings)
            for s in streams:
                if s.error is not None and several and log is not None and not s.told:
                    s.told = True
                    log(f"stream {s.name} failed: {redact(s.error)}; the other streams go on")
        failed = [s for s in streams if s.error is not None]
        if failed and (not several or len(failed) == len(streams)):
            raise failed[0].error  # type: ignore[misc]
    finally:
        total.stop()
        for s in streams:
            if s.src is not None and s.owned:
                s.src.close()


class _Writer(threading.Thread):
    """One stream's overlay + sinks on its own thread, fed by a bounded queue. `stop` is the
    stream's own event: set when the writer fails or its window is closed."""

    def __init__(
        self,
        name: str,
        stats: Stats,
        overlay: Any,
        video: Any,
        masks: Any,
        window: Any,
        on_frame: Callable | None,
        stop: threading.Event,
    ):
        super().__init__(name=f"roadseg-writer {name}", daemon=True)
        self.q: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)
        self.stats, self.overlay, self.video, self.masks, self.window = stats, overlay, video, masks, window
        self.on_frame, self.stop = on_frame, stop
        self.error: BaseException | None = None
        self.window_closed = False
        self.high_water = 0
        self.no_more = threading.Event()  # set when no frame will come: end once the queue is empty
        self._end_lock = threading.Lock()
        self._ended = False  # run() is over: the caller may close the sinks
        self._abandoned = False  # the caller gave up waiting: run() drops the unfinished video itself
        self._times: collections.deque[float] = collections.deque(maxlen=30)
        self._latency = float("nan")
        self.on_end: Callable[[], None] | None = None  # called on this thread once its last frame is out

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

    def recent_fps(self) -> float:
        """Frames per second over the last 30 frames written (the overlay HUD and the live view)."""
        t = self._times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else float("nan")

    def run(self) -> None:
        try:
            while True:
                try:
                    item = self.q.get(timeout=WAIT_STEP)
                except queue.Empty:
                    if self.no_more.is_set():
                        return
                    continue
                if item is None:
                    return
                frame, labels = item
                image = None
                if self.overlay is not None:
                    t0 = time.perf_counter()
                    image = self.overlay(frame.image, labels, fps=self.recent_fps(), latency_ms=self._latency)
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
        other sinks, unless it gave up waiting, in which case the unfinished video is dropped here.
        The stream's clock stops here (its last frame is written): a stream that ends before the
        others keeps its own FPS."""
        self.stats.end = self.stats.end or time.perf_counter()
        try:
            if self.window is not None:
                self.window.close()
            if self.on_end is not None:
                self.on_end()
        finally:
            with self._end_lock:
                self._ended = True
                abandoned = self._abandoned
            if abandoned and self.video is not None:
                self.video.abort()


def _run_all(steps: list[Callable[[], None]]) -> None:
    """Run every step in turn, iteratively (a run of many streams has thousands of steps): an
    exception (a KeyboardInterrupt included) raised in one, or between two, does not skip the ones
    after it; the first is raised once all have run."""
    pending: list[BaseException] = []
    i = 0
    while i < len(steps):
        try:
            while i < len(steps):
                i += 1
                steps[i - 1]()
        except BaseException as e:  # noqa: BLE001 - raised below, after the other steps
            pending.append(e)
    if pending:
        raise pending[0]


def run_streams(
    backend: Any,
    sources: Sequence[Source | str | Any],
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
    on_frame: Callable[[str, Frame, np.ndarray, np.ndarray | None], None] | None = None,
    overlay: bool | None = None,
    source_options: dict | None = None,
    view: Any = None,
) -> StreamsSummary:
    """Stream every source through `backend` into its sinks; returns the StreamsSummary (also on a
    requested stop). Raises a RoadsegError carrying `.summary` when a stream failed (after the
    others ran to their end) or the run itself failed.

    save: with one source the overlay video path (.mp4 or .avi); with several a folder (one
    <stream>.mp4 each) or a name with {stream}. save_masks: a folder of 8-bit class-index PNGs
    (with several sources one subfolder per stream, or a name with {stream}). show: a window (one
    source only). alpha: mask opacity. max_frames: per stream. live: see `open_source`. verbose: a
    progress table every `report_every` s (also with show) and source events on `log`. stop: an
    Event that ends the run cleanly when set. on_frame(stream name, frame, labels, overlay image or
    None) runs on the stream's writer thread for each frame. view: a live view (runtime.serve.
    LiveView) that gets every overlay and the stats. source_options go to `open_source`. Every
    output path is checked before any source is opened."""
    from .overlay import Overlay
    from .sinks import MaskSink, VideoSink, WindowSink, check_outputs

    stop = stop if stop is not None else threading.Event()
    specs = list(sources)
    if not specs:
        raise UsageError("no source given; pass --source at least once")
    check_stream_count(len(specs))
    names = stream_names(specs)
    total = Stats()
    calls: collections.Counter = collections.Counter()
    streams = [_Stream(n, spec, total) for n, spec in zip(names, specs)]
    several = len(streams) > 1
    bname, mlabel = getattr(backend, "name", ""), model_label(backend)
    note = ""
    interrupted = False
    error: BaseException | None = None

    def hook(name: str) -> Callable | None:
        if on_frame is None and view is None:
            return None

        def each(frame: Frame, labels: np.ndarray, image: np.ndarray | None) -> None:
            if on_frame is not None:
                on_frame(name, frame, labels, image)
            if view is not None and image is not None:
                view.publish(name, image)

        return each

    def snapshot() -> dict:
        return _snapshot(streams, total, bname)

    try:
        if show and several:
            raise UsageError("--show opens one window for one source; with several sources use --serve PORT "
                             "(a browser page with every stream) or --save DIR")  # fmt: skip
        outputs = stream_outputs(names, save, save_masks)
        check_distinct_outputs(specs, outputs)
        for s, (video_path, masks_path) in zip(streams, outputs):
            check_outputs(s.spec, video_path, masks_path)
        wants_overlay = overlay if overlay is not None else bool(save or show or view is not None)
        painter = Overlay(backend.card, alpha) if wants_overlay else None
        for s, (video_path, masks_path) in zip(streams, outputs):
            s.video = VideoSink(video_path) if video_path else None
            s.masks = MaskSink(masks_path) if masks_path else None
            s.save_masks = masks_path
            s.window = WindowSink() if show else None
        options = dict(source_options or {})
        options.setdefault("log", log)
        _open_all(streams, live, options, stop)
        if several and fixed_batch(backend) == 1:
            note = "the model takes batch 1, so the streams ran one after another (export with a dynamic batch to batch them)"
            if log is not None:
                log(f"{len(streams)} streams on a batch-1 model: they run one after another (export with a dynamic batch to batch them)")
        for s in streams:
            s.writer = _Writer(s.name, s.stats, painter, s.video, s.masks, s.window, hook(s.name), threading.Event())
            if view is not None:  # its last overlay is published: its viewers get that, not a wait
                s.writer.on_end = lambda s=s: view.end(s.name, _state(s))
            s.writer.start()
        if view is not None:
            view.set_stats(snapshot)
        total.start = time.perf_counter()  # FPS from the moment frames can flow, not from model/sink setup
        for s in streams:
            s.stats.start = total.start
        next_report = time.perf_counter() + report_every
        try:
            for batch in _batches(backend, streams, stop, max_frames, calls):
                for s, frame, labels, _ in batch:
                    if s.frames == 1 and s.video is not None and s.src.fps > 0:  # type: ignore[union-attr]
                        s.video.fps = s.src.fps  # type: ignore[union-attr]  # known once opened (a camera may open late)
                    if not s.writer.put((frame, labels)):  # type: ignore[union-attr]
                        s.end(s.writer.error or RoadsegError(f"stream {s.name}: its writer stopped"))  # type: ignore[union-attr]
                _settle_streams(streams, stop, several, log)
                if (verbose or show) and log is not None and time.perf_counter() >= next_report:
                    next_report += report_every
                    log(_progress(streams, total, calls, bname, note))
            _settle_streams(streams, stop, several, log)
        except KeyboardInterrupt:
            interrupted = True
            raise
        except BaseException as e:  # noqa: BLE001 - finalised below, then raised
            error = e
    finally:
        # each step runs even when an earlier one raised (a second Ctrl-C included); a step's error
        # is kept (the first one wins) and raised after the summary
        outputs_done: dict[str, dict[str, str]] = {s.name: {} for s in streams}
        pending: list[BaseException] = []  # a KeyboardInterrupt during finalisation, raised at the end
        ended: dict[str, bool] = {}

        def step(fn: Callable[[], None], s: _Stream | None = None) -> Callable[[], None]:
            def run() -> None:
                nonlocal error
                try:
                    fn()
                except KeyboardInterrupt as e:
                    pending.append(e)
                except BaseException as e:  # noqa: BLE001 - raised after the summary
                    if s is not None and several:
                        s.error = s.error or e
                    else:
                        error = error or e

            return run

        def finish_writer(s: _Stream) -> None:
            w = s.writer
            ended[s.name] = True
            if w is None:
                return
            try:
                w.finish()
            finally:
                ended[s.name] = w.settle()
                s.error = s.error or w.error
                if not ended[s.name]:
                    s.error = s.error or RoadsegError(
                        f"the writer thread of stream {s.name} did not finish within {WRITER_TIMEOUT:g} s (a sink is "
                        "blocked: a slow or hung disk or display); its outputs were not finalised"
                    )

        def close_source(s: _Stream) -> None:
            if s.src is not None and s.owned:
                s.src.close()

        def close_video(s: _Stream) -> None:
            if s.video is not None and ended.get(s.name, True):
                done = s.video.close()
                if done is not None:
                    outputs_done[s.name]["video"] = str(done)

        def close_masks(s: _Stream) -> None:
            if s.masks is not None and ended.get(s.name, True):
                s.masks.close()
                if s.masks.frames:
                    outputs_done[s.name]["masks"] = f"{s.save_masks}/ ({s.masks.frames} PNG)"

        def close_window(s: _Stream) -> None:  # the writer destroys the window it made; this covers a writer never started
            if s.window is not None and s.writer is None:
                s.window.close()

        steps = [step(lambda s=s: finish_writer(s), s) for s in streams]
        for s in streams:
            steps += [step(lambda s=s: close_source(s), s), step(s.stats.stop), step(lambda s=s: close_video(s), s),
                      step(lambda s=s: close_masks(s), s), step(lambda s=s: close_window(s), s)]  # fmt: skip
        if view is not None:
            steps += [step(lambda s=s: view.end(s.name, _state(s))) for s in streams]
        _run_all([*steps, step(total.stop)])
    window_closed = any(s.writer is not None and s.writer.window_closed for s in streams)
    interrupted = interrupted or bool(pending) or (stop.is_set() and error is None and not window_closed)
    for s in streams:
        if s.error is None and not interrupted and s.src is not None and s.src.ended and not s.stats.frames_out and (
            s.src.frames_in or s.src.kind in ("file", "images")
        ):
            s.error = RoadsegError(f"no frame could be read from {s.src.spec}: {s.src.no_frame_reason()}")
    summaries = {}
    for s in streams:
        summaries[s.name] = s.stats.summary(
            s.src, interrupted=interrupted and s.error is None and not s.done, outputs=outputs_done[s.name], backend=bname,
            model=mlabel,
            source=redact(s.spec) if isinstance(s.spec, (str, int, Path)) else "",
            error=redact(s.error) if s.error is not None else None,
        )  # fmt: skip
    total_summary = total.summary(interrupted=interrupted, backend=bname, model=mlabel, source=f"{len(streams)} streams",
                                  error=redact(error) if error is not None else None)  # fmt: skip
    for key in ("frames_in", "dropped", "skipped", "converted", "reconnects"):
        setattr(total_summary, key, sum(getattr(v, key) for v in summaries.values()))
    result = StreamsSummary(summaries, total_summary, calls["batches"], note)
    if pending:
        raise pending[0]  # a Ctrl-C during finalisation: everything was finalised first
    failed = [s for s in streams if s.error is not None]
    if error is None and failed:
        if several:
            error = RoadsegError(f"{len(failed)} of {len(streams)} streams failed: "
                                 + "; ".join(f"{s.name}: {redact(s.error)}" for s in failed))  # fmt: skip
        else:
            error = failed[0].error
    if error is not None:
        if isinstance(error, RoadsegError):
            error.summary = result  # type: ignore[attr-defined]
        raise error
    return result


def _settle_streams(streams: list[_Stream], stop: threading.Event, several: bool,
                    log: Callable[[str], None] | None) -> None:
    """After each batch: a stream whose writer failed is done; a closed window stops the run; a
    stream that is done gets its writer's end marker and its capture closed, once; a failure is
    logged (with several streams: the others go on)."""
    for s in streams:
        w = s.writer
        if w is None:
            continue
        if w.window_closed:
            stop.set()
        if w.error is not None and not s.done:
            s.end(w.error)
        if s.done and not s.told:
            s.told = True
            w.no_more.set()  # the writer writes what is queued, stops the stream's clock and ends, never blocking here
            if s.src is not None and s.owned:
                s.src.close()
            if s.error is not None and several and log is not None:
                log(f"stream {s.name} failed: {redact(s.error)}; the other streams go on")


def _progress(streams: list[_Stream], total: Stats, calls: collections.Counter, backend: str, note: str) -> str:
    if len(streams) == 1:
        s = streams[0]
        return s.stats.summary(s.src, backend=backend).table()
    per = {s.name: s.stats.summary(s.src, backend=backend) for s in streams}
    return StreamsSummary(per, total.summary(backend=backend), calls["batches"], note).table()


def _snapshot(streams: list[_Stream], total: Stats, backend: str) -> dict:
    """The live view's /stats.json: per stream and total, right now."""
    out: dict[str, Any] = {"streams": {}, "backend": backend}
    for s in streams:
        summ = s.stats.summary(s.src)
        lat = summ.stages.get("latency")
        recent = s.writer.recent_fps() if s.writer is not None else float("nan")
        state = _state(s) if s.done or s.error is not None else "running"
        out["streams"][s.name] = {
            "frames": summ.frames_out, "fps": _finite(recent if recent == recent else summ.fps),
            "latency_p50_ms": _finite(lat.p50_ms if lat else None), "latency_p99_ms": _finite(lat.p99_ms if lat else None),
            "drops": summ.dropped, "reconnects": summ.reconnects, "state": state,
        }  # fmt: skip
    t = total.summary()
    out["total"] = {"frames": t.frames_out, "fps": _finite(t.fps)}
    return out


def _state(s: _Stream) -> str:
    """A stream's end, as the live view and /stats.json show it (no credentials)."""
    error = s.error or (s.writer.error if s.writer is not None else None)
    return f"failed: {redact(error)}" if error is not None else "ended"


def _finite(x: float | None) -> float | None:
    """JSON has no NaN: None instead, rounded for display."""
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else round(float(x), 2)


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
    view: Any = None,
) -> Summary:
    """`run_streams` for one source; returns (and an error carries as `.summary`) its Summary.
    on_frame(frame, labels, overlay image or None) runs on the writer thread for each frame."""
    each = None if on_frame is None else (lambda _name, frame, labels, image: on_frame(frame, labels, image))
    try:
        result = run_streams(backend, [source], save=save, save_masks=save_masks, show=show, alpha=alpha,
                             max_frames=max_frames, live=live, verbose=verbose, stop=stop, log=log,
                             report_every=report_every, on_frame=each, overlay=overlay,
                             source_options=source_options, view=view)  # fmt: skip
    except RoadsegError as e:
        if isinstance(getattr(e, "summary", None), StreamsSummary):
            e.summary = _single(e.summary)  # type: ignore[attr-defined]
        raise
    return _single(result)


def _single(result: StreamsSummary) -> Summary:
    """The one stream's Summary, carrying the run's error and stop state."""
    (s,) = result.streams.values()
    s.error = s.error or result.total.error
    s.interrupted = result.total.interrupted
    return s
