"""The options of a streaming run (`roadseg run`, `run_streams`, `run_stream`), defined once: the
fields made with `option` build the command line (runtime.options). Light on purpose (stdlib
only), so building the CLI's parser imports no OpenCV or numpy."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .options import option, positive, unit

WRITE_QUEUE = 4  # frames between inference and each writer thread
WRITER_TIMEOUT = 30.0  # seconds a writer gets to write what is queued once its stream ends
REPORT_EVERY = 5.0  # seconds between progress tables with verbose / show


def stderr_log(text: str) -> None:
    """The default `log`: one line on stderr."""
    from .readers import STDERR_LOCK

    with STDERR_LOCK:  # not while an image decoder's stderr is pointed away (readers._quiet_stderr)
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


@dataclass(frozen=True)
class StreamOptions:
    """What a run writes and how it reports: the options of `roadseg run` (the fields made with
    `option`, which build its command line) and of the Python API.

    on_frame(stream name, frame, labels, overlay image or None) runs on the stream's writer thread
    for each frame (`run_stream`: on_frame(frame, labels, image)). view: a live view
    (runtime.serve.LiveView) that gets every overlay and the stats. overlay: draw overlays even
    with no sink that shows them (None: only when one does). source_options go to `open_source`.
    write_queue: frames queued for each writer; writer_timeout: seconds a writer gets, once its
    stream ends, to write what is queued before it is abandoned."""

    save: str | os.PathLike | None = option(None, metavar="OUT", help="write the overlay video (.mp4 or .avi); with several "
                                            "sources a folder (one <stream>.mp4 each) or a name with {stream}")  # fmt: skip
    save_masks: str | os.PathLike | None = option(None, metavar="DIR", help="write one 8-bit PNG of class indices per frame "
                                                  "(several sources: one subfolder per stream, or a name with {stream})")  # fmt: skip
    show: bool = option(False, action="store_true", help="show the overlay in a window (needs a display)")
    alpha: float = option(0.5, type=unit, help="mask opacity in the overlay, 0..1 (default 0.5)")
    max_frames: int | None = option(None, type=positive, metavar="N", help="stop after N frames (per stream)")
    live: bool | None = None  # see open_source; the CLI's --live / --no-drop pair
    verbose: bool = option(False, action="store_true", help="print the stats table every few seconds")
    log: Callable[[str], None] | None = stderr_log
    report_every: float = REPORT_EVERY
    on_frame: Callable[..., None] | None = None
    overlay: bool | None = None
    source_options: dict | None = None
    view: Any = None
    write_queue: int = WRITE_QUEUE
    writer_timeout: float = WRITER_TIMEOUT
