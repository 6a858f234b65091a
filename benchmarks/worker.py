"""One benchmark row, measured in a process of its own:
`python -m roadseg.benchmarks.worker JOB RESULT REPLY_FD`, driven by the harness (session.py).

A fresh process per row makes peak RSS (and GPU memory) the row's own, keeps one row's state (torch's
thread pools, a CUDA context, TensorRT's allocator) out of the next row's numbers, and turns a crash
in a native library into one failed row instead of a lost benchmark.

Steps, in order (RowSession): open the model and run the first frame (load_s: time to first labels,
which includes torch.compile's compilation and ONNX Runtime's TensorRT engine build); the accuracy
pass over every benchmark frame (labels saved for the harness to compare with the reference);
warm-up; model-only latency at batch 1, in as many rounds as the harness asks for
(`time.perf_counter` around each call, which returns host labels after the device is synchronised;
inputs rotate among several frames; garbage collection paused); then throughput at --batch; end to
end through the runtime pipeline (decode, infer, overlay, encode); peak memory.

Protocol: the worker writes `ready` to REPLY_FD once warm, then answers `time N` on stdin with `ok`
after N timed calls, and `finish` with `done` after writing RESULT (also written, with the error,
when anything fails). Replies go to their own pipe, not stdout, which native libraries write to.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roadseg.runtime.backends.base import TensorSpec, TensorSpecs, fit_frames
from roadseg.runtime.redact import redact

from .triton_row import CLIENTS

TIMING_FRAMES = 8  # latency runs rotate among this many of the benchmark frames


@dataclass
class Job:
    row: str
    kind: str  # torch | onnx | engine | triton
    precision: str
    model: str  # checkpoint (torch rows), .onnx or .engine
    frames: str  # .npy of uint8 [K, H, W, 3]
    labels_out: str  # .npy the row's labels go to
    frame_size: tuple[int, int]
    imgsz: tuple[int, int] | None = None
    backend: str | None = None
    backend_options: dict = field(default_factory=dict)
    compile: bool = False
    cuda: bool = False  # torch rows: run on CUDA (FP16 rows: FP16 weights, channels-last)
    cuda_graph: bool = True  # GPU rows: replay CUDA graphs (torch-fp16, torch-compile's reduce-overhead, ort-cuda)
    warmup: int = 10
    iters: int = 100
    batch: list[int] = field(default_factory=lambda: [1])  # throughput batch sizes
    batch_model: str | None = None  # dynamic-batch .onnx/.engine for throughput (batch > 1) and streams (> 1)
    streams: list[int] = field(default_factory=list)  # stream counts to run through the multi-stream pipeline
    e2e_source: str | None = None  # None: no end-to-end run
    e2e_frames: int = 100
    work: str = "."  # scratch folder (the end-to-end video)
    threads: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Job:
        d = dict(d)
        d["frame_size"] = tuple(d["frame_size"])
        d["imgsz"] = tuple(d["imgsz"]) if d.get("imgsz") else None
        return cls(**d)


def _half_net(net: Any) -> Any:
    """The network in FP16 and channels-last (the layout FP16 tensor-core convolutions take), fed
    by the FP32 pre-processing, as the FP16 ONNX graph keeps pre-processing in FP32. (torch is
    imported here, not at the top: ONNX rows' workers never load it.)"""
    import torch

    class HalfNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net.half().to(memory_format=torch.channels_last)

        def forward(self, x, *size):
            return self.net(x.to(torch.half, memory_format=torch.channels_last), *size)

    return HalfNet()


class TorchRunner(TensorSpecs):
    """PyTorch running the exact exported computation (FramesToLabels), with the Backend protocol,
    so the runtime pipeline streams through it like any backend.

    torch: eager FP32, the reference. torch-fp16 (CUDA): FP16 weights in channels-last layout,
    replayed as one CUDA graph per input shape (at batch 1 this network is bound by kernel
    launches, and autocast adds a cast kernel in front of most layers: it ran slower than FP32).
    torch-compile: torch.compile, on CUDA in mode "reduce-overhead" (CUDA graphs made by torch).
    `graph` says how a GPU row ran, for the report."""

    def __init__(self, job: Job) -> None:
        import torch

        from roadseg.export.graph import FramesToLabels
        from roadseg.train.checkpoint import load_model

        if job.threads:
            torch.set_num_threads(job.threads)
        self.torch = torch
        self.device = torch.device("cuda" if job.cuda else "cpu")
        cuda = self.device.type == "cuda"
        if cuda:  # the FP32 reference is plain FP32: no TF32 matmuls/convolutions
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = True
        net, card, _ = load_model(job.model)
        if job.imgsz:
            card = card.replace(input_size=list(job.imgsz))
        self.card = card.replace(precision=job.precision)
        self.name = job.row
        self.fp16 = job.precision == "fp16" and cuda
        net = _half_net(net) if self.fp16 else net
        module: Any = FramesToLabels(net, card, tuple(job.frame_size)).eval().to(self.device)
        self.graph: str | None = None if not cuda else "off"
        self._graphs: dict[tuple, tuple] = {}  # input shape -> (CUDA graph, its input, its output)
        self._graphed = self.fp16 and job.cuda_graph
        if job.compile:
            mode = "reduce-overhead" if cuda and job.cuda_graph else None
            module = torch.compile(module, mode=mode)
            if mode:
                self.graph = "reduce-overhead (CUDA graphs made by torch.compile)"
        self.module = module
        h, w = job.frame_size
        self.frame_size = (int(h), int(w))
        self._inputs = [TensorSpec("frames", (1, h, w, 3), "uint8")]
        self._outputs = [TensorSpec("labels", (1, h, w), "uint8")]

    def infer(self, frames: np.ndarray) -> np.ndarray:
        torch = self.torch
        single = frames.ndim == 3
        batch, restore = fit_frames(frames[None] if single else frames, self.frame_size)  # as every backend does
        batch = np.ascontiguousarray(batch)
        if self._graphed:
            out = restore(self._replay(batch))
        else:
            x = torch.from_numpy(batch).to(self.device)
            with torch.no_grad():
                y = self.module(x)
            out = restore(y.cpu().numpy())  # .cpu() waits for the device
        return out[0] if single else out

    def _replay(self, batch: np.ndarray) -> np.ndarray:
        """One CUDA graph per input shape, captured after a few eager runs on a side stream (so
        cuDNN has chosen its algorithms and the allocator its pool); frames are copied into the
        graph's input through pinned memory, labels copied out of its output."""
        torch = self.torch
        key = batch.shape
        if key not in self._graphs:
            host = torch.empty(key, dtype=torch.uint8).pin_memory()
            x = torch.empty(key, dtype=torch.uint8, device=self.device)
            host.numpy()[...] = batch
            x.copy_(host)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.no_grad(), torch.cuda.stream(side):
                for _ in range(3):
                    self.module(x)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(graph):
                y = self.module(x)
            self._graphs[key] = (graph, host, x, y)
            self.graph = "captured"
        graph, host, x, y = self._graphs[key]
        host.numpy()[...] = batch
        x.copy_(host, non_blocking=True)
        graph.replay()
        return y.cpu().numpy()

    def close(self) -> None:
        self.module = None
        self._graphs.clear()


def open_runner(job: Job, model: str | None = None) -> Any:
    if job.kind == "torch":
        return TorchRunner(job)
    if job.kind == "triton":  # a Triton server of its own, driven from its client (triton_row.py)
        from .triton_row import TritonRunner

        return TritonRunner(job.row, model or job.model, Path(job.work) / f"{job.row}-server")
    from roadseg.runtime.backends import BACKENDS, open_backend

    opts = dict(job.backend_options)
    if job.threads and (job.backend not in BACKENDS or "threads" in BACKENDS[job.backend].option_names()):
        opts["threads"] = job.threads
    return open_backend(model or job.model, job.backend or "auto", **opts)


def time_calls(run: Any, inputs: list[np.ndarray], count: int, start: int = 0) -> list[float]:
    """Milliseconds of `count` calls of run(x), x rotating over `inputs` from `start`; garbage
    collection paused."""
    samples = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(start, start + count):
            x = inputs[i % len(inputs)]
            t0 = time.perf_counter()
            run(x)
            samples.append((time.perf_counter() - t0) * 1000.0)
    finally:
        if enabled:
            gc.enable()
    return samples


def gpu_memory_mb() -> float | None:
    """GPU memory this process holds (nvidia-smi), else torch's peak reservation, else None."""
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            out = subprocess.run([exe, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout  # fmt: skip
            for line in out.splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 2 and parts[0] == str(os.getpid()) and parts[1].replace(".", "").isdigit():
                    return float(parts[1])
        except (OSError, subprocess.SubprocessError):
            pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_reserved() / 2**20
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MB. Linux: VmHWM, which starts afresh at exec (ru_maxrss
    does not: a worker forked from a large parent would report the parent's size)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def _e2e(job: Job, runner: Any) -> dict:
    from roadseg.runtime.pipeline import run_stream

    work = Path(job.work)
    work.mkdir(parents=True, exist_ok=True)
    video = work / f"{job.row}.mp4"
    summary = run_stream(runner, job.e2e_source, save=str(video), max_frames=job.e2e_frames, live=False, log=None,
                         overlay=True, source_options={"size": tuple(job.frame_size)})  # fmt: skip
    with_video = video.is_file()
    video.unlink(missing_ok=True)
    stages = {k: round(v.p50_ms, 4) for k, v in summary.stages.items() if k != "latency"}
    lat = summary.stages.get("latency")
    return {
        "fps": summary.fps, "frames": summary.frames_out, "elapsed_s": summary.elapsed_s,
        "stage_median_ms": stages, "latency_median_ms": lat.p50_ms if lat else None,
        "resized": summary.resized, "video_written": with_video, "source": redact(job.e2e_source),
    }  # fmt: skip


def _streams(job: Job, runner: Any, frames: np.ndarray) -> dict[str, dict]:
    """For each stream count N: N streams of the benchmark frames (held in memory, so decoding is
    not what is measured) through the multi-stream pipeline (runtime.pipeline.run_streams: batched
    inference, a writer per stream; no overlay or sinks), e2e_frames frames each. Total and
    per-stream FPS, the mean batch and the per-call inference median. Exported rows run the
    dynamic-batch model, which batches the streams (without one, the row's own fixed-batch model,
    which runs each pipeline batch as calls of its own batch size); torch rows take any batch."""
    from roadseg.runtime.pipeline import run_streams

    other = None
    if job.kind in ("onnx", "engine") and max(job.streams) > 1 and job.batch_model:  # else its own fixed batch
        other = runner = open_runner(job, job.batch_model)
    try:
        clip = [np.ascontiguousarray(frames[i % len(frames)]) for i in range(job.e2e_frames)]
        for n in job.streams:  # every batch size once before timing (torch.compile compiles per shape)
            run_streams(runner, [clip[:2]] * n, log=None, overlay=False)
        out = {}
        for n in job.streams:
            result = run_streams(runner, [list(clip) for _ in range(n)], log=None, overlay=False, live=False)
            infer = result.total.stages.get("infer")
            out[str(n)] = {
                "total_fps": result.fps, "per_stream_fps": [s.fps for s in result.streams.values()],
                "mean_batch": result.mean_batch, "frames": result.frames_out,
                "infer_median_ms": infer.p50_ms if infer else None,
            }  # fmt: skip
        return out
    finally:
        if other is not None:
            other.close()


REWARM = 2  # untimed calls before each round: other rows may have loaded or run in between


class RowSession:
    """One row's model, loaded, checked for accuracy and warmed up; timed in rounds (`time`), so
    the harness can interleave rows; `finish` measures the rest and closes it."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.frames = np.load(job.frames)
        self.timing = [np.ascontiguousarray(f[None]) for f in self.frames[:TIMING_FRAMES]]
        self.out: dict[str, Any] = {"row": job.row}
        self.samples: list[float] = []
        t0 = time.perf_counter()
        self.runner: Any = open_runner(job)
        try:
            self.runner.infer(self.timing[0])  # first labels: lazy compilation / engine builds happen here
            self.out["load_s"] = time.perf_counter() - t0
            self.out["providers"] = list(getattr(self.runner, "providers", []) or [])
            self.out["int8"] = getattr(self.runner, "int8", None)  # ort-cpu INT8: graph form, exact here or not
            labels = np.stack([np.asarray(self.runner.infer(np.ascontiguousarray(f[None])))[0] for f in self.frames])
            np.save(job.labels_out, labels.astype(np.uint8))
            for i in range(job.warmup):
                self.runner.infer(self.timing[i % len(self.timing)])
        except BaseException:
            self.close()
            raise

    def time(self, count: int) -> None:
        for i in range(REWARM):
            self.runner.infer(self.timing[i % len(self.timing)])
        # the rotation carries on across rounds, so every frame is timed as often as in one round
        self.samples += time_calls(self.runner.infer, self.timing, count, start=len(self.samples))

    def finish(self) -> dict:
        """Throughput, end to end and memory; closes the model; the row's dict for results.json."""
        job, out = self.job, self.out
        try:
            out["latency_samples_ms"] = self.samples
            out["batch"] = job.batch
            if max(job.batch) > 1 and (job.kind == "torch" or job.batch_model):  # the harness notes a missing one
                out["batch_samples_ms"] = _batched(job, self.runner, self.frames)
            if job.e2e_source:
                out["e2e"] = _e2e(job, self.runner)
            if job.kind == "triton":  # concurrent clients are its streams
                out["clients"] = self.runner.clients(job.streams or list(CLIENTS), self.frames, job.iters)
            elif job.streams:
                out["streams"] = _streams(job, self.runner, self.frames)
            out["graph"] = getattr(self.runner, "graph", None)  # after timing: "captured" once replayed
            gpu_row = job.cuda or _on_gpu(job.backend)
            out["gpu_memory_mb"] = gpu_memory_mb() if gpu_row else None
        finally:
            self.close()
        out["peak_rss_mb"] = peak_rss_mb()
        return out

    def close(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            runner.close()


def _on_gpu(backend: str | None) -> bool:
    from roadseg.runtime.backends import BACKENDS

    spec = BACKENDS.get(backend or "")
    return spec is not None and spec.device == "cuda"  # what gpu_memory_mb samples


def error_line(e: BaseException) -> str:
    """A failed row's reason in one line: a RoadsegError's own message, else the type and first line."""
    from roadseg.core.errors import RoadsegError

    text = str(e).strip()
    return str(e) if isinstance(e, RoadsegError) else f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _batched(job: Job, runner: Any, frames: np.ndarray) -> dict[str, list[float]]:
    """Milliseconds per batch at each --batch above 1 (one dynamic-batch model for exported rows),
    as many calls as make about --frames frames (at least 3)."""
    other = None
    if job.kind in ("onnx", "engine"):  # torch and triton rows take any batch themselves
        if not job.batch_model:
            raise RuntimeError("no dynamic-batch model to measure throughput with")
        other = runner = open_runner(job, job.batch_model)
    try:
        out = {}
        for size in (b for b in job.batch if b > 1):
            batch = np.ascontiguousarray(np.stack([frames[i % min(len(frames), TIMING_FRAMES)] for i in range(size)]))
            for _ in range(max(2, min(job.warmup, 5))):
                runner.infer(batch)
            out[str(size)] = time_calls(runner.infer, [batch], max(3, math.ceil(job.iters / size)))
        return out
    finally:
        if other is not None:
            other.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        sys.stderr.write("usage: python -m roadseg.benchmarks.worker JOB.json RESULT.json REPLY_FD\n")
        return 2
    job = Job.from_dict(json.loads(Path(args[0]).read_text()))
    reply_fd = int(args[2])
    os.set_inheritable(reply_fd, False)  # not into the processes the end-to-end run may start
    with os.fdopen(reply_fd, "w", buffering=1) as reply:
        session = None
        try:
            session = RowSession(job)
            reply.write("ready\n")
            result = {"row": job.row, "error": "the harness closed the worker before it finished"}
            for line in sys.stdin:
                cmd = line.split()
                if cmd[:1] == ["time"] and len(cmd) == 2:
                    session.time(int(cmd[1]))
                    reply.write("ok\n")
                elif cmd == ["finish"]:
                    result = session.finish()
                    break
        except Exception as e:  # noqa: BLE001 - reported as this row's failure
            result = {"row": job.row, "error": error_line(e), "traceback": traceback.format_exc(limit=8)}
        finally:
            if session is not None:
                session.close()
        Path(args[1]).write_text(json.dumps(result, default=float))
        reply.write("done\n")
    return 0


def job_dict(job: Job) -> dict:
    return asdict(job)


if __name__ == "__main__":
    raise SystemExit(main())
