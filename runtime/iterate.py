"""The Python API's stream: `iterate(backend, source)` behind `Segmenter.stream`, on the same
Batcher as `roadseg run`, without writer threads (the caller consumes each frame)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .batcher import Batcher, StreamState, open_all, report_failure
from .naming import check_stream_count, stream_names
from .sources import Source
from .stats import Stats


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
    log = source_options.get("log") if several else None
    streams = [StreamState(n, spec, total) for n, spec in zip(stream_names(specs), specs)]
    try:
        open_all(streams, live, source_options, stop)
        for batch in Batcher(backend, streams, stop, max_frames):
            for s, frame, labels, infer_ms in batch:
                latency = (time.perf_counter() - frame.timestamp) * 1000.0
                s.stats.frame_out(latency)
                timings = {
                    "index": frame.index, "name": frame.name, "timestamp": frame.timestamp,
                    "read_ms": frame.read_ms, "infer_ms": infer_ms, "latency_ms": latency, "batch": len(batch),
                }  # fmt: skip
                yield (s.name, frame.image, labels, timings) if several else (frame.image, labels, timings)
            for s in streams:
                if s.error is not None and not s.ended_reported:
                    s.ended_reported = True
                    report_failure(s, log)
        failed = [s for s in streams if s.error is not None]
        if failed and (not several or len(failed) == len(streams)):
            raise failed[0].error  # type: ignore[misc]
    finally:
        total.stop()
        for s in streams:
            s.close_source()
