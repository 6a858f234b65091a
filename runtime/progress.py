"""What a run reports while it runs: the periodic progress table (`--verbose`, `--show`) and the
live view's /stats.json document (runtime.serve serves it; its keys are that page's contract)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .redact import redact
from .stats import Stats, StreamsSummary


def progress_table(streams: Sequence[Any], total: Stats, calls: int, backend: str, note: str) -> str:
    """The stats table so far: one stream's own, or every stream's and the total."""
    if len(streams) == 1:
        s = streams[0]
        return s.stats.summary(s.src, backend=backend).table()
    per = {s.name: s.stats.summary(s.src, backend=backend) for s in streams}
    return StreamsSummary(per, total.summary(backend=backend), calls, note).table()


def snapshot(streams: Sequence[Any], total: Stats, backend: str) -> dict:
    """The live view's /stats.json: per stream and total, right now."""
    out: dict[str, Any] = {"streams": {}, "backend": backend}
    for s in streams:
        summ = s.stats.summary(s.src)
        lat = summ.stages.get("latency")
        recent = s.writer.recent_fps() if s.writer is not None else float("nan")
        state = stream_state(s) if s.done or s.error is not None else "running"
        out["streams"][s.name] = {
            "frames": summ.frames_out, "fps": finite(recent if recent == recent else summ.fps),
            "latency_p50_ms": finite(lat.p50_ms if lat else None), "latency_p99_ms": finite(lat.p99_ms if lat else None),
            "drops": summ.dropped, "reconnects": summ.reconnects, "state": state,
        }  # fmt: skip
    t = total.summary()
    out["total"] = {"frames": t.frames_out, "fps": finite(t.fps)}
    return out


def stream_state(s: Any) -> str:
    """A stream's end, as the live view and /stats.json show it (no credentials)."""
    error = s.error or (s.writer.error if s.writer is not None else None)
    return f"failed: {redact(error)}" if error is not None else "ended"


def finite(x: float | None) -> float | None:
    """JSON has no NaN: None instead, rounded for display."""
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else round(float(x), 2)
