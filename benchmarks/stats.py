"""The statistics of a benchmark row, as pure functions (tested on known samples).

Percentiles use numpy's default linear interpolation; `std` is the population standard deviation
(numpy's default, ddof=0). The median is the number quoted; the rest describe the spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LATENCY_KEYS = ("n", "median", "p90", "p99", "mean", "std", "min", "max")


def summarize(samples_ms: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """{n, median, p90, p99, mean, std, min, max} of latency samples in milliseconds.

    An empty input gives n=0 and NaN for the rest (a row that produced no samples)."""
    x = np.asarray(samples_ms, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return {"n": 0, **{k: math.nan for k in LATENCY_KEYS[1:]}}
    if not np.all(np.isfinite(x)):
        raise ValueError("latency samples must be finite")
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {
        "n": int(x.size),
        "median": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def speedup(reference_ms: float | None, row_ms: float | None) -> float | None:
    """How many times faster than the reference: reference median / row median (None if unknown)."""
    if reference_ms is None or row_ms is None:
        return None
    if not (math.isfinite(reference_ms) and math.isfinite(row_ms)) or row_ms <= 0:
        return None
    return float(reference_ms / row_ms)


def throughput_fps(batch: int, batch_ms: Sequence[float] | np.ndarray) -> float | None:
    """Frames per second over timed batches: batch x runs / total seconds."""
    x = np.asarray(batch_ms, dtype=np.float64).reshape(-1)
    total = float(x.sum())
    return float(batch * x.size * 1000.0 / total) if x.size and total > 0 else None
