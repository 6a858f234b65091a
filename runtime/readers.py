"""Readers: one blocking connection to a source each, one class per kind of source: OpenCV's
VideoCapture for files, cameras and network streams, a sorted list of image files, any Python
iterable, and the generated driving clip. `read()` gives (image, name or None), or None at the end.

A reader knows nothing of threads, buffers, drop policy or reconnects: sources.py runs readers on
a supervised capture thread, makes a new one to reconnect, and converts and counts what they read.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2

from roadseg.core.errors import RoadsegError
from roadseg.core.images import read_image

from .redact import redact

SYNTHETIC_LOOP = 1800  # one minute at 30 FPS
PRERENDER_BYTES = 384 << 20  # a synthetic clip this small (and this short) is drawn once, at open (SyntheticReader)
PRERENDER_FRAMES = 600  # ~6 s of drawing at 480x360 before the first frame: longer loops are drawn as they play


class Reader:
    """One blocking connection to a source. `read()` -> (image, name or None), or None at the end
    (end of file; for live sources, a lost connection)."""

    fps: float = 0.0  # nominal frame rate, 0 when unknown
    native_timeout: float | None = None  # seconds after which open() and read() give up by themselves

    def open(self) -> None:  # raises RoadsegError when it cannot open
        pass

    def read(self) -> tuple[Any, str | None] | None:
        raise NotImplementedError

    def release(self) -> None:
        pass


_native: dict[int, float] = {}  # thread id -> when its call into OpenCV must have returned
_native_lock = threading.Lock()


@contextlib.contextmanager
def _in_native(bound: float) -> Iterator[None]:
    """Marks the calling thread as inside OpenCV for at most `bound` s (see wait_for_native_calls)."""
    key = threading.get_ident()
    with _native_lock:
        _native[key] = time.monotonic() + bound
    try:
        yield
    finally:
        with _native_lock:
            _native.pop(key, None)


def wait_for_native_calls(slack: float = 1.0) -> bool:
    """Wait until no thread is inside an OpenCV open or read, at most until each call's bound plus
    `slack`; True when none is left. Run at interpreter exit (sources registers it): a daemon
    thread that returns from OpenCV into a finalising interpreter is ended from inside OpenCV's
    C++ frames, which aborts the whole process ("terminate called without an active exception")."""
    tick = threading.Event()
    while True:
        with _native_lock:
            if not _native:
                return True
            last = max(_native.values()) + slack
        if time.monotonic() > last:
            return False
        tick.wait(0.02)


QUIET_DECODERS = False  # set by the CLI without --verbose: libpng's and libjpeg's own lines stay off stderr
STDERR_LOCK = threading.Lock()  # held while stderr is pointed away, and by roadseg's own stderr lines


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 points at /dev/null for the block when QUIET_DECODERS (the image
    libraries write their warnings there from C, past any Python logging); roadseg's own lines,
    written under STDERR_LOCK, wait for the block to end instead of being lost."""
    if not QUIET_DECODERS:
        yield
        return
    with STDERR_LOCK:
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)


class Undecodable:
    """A file that could not be decoded: a bad frame that names its file."""

    def __init__(self, path: Path):
        self.path = path

    def __str__(self) -> str:
        return f"{self.path.name} cannot be decoded (truncated, corrupt or not an image)"


def _open_capture(target: str | int, api: int, params: list[int]) -> Any:
    """cv2.VideoCapture; a module-level seam so tests can put a fake camera behind it."""
    return cv2.VideoCapture(target, api, params) if params else cv2.VideoCapture(target, api)


class CaptureReader(Reader):
    """cv2.VideoCapture on a file, camera index or URL (FFmpeg backend for files and URLs)."""

    def __init__(self, target: str | int, kind: str, timeout_s: float = 10.0):
        self.target, self.kind, self.timeout_s = target, kind, timeout_s
        self.cap: Any = None
        # FFmpeg gives up an open or read by itself after timeout_s (files and URLs); a camera's
        # driver has no such bound, so its calls are only marked for a short wait at exit
        self.native_timeout = timeout_s if kind != "camera" else None
        self._bound = timeout_s if kind != "camera" else 2.0

    def open(self) -> None:
        if self.kind == "camera":
            api, params = cv2.CAP_ANY, []
        else:
            ms = int(self.timeout_s * 1000)
            api, params = cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        try:
            with _in_native(self._bound):
                cap = _open_capture(self.target, api, params)
        except cv2.error as e:
            raise RoadsegError(redact(f"{self.target}: cannot open ({str(e).strip().splitlines()[-1]})")) from None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise RoadsegError(redact(self._open_error()))
        self.cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps <= 1000.0 else 0.0

    def _open_error(self) -> str:
        if self.kind == "camera":
            return (
                f"camera {self.target}: cannot open it (no such device, busy, or no permission); "
                "check `ls /dev/video*` and that no other program uses it"
            )
        if self.kind == "url":
            return f"{self.target}: cannot open the stream (unreachable, refused, or not a video stream); check the URL"
        return f"{self.target}: cannot open as a video (empty, truncated or unsupported format)"

    def read(self) -> tuple[Any, str | None] | None:
        with _in_native(self._bound):
            ok, image = self.cap.read()
        return (image, None) if ok else None

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImageReader(Reader):
    """A sorted list of image files; a file that cannot be decoded is a bad frame, not the end."""

    def __init__(self, paths: list[Path], fps: float = 30.0):
        self.paths, self.fps = paths, fps
        self.names = _unique_stems(paths)
        self.i = 0

    def read(self) -> tuple[Any, str | None] | None:
        if self.i >= len(self.paths):
            return None
        path, name = self.paths[self.i], self.names[self.i]
        self.i += 1
        with _quiet_stderr():
            image = read_image(path)
        return (Undecodable(path) if image is None else image), name  # converted (and counted) by the source


class IterReader(Reader):
    """Frames from any iterable of arrays (or (array, name) pairs): the Python API's own source."""

    def __init__(self, frames: Iterable[Any], fps: float = 0.0):
        self.it = iter(frames)
        self.fps = fps

    def read(self) -> tuple[Any, str | None] | None:
        try:
            item = next(self.it)
        except StopIteration:
            return None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            return item
        return item, None


class SyntheticReader(Reader):
    """The generated driving clip; beyond SYNTHETIC_LOOP frames it loops (a world as long as a
    100,000-frame soak would take seconds to build and slow every frame down).

    Drawing a frame costs 6-13 ms, several times the decode of a video frame of the same size, which
    made the synthetic source, not the model, the bottleneck of end-to-end measurements. So a clip
    whose loop fits in PRERENDER_FRAMES and PRERENDER_BYTES is drawn once, when the source opens
    (before any pipeline clock starts), and each read is a copy (the consumer may write into it):
    120 frames at 480x360 are 62 MB, 100 frames at 1280x720 276 MB. A longer loop (a soak's 1,800
    frames; at 480x360 933 MB) is drawn frame by frame as before, so opening stays quick and memory
    flat however long the run."""

    def __init__(self, num_frames: int, size: tuple[int, int], seed: int, fps: float):
        from .synthetic import SyntheticClip

        self.clip = SyntheticClip(min(num_frames, SYNTHETIC_LOOP), size, seed, fps)
        self.n = num_frames
        self.fps = fps
        self.i = 0
        h, w = self.clip.size
        fits = len(self.clip) <= PRERENDER_FRAMES and len(self.clip) * h * w * 3 <= PRERENDER_BYTES
        self.frames = [frame for frame, _ in self.clip] if fits else None

    def read(self) -> tuple[Any, str | None] | None:
        if self.i >= self.n:
            return None
        k = self.i % len(self.clip)
        frame = self.frames[k].copy() if self.frames is not None else self.clip[k][0]
        self.i += 1
        return frame, None


def _unique_stems(paths: list[Path]) -> list[str]:
    """Mask names, one per image and never two alike (nor two that differ only in case): the image
    stem; where stems collide, the path below the images' common folder with `__` for each `/`
    (a/x.png, b/x.png -> a__x, b__x); where that still collides, plus the extension (x.jpg, x.png ->
    x_jpg, x_png); any clash left gets a number (x_2)."""
    stems = collections.Counter(p.stem for p in paths)
    names = [p.stem for p in paths]
    if any(n > 1 for n in stems.values()):
        absolute = [p.absolute() for p in paths]
        root = Path(os.path.commonpath([str(a.parent) for a in absolute]))
        names = [
            "__".join(a.relative_to(root).with_suffix("").parts) if stems[p.stem] > 1 else p.stem
            for p, a in zip(paths, absolute)
        ]
        again = collections.Counter(names)
        names = [f"{n}_{p.suffix.lstrip('.').lower()}" if again[n] > 1 else n for n, p in zip(names, paths)]
    out: list[str] = []
    taken: set[str] = set()
    for n in names:
        name, k = n, 2
        while name.casefold() in taken:
            name, k = f"{n}_{k}", k + 1
        taken.add(name.casefold())
        out.append(name)
    return out
