"""H.264 in MP4 with PyAV: overlay videos that browsers, GitHub and chat apps play.

OpenCV's bundled FFmpeg has no H.264 encoder (its .mp4 is MPEG-4 Part 2, `mp4v`, which browsers
refuse); PyAV's wheels carry FFmpeg with libx264. `open_writer` returns an object with OpenCV's
VideoWriter interface (write, release, isOpened), so VideoSink drives either one the same way.

The MP4 is fragmented, one fragment per frame (movflags frag_every_frame+empty_moov+
default_base_moof) and flushed as it is written: a run killed with SIGKILL, or a power cut, leaves
a file that players and ffprobe read up to the frame before the last one written (the muxer holds
the newest frame until the next one gives its duration), where a plain MP4 would lack its index
(the moov atom is written at the end) and not open at all. The cost is about 1% of size. x264 runs
with `tune=zerolatency` (no lookahead, no B-frames), so no frame waits in the encoder, and with a
keyframe every second for seeking.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from roadseg.core.errors import RoadsegError

log = logging.getLogger("roadseg")

H264_EXTENSIONS = (".mp4", ".m4v", ".mov")
MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"
X264_OPTIONS = {"preset": "veryfast", "tune": "zerolatency", "crf": "23"}


def h264_problem() -> str | None:
    """Why H.264 cannot be written here (PyAV missing, or its FFmpeg lacks libx264), or None."""
    try:
        import av
    except ImportError:
        return "PyAV is not installed"
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # av raises its own UnknownCodecError, a ValueError in some versions
        return f"PyAV {av.__version__}'s FFmpeg has no libx264 encoder"
    return None


class H264Writer:
    """H.264 (yuv420p) in a fragmented MP4 at `path`; frames are BGR uint8 [H,W,3] of `size`."""

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]):
        import av

        self.path = Path(path)
        self._av = av
        rate = Fraction(fps).limit_denominator(1001)
        try:
            self.container = av.open(str(self.path), "w", format="mp4",
                                     options={"movflags": MOVFLAGS, "flush_packets": "1"})  # fmt: skip
        except (av.FFmpegError, OSError) as e:
            raise RoadsegError(f"{self.path}: cannot write an H.264 video here ({e}); choose another output path") from None
        try:
            self.stream = self.container.add_stream("libx264", rate=rate)
        except (av.FFmpegError, ValueError) as e:
            self.container.close()
            raise RoadsegError(f"{self.path}: cannot start the H.264 encoder ({e}); pip install av, or save a .avi") from None
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.options = {**X264_OPTIONS, "g": str(max(1, round(fps)))}
        self.index = 0
        self.opened = True

    def isOpened(self) -> bool:  # noqa: N802 (cv2.VideoWriter's name)
        return self.opened

    def _mux(self, frame) -> None:
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (self._av.FFmpegError, OSError) as e:
            raise RoadsegError(f"{self.path}: writing the video failed ({e}); free some space or choose another output path") from None

    def write(self, image: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = self.index
        self.index += 1
        self._mux(frame)

    def release(self) -> None:
        """Flush the encoder and close the file; safe to call twice."""
        if not self.opened:
            return
        self.opened = False
        try:
            self._mux(None)
        finally:
            self.container.close()


def open_writer(path: str | os.PathLike, fps: float, size: tuple[int, int], target: str | os.PathLike):
    """A writer for `path` (a temporary file) that will become `target`: H.264 via PyAV for MP4
    names, else (or without PyAV's libx264) OpenCV with `mp4v`, said in one warning line, or MJPG
    for .avi/.mkv. Returns (writer, codec name)."""
    import cv2

    ext = Path(path).suffix.lower()
    if ext in H264_EXTENSIONS:
        problem = h264_problem()
        if problem is None:
            return H264Writer(path, fps, size), "h264"
        log.warning(f"{target}: {problem}, so the video is MPEG-4 Part 2 (mp4v), which browsers do not play; "
                    "pip install av for H.264")  # fmt: skip
        fourcc = "mp4v"
    else:
        fourcc = "MJPG"
    return cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size), fourcc
