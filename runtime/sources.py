"""Frame sources: video files, cameras, network streams, image folders and the synthetic clip.

`open_source(spec)` opens one and starts its capture thread; iterate it, or call `read(timeout)`,
to get `Frame`s (a BGR uint8 image with its index, capture timestamp and name).

- Live sources (a camera, an rtsp:// or http(s):// stream, or anything opened with live=True) keep
  only the newest frame: a one-slot buffer that a new frame overwrites, counted in `dropped`, so
  latency stays bounded when inference is slower than the source. Files, folders and the synthetic
  clip drop nothing (a small blocking queue) unless opened live, in which case they are also played
  at their frame rate, like a camera.
- A camera or network stream that is lost is reopened with capped exponential backoff; a read (or
  reopen) that hangs longer than `read_timeout` is caught by a watchdog, which abandons that
  capture and opens a new one. After `reconnects` failed attempts in a row the stream ends with a
  RoadsegError. A source that cannot be opened at all fails at once, in `open_source`, unless it is
  opened with retry_open (one of several streams: a camera or URL is then opened on its capture
  thread, with the reconnect policy, while the other streams run).
- A network source is opened and read through FFmpeg's own timeouts (`read_timeout`), so a server
  that accepts and never answers makes the call return with an error; the watchdog, a little
  later, is the backstop. A thread left inside OpenCV is waited for (within its timeout) before
  the interpreter exits: one that returns into a finalising interpreter aborts the process.
- Every text a source shows (errors, events, its `spec`) has its URL credentials redacted.
- Frames that are empty, tiny, gray, BGRA or 16-bit are converted to 8-bit BGR or skipped, and
  counted; they never stop the stream. Frames may change size mid-stream.

This module is the supervision (capture thread, buffer, watchdog, reconnects) and the choice of
source from a spec; the connection to each kind of source is a reader in readers.py.
"""

from __future__ import annotations

import atexit
import collections
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadseg.core.errors import RoadsegError, UsageError
from roadseg.core.images import list_images, to_bgr8

from .readers import CaptureReader, ImageReader, IterReader, Reader, SyntheticReader, Undecodable, wait_for_native_calls
from .redact import redact

URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
DEFAULT_BUFFER = 8  # frames a non-live source reads ahead
SYNTHETIC_FRAMES = 120
GRACE = 2.0  # seconds the watchdog gives a reader with its own timeout (FFmpeg's) beyond it

atexit.register(wait_for_native_calls)


@dataclass
class Frame:
    image: np.ndarray  # uint8 [H, W, 3] BGR, C-contiguous
    index: int  # position in the source (skipped and dropped frames included)
    timestamp: float  # time.perf_counter() when it was captured
    name: str  # image stem for image folders, else f"{index:06d}"
    read_ms: float = 0.0  # time the capture thread spent reading and converting it


# ---------------------------------------------------------------- the buffer between capture and inference


class FrameBuffer:
    """Bounded buffer. overwrite=True: a full buffer drops its oldest frame (counted) for the new
    one, so it always holds the newest; overwrite=False: `put` blocks until there is room."""

    def __init__(self, capacity: int, overwrite: bool):
        self.capacity, self.overwrite = max(1, int(capacity)), overwrite
        self._items: collections.deque = collections.deque()
        # called (no arguments) after every put and on close: a consumer of several buffers waits on
        # one Event that these set, instead of polling each buffer in turn
        self.listeners: list[Callable[[], None]] = []
        self._cond = threading.Condition()
        self.closed = False
        self.dropped = 0
        self.high_water = 0  # the most frames it ever held

    def put(self, item: Any) -> bool:
        """False when the buffer was closed (the stream is stopping)."""
        with self._cond:
            if self.overwrite:
                while len(self._items) >= self.capacity:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.capacity and not self.closed:
                    self._cond.wait(0.1)
            if self.closed:
                return False
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()
        self._tell()
        return True

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item, or None when none came within `timeout` or the buffer is closed and empty."""
        with self._cond:
            if not self._items and not self.closed:
                self._cond.wait_for(lambda: self._items or self.closed, timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self._tell()

    def _tell(self) -> None:
        for listener in list(self.listeners):
            listener()

    @property
    def drained(self) -> bool:
        with self._cond:
            return self.closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


# ---------------------------------------------------------------- the source: a supervised capture thread


class _Connection:
    """One reader plus the watchdog's view of it.

    The reader is released exactly once, by whichever thread is last to be done with it: the
    watcher when the grabber thread has ended, else (the connection is abandoned) the grabber when
    its blocked call returns, so a capture is never released from under a read."""

    def __init__(self, reader: Reader, opened: bool):
        self.reader = reader
        self.opened = opened
        self.busy_since: float | None = None  # set while blocked in open() or read()
        self.abandoned = False
        self.frames = 0
        self.outcome: str | BaseException | None = None  # "end", "stopped" or an exception
        self._lock = threading.Lock()
        self._grabber_done = False
        self._released = False

    def grabber_done(self) -> None:
        """The grabber thread's last act: release the reader if the watcher abandoned it."""
        with self._lock:
            self._grabber_done = True
            abandoned = self.abandoned
        if abandoned:
            try:
                self.release()
            except Exception:  # noqa: BLE001 - nobody is left to report it to
                pass

    def hand_back(self) -> None:
        """The watcher is done with the connection: release the reader now if the grabber thread
        has ended, else abandon it to the grabber, which releases it when its call returns."""
        with self._lock:
            if not self._grabber_done:
                self.abandoned = True
                return
        self.release()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self.reader.release()


class Source:
    """A running capture thread that feeds a FrameBuffer. Iterate it for Frames (raises the error
    that ended it, if any), or `read(timeout)`; `close()` (or `with`) stops it."""

    def __init__(
        self,
        make_reader: Callable[[], Reader],
        spec: str,
        kind: str,
        live: bool,
        reconnect: bool = False,
        pace: bool = False,
        buffer: int = DEFAULT_BUFFER,
        read_timeout: float = 10.0,
        reconnects: int = 5,
        backoff: tuple[float, float] = (0.5, 8.0),
        log: Callable[[str], None] | None = None,
        first_reader: Reader | None = None,
        retry_open: bool = False,
        stop: threading.Event | None = None,
    ):
        self.spec, self.kind, self.live = redact(spec), kind, live
        self._make_reader = make_reader
        self.reconnect, self.pace = reconnect, pace
        self.read_timeout, self.max_reconnects, self.backoff = read_timeout, reconnects, backoff
        self.log = log
        self.buffer = FrameBuffer(1 if live else buffer, overwrite=live)
        self.events: collections.deque[tuple[float, str]] = collections.deque(maxlen=200)
        self.error: BaseException | None = None
        self.frames_in = 0
        self.skipped = 0
        self.converted = 0
        self.reconnects = 0
        self.bad: collections.Counter[str] = collections.Counter()
        self.first_bad: dict[str, str] = {}  # kind -> the first such frame's reason, naming its file
        self._next_index = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        reader = first_reader if first_reader is not None else make_reader()
        opened = first_reader is not None or not (retry_open and reconnect)
        self._ever_opened = opened
        if opened and first_reader is None:
            _open_with_timeout(reader, self._bound(reader), self.spec, stop)
        self.fps = reader.fps
        self._thread = threading.Thread(
            target=self._supervise, args=(reader, opened), name=f"roadseg-capture {self.spec}", daemon=True
        )
        self._thread.start()

    # -- consumer side

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, or None if none came within `timeout` (or the stream ended: see `ended`)."""
        return self.buffer.get(timeout)

    @property
    def ended(self) -> bool:
        """The capture thread finished and every frame it produced was read."""
        return self.buffer.drained

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read(0.1)
            if frame is not None:
                yield frame
            elif self.ended:
                if self.error is not None:
                    raise self.error
                return

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "frames_in": self.frames_in, "dropped": self.buffer.dropped, "skipped": self.skipped,
                "converted": self.converted, "reconnects": self.reconnects,
            }  # fmt: skip

    def no_frame_reason(self) -> str:
        """Why a source that ended without error gave no usable frame, for its one error line."""
        with self._lock:
            skipped = [f"{n} {'file' if k == 'undecodable' else 'frame'}{'s' * (n > 1)} skipped, the first: {self.first_bad[k]}"
                       for k, n in self.bad.items() if k in self.first_bad]  # fmt: skip
        if skipped:
            return "; ".join(skipped)
        return "it opens but no frame decodes (an unsupported codec, or no video stream)" if self.kind == "file" else "it gave no frame"

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self.buffer.close()
        self._thread.join(timeout)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- capture side

    def _event(self, text: str) -> None:
        self.events.append((time.perf_counter(), text))
        if self.log is not None:
            self.log(f"{self.spec}: {text}")

    def _bound(self, reader: Reader) -> float:
        """The watchdog's bound on one call of `reader`: read_timeout, or, for a reader that gives
        up by itself (FFmpeg's timeouts), a little after it does, so its own error comes first."""
        native = getattr(reader, "native_timeout", None)
        return self.read_timeout if native is None else max(self.read_timeout, native + GRACE)

    def _supervise(self, reader: Reader, opened: bool) -> None:
        conn = _Connection(reader, opened=opened)
        failures = 0
        try:
            while not self._stop.is_set():
                self._watch(conn)
                outcome = conn.outcome
                if outcome == "stopped" or self._stop.is_set():
                    return
                if outcome == "end" and not self.reconnect:
                    return  # end of file
                if conn.frames:
                    failures = 0
                if not self.reconnect:
                    assert isinstance(outcome, BaseException)
                    raise outcome
                why = "ended" if outcome == "end" else str(outcome)
                lost = "lost" if self._ever_opened else "not opened"
                failures += 1
                if failures > self.max_reconnects:
                    raise RoadsegError(
                        f"{self.spec}: source {lost} ({why}) and {self.max_reconnects} reconnect attempts failed; "
                        "check the camera or network, or raise the number of reconnect attempts"
                    )
                delay = min(self.backoff[1], self.backoff[0] * 2 ** (failures - 1))
                with self._lock:  # counted with its line: the summary's count is the lines printed
                    self.reconnects += 1
                self._event(f"{lost} ({why}); reconnect {failures}/{self.max_reconnects} in {delay:.1f} s")
                if self._stop.wait(delay):
                    return
                conn = _Connection(self._make_reader(), opened=False)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self.error = e if isinstance(e, RoadsegError) else RoadsegError(f"{self.spec}: capture failed ({e!r})")
        finally:
            self.buffer.close()

    def _watch(self, conn: _Connection) -> None:
        """Run one connection in a grabber thread until it ends, hangs (watchdog) or we stop."""
        grabber = threading.Thread(target=self._grab, args=(conn,), name=f"roadseg-grab {self.spec}", daemon=True)
        grabber.start()
        try:
            while grabber.is_alive():
                grabber.join(0.05)
                busy, bound = conn.busy_since, self._bound(conn.reader)
                if busy is not None and time.perf_counter() - busy > bound and grabber.is_alive():
                    conn.abandoned = True  # the grabber stops, and releases the capture if its call ever returns
                    what = "opening" if not conn.opened else "a read"
                    conn.outcome = RoadsegError(f"{self.spec}: {what} hung for more than {bound:g} s (watchdog)")
                    self._event(f"watchdog: {what} hung for more than {bound:g} s; abandoning that capture")
                    return
                if self._stop.is_set():
                    grabber.join(1.0)
                    conn.outcome = "stopped"
                    return
        finally:
            conn.hand_back()  # released here, or by the grabber once its blocked call returns

    def _grab(self, conn: _Connection) -> None:
        reader = conn.reader
        t_start = time.perf_counter()
        try:
            if not conn.opened:
                conn.busy_since = time.perf_counter()
                reader.open()
                conn.busy_since = None
                conn.opened = self._ever_opened = True
                self.fps = self.fps or reader.fps
                if self.frames_in or self.reconnects:
                    self._event("reconnected")
            fps = reader.fps if reader.fps > 0 else 30.0
            while not self._stop.is_set() and not conn.abandoned:
                t0 = conn.busy_since = time.perf_counter()
                item = reader.read()
                conn.busy_since = None
                if conn.abandoned:
                    return
                if item is None:
                    conn.outcome = "end"
                    return
                if not self._deliver(item, t0):
                    conn.outcome = "stopped"
                    return
                conn.frames += 1
                if self.pace:  # a file played live: at its own frame rate, like a camera
                    delay = t_start + conn.frames / fps - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        return
        except BaseException as e:  # noqa: BLE001 - cv2.error and friends: a lost connection
            conn.busy_since = None
            conn.outcome = e if isinstance(e, RoadsegError) else RoadsegError(f"{self.spec}: read failed ({e})")
        finally:
            conn.grabber_done()

    def _deliver(self, item: tuple[Any, str | None], t0: float) -> bool:
        raw, name = item
        with self._lock:
            index = self._next_index
            self._next_index += 1
            self.frames_in += 1
        image, why = (None, str(raw)) if isinstance(raw, Undecodable) else to_bgr8(raw)
        if image is None or why:
            kind = "undecodable" if isinstance(raw, Undecodable) else why or ""  # one line per kind, not per file
            with self._lock:
                if image is None:
                    self.skipped += 1
                else:
                    self.converted += 1
                first = not self.bad[kind]
                self.bad[kind] += 1
                self.first_bad.setdefault(kind, why or "")
            if first:
                self._event(f"frame {index}: {'skipped' if image is None else 'converted'} ({why})")
            if image is None:
                return True
        now = time.perf_counter()
        frame = Frame(image, index, now, name or f"{index:06d}", (now - t0) * 1000.0)
        return self.buffer.put(frame)


def _open_with_timeout(reader: Reader, timeout: float, spec: str, stop: threading.Event | None = None) -> None:
    """reader.open() on a helper thread, so an open that hangs fails after `timeout` s, and a
    `stop` (Ctrl-C) ends the wait at once with KeyboardInterrupt (the open, left to finish on its
    own, is released when it does; readers.wait_for_native_calls keeps the exit from racing it)."""
    box: list[Any] = [None, False, False]  # its error, whether the waiter gave up on it, whether it ended
    lock = threading.Lock()

    def run() -> None:
        try:
            reader.open()
        except BaseException as e:  # noqa: BLE001
            box[0] = e
        with lock:
            box[2] = True
            abandoned = box[1]
        if abandoned:
            reader.release()

    def give_up() -> bool:
        """True when the open is abandoned to its thread (which releases it); False if it just ended."""
        with lock:
            box[1] = not box[2]
            return box[1]

    t = threading.Thread(target=run, name=f"roadseg-open {spec}", daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while t.is_alive() and time.monotonic() < deadline:
        if stop is not None and stop.is_set() and give_up():
            raise KeyboardInterrupt
        t.join(min(0.1, max(0.0, deadline - time.monotonic())))
    if t.is_alive() and give_up():
        raise RoadsegError(f"{spec}: opening the source hung for more than {timeout:g} s; check the device or URL")
    if box[0] is not None:
        raise box[0]


# ---------------------------------------------------------------- open_source


def open_source(
    spec: str | int | Iterable[Any],
    live: bool | None = None,
    *,
    buffer: int = DEFAULT_BUFFER,
    read_timeout: float = 10.0,
    reconnects: int = 5,
    backoff: tuple[float, float] = (0.5, 8.0),
    fps: float | None = None,
    size: tuple[int, int] = (360, 480),
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    retry_open: bool = False,
    stop: threading.Event | None = None,
) -> Source:
    """Open a source and start its capture thread.

    spec: a video file; a camera index ("0") or /dev/videoN; an rtsp(s):// or http(s):// URL; a
    folder, glob or single image; "synthetic" or "synthetic:N" (the generated driving clip, N
    frames of `size`, looping after readers.SYNTHETIC_LOOP frames); or, from Python, any iterable of frames (numpy arrays or (array, name)).
    live: None picks by kind (cameras and URLs are live); True keeps only the newest frame (a file
    is then played at its frame rate); False never drops (a stream then reads as fast as consumed).
    read_timeout: the watchdog bound, seconds, on a read or reopen that hangs (and FFmpeg's own
    open/read timeouts). reconnects: failed reconnect attempts in a row before the stream ends
    with an error; backoff: (first delay, cap) in seconds, doubling in between. retry_open: a camera
    or URL that cannot open is retried on its capture thread with that policy instead of failing
    here. stop: an Event that, set while the source opens, ends the wait (KeyboardInterrupt).
    """
    common = dict(buffer=buffer, read_timeout=read_timeout, reconnects=reconnects, backoff=backoff, log=log,
                  stop=stop)  # fmt: skip
    if not isinstance(spec, (str, int, os.PathLike)):
        rate = fps or 0.0
        return Source(lambda: IterReader(spec, rate), "frames", "frames", bool(live), pace=bool(live) and rate > 0,
                      first_reader=IterReader(spec, rate), **common)  # type: ignore[arg-type]  # fmt: skip
    text = str(spec).strip()
    if not text:
        raise UsageError("--source is empty; give a video file, camera index, URL, image folder or `synthetic`")
    if re.fullmatch(r"synthetic(:\d+)?", text):
        n = int(text.split(":")[1]) if ":" in text else SYNTHETIC_FRAMES
        if n < 1:
            raise UsageError(f"{text}: a synthetic clip needs at least 1 frame")
        rate = fps or 30.0
        make: Callable[[], Reader] = lambda: SyntheticReader(n, size, seed, rate)
        return Source(make, text, "synthetic", bool(live), pace=bool(live), first_reader=make(), **common)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        if scheme.group(1).lower() not in URL_SCHEMES:
            raise UsageError(
                f"{redact(text)}: unsupported URL scheme {scheme.group(1)!r}; use one of "
                + ", ".join(f"{s}://" for s in URL_SCHEMES)
            )
        make = lambda: CaptureReader(text, "url", read_timeout)
        return Source(make, text, "url", live is not False, reconnect=True, retry_open=retry_open, **common)
    if isinstance(spec, int) or text.isdigit() or re.fullmatch(r"/dev/video\d+", text):
        target: str | int = int(text) if text.isdigit() else text
        make = lambda: CaptureReader(target, "camera", read_timeout)
        return Source(make, text, "camera", live is not False, reconnect=True, retry_open=retry_open, **common)
    images = list_images(text)
    if images is not None:
        rate = fps or 30.0
        return Source(lambda: ImageReader(images, rate), text, "images", bool(live), pace=bool(live), **common)
    path = Path(text).expanduser()
    if not path.exists():
        raise RoadsegError(
            f"{text}: no such file or folder; give a video file, camera index (0), rtsp:// or http:// URL, "
            "image folder or glob, or `synthetic`"
        )
    if path.is_file() and path.stat().st_size == 0:
        raise RoadsegError(f"{text}: the file is empty; give a video file")
    make = lambda: CaptureReader(str(path), "file", read_timeout)
    return Source(make, text, "file", bool(live), pace=bool(live), **common)
