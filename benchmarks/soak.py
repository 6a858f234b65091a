"""Soak benchmark: a long run of the synthetic clip through the real streaming pipeline (the one
behind `roadseg run`: runtime.backends.open_backend + runtime.pipeline.run_stream, overlay drawn),
watching for leaks and slow-downs. Not a CI test: 100,000 frames take from minutes on a GPU to
hours on a CPU. tests/test_reliability_soak.py runs it for 2,000 frames to check the script.

    python -m roadseg.benchmarks.soak                       # default model, 100,000 frames
    python -m roadseg.benchmarks.soak --model m.onnx --backend ort-cpu --frames 100000 --every 1000

Every --every frames it samples the process's resident memory (psutil when installed, else
/proc/self/statm), open file descriptors (/proc/self/fd) and threads (/proc/self/status, native
threads of ONNX Runtime/TensorRT included), and counts frames per wall-clock second. It checks:

- RSS after warm-up (the first --warmup frames: allocator arenas, caches) grows by less than 5%;
- no file descriptor or thread is gained between the end of warm-up and the last sample;
- FPS in every later full minute (--window) stays within 10% of the first minute's.

Beside that check (the soak's pass/fail contract, two-sided) it reports, without gating on them, the FPS
trend (least-squares slope over the full windows, % of the mean per hour) and the minute-to-minute
spread (coefficient of variation): on a shared VM a minute can be 10% off its neighbours with
nothing else running, and these two tell that noise apart from a slow-down.

It writes benchmarks/results/soak-<machine>.json and .png (RSS and FPS over frames), prints the
verdict and exits 0 (pass), 1 (a check failed) or 130 (stopped by Ctrl-C: partial results kept,
verdict "incomplete"). The synthetic clip loops after 1,800 frames (runtime/readers.py), so every
frame is drawn the same way from start to end.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "roadseg-soak/1"
RSS_LIMIT_PCT = 5.0
FPS_LIMIT_PCT = 10.0
RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- process probes


def _psutil() -> Any:
    try:
        import psutil  # type: ignore[import-untyped]

        return psutil.Process()
    except ImportError:
        return None


_PROC = _psutil()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float | None:
    if _PROC is not None:
        return _PROC.memory_info().rss / 2**20
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return None


def open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return _PROC.num_fds() if _PROC is not None and hasattr(_PROC, "num_fds") else None


def threads() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return _PROC.num_threads() if _PROC is not None else threading.active_count()


def probe(frame: int, t: float) -> dict[str, Any]:
    return {"frame": frame, "t_s": round(t, 3), "rss_mb": _round(rss_mb()), "fds": open_fds(), "threads": threads()}


def _round(v: float | None, n: int = 2) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), n)


# ---------------------------------------------------------------- the checks


def rss_check(samples: list[dict], warmup: int) -> dict[str, Any]:
    after = [s for s in samples if s["frame"] >= warmup and s["rss_mb"] is not None]
    out: dict[str, Any] = {"limit_pct": RSS_LIMIT_PCT, "warmup_frames": warmup, "passed": None}
    if len(after) < 2:
        out["note"] = "fewer than two samples after warm-up"
        return out
    base, final = after[0]["rss_mb"], after[-1]["rss_mb"]
    xs = [s["frame"] for s in after]
    ys = [s["rss_mb"] for s in after]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    growth = 100.0 * (final - base) / base if base else 0.0
    out.update(baseline_mb=base, final_mb=final, peak_mb=max(ys), growth_pct=_round(growth, 3),
               slope_mb_per_10k_frames=_round(slope * 10_000, 4), passed=growth < RSS_LIMIT_PCT)  # fmt: skip
    return out


def count_check(samples: list[dict], key: str, warmup: int, before: int | None, after_close: int | None) -> dict[str, Any]:
    vals = [s for s in samples if s["frame"] >= warmup and s[key] is not None]
    out: dict[str, Any] = {"before_open": before, "after_close": after_close, "passed": None}
    if len(vals) < 2:
        out["note"] = "fewer than two samples after warm-up"
        return out
    base, final = vals[0][key], vals[-1][key]
    out.update(baseline=base, final=final, max=max(s[key] for s in vals), gained=final - base, passed=final <= base)
    return out


def fps_windows(per_second: list[int], elapsed: float, window: float) -> list[dict[str, Any]]:
    """Frames per window of `window` s from per-second counts; the last window may be partial."""
    out: list[dict[str, Any]] = []
    step = max(1, int(round(window)))
    for start in range(0, len(per_second), step):
        end = min(start + step, elapsed)
        if end <= start:
            break
        frames = sum(per_second[start : start + step])
        out.append({"start_s": start, "end_s": _round(end, 3), "frames": frames, "fps": _round(frames / (end - start), 3),
                    "full": end - start >= step})  # fmt: skip
    first = out[0]["fps"] if out and out[0]["full"] and out[0]["fps"] else None
    for w in out:
        w["ratio_to_first"] = _round(w["fps"] / first, 4) if first else None
    return out


def fps_check(windows: list[dict[str, Any]]) -> dict[str, Any]:
    full = [w for w in windows if w["full"]]
    out: dict[str, Any] = {"limit_pct": FPS_LIMIT_PCT, "windows": len(full), "passed": None}
    if len(full) < 2:
        out["note"] = "fewer than two full windows: run longer to judge FPS stability"
        if full:
            out["first_fps"] = full[0]["fps"]
        return out
    ratios = [w["ratio_to_first"] for w in full[1:]]
    worst = max(ratios, key=lambda r: abs(r - 1.0))
    fps = np.array([w["fps"] for w in full], dtype=np.float64)
    minutes = np.array([w["start_s"] for w in full], dtype=np.float64) / 60.0
    slope = float(np.polyfit(minutes, fps, 1)[0]) if len(fps) > 2 else 0.0  # FPS per minute
    out.update(first_fps=full[0]["fps"], min_ratio=min(ratios), max_ratio=max(ratios),
               worst_pct=_round(100.0 * (worst - 1.0), 2), passed=all(abs(r - 1.0) <= FPS_LIMIT_PCT / 100 for r in ratios),
               trend_pct_per_hour=_round(100.0 * slope * 60.0 / fps.mean(), 2), cv_pct=_round(100.0 * fps.std() / fps.mean(), 2))  # fmt: skip
    return out


def verdict(checks: dict[str, dict], interrupted: bool, error: str | None) -> str:
    if error:
        return "fail"
    if any(c.get("passed") is False for c in checks.values()):
        return "fail"
    if interrupted:
        return "incomplete"
    return "pass"


# ---------------------------------------------------------------- machine and output


def machine_name(given: str | None) -> str:
    name = given or platform.node() or "unknown"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "unknown"


def machine_info(name: str) -> dict[str, Any]:
    info: dict[str, Any] = {"name": name, "platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "processor": platform.processor()}  # fmt: skip
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.+)", f.read())
        if m:
            info["cpu"] = m.group(1).strip()
    except OSError:
        pass
    for mod in ("numpy", "cv2", "onnxruntime", "tensorrt"):
        try:
            info[f"{mod}_version"] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            pass
    info["psutil"] = _PROC is not None
    return info


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from roadseg.core.atomic import atomic_path

    samples = [s for s in result["samples"] if s["frame"] > 0]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    xs = [s["frame"] for s in samples]
    ax1.plot(xs, [s["rss_mb"] for s in samples], marker=".", color="tab:blue")
    warm = result["config"]["warmup_frames"]
    for ax in (ax1, ax2):
        ax.axvline(warm, color="grey", linestyle=":", label="end of warm-up")
    rss = result["checks"]["rss"]
    if rss.get("baseline_mb"):
        ax1.axhline(rss["baseline_mb"] * (1 + RSS_LIMIT_PCT / 100), color="tab:red", linestyle="--",
                    label=f"baseline +{RSS_LIMIT_PCT:g}%")  # fmt: skip
    ax1.set_ylabel("RSS (MB)")
    ax1.legend(loc="lower right")
    fps = [(b["frame"], (b["frame"] - a["frame"]) / (b["t_s"] - a["t_s"])) for a, b in zip(result["samples"], samples)
           if b["t_s"] > a["t_s"]]  # fmt: skip
    ax2.plot([f for f, _ in fps], [v for _, v in fps], marker=".", color="tab:green", label=f"FPS over {result['config']['every']} frames")
    first = result["checks"]["fps"].get("first_fps")
    if first:
        ax2.axhspan(first * (1 - FPS_LIMIT_PCT / 100), first * (1 + FPS_LIMIT_PCT / 100), color="tab:green", alpha=0.12,
                    label=f"first {result['config']['window_s']:g} s ±{FPS_LIMIT_PCT:g}%")  # fmt: skip
    ax2.set_ylabel("FPS")
    ax2.set_xlabel("frame")
    ax2.legend(loc="lower right")
    ax2.set_ylim(bottom=0)
    fig.suptitle(f"roadseg soak: {result['backend']} on {result['machine']['name']}: {result['verdict'].upper()}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def report(result: dict[str, Any]) -> str:
    s, c = result["summary"], result["checks"]
    lines = [f"soak: {s['frames_out']} frames in {s['elapsed_s']:.0f} s ({s['fps']:.1f} FPS) on {result['backend']}, "
             f"{result['machine']['name']}"]  # fmt: skip

    def mark(check: dict) -> str:
        return {True: "ok", False: "FAIL", None: "not judged"}[check.get("passed")]

    r = c["rss"]
    if "growth_pct" in r:
        lines.append(f"  RSS {r['baseline_mb']:.1f} -> {r['final_mb']:.1f} MB after {r['warmup_frames']} warm-up frames "
                     f"({r['growth_pct']:+.2f}%, limit {RSS_LIMIT_PCT:g}%): {mark(r)}")  # fmt: skip
    else:
        lines.append(f"  RSS: {r.get('note')}")
    for key, label in (("fds", "open file descriptors"), ("threads", "threads")):
        k = c[key]
        if "final" in k:
            lines.append(f"  {label} {k['baseline']} -> {k['final']} after warm-up (max {k['max']}; "
                         f"{k['before_open']} before opening, {k['after_close']} after closing): {mark(k)}")  # fmt: skip
        else:
            lines.append(f"  {label}: {k.get('note')}")
    f = c["fps"]
    if f.get("passed") is not None:
        lines.append(f"  FPS per {result['config']['window_s']:g} s within {100 * (f['min_ratio'] - 1):+.1f}%..{100 * (f['max_ratio'] - 1):+.1f}% "
                     f"of the first window ({f['first_fps']:.1f} FPS, limit {FPS_LIMIT_PCT:g}%): {mark(f)}")  # fmt: skip
        lines.append(f"  FPS trend {f['trend_pct_per_hour']:+.1f}% per hour, window-to-window spread {f['cv_pct']:.1f}% (reported, not checked)")
    else:
        lines.append(f"  FPS: {f.get('note')}")
    if s.get("error"):
        lines.append(f"  stopped by error: {s['error']}")
    lines.append(f"verdict: {result['verdict'].upper()}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    from roadseg.core.version import __version__
    from roadseg.runtime.backends import open_backend
    from roadseg.runtime.pipeline import StreamError, run_stream

    warmup = args.warmup if args.warmup is not None else max(args.every, args.frames // 20)
    t_start = time.perf_counter()
    before = probe(0, 0.0)
    backend = open_backend(args.model, args.backend, **({"threads": args.threads} if args.threads else {}))
    opened = probe(0, time.perf_counter() - t_start)
    samples: list[dict[str, Any]] = []
    per_second: list[int] = []
    state = {"n": 0, "t0": None}
    stop = threading.Event()

    def on_frame(frame: Any, labels: Any, image: Any) -> None:
        now = time.perf_counter()
        if state["t0"] is None:
            state["t0"] = now
            samples.append(probe(0, 0.0))
        t = now - state["t0"]  # type: ignore[operator]
        sec = int(t)
        while len(per_second) <= sec:
            per_second.append(0)
        per_second[sec] += 1
        state["n"] += 1
        if state["n"] % args.every == 0:
            samples.append(probe(state["n"], t))
            if not args.quiet:
                s = samples[-1]
                print(f"soak: {s['frame']:>7} frames  {s['t_s']:>8.1f} s  RSS {s['rss_mb']} MB  fds {s['fds']}  "
                      f"threads {s['threads']}", flush=True)  # fmt: skip

    def handle(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    error = None
    try:
        try:
            summary = run_stream(backend, f"synthetic:{args.frames}", save=args.save, overlay=not args.no_overlay,
                                 log=None, stop=stop, on_frame=on_frame,
                                 source_options={"size": tuple(args.size)})  # fmt: skip
        except StreamError as e:  # the stream failed after it ran: its summary is still measured
            summary, error = e.summary, str(e)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        backend.close()
    after = probe(state["n"], time.perf_counter() - t_start)
    elapsed = samples[-1]["t_s"] if samples else 0.0
    if state["t0"] is not None:
        elapsed = max(elapsed, summary.elapsed_s if summary.elapsed_s else 0.0)
    windows = fps_windows(per_second, elapsed, args.window)
    checks = {
        "rss": rss_check(samples, warmup),
        "fds": count_check(samples, "fds", warmup, before["fds"], after["fds"]),
        "threads": count_check(samples, "threads", warmup, before["threads"], after["threads"]),
        "fps": fps_check(windows),
    }
    d = summary.to_dict()
    result = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "roadseg_version": __version__,
        "machine": machine_info(machine_name(args.machine)),
        "config": {"model": str(args.model), "backend": args.backend, "frames": args.frames, "every": args.every,
                   "warmup_frames": warmup, "window_s": args.window, "size": list(args.size), "threads": args.threads,
                   "overlay": not args.no_overlay, "save": args.save},  # fmt: skip
        "backend": backend.name,
        "model": str(getattr(backend, "path", None) or getattr(getattr(backend, "info", None), "path", None) or args.model),
        "summary": {"frames_out": d.get("frames_out", state["n"]), "elapsed_s": _round(summary.elapsed_s, 3),
                    "fps": _round(summary.fps, 3), "model_fps": _round(summary.model_fps, 3),
                    "dropped": summary.dropped, "skipped": summary.skipped, "interrupted": summary.interrupted,
                    "error": error, "stages": d.get("stages", {})},  # fmt: skip
        "process": {"before_open": before, "after_open": opened, "after_close": after},
        "samples": samples,
        "fps_windows": windows,
        "checks": checks,
    }
    result["verdict"] = verdict(checks, summary.interrupted, error)
    return result


def parse(argv: list[str] | None) -> argparse.Namespace:
    from roadseg.runtime.options import number, positive  # the CLI's own checks: one message for bad values

    seconds = number(float, lambda x: x >= 1, "must be at least 1 s")
    from roadseg.runtime.backends import BACKENDS

    p = argparse.ArgumentParser(prog="python -m roadseg.benchmarks.soak", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", default="default", help="an .onnx or .engine, or `default` (the bundled model; default)")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="inference backend (default auto)")
    p.add_argument("--frames", type=positive, default=100_000, help="frames of the synthetic clip (default 100000)")
    p.add_argument("--every", type=positive, default=1000, help="sample RSS, fds and threads every N frames (default 1000)")
    p.add_argument("--warmup", type=positive, help="frames before the RSS/fd/thread baseline (default: frames/20, at least --every)")
    p.add_argument("--window", type=seconds, default=60.0, help="FPS window in seconds, compared with the first (default 60)")
    p.add_argument("--size", type=positive, nargs=2, default=[360, 480], metavar=("H", "W"), help="frame size (default 360 480)")
    p.add_argument("--threads", type=positive, help="inference threads (ONNX Runtime intra-op)")
    p.add_argument("--no-overlay", action="store_true", help="do not draw the overlay (as `roadseg run` without --save/--show)")
    p.add_argument("--save", metavar="OUT", help="also write the overlay video (large: 100,000 frames)")
    p.add_argument("--out", default=str(RESULTS), metavar="DIR", help="results folder (default benchmarks/results)")
    p.add_argument("--machine", help="machine name in the file name (default: the host name)")
    p.add_argument("--quiet", action="store_true", help="print only the verdict")
    a = p.parse_args(argv)
    if a.every > a.frames:
        p.error(f"--every {a.every} is more than --frames {a.frames}")
    return a


def main(argv: list[str] | None = None) -> int:
    from roadseg.core.atomic import atomic_path, check_writable
    from roadseg.core.errors import RoadsegError

    from .portable import portable

    args = parse(argv)
    name = machine_name(args.machine)
    out = Path(args.out) / f"soak-{name}.json"
    try:
        check_writable(out)
        result = run(args)
    except RoadsegError as e:
        sys.stderr.write(f"soak: error: {e}\n")
        return e.exit_code
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(portable(result), indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    print(report(result))
    print(f"soak: wrote {out} and {out.with_suffix('.png')}")
    return {"pass": 0, "fail": 1, "incomplete": 130}[result["verdict"]]


if __name__ == "__main__":
    raise SystemExit(main())
