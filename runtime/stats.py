"""Streaming statistics: per-stage timings with percentiles, FPS, end-to-end latency and frame counters.

Timings go into fixed log-spaced histograms (constant memory however long the run: a soak of 100,000
frames keeps the same footprint as a 10-frame test), so p50/p90/p99 are exact to about 2%. All
methods are thread-safe: the capture, inference and writer threads record into one `Stats`.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

PIPELINE_STAGES = ("read", "infer", "overlay", "write")  # the pipeline's threads' steps, in order
STAGES = (*PIPELINE_STAGES, "latency")  # latency: capture timestamp -> written
_LO_MS, _DECADES, _PER_DECADE = 1e-3, 8, 100  # histogram covers 1 us .. 100 s


class Histogram:
    """Durations in milliseconds; log-spaced bins, so percentiles are within ~2.3% of the truth."""

    __slots__ = ("counts", "n", "total", "lo", "hi")

    def __init__(self) -> None:
        self.counts = np.zeros(_DECADES * _PER_DECADE + 2, dtype=np.int64)  # + underflow, overflow
        self.n = 0
        self.total = 0.0
        self.lo = math.inf
        self.hi = 0.0

    def add(self, ms: float) -> None:
        ms = max(float(ms), 0.0)
        if ms < _LO_MS:
            b = 0
        else:
            b = 1 + int(math.log10(ms / _LO_MS) * _PER_DECADE)
            b = min(b, len(self.counts) - 1)
        self.counts[b] += 1
        self.n += 1
        self.total += ms
        self.lo = min(self.lo, ms)
        self.hi = max(self.hi, ms)

    def percentile(self, q: float) -> float:
        if not self.n:
            return math.nan
        rank = q / 100.0 * self.n
        b = int(np.searchsorted(np.cumsum(self.counts), max(rank, 1e-9)))
        if b == 0:
            value = _LO_MS / 2
        else:  # geometric middle of the bin
            value = _LO_MS * 10 ** ((b - 0.5) / _PER_DECADE)
        return min(max(value, self.lo), self.hi)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan


@dataclass
class StageSummary:
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def fps(self) -> float:
        """What this stage alone could sustain: 1000 / mean."""
        return 1000.0 / self.mean_ms if self.mean_ms and self.mean_ms > 0 else math.nan


@dataclass
class Summary:
    """The result of a stream: counters, throughput, per-stage timings (ms) and what was written."""

    frames_in: int = 0  # frames read from the source (bad ones included)
    frames_out: int = 0  # frames through inference and every sink
    dropped: int = 0  # overwritten by newer frames (live sources)
    skipped: int = 0  # bad frames skipped (empty, tiny, unsupported type)
    converted: int = 0  # bad frames converted (gray, BGRA, 16-bit)
    resized: int = 0  # frames resized to a fixed-size graph's input
    reconnects: int = 0
    elapsed_s: float = 0.0
    stages: dict[str, StageSummary] = field(default_factory=dict)
    interrupted: bool = False
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    backend: str = ""
    source: str = ""
    model: str = ""  # the model file and its precision (pipeline.model_label)

    @property
    def fps(self) -> float:
        return self.frames_out / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def model_fps(self) -> float:
        """Inference alone: 1000 / mean infer ms."""
        s = self.stages.get("infer")
        return s.fps if s and s.count else math.nan

    def table(self) -> str:
        head = f"{self.source or 'stream'} -> {self.backend or 'backend'}" + (f" ({self.model})" if self.model else "")
        lines = [
            head,
            f"frames in {self.frames_in}  out {self.frames_out}  dropped {self.dropped}  skipped {self.skipped}"
            f"  converted {self.converted}"
            + (f"  resized {self.resized}" if self.resized else "")
            + (f"  reconnects {self.reconnects}" if self.reconnects else ""),
            f"{self.fps:.1f} FPS end to end over {self.elapsed_s:.1f} s"
            + (f" (model alone {self.model_fps:.1f} FPS)" if not math.isnan(self.model_fps) else ""),
            f"{'stage':<8} {'count':>7} {'mean':>8} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  (ms)",
        ]
        for name in STAGES:
            s = self.stages.get(name)
            if s is None or not s.count:
                continue
            lines.append(
                f"{name:<8} {s.count:>7} {s.mean_ms:>8.2f} {s.p50_ms:>8.2f} {s.p90_ms:>8.2f} {s.p99_ms:>8.2f} {s.max_ms:>8.2f}"
            )
        if self.interrupted:
            lines.append("stopped by request (Ctrl-C / SIGTERM)")
        if self.error:
            lines.append(f"stopped by error: {self.error}")
        for kind, path in self.outputs.items():
            lines.append(f"{kind}: {path}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "frames_in": self.frames_in, "frames_out": self.frames_out, "dropped": self.dropped,
            "skipped": self.skipped, "converted": self.converted, "resized": self.resized,
            "reconnects": self.reconnects, "elapsed_s": self.elapsed_s, "fps": self.fps,
            "model_fps": self.model_fps, "interrupted": self.interrupted, "error": self.error,
            "outputs": dict(self.outputs), "backend": self.backend, "source": self.source, "model": self.model,
            "stages": {k: {**v.__dict__, "fps": v.fps} for k, v in self.stages.items()},
        }  # fmt: skip


class Stats:
    """Thread-safe collector; `summary()` snapshots it at any time (periodic reports, the end).
    With a `parent`, everything recorded here is recorded there too: one stream's Stats feeds the
    run's total."""

    def __init__(self, parent: Stats | None = None) -> None:
        self.parent = parent
        self._lock = threading.Lock()
        self._hist = {name: Histogram() for name in STAGES}
        self.frames_out = 0
        self.resized = 0
        self.start = time.perf_counter()
        self.end: float | None = None

    def record(self, stage: str, ms: float) -> None:
        with self._lock:
            self._hist[stage].add(ms)
        if self.parent is not None:
            self.parent.record(stage, ms)

    def frame_out(self, latency_ms: float) -> None:
        with self._lock:
            self._hist["latency"].add(latency_ms)
            self.frames_out += 1
        if self.parent is not None:
            self.parent.frame_out(latency_ms)

    def count_resized(self) -> None:
        with self._lock:
            self.resized += 1
        if self.parent is not None:
            self.parent.count_resized()

    def stop(self) -> None:
        if self.end is None:
            self.end = time.perf_counter()

    def summary(self, src=None, **extra) -> Summary:
        """A snapshot; `src` (a Source) contributes its counters."""
        with self._lock:
            stages = {
                name: StageSummary(h.n, h.mean, h.percentile(50), h.percentile(90), h.percentile(99), h.hi)
                for name, h in self._hist.items()
                if h.n
            }
            out = self.frames_out
            resized = self.resized
        elapsed = (self.end if self.end is not None else time.perf_counter()) - self.start
        s = Summary(frames_out=out, resized=resized, elapsed_s=elapsed, stages=stages, **extra)
        if src is not None:
            c = src.counters()
            s.frames_in, s.dropped, s.skipped = c["frames_in"], c["dropped"], c["skipped"]
            s.converted, s.reconnects = c["converted"], c["reconnects"]
            s.source = s.source or src.spec
        return s


@dataclass
class StreamsSummary:
    """The result of several streams through one backend: each stream's Summary (by stream name),
    the total over all of them (its stages pool every stream's frames), and how the frames were
    batched."""

    streams: dict[str, Summary]
    total: Summary
    batches: int = 0  # inference calls
    batch_note: str = ""  # e.g. "batch 1 graph: the streams ran one after another"

    @property
    def frames_out(self) -> int:
        return self.total.frames_out

    @property
    def fps(self) -> float:
        return self.total.fps

    @property
    def interrupted(self) -> bool:
        return self.total.interrupted

    @property
    def mean_batch(self) -> float:
        return self.total.frames_out / self.batches if self.batches else math.nan

    def failed(self) -> dict[str, str]:
        return {name: s.error for name, s in self.streams.items() if s.error}

    def table(self) -> str:
        t = self.total
        wide = max([20, *map(len, self.streams)])  # every name whole: two names never read as one
        lines = [
            f"{len(self.streams)} streams -> {t.backend or 'backend'}{f' ({t.model})' if t.model else ''}: "
            f"{t.frames_out} frames in {self.batches} "
            f"inference calls (mean batch {self.mean_batch:.2f}){'; ' + self.batch_note if self.batch_note else ''}",
            f"{'stream':<{wide}} {'in':>6} {'out':>6} {'dropped':>7} {'reconn':>6} {'FPS':>7} {'p50 ms':>8} {'p99 ms':>8}  state",
        ]
        for name, s in self.streams.items():
            lat = s.stages.get("latency")
            p50, p99 = (lat.p50_ms, lat.p99_ms) if lat and lat.count else (math.nan, math.nan)
            state = f"failed: {s.error}" if s.error else ("stopped" if s.interrupted else "ended")
            lines.append(f"{name:<{wide}} {s.frames_in:>6} {s.frames_out:>6} {s.dropped:>7} {s.reconnects:>6} "
                         f"{s.fps:>7.1f} {p50:>8.1f} {p99:>8.1f}  {state}")  # fmt: skip
        body = t.table().splitlines()[2:]  # the total's FPS line, stage table, stop reason and outputs
        lines.append(f"total: {t.frames_out} frames, " + body[0])
        lines.extend(body[1:])
        for name, s in self.streams.items():
            lines.extend(f"{name} {kind}: {path}" for kind, path in s.outputs.items())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"streams": {k: v.to_dict() for k, v in self.streams.items()}, "total": self.total.to_dict(),
                "batches": self.batches, "mean_batch": self.mean_batch, "batch_note": self.batch_note}  # fmt: skip
