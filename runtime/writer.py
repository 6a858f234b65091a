"""One stream's writer: overlay and sinks on their own thread, fed by a bounded queue, so
decoding, inference and writing overlap.

The sinks are written on this thread and closed on the caller's thread only once it has ended; a
writer that does not end within its `timeout` (a blocked sink) is abandoned instead, and drops its
unfinished video when it does end. The window lives wholly on this thread (OpenCV's GUI calls
belong to one thread): created at the first frame, destroyed when the writer ends.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .stream_options import WRITE_QUEUE, WRITER_TIMEOUT

if TYPE_CHECKING:
    from .stats import Stats

WAIT_STEP = 0.1  # seconds between looks at `no_more` while the queue is empty


@dataclass
class Sinks:
    """What one stream's writer writes to: an overlay video, a mask folder, a window (each optional)."""

    video: Any = None
    masks: Any = None
    window: Any = None


class Writer(threading.Thread):
    """One stream's overlay + sinks on its own thread, fed by a bounded queue of `queue_size`
    frames. `overlay` draws the overlay image (None: no overlay); on_frame(frame, labels, image)
    runs for each frame. `stop` is the stream's own event: set when the writer fails or its window
    is closed. `timeout` is how long `finish` waits for it by default."""

    def __init__(
        self,
        name: str,
        stats: Stats,
        sinks: Sinks,
        overlay: Any = None,
        on_frame: Callable | None = None,
        *,
        queue_size: int = WRITE_QUEUE,
        timeout: float = WRITER_TIMEOUT,
        wait_step: float = WAIT_STEP,
    ):
        super().__init__(name=f"roadseg-writer {name}", daemon=True)
        self.q: queue.Queue = queue.Queue(maxsize=queue_size)
        self.timeout, self.wait_step = timeout, wait_step
        self.stats, self.overlay, self.on_frame = stats, overlay, on_frame
        self.video, self.masks, self.window = sinks.video, sinks.masks, sinks.window
        self.stop = threading.Event()
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
        """Ask the writer to end after what is queued and wait up to `timeout` s (default: the writer's own)
        for it (then `settle()`). A KeyboardInterrupt while waiting does not cut the wait short
        (closing sinks under a running writer is what the wait prevents); it is raised once the
        wait is over."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
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
                    item = self.q.get(timeout=self.wait_step)
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
