"""Sinks: the overlay video, per-frame mask PNGs and a window.

An .mp4/.m4v/.mov video is H.264 in a fragmented MP4 (runtime/videoenc.py, PyAV), which browsers
play and which a killed run leaves readable; without PyAV it is OpenCV's mp4v, said in one line.
.avi/.mkv are OpenCV's MJPG.

Nothing half-written is ever left at a target path:
- VideoSink writes to a hidden temporary name beside the target and renames it on close, so a kill
  -9 leaves at most a `.NAME.*.tmp.EXT` file, never a broken video at NAME. It watches the free
  space of its folder and stops with a clear error while there is still room to finalise, so a
  full disk leaves a playable file with every frame up to that point.
- MaskSink writes each PNG to a temporary name and renames it, so every mask present is complete.
- WindowSink needs a display and an OpenCV built with a GUI; without either it fails with a clear
  message before the first frame. Its window is created at the first `write` and destroyed by
  `close`, both on the thread that writes (the pipeline's writer thread): OpenCV's GUI calls
  belong to one thread.
Every sink checks its target before the first frame (`check_writable`); `check_outputs` does the
same for a whole `run` before the model is opened, and refuses outputs that would overwrite the source.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from roadseg.core.atomic import atomic_path, check_folder, check_writable, publish, temp_beside
from roadseg.core.errors import RoadsegError, UsageError
from roadseg.core.images import list_images

from .videoenc import open_writer

# container -> codec: H.264 through PyAV (mp4v through OpenCV without it), MJPG through OpenCV
FOURCC = {".mp4": "h264", ".m4v": "h264", ".mov": "h264", ".avi": "MJPG", ".mkv": "MJPG"}
RESERVE_BYTES = 1 << 20  # free space kept for finalising (index, trailer, buffers)


def video_fourcc(path: str | os.PathLike) -> str:
    """The codec for an overlay video at `path`, chosen by its extension ("h264" or "MJPG")."""
    ext = Path(path).suffix.lower()
    if ext not in FOURCC:
        raise UsageError(f"--save {path}: unsupported video type {ext or '(none)'}; use .mp4 or .avi")
    return FOURCC[ext]


def check_outputs(source: object, save: str | os.PathLike | None, save_masks: str | os.PathLike | None) -> None:
    """Refuse, before the model or the source is opened, a `--save`/`--save-masks` that cannot be
    written or that would overwrite the source: the video itself, or the folder of its images (a
    mask `NAME.png` replaces the frame `NAME.png`, and any other mask would be read as a frame by
    the next run)."""
    spec = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if save:
        video_fourcc(save)
        target = check_writable(save, create=False)  # checked, not made: the model may still be refused
        src = Path(spec).expanduser() if spec is not None else None
        if src is not None and src.is_file() and target.resolve() == src.resolve():
            raise UsageError(f"--save {save}: is the source video; choose another output path")
    if save_masks:
        folder = check_folder(save_masks, "--save-masks", create=False).resolve()
        try:
            images = list_images(spec) if spec is not None else None
        except RoadsegError:  # an empty folder or pattern: the source reports it when opened
            images = None
        if images and any(q.resolve().parent == folder for q in images):
            raise UsageError(f"--save-masks {save_masks}: holds the source images, which the masks would overwrite; choose another folder")


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


class VideoSink:
    """Overlay video at `path` (.mp4 with H.264, .avi/.mkv with MJPG; `fourcc` forces an OpenCV
    codec); opened on the first frame, whose size it keeps (later frames of another size are
    resized to it)."""

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, fourcc: str | None = None):
        self.path = Path(path).expanduser()
        ext = self.path.suffix.lower()
        video_fourcc(path)  # a supported extension
        if fourcc is not None and len(fourcc) != 4:
            raise UsageError(f"fourcc must be 4 characters, not {fourcc!r}")
        check_writable(self.path)
        self.folder = self.path.parent
        if _free_bytes(self.folder) < 2 * RESERVE_BYTES:
            raise RoadsegError(
                f"{path}: the disk is full ({_free_bytes(self.folder) >> 10} KiB free); free some space or choose another output path"
            )
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.fourcc = fourcc  # None: chosen by the extension when the first frame opens the writer
        self.tmp = temp_beside(self.path, ".tmp" + ext)  # the container's extension last: OpenCV picks by it
        self.writer: Any = None  # cv2.VideoWriter or videoenc.H264Writer (the same interface)
        self.size: tuple[int, int] | None = None  # (W, H)
        self.frames = 0
        self.closed = False

    def write(self, image: np.ndarray) -> None:
        if self.closed:
            raise RoadsegError(f"{self.path}: write after close")
        h, w = image.shape[:2]
        if self.writer is None:
            self.size = (w - w % 2, h - h % 2)  # even sides: what most players and codecs expect
            if self.fourcc is None:
                self.writer, self.fourcc = open_writer(self.tmp, self.fps, self.size, self.path)
            else:
                self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size)
            if not self.writer.isOpened():
                raise RoadsegError(
                    f"{self.path}: OpenCV cannot write {self.fourcc} video here; try a .avi or .mp4 path"
                )
        if (w, h) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._check_space()
        self.writer.write(image)
        self.frames += 1

    def _check_space(self) -> None:
        """Stop while finalising is still possible: keep room for the trailer and a few frames."""
        try:
            size = self.tmp.stat().st_size
        except FileNotFoundError:
            raise RoadsegError(f"{self.path}: the temporary file {self.tmp} was removed while writing") from None
        per_frame = size / self.frames if self.frames else 0
        need = RESERVE_BYTES + 8 * per_frame + 64 * self.frames
        free = _free_bytes(self.folder)
        if free < need:
            raise RoadsegError(
                f"{self.path}: disk full ({free >> 10} KiB free); stopped after {self.frames} frames, "
                "which are saved; free some space or choose another output path"
            )

    def close(self) -> Path | None:
        """Finalise and move into place; returns the path, or None when no frame was written."""
        if self.closed:
            return self.path if self.frames else None
        self.closed = True
        try:
            if self.writer is not None:
                self.writer.release()
            if self.frames == 0:
                return None
            publish(self.tmp, self.path)
            return self.path
        finally:
            if self.tmp.exists():
                self.tmp.unlink()

    def abort(self) -> None:
        """Drop the video (an error before anything useful was written)."""
        self.closed = True
        try:
            if self.writer is not None:
                self.writer.release()
        except RoadsegError:  # a failing flush of a video being dropped anyway
            pass
        finally:
            if self.tmp.exists():
                self.tmp.unlink()


class MaskSink:
    """One 8-bit PNG of class indices per frame, `DIR/<name>.png`, each written atomically."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = check_folder(folder, "--save-masks")
        self.frames = 0

    def write(self, name: str, labels: np.ndarray) -> Path:
        ok, png = cv2.imencode(".png", np.ascontiguousarray(labels, dtype=np.uint8))
        if not ok:
            raise RoadsegError(f"{self.folder}: could not encode the mask of frame {name}")
        target = self.folder / f"{name}.png"
        try:
            with atomic_path(target, sync=False) as tmp:  # one per frame: an fsync each would stall the stream
                tmp.write_bytes(png.tobytes())
        except OSError as e:
            raise RoadsegError(
                f"{target}: cannot write the mask ({e.strerror or e}); free some space or choose another folder"
            ) from None
        self.frames += 1
        return target

    def close(self) -> None:
        pass


def display_problem() -> str | None:
    """Why a window cannot be shown here, or None when it (probably) can."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "--show needs a display, and DISPLAY is not set (a headless machine or an SSH session without -X); use --save OUT.mp4 instead"
    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if gui.upper() == "NONE":
        return "--show needs OpenCV with a GUI, and this one is headless (opencv-python-headless); pip install opencv-python, or use --save OUT.mp4"
    return None


class WindowSink:
    """A cv2 window; `write` returns False when the user pressed q / Esc or closed the window.

    The display is checked here; the window itself is created by the first `write` and destroyed by
    `close`, so that every GUI call happens on the thread that writes."""

    def __init__(self, title: str = "roadseg"):
        problem = display_problem()
        if problem:
            raise RoadsegError(problem)
        self.title = title
        self.created = False
        self.shown = 0

    def _create(self) -> None:
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise RoadsegError(
                f"--show: cannot open a window ({str(e).strip().splitlines()[-1]}); use --save OUT.mp4"
            ) from None
        self.created = True

    def write(self, image: np.ndarray) -> bool:
        if not self.created:
            self._create()
        try:
            cv2.imshow(self.title, image)
            key = cv2.waitKey(1) & 0xFF
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error as e:
            raise RoadsegError(f"--show: the window failed ({str(e).strip().splitlines()[-1]})") from None
        self.shown += 1
        return key not in (ord("q"), 27) and (visible or self.shown == 1)

    def close(self) -> None:
        if not self.created:
            return
        self.created = False
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass
