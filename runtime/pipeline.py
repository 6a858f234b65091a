"""The streaming pipeline: capture threads -> batched inference -> overlay + write threads, bounded
queues between.

One or several sources run through one backend. Each source has its own capture thread (with its
own drop policy and reconnects, runtime.sources), its own writer thread (overlay and sinks,
runtime.writer) and its own Stats; inference runs on the calling thread (GPU backends own their
context there) and takes at most one frame from each stream per call (runtime.batcher), so N
streams become batches of up to N frames. A stream that fails (a camera lost for good, a broken
file, a full disk under its video) ends alone, its outputs finalised and its error kept; the others
go on. Files drop nothing; live streams keep only their newest frame.

- `Pipeline(backend, sources, StreamOptions(...), stop).run()` runs the writers too, so decoding,
  inference and writing overlap and throughput approaches the slowest stage; `run_streams` and
  `run_stream` (one source, its own Summary) are the same as functions.
- `iterate` (runtime.iterate) is the Python API's stream, on the same batcher.

Stopping: set the `stop` event (the CLI's SIGINT/SIGTERM handlers do) and the pipeline drains what
is in flight, finalises the videos, and returns with `interrupted=True`. A KeyboardInterrupt raised
inside is finalised the same way and re-raised; one that arrives during finalisation (a second
Ctrl-C) does not skip it (runtime.finalize). An error ending the run (every stream failed, or the
backend failed) also finalises everything written so far, then raises a StreamError holding that
error and the summary.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roadseg.core.errors import RoadsegError, UsageError

from .batcher import Batcher, StreamState, fixed_batch, model_label, open_all, report_failure
from .finalize import Finalizer
from .naming import check_distinct_outputs, check_stream_count, stream_names, stream_outputs
from .progress import progress_table, snapshot, stream_state
from .redact import redact
from .sources import Frame, Source
from .stats import Stats, StreamsSummary, Summary
from .stream_options import StreamOptions  # noqa: F401 - the options of run_streams, re-exported
from .writer import Sinks, Writer


class StreamError(RoadsegError):
    """A run ended by `error` (a RoadsegError; its message and exit code are this one's), raised
    once every output was finalised; `summary` is what ran (a StreamsSummary, or a Summary from
    `run_stream`)."""

    def __init__(self, error: RoadsegError, summary: StreamsSummary | Summary):
        super().__init__(str(error))
        self.error, self.summary = error, summary
        self.exit_code = error.exit_code


class _Stream(StreamState):
    """A stream of a Pipeline: its state, plus its writer and sinks."""

    def __init__(self, name: str, spec: Any, total: Stats | None):
        super().__init__(name, spec, total)
        self.video: Any = None
        self.masks: Any = None
        self.window: Any = None
        self.save_masks: str | None = None
        self.writer: Writer | None = None


class Pipeline:
    """Every source through `backend` into its sinks. `run()` checks every output path before any
    source opens (a UsageError, nothing written), then opens, streams and finalises; it returns
    the StreamsSummary (also on a requested stop) or raises a StreamError when a stream failed
    (after the others ran to their end) or the run itself failed. `stop` ends the run cleanly when
    set."""

    def __init__(self, backend: Any, sources: Sequence[Source | str | Any], options: StreamOptions | None = None,
                 stop: threading.Event | None = None):  # fmt: skip
        self.backend, self.options = backend, options or StreamOptions()
        self.stop = stop if stop is not None else threading.Event()
        self.specs = list(sources)
        if not self.specs:
            raise UsageError("no source given; pass --source at least once")
        check_stream_count(len(self.specs))
        self.total = Stats()
        self.streams = [_Stream(n, spec, self.total) for n, spec in zip(stream_names(self.specs), self.specs)]
        self.several = len(self.streams) > 1
        self.bname, self.mlabel = getattr(backend, "name", ""), model_label(backend)
        self.note = ""
        self.batcher: Batcher | None = None

    def run(self) -> StreamsSummary:
        """An error while opening (a sink, a source, a display) is raised as it is once what was
        opened is closed: nothing streamed, so there is no summary to carry. One while streaming is
        kept, everything finalised, and raised with the summary (`_result`)."""
        outputs = self.check()
        fin = Finalizer(self.streams, self.options.view)
        try:
            self.open(outputs)
            try:
                self._loop()
            except KeyboardInterrupt:
                raise
            except BaseException as e:  # noqa: BLE001 - finalised below, then raised
                fin.error = e
        finally:
            fin.close(self.total.stop)
        return self._result(fin)

    def check(self) -> list[tuple[str | None, str | None]]:
        """Each stream's (video, masks) paths, every one checked before anything opens."""
        from .sinks import check_outputs

        o = self.options
        if o.show and self.several:
            raise UsageError("--show opens one window for one source; with several sources use --serve PORT "
                             "(a browser page with every stream) or --save DIR")  # fmt: skip
        outputs = stream_outputs([s.name for s in self.streams], o.save, o.save_masks)
        check_distinct_outputs(self.specs, outputs)
        for s, (video_path, masks_path) in zip(self.streams, outputs):
            check_outputs(s.spec, video_path, masks_path)
        return outputs

    def open(self, outputs: list[tuple[str | None, str | None]]) -> None:
        """Sinks, sources, writers; the clocks start once frames can flow."""
        from .overlay import Overlay
        from .sinks import MaskSink, VideoSink, WindowSink

        o = self.options
        wants_overlay = o.overlay if o.overlay is not None else bool(o.save or o.show or o.view is not None)
        painter = Overlay(self.backend.card, o.alpha) if wants_overlay else None
        for s, (video_path, masks_path) in zip(self.streams, outputs):
            s.video = VideoSink(video_path) if video_path else None
            s.masks = MaskSink(masks_path) if masks_path else None
            s.save_masks = masks_path
            s.window = WindowSink() if o.show else None
        options = dict(o.source_options or {})
        options.setdefault("log", o.log)
        open_all(self.streams, o.live, options, self.stop)
        self._note_batch_one()
        for s in self.streams:
            self._start_writer(s, painter)
        if o.view is not None:
            o.view.set_stats(lambda: snapshot(self.streams, self.total, self.bname))
        self.total.start = time.perf_counter()  # FPS from the moment frames can flow, not from model/sink setup
        for s in self.streams:
            s.stats.start = self.total.start
        self.batcher = Batcher(self.backend, self.streams, self.stop, o.max_frames)

    def _note_batch_one(self) -> None:
        if self.several and fixed_batch(self.backend) == 1:
            self.note = "the model takes batch 1, so the streams ran one after another (export with a dynamic batch to batch them)"
            if self.options.log is not None:
                self.options.log(f"{len(self.streams)} streams on a batch-1 model: they run one after another "
                                 "(export with a dynamic batch to batch them)")  # fmt: skip

    def _start_writer(self, s: _Stream, painter: Any) -> None:
        o = self.options
        s.writer = Writer(s.name, s.stats, Sinks(s.video, s.masks, s.window), painter, self._hook(s.name),
                          queue_size=o.write_queue, timeout=o.writer_timeout)  # fmt: skip
        if o.view is not None:  # its last overlay is published: its viewers get that, not a wait
            s.writer.on_end = lambda: o.view.end(s.name, stream_state(s))
        s.writer.start()

    def _hook(self, name: str) -> Callable | None:
        on_frame, view = self.options.on_frame, self.options.view
        if on_frame is None and view is None:
            return None

        def each(frame: Frame, labels: np.ndarray, image: np.ndarray | None) -> None:
            if on_frame is not None:
                on_frame(name, frame, labels, image)
            if view is not None and image is not None:
                view.publish(name, image)

        return each

    def _loop(self) -> None:
        o = self.options
        report = (o.verbose or o.show) and o.log is not None
        next_report = time.perf_counter() + o.report_every
        for batch in self.batcher:  # type: ignore[union-attr]
            for s, frame, labels, _ in batch:
                if s.frames == 1 and s.video is not None and s.src.fps > 0:  # type: ignore[attr-defined, union-attr]
                    s.video.fps = s.src.fps  # type: ignore[attr-defined, union-attr]  # known once opened (a camera may open late)
                if not s.writer.put((frame, labels)):  # type: ignore[attr-defined]
                    s.end(s.writer.error or RoadsegError(f"stream {s.name}: its writer stopped"))  # type: ignore[attr-defined]
            self._settle()
            if report and time.perf_counter() >= next_report:
                next_report += o.report_every
                o.log(progress_table(self.streams, self.total, self.batcher.calls, self.bname, self.note))  # type: ignore[misc, union-attr]
        self._settle()

    def _settle(self) -> None:
        """After each batch: a stream whose writer failed is done; a closed window stops the run; a
        stream that is done gets its writer's end marker and its capture closed, once; a failure is
        logged (with several streams: the others go on)."""
        for s in self.streams:
            w = s.writer
            if w is None:
                continue
            if w.window_closed:
                self.stop.set()
            if w.error is not None and not s.done:
                s.end(w.error)
            if s.done and not s.ended_reported:
                s.ended_reported = True
                w.no_more.set()  # the writer writes what is queued, stops the stream's clock and ends, never blocking here
                s.close_source()
                if self.several:
                    report_failure(s, self.options.log)

    def _result(self, fin: Finalizer) -> StreamsSummary:
        """The summary once everything is finalised; raises what ended the run."""
        window_closed = any(s.writer is not None and s.writer.window_closed for s in self.streams)
        interrupted = bool(fin.pending) or (self.stop.is_set() and fin.error is None and not window_closed)
        for s in self.streams:
            if s.error is None and not interrupted and s.src is not None and s.src.ended and not s.stats.frames_out and (
                s.src.frames_in or s.src.kind in ("file", "images")
            ):
                s.error = RoadsegError(f"no frame could be read from {s.src.spec}: {s.src.no_frame_reason()}")
        result = self._summary(fin, interrupted)
        if fin.pending:
            raise fin.pending[0]  # a Ctrl-C during finalisation: everything was finalised first
        error, failed = fin.error, [s for s in self.streams if s.error is not None]
        if error is None and failed:
            if self.several:
                error = RoadsegError(f"{len(failed)} of {len(self.streams)} streams failed: "
                                     + "; ".join(f"{s.name}: {redact(s.error)}" for s in failed))  # fmt: skip
            else:
                error = failed[0].error
        if isinstance(error, RoadsegError):
            raise StreamError(error, result) from error
        if error is not None:
            raise error
        return result

    def _summary(self, fin: Finalizer, interrupted: bool) -> StreamsSummary:
        summaries = {}
        for s in self.streams:
            summaries[s.name] = s.stats.summary(
                s.src, interrupted=interrupted and s.error is None and not s.done, outputs=fin.outputs[s.name],
                backend=self.bname, model=self.mlabel,
                source=redact(s.spec) if isinstance(s.spec, (str, int, Path)) else "",
                error=redact(s.error) if s.error is not None else None,
            )  # fmt: skip
        total = self.total.summary(interrupted=interrupted, backend=self.bname, model=self.mlabel,
                                   source=f"{len(self.streams)} streams",
                                   error=redact(fin.error) if fin.error is not None else None)  # fmt: skip
        for key in ("frames_in", "dropped", "skipped", "converted", "reconnects"):
            setattr(total, key, sum(getattr(v, key) for v in summaries.values()))
        return StreamsSummary(summaries, total, self.batcher.calls if self.batcher is not None else 0, self.note)


def run_streams(backend: Any, sources: Sequence[Source | str | Any], options: StreamOptions | None = None, *,
                stop: threading.Event | None = None, **fields: Any) -> StreamsSummary:  # fmt: skip
    """`Pipeline(backend, sources, options, stop).run()`; `fields` (StreamOptions' field names)
    build the options when none are given, or replace some of them."""
    options = dataclasses.replace(options or StreamOptions(), **fields)
    return Pipeline(backend, sources, options, stop).run()


def run_stream(backend: Any, source: Source | str | Any, options: StreamOptions | None = None, *,
               stop: threading.Event | None = None, **fields: Any) -> Summary:  # fmt: skip
    """`run_streams` for one source; returns (and a StreamError carries) its Summary.
    on_frame(frame, labels, overlay image or None) runs on the writer thread for each frame."""
    options = dataclasses.replace(options or StreamOptions(), **fields)
    if options.on_frame is not None:
        on_frame = options.on_frame
        options = dataclasses.replace(options, on_frame=lambda _name, frame, labels, image: on_frame(frame, labels, image))
    try:
        result = run_streams(backend, [source], options, stop=stop)
    except StreamError as e:
        raise StreamError(e.error, _single(e.summary)) from e.error  # type: ignore[arg-type]
    return _single(result)


def _single(result: StreamsSummary) -> Summary:
    """The one stream's Summary, carrying the run's error and stop state."""
    (s,) = result.streams.values()
    s.error = s.error or result.total.error
    s.interrupted = result.total.interrupted
    return s
