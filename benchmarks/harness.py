"""`roadseg bench`: every row on the same frames, latency and accuracy side by side.

    cfg = BenchConfig(model="default", data="data/CamVid", frame_size=(360, 480))
    results = run_bench(cfg)          # also writes results.json/.csv/.md/.png into cfg.report

Given ready model files instead (`roadseg bench model_int8.onnx model_fp16.onnx`, or `default` where
PyTorch is not installed: the shipped variants), each file runs on every backend here that takes
it, nothing is exported and nothing imports PyTorch; the most precise file is the reference.

Order of work: decide which rows can run here (rows.py) -> load the benchmark frames (frames.py) ->
for each row, make its exported file (variants.py, cached) and measure it in its own process
(worker.py, driven by session.py; with --rounds R the rows stay loaded and their timed runs are
interleaved in R rounds) -> compare every row's labels with the reference row (PyTorch FP32) and the dataset's
labels -> statistics (stats.py) -> report (report.py).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from roadseg.core.errors import RoadsegError, UsageError
from roadseg.runtime.backends import ENGINE_SUFFIXES
from roadseg.runtime.naming import check_stream_count
from roadseg.runtime.redact import redact

from . import rows as rowreg
from .session import InProcess, Worker, rounds
from .stats import speedup, summarize, throughput_fps
from .worker import Job


@dataclass
class BenchConfig:
    model: str | list[str] = "default"  # a checkpoint path or bundled name, or ready .onnx/.engine files
    backends: str | list[str] = "all"  # "all", "a,b", or a list of row names (see rows.ROWS)
    imgsz: tuple[int, int] | None = None  # model input size (default: the card's)
    frame_size: tuple[int, int] | None = None  # frame size the graphs take (default: the model input size)
    batch: tuple[int, ...] = (1,)  # throughput batch sizes (FPS at each; batch 1 is the latency runs)
    streams: tuple[int, ...] = ()  # stream counts for the multi-stream scaling rows (worker._streams)
    frames: int = 100  # timed runs per row (model-only latency) and end-to-end frames
    warmup: int = 10
    source: str | None = None  # end-to-end source (default: the synthetic clip at the frame size)
    data: str | None = None  # labelled dataset root (mIoU) or folder of frames
    calib: str | None = None  # INT8 calibration frames (default: --data, else --source, else synthetic)
    report: str = "runs/bench"
    threads: int | None = None  # inference threads (ONNX Runtime intra-op, torch)
    e2e_frames: int | None = None  # default: frames
    eval_limit: int | None = None  # accuracy frames (default: the whole val split / 16 unlabelled)
    cache: str | None = None  # exported files (default: <roadseg cache>/bench)
    rounds: int = 1  # timed runs interleaved across the rows in this many rounds (session.py)
    isolate: bool = True  # each row in its own process (peak memory per row, crash isolation)
    progress: bool = True
    row_timeout_s: float = 3600.0  # each wait on a worker: loading, one round, finishing
    cuda_graph: bool = True  # GPU rows replay CUDA graphs where they can (worker.TorchRunner, ort-cuda)

    def check(self) -> None:
        if self.frames < 1:
            raise UsageError(f"--frames {self.frames}: give at least 1 timed run")
        if self.warmup < 0:
            raise UsageError(f"--warmup {self.warmup}: give 0 or more warm-up runs")
        if isinstance(self.batch, int):
            self.batch = (self.batch,)
        self.batch = tuple(sorted(set(self.batch)))
        if not self.batch or self.batch[0] < 1:
            raise UsageError(f"--batch {' '.join(map(str, self.batch))}: give batch sizes of at least 1")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads {self.threads}: give at least 1 thread")
        if any(n < 1 for n in self.streams):
            raise UsageError(f"--streams {' '.join(map(str, self.streams))}: give stream counts of at least 1")
        check_stream_count(max(self.streams, default=0), "streams (--streams)")
        if not 1 <= self.rounds <= self.frames:
            raise UsageError(f"--rounds {self.rounds}: give 1 to --frames ({self.frames}) rounds")


@dataclass
class RowResult:
    name: str
    status: str  # ok | skipped (not available here) | failed (could not be made or measured)
    reason: str | None = None
    kind: str = ""
    backend: str | None = None
    precision: str = ""
    device: str = "cpu"
    artifact: str | None = None
    latency_ms: dict = field(default_factory=dict)
    batch: int = 1  # the largest --batch: throughput_fps is measured at it
    throughput_fps: float | None = None
    throughput_fps_by_batch: dict = field(default_factory=dict)  # str(batch) -> frames per second
    e2e_fps: float | None = None
    e2e_vs_model: float | None = None  # end-to-end FPS / model-only FPS (1000 / median)
    e2e: dict | None = None
    streams: dict | None = None  # stream count -> total_fps, per_stream_fps, mean_batch, infer_median_ms
    clients: dict | None = None  # triton row: concurrent clients -> fps, requests, p50_ms, p99_ms, mean_batch
    peak_rss_mb: float | None = None
    gpu_memory_mb: float | None = None
    build_s: float | None = None
    load_s: float | None = None
    agreement: float | None = None
    miou: float | None = None
    speedup: float | None = None
    graph: str | None = None  # GPU rows: "captured" (replayed a CUDA graph), or "off" and why; None on the CPU
    int8: str | None = None  # ort-cpu INT8 rows: the graph's form and whether this CPU computes it exactly
    notes: list[str] = field(default_factory=list)
    latency_samples_ms: list[float] = field(default_factory=list)  # the raw timed runs, in order

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _checkpoint_and_card(model: str):
    if not _torch_importable():
        raise RoadsegError(f"{model}: benchmarking a checkpoint needs PyTorch (it is the reference, and every variant is "
                           "exported from it): pip install \"roadseg[train]\", or bench ready .onnx/.engine files")  # fmt: skip
    from roadseg.core.card import ModelCard
    from roadseg.train.checkpoint import load_raw, resolve

    path = resolve(model)
    ckpt = load_raw(path)
    return path, ModelCard.from_dict(ckpt["card"], source=str(path))


def _model_files(model: str | list[str]) -> list[rowreg.ModelFile] | None:
    """The ready files to bench as they are, or None for a checkpoint (whose variants the bench
    exports). `default` without PyTorch: the shipped variants."""
    from roadseg.runtime.defaults import VARIANT_FILES, is_bundled, variants_dir

    models = [model] if isinstance(model, str) else list(model)
    if not models:
        raise UsageError("give a checkpoint, `default`, or .onnx/.engine files to bench")
    if len(models) == 1 and is_bundled(models[0]) and not _torch_importable():
        shipped = [variants_dir() / VARIANT_FILES[p] for p in ("fp16", "int8") if (variants_dir() / VARIANT_FILES[p]).is_file()]
        if not shipped:
            raise RoadsegError(f"{variants_dir()}: the default model's ready ONNX variants are missing from this install; "
                               "reinstall roadseg, or pip install \"roadseg[train]\" to bench the checkpoint")  # fmt: skip
        return [rowreg.describe(f) for f in shipped]
    files = [m for m in models if Path(m).suffix.lower() in (".onnx", *ENGINE_SUFFIXES)]
    if not files:
        if len(models) > 1:
            raise UsageError(f"{' '.join(models)}: give one checkpoint, or ready .onnx/.engine files")
        return None
    if len(files) != len(models):
        raise UsageError(f"{' '.join(m for m in models if m not in files)}: give one checkpoint, or .onnx/.engine files, not both")
    return [rowreg.describe(f) for f in files]


def _default_cache() -> Path:
    from roadseg.runtime.defaults import cache_dir

    return cache_dir() / "bench"


def _device(row: rowreg.Row, cuda_reason: str | None) -> str:
    if row.kind == "torch":
        return "cuda" if cuda_reason is None else "cpu"
    from roadseg.runtime.backends import BACKENDS

    spec = BACKENDS.get(row.backend or "")
    return spec.device if spec is not None else "cuda"


def run_bench(cfg: BenchConfig) -> dict:
    """Run the benchmark described by `cfg` and write its report folder (`roadseg bench`).

    Args:
        cfg: the model or model files, rows, sizes, frames, rounds and report folder.
    Returns:
        results.json's content: the rows (each "ok", "skipped" or "failed", with its reason), the
        frames, the environment and the artefacts made.
    Raises:
        RoadsegError: a model, source, dataset or report folder that cannot be used (before any row runs).
        UsageError: options that contradict each other.
    """
    from roadseg.core.atomic import check_writable

    from . import environment, report
    from . import frames as framesrc
    from .variants import Variants

    cfg.check()
    if cfg.source:  # a typo would otherwise show only after every export, as each row's failed end-to-end step
        from roadseg.runtime.sources import open_source

        open_source(cfg.source).close()
    files = _model_files(cfg.model)
    # the command line is checked (rows, model files) before the report folder is made
    if files is not None and cfg.imgsz:
        raise UsageError("--imgsz: a model file's input size was fixed when it was exported; drop --imgsz")
    row_list = [rowreg.ROWS[n] for n in rowreg.select(cfg.backends)] if files is None else rowreg.file_rows(files, cfg.backends)
    out_dir = Path(cfg.report)
    checkpoint = None
    if files is None:
        names = [r.name for r in row_list]
        checkpoint, card = _checkpoint_and_card(cfg.model)  # type: ignore[arg-type]
        if cfg.imgsz:
            card = card.replace(input_size=list(cfg.imgsz))
        reasons = rowreg.unavailable(names)
        reference: str | None = rowreg.REFERENCE
        cuda_reason = rowreg.torch_cuda()
    else:
        card = rowreg.same_task(files)
        reasons = rowreg.file_reasons(row_list, files)
        reference = rowreg.file_reference(row_list, reasons)
        cuda_reason = "no PyTorch rows"
    check_writable(out_dir / "results.json")  # made only now: a refused checkpoint or model file leaves no empty folder
    frame_size = tuple(cfg.frame_size or card.input_size)

    work = Path(tempfile.mkdtemp(prefix=".bench-", dir=out_dir))
    loaded: list[tuple[RowResult, InProcess | Worker, Path]] = []  # rows waiting for their rounds
    try:
        bench_frames = framesrc.load(card, frame_size, cfg.data, cfg.source, cfg.eval_limit)  # type: ignore[arg-type]
        frames_file, _ = bench_frames.save(work)
        e2e_frames = cfg.e2e_frames or cfg.frames
        e2e_source = cfg.source or f"synthetic:{e2e_frames}"
        calib = cfg.calib or cfg.data or (cfg.source if cfg.source and framesrc._is_local_media(cfg.source) else None)
        variants = None
        if checkpoint is not None and any(reasons[r.name] is None and r.kind != "torch" for r in row_list):
            variants = Variants(checkpoint, cfg.imgsz, frame_size, max(cfg.batch),  # type: ignore[arg-type]
                                Path(cfg.cache) if cfg.cache else _default_cache(), calib, cfg.data)  # fmt: skip
        results: list[RowResult] = []
        labels_files: dict[str, Path] = {}
        from tqdm import tqdm

        bar = tqdm(row_list, desc="bench", unit="row", disable=not cfg.progress, dynamic_ncols=True)
        for row in bar:
            name = row.name
            res = RowResult(name, "ok", kind=row.kind, backend=row.backend, precision=row.precision,
                            device=_device(row, cuda_reason), batch=max(cfg.batch))  # fmt: skip
            results.append(res)
            if reasons[name] is not None:
                res.status, res.reason = "skipped", reasons[name]
                continue
            model, batch_model = str(checkpoint), None
            if row.model is not None:  # a ready file: measured as it is
                model, res.artifact = row.model, row.model
                if row.dynamic_batch:
                    batch_model = row.model
                elif max(cfg.batch) > 1 or max(cfg.streams, default=1) > 1:
                    res.notes.append("a fixed-batch file: no throughput above batch 1; streams run through its fixed batch")
            elif row.kind != "torch":
                bar.set_postfix_str(f"{name}: export")
                assert variants is not None
                if row.kind in ("onnx", "triton"):
                    tensorrt, batched = row.backend == "ort-trt", row.kind == "triton"  # Triton batches requests

                    def make(precision: str, dynamic: bool = batched, tensorrt: bool = tensorrt):
                        return variants.onnx(precision, dynamic, tensorrt)  # type: ignore[union-attr]
                else:
                    make = variants.engine
                art = make(row.precision)
                if art.note:
                    res.notes.append(art.note)
                if art.path is None:
                    res.status, res.reason = "failed", f"could not make the {row.precision} {row.kind}: {art.error}"
                    continue
                model, res.artifact, res.build_s = str(art.path), str(art.path), art.build_s
                if art.cached:
                    res.notes.append("exported file reused from the cache (build time from when it was made)")
                if max(cfg.batch) > 1 or max(cfg.streams, default=1) > 1:
                    bart = make(row.precision, dynamic=True)
                    if bart.path is None:
                        res.notes.append(f"no dynamic-batch {row.kind} ({bart.error}): no throughput above batch 1; "
                                         "streams run through the fixed-batch graph")  # fmt: skip
                    else:
                        batch_model = str(bart.path)
            bar.set_postfix_str(f"{name}: measure")
            labels_file = work / f"{name}.labels.npy"
            options: dict = {}
            if row.backend == "ort-trt":
                options = {"trt_fp16": row.precision == "fp16", "trt_cache_dir": str(variants.folder / "ort-trt")}  # type: ignore[union-attr]
            elif row.backend == "ort-cuda":
                options = {"cuda_graph": cfg.cuda_graph}
            job = Job(row=name, kind=row.kind, precision=row.precision, model=model, frames=str(frames_file),
                      labels_out=str(labels_file), frame_size=frame_size, imgsz=cfg.imgsz, backend=row.backend,  # type: ignore[arg-type]
                      backend_options=options, compile=row.compile, cuda=res.device == "cuda" and row.kind == "torch",
                      cuda_graph=cfg.cuda_graph,
                      warmup=cfg.warmup, iters=cfg.frames, batch=list(cfg.batch), batch_model=batch_model,
                      e2e_source=e2e_source, e2e_frames=e2e_frames, work=str(work / "e2e"), threads=cfg.threads,
                      streams=list(cfg.streams))  # fmt: skip
            row_session = InProcess(job) if not cfg.isolate else Worker(job, work, cfg.row_timeout_s)
            loaded.append((res, row_session, labels_file))
            if cfg.rounds == 1:  # one row at a time: only one model loaded
                row_session.time(cfg.frames)
                _finish(*loaded.pop(), cfg.batch, labels_files)
        for i, count in enumerate(rounds(cfg.frames, cfg.rounds) if loaded else []):
            bar.set_postfix_str(f"round {i + 1}/{cfg.rounds}")
            for _, row_session, _ in loaded:
                row_session.time(count)
        while loaded:
            bar.set_postfix_str(f"{loaded[0][0].name}: end to end")
            _finish(*loaded.pop(0), cfg.batch, labels_files)
        bar.close()
        _accuracy(results, labels_files, bench_frames.masks, card, reference)
        ref = next((r for r in results if r.name == reference and r.ok), None)
        for r in results:
            if r.ok:
                r.speedup = speedup(ref.latency_ms.get("median") if ref else None, r.latency_ms.get("median"))
        doc = {
            "schema": 1,
            "model": {
                "checkpoint": str(checkpoint) if checkpoint else None,
                "files": [str(f.path) for f in files] if files else None,
                "name": card.name,
                "arch": card.arch,
                "input_size": list(card.input_size),
                "classes": card.num_classes,
            },
            "config": {
                **{k: v for k, v in asdict(cfg).items() if k not in ("progress",)},
                "source": redact(cfg.source) if cfg.source else cfg.source,  # a camera URL's password stays out
                "frame_size": list(frame_size),
                "e2e_source": redact(e2e_source),
                "e2e_frames": e2e_frames,
                "calib": calib,
            },
            "frames": {
                "source": redact(bench_frames.source),
                "count": int(len(bench_frames.frames)),
                "labelled": bench_frames.labelled,
                "size": list(frame_size),
            },
            "reference": reference,
            "environment": environment.collect(cfg.threads),
            "artifacts": (
                {"-".join(str(p) for p in k[:2] + k[3:] if p) + ("-dynamic" if k[2] else ""): a.to_dict() for k, a in variants.made().items()}
                if variants
                else {}
            ),
            "rows": [asdict(r) for r in results],
        }
        report.write(out_dir, doc)
        return doc
    finally:
        for _, row_session, _ in loaded:  # an error or Ctrl-C left models loaded
            row_session.close()
        shutil.rmtree(work, ignore_errors=True)


def _finish(res: RowResult, row_session: InProcess | Worker, labels_file: Path, batch: tuple[int, ...],
            labels_files: dict[str, Path]) -> None:  # fmt: skip
    got = row_session.finish()
    if "error" in got:
        res.status, res.reason = "failed", got["error"]
        return
    _fill(res, got, batch)
    labels_files[res.name] = labels_file


def _fill(res: RowResult, got: dict, batch: tuple[int, ...]) -> None:
    res.latency_samples_ms = [float(v) for v in got.get("latency_samples_ms", [])]
    lat = summarize(res.latency_samples_ms)
    res.latency_ms = lat
    res.load_s = got.get("load_s")
    res.peak_rss_mb = got.get("peak_rss_mb")
    res.gpu_memory_mb = got.get("gpu_memory_mb")
    batched = got.get("batch_samples_ms") or {}
    for b in batch:  # frames per second at each batch; batch 1 is the latency runs themselves
        samples = got.get("latency_samples_ms", []) if b == 1 else batched.get(str(b))
        res.throughput_fps_by_batch[str(b)] = throughput_fps(b, samples) if samples else None
    res.throughput_fps = res.throughput_fps_by_batch.get(str(max(batch)))
    e2e = got.get("e2e")
    if e2e:
        res.e2e = e2e
        res.e2e_fps = e2e.get("fps")
        median = lat.get("median")
        if res.e2e_fps and median and median > 0:
            res.e2e_vs_model = res.e2e_fps / (1000.0 / median)
    res.streams = got.get("streams")
    res.clients = got.get("clients")
    res.graph = got.get("graph")
    if res.graph:
        res.notes.append(f"CUDA graph: {res.graph}")
    res.int8 = got.get("int8")
    if res.int8:
        res.notes.append(f"INT8 {res.int8}")
    providers = got.get("providers") or []
    if providers and providers != ["CPUExecutionProvider"]:
        res.notes.append("providers: " + ", ".join(providers))


def _accuracy(results: list[RowResult], labels_files: dict[str, Path], masks: np.ndarray | None, card,
              reference: str | None) -> None:  # fmt: skip
    """Label agreement with the reference row, and mIoU on labelled frames."""
    from roadseg.core.metrics import ConfusionMatrix, label_agreement

    ref_file = labels_files.get(reference) if reference else None
    ref = np.load(ref_file) if ref_file is not None else None
    for r in results:
        if not r.ok or r.name not in labels_files:
            continue
        labels = np.load(labels_files[r.name])
        if ref is not None:
            r.agreement = label_agreement(labels, ref)
        if masks is not None:
            cm = ConfusionMatrix(card.num_classes, card.ignore_index)
            for pred, mask in zip(labels, masks):
                cm.update(pred, mask)
            r.miou = cm.miou()
