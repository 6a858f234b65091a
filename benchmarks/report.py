"""The report folder: results.json (everything), results.csv (one flat line per row), results.md (a
table ready for the README), results.png (latency against mIoU, or against agreement with the
reference when the frames have no labels, one labelled point per measured row) and, with
--streams, streams.png (total FPS against the number of streams). Each file is written to a
temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from roadseg.core.atomic import atomic_path
from roadseg.runtime.stats import PIPELINE_STAGES

from .portable import portable

FILES = ("results.json", "results.csv", "results.md", "results.png")

CSV_COLUMNS = [
    "name", "status", "reason", "kind", "backend", "precision", "device", "artifact",
    "latency_median_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_std_ms",
    "latency_min_ms", "latency_max_ms", "latency_n", "batch", "throughput_fps", "throughput_fps_by_batch", "e2e_fps", "e2e_vs_model",
    *[f"e2e_{s}_median_ms" for s in PIPELINE_STAGES], "peak_rss_mb", "gpu_memory_mb", "build_s", "load_s",
    "agreement", "miou", "speedup", "graph", "notes",
]  # fmt: skip


def _num(v, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v * scale:.{digits}f}{suffix}"


def flat(row: dict) -> dict:
    lat = row.get("latency_ms") or {}
    stages = ((row.get("e2e") or {}).get("stage_median_ms")) or {}
    out = {k: row.get(k) for k in CSV_COLUMNS if k in row}
    for k in ("median", "p90", "p99", "mean", "std", "min", "max"):
        out[f"latency_{k}_ms"] = lat.get(k)
    out["latency_n"] = lat.get("n")
    for s in PIPELINE_STAGES:
        out[f"e2e_{s}_median_ms"] = stages.get(s)
    out["notes"] = "; ".join(row.get("notes") or [])
    out["throughput_fps_by_batch"] = " ".join(f"{b}:{_num(v, 1)}" for b, v in (row.get("throughput_fps_by_batch") or {}).items())
    return {k: out.get(k) for k in CSV_COLUMNS}


def to_csv(doc: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in doc["rows"]:
        w.writerow({k: ("" if v is None else v) for k, v in flat(row).items()})
    return buf.getvalue()


def to_markdown(doc: dict) -> str:
    env, cfg, fr, model = doc["environment"], doc["config"], doc["frames"], doc["model"]
    labelled = fr.get("labelled")
    given = cfg.get("batch", 1)
    batches = [int(b) for b in (given if isinstance(given, (list, tuple)) else [given])]
    gpu = (f"{env['gpu']} (driver {env.get('driver')}, CUDA {env.get('cuda')}"
           + (f", cuDNN {env['cudnn']}" if env.get("cudnn") else "") + ")") if env.get("gpu") else "no GPU"  # fmt: skip
    versions = ", ".join(f"{k} {env[k]}" for k in ("torch", "onnxruntime", "tensorrt", "roadseg") if env.get(k))
    h, w = fr["size"]
    lines = [
        f"**{model['name']}** ({model['arch']}), model input {model['input_size'][0]}x{model['input_size'][1]}, "
        f"frames {h}x{w}; {env.get('cpu')} ({env.get('cpu_class') + ', ' if env.get('cpu_class') else ''}{env.get('cpu_cores')} cores"
        + (f", {cfg['threads']} inference threads" if cfg.get("threads") else "")
        + f"), {gpu}; {versions}; git {env.get('git_sha')}; {env.get('date')}.",
        "",
        *([f"CPU reference: {env['cpu_reference_ms']:.2f} ms (one fixed 3x3 convolution in ONNX Runtime at these threads; "
           "latencies from two reports compare only as far as their reference times agree).", ""]
          if env.get("cpu_reference_ms") else []),
        *([f"Probes that failed (their fields are empty): {'; '.join(f'{k}: {v}' for k, v in env['probe_errors'].items())}.", ""]
          if env.get("probe_errors") else []),
        f"Model-only latency at batch 1: median of {cfg['frames']} runs after {cfg['warmup']} warm-up runs "
        + (f"in {cfg['rounds']} rounds interleaved across the rows " if cfg.get("rounds", 1) > 1 else "")
        + f"(p90/p99/std give the spread), inputs rotated among real frames; accuracy on {fr['source']}"
        + (f"; agreement and speed-up against `{doc['reference']}`." if doc.get("reference") else "."),
        "",
        "| Row | Median ms | p90 ms | p99 ms | Std ms | Speed-up | " + " | ".join(f"FPS (batch {b})" for b in batches)
        + " | End-to-end FPS | E2E / model | Agreement % | mIoU % | Peak RSS MB | GPU MB | Build s | Load s |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(batches) + "---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        if r["status"] != "ok":
            continue
        lat = r.get("latency_ms") or {}
        lines.append(
            f"| {r['name']} | {_num(lat.get('median'))} | {_num(lat.get('p90'))} | {_num(lat.get('p99'))} "
            f"| {_num(lat.get('std'))} | {_num(r.get('speedup'), 2, suffix='x')} | "
            + " | ".join(_num((r.get("throughput_fps_by_batch") or {}).get(str(b)), 1) for b in batches) + " "
            f"| {_num(r.get('e2e_fps'), 1)} | {_num(r.get('e2e_vs_model'), 2)} | {_num(r.get('agreement'), 2, 100)} "
            f"| {_num(r.get('miou'), 2, 100) if labelled else '-'} | {_num(r.get('peak_rss_mb'), 0)} "
            f"| {_num(r.get('gpu_memory_mb'), 0)} | {_num(r.get('build_s'), 1)} | {_num(r.get('load_s'), 2)} |"
        )
    stage_rows = [r for r in doc["rows"] if r["status"] == "ok" and r.get("e2e")]
    if stage_rows:
        src = cfg.get("e2e_source")
        lines += [
            "",
            f"End to end through the runtime pipeline on `{src}` (decode, infer, overlay, encode to video): "
            "per-stage medians in ms.",
            "",
            "| Row | Frames | FPS | " + " | ".join(PIPELINE_STAGES) + " |",
            "|---|---:|---:|" + "---:|" * len(PIPELINE_STAGES),
        ]
        for r in stage_rows:
            e = r["e2e"]
            st = e.get("stage_median_ms") or {}
            lines.append(f"| {r['name']} | {e.get('frames')} | {_num(e.get('fps'), 1)} | "
                         + " | ".join(_num(st.get(s)) for s in PIPELINE_STAGES) + " |")  # fmt: skip
    lines += _streams_table(doc)
    lines += _clients_table(doc)
    missing = [r for r in doc["rows"] if r["status"] != "ok"]
    if missing:
        lines += ["", "Not measured here:", ""]
        lines += [f"- `{r['name']}` ({r['status']}): {r.get('reason')}" for r in missing]
    notes = [
        (r["name"], n) for r in doc["rows"] if r["status"] == "ok" for n in r.get("notes") or [] if "cache" not in n
    ]
    if notes:
        lines += ["", "Notes:", ""] + [f"- `{name}`: {n}" for name, n in notes]
    return "\n".join(lines) + "\n"


def _stream_rows(doc: dict) -> list[dict]:
    return [r for r in doc["rows"] if r["status"] == "ok" and r.get("streams")]


def _streams_table(doc: dict) -> list[str]:
    rows = _stream_rows(doc)
    if not rows:
        return []
    counts = sorted({int(n) for r in rows for n in r["streams"]})
    lines = [
        "",
        f"Several streams through one model (runtime.pipeline.run_streams: {doc['config'].get('e2e_frames')} frames "
        "a stream from memory, batched inference, no overlay or sinks): total FPS, its ratio to one stream, "
        "and the slowest stream's FPS.",
        "",
        "| Row | " + " | ".join(f"{n} stream{'s' if n > 1 else ''}" for n in counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for r in rows:
        one = (r["streams"].get("1") or {}).get("total_fps")
        cells = []
        for n in counts:
            m = r["streams"].get(str(n))
            if not m:
                cells.append("-")
                continue
            ratio = f" ({m['total_fps'] / one:.2f}x)" if one and n > 1 else ""
            cells.append(f"{_num(m['total_fps'], 1)}{ratio}, {_num(min(m['per_stream_fps']), 1)} each, batch "
                         f"{_num(m.get('mean_batch'), 1)}")  # fmt: skip
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return lines


def _clients_table(doc: dict) -> list[str]:
    """Concurrent clients through a Triton server (the triton row, benchmarks/triton_row.py)."""
    rows = [r for r in doc["rows"] if r["status"] == "ok" and r.get("clients")]
    if not rows:
        return []
    lines = ["", "Concurrent clients through a Triton server on this machine (batch-1 requests over gRPC, "
             "Triton's dynamic batching; mean batch from Triton's statistics):", "",
             "| Row | Clients | FPS | p50 ms | p99 ms | Mean batch | Requests |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        for n, m in sorted(r["clients"].items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {r['name']} | {n} | {_num(m.get('fps'), 1)} | {_num(m.get('p50_ms'))} | {_num(m.get('p99_ms'))} "
                         f"| {_num(m.get('mean_batch'), 2)} | {m.get('requests')} |")  # fmt: skip
    return lines


def plot_streams(doc: dict, target: Path) -> None:
    """Total FPS against the number of streams, one line per row."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for r in _stream_rows(doc):
        pts = sorted((int(n), m["total_fps"]) for n, m in r["streams"].items())
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=r["name"])
    ax.set_xlabel("streams batched through one model")
    ax.set_ylabel("total frames per second")
    env = doc["environment"]
    ax.set_title(f"{doc['model']['name']}: multi-stream scaling on {env.get('gpu') or env.get('cpu')}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot(doc: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    labelled = doc["frames"].get("labelled")
    key, label = ("miou", "mIoU (%)") if labelled else ("agreement", f"label agreement with {doc['reference']} (%)")
    pts: list[tuple[str, float, float]] = []
    spread: list[tuple[float, float]] = []  # (median - p10, p90 - median) of each point's samples
    for r in doc["rows"]:
        x, y = (r.get("latency_ms") or {}).get("median"), r.get(key)
        if r["status"] == "ok" and x is not None and y is not None and math.isfinite(x):
            pts.append((r["name"], float(x), 100.0 * float(y)))
            samples = np.asarray(r.get("latency_samples_ms") or [x], dtype=float)
            lo, hi = np.percentile(samples, [10, 90])
            spread.append((max(0.0, float(x) - lo), max(0.0, hi - float(x))))
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    if pts:
        xs = [p[1] for p in pts]
        ax.errorbar(xs, [p[2] for p in pts], xerr=np.array(spread).T, fmt="o", ms=6, capsize=3, zorder=3)
        # labels alternate above and below in latency order, so neighbours do not print over each other
        for i, (n, x, y) in enumerate(sorted(pts, key=lambda p: p[1])):
            ax.annotate(n, (x, y), textcoords="offset points", xytext=(5, 5 if i % 2 == 0 else -12), fontsize=8)
        if min(xs) > 0 and max(xs) / min(xs) > 8:
            from matplotlib.ticker import ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(ScalarFormatter())
            ax.tick_params(axis="x", which="minor", labelsize=7)
        ys = [p[2] for p in pts]
        pad = max(0.5, (max(ys) - min(ys)) * 0.15)
        ax.set_ylim(min(ys) - pad, min(100.0 + pad / 4, max(ys) + pad))
    else:
        ax.text(0.5, 0.5, "no measured rows", ha="center", va="center", transform=ax.transAxes)
    env = doc["environment"]
    ax.set_xlabel("model-only latency, median (ms, batch 1); bars: 10th to 90th percentile")
    ax.set_ylabel(label)
    ax.set_title(f"{doc['model']['name']} at {doc['frames']['size'][0]}x{doc['frames']['size'][1]} "
                 f"on {env.get('gpu') or env.get('cpu')}", fontsize=9)  # fmt: skip
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write(folder: str | Path, doc: dict) -> dict[str, Path]:
    """Write the report files into `folder`; returns name -> path of those written. The charts need
    matplotlib (the `train` extra): a base install writes the tables and says so. No local path
    reaches the files: datasets are named, other files by their name alone (portable.py)."""
    folder = Path(folder)
    doc = portable(doc)
    out = {name: folder / name for name in FILES}
    for name, text in (("results.json", json.dumps(_clean(doc), indent=2, default=_json_default, allow_nan=False)),
                       ("results.csv", to_csv(doc)), ("results.md", to_markdown(doc))):  # fmt: skip
        with atomic_path(out[name]) as tmp:
            tmp.write_text(text)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        for name in ("results.png", "streams.png"):  # a chart of an earlier run must not pass for this one's
            (folder / name).unlink(missing_ok=True)
        del out["results.png"]
        return out
    plot(doc, out["results.png"])
    if _stream_rows(doc):
        out["streams.png"] = folder / "streams.png"
        plot_streams(doc, out["streams.png"])
    return out


def _json_default(v):
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def _clean(v):
    """NaN and infinities -> None, so results.json is strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v
