"""The rows of a benchmark: a plain dict registry, name -> Row, and why a row cannot run here.

A row is one way of running the model: PyTorch eager (the FP32 reference), PyTorch FP16 on CUDA
(FP16 weights, channels-last, a CUDA graph), torch.compile (on CUDA with CUDA graphs), ONNX Runtime
on a provider with a precision variant of the exported graph, a native TensorRT engine built
from that variant, or (`triton`) the INT8 graph served by a Triton server and measured from its
client (triton_row.py). Given ready files instead of a checkpoint (`file_rows`: no PyTorch needed), a
row is one file on one backend that takes its file type (the runtime's backend registry). Availability is decided before anything is exported or opened, from what is
installed (`roadseg.runtime.backends.available_backends`); a row that then fails while it runs is
reported as failed with the error, never silently dropped.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError, UsageError

REFERENCE = "torch"  # the FP32 reference: agreement and speed-up are relative to it


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "torch" | "onnx" (ONNX Runtime) | "engine" (native TensorRT) | "triton" (triton_row.py)
    precision: str  # fp32 | fp16 | int8
    backend: str | None = None  # runtime backend name for onnx / engine rows
    compile: bool = False  # torch.compile (torch rows)
    cuda: bool = False  # needs a CUDA device (torch rows); onnx/engine rows: the backend decides
    model: str | None = None  # file rows: the ready .onnx/.engine it runs (else the bench exports one)
    dynamic_batch: bool = False  # file rows: the file takes any batch (throughput and streams use it)


ROWS: dict[str, Row] = {
    r.name: r
    for r in (
        Row("torch", "torch", "fp32"),
        Row("torch-fp16", "torch", "fp16", cuda=True),
        Row("torch-compile", "torch", "fp32", compile=True),
        Row("ort-cpu-fp32", "onnx", "fp32", "ort-cpu"),
        Row("ort-cpu-fp16", "onnx", "fp16", "ort-cpu"),
        Row("ort-cpu-int8", "onnx", "int8", "ort-cpu"),
        Row("ort-cuda-fp32", "onnx", "fp32", "ort-cuda"),
        Row("ort-cuda-fp16", "onnx", "fp16", "ort-cuda"),
        Row("ort-trt-fp16", "onnx", "fp16", "ort-trt"),
        Row("ort-trt-int8", "onnx", "int8", "ort-trt"),
        Row("trt-fp32", "engine", "fp32", "trt"),
        Row("trt-fp16", "engine", "fp16", "trt"),
        Row("trt-int8", "engine", "int8", "trt"),
        Row("triton", "triton", "int8", "ort-cpu"),  # the ort-cpu-int8 graph through a Triton server, seen by its client
    )
}


def select(spec: str | list[str] | None) -> list[str]:
    """`all` (or None) -> every row; "a,b" or [a, b] -> those rows, in registry order, the reference first.

    The reference row is always included: agreement and speed-up are measured against it."""
    if spec is None or spec == "all" or spec == ["all"]:
        return list(ROWS)
    names = [n.strip() for part in ([spec] if isinstance(spec, str) else spec) for n in part.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise UsageError(f"--backends: unknown row {', '.join(unknown)}; choose `all` or from: {', '.join(ROWS)}")
    if not names:
        raise UsageError(f"--backends is empty; choose `all` or from: {', '.join(ROWS)}")
    wanted = set(names) | {REFERENCE}
    return [n for n in ROWS if n in wanted]


def torch_cuda() -> str | None:
    """None when torch sees a CUDA device, else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no CUDA device visible to torch"
        return f"needs CUDA ({build})"
    return None


def _compiler() -> str | None:
    if not any(shutil.which(c) for c in ("cc", "gcc", "g++", "clang", "c++")):
        return "torch.compile (inductor) needs a C/C++ compiler on the PATH"
    return None


def unavailable(names: list[str], backend_reasons: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """name -> None when the row can run here, else the reason (what is missing).

    backend_reasons: `available_backends()` (computed when not given)."""
    if backend_reasons is None:
        from roadseg.runtime.backends import available_backends

        backend_reasons = available_backends()
    cuda = torch_cuda()
    out: dict[str, str | None] = {}
    for name in names:
        row = ROWS[name]
        if row.kind == "torch":
            reason = cuda if row.cuda else None
            if row.compile and reason is None:
                import torch

                if not hasattr(torch, "compile"):
                    reason = f"torch {torch.__version__} has no torch.compile"
                elif cuda is not None:  # on CPU inductor builds C++ kernels
                    reason = _compiler()
            out[name] = reason
            continue
        reason = backend_reasons.get(row.backend or "", f"backend {row.backend} unknown to this roadseg")
        if reason is None and row.kind == "triton":
            from .triton_row import unavailable as triton_missing

            reason = triton_missing()
        if reason is None and row.kind == "engine" and importlib.util.find_spec("tensorrt") is None:
            reason = "tensorrt is not installed (needed to build the engine); `pip install roadseg[gpu]`"
        out[name] = reason
    return out


PRECISION_RANK = {"fp32": 0, "fp16": 1, "int8": 2}  # most precise first: the reference of file rows


@dataclass(frozen=True)
class ModelFile:
    """A ready model file, described from the file alone (ONNX metadata, or the engine's sidecar)."""

    path: Path
    kind: str  # onnx | engine
    precision: str
    card: ModelCard
    dynamic_batch: bool
    cpu_form: bool  # an INT8 graph rewritten for ONNX Runtime's CPU kernels (the GPU providers refuse it)


def describe(path: str | Path) -> ModelFile:
    from roadseg.runtime.backends import is_engine
    from roadseg.runtime.model import ORT_CPU_KEY, check_model_file, inspect_model

    p = check_model_file(path)
    if is_engine(p):
        from roadseg.runtime.engine import read_sidecar

        side = read_sidecar(p)
        dynamic = any(prof["min"][0] != prof["max"][0] for prof in side.profiles)
        return ModelFile(p, "engine", side.precision, side.model_card(str(p)), dynamic, False)
    info = inspect_model(p)
    info.require_frames_graph()
    return ModelFile(p, "onnx", info.precision, info.card, info.batch is None, bool(info.metadata.get(ORT_CPU_KEY)))


def _file_backends() -> dict[str, list[str]]:
    """Backend name -> its file suffixes, from the runtime's registry (one row per file it takes)."""
    from roadseg.runtime.backends import BACKENDS

    return {name: list(spec.suffixes) for name, spec in BACKENDS.items()}


def file_rows(files: list[ModelFile], spec: str | list[str] | None) -> list[Row]:
    """One row per (file, backend that takes its file type), files in the order given, backends in
    registry order; `spec`: `all` or the runtime backends to use (ort-cpu, ort-cuda, ...)."""
    takes = _file_backends()
    wanted = list(takes)
    if spec is not None and spec not in ("all", ["all"]):
        wanted = [n.strip() for part in ([spec] if isinstance(spec, str) else spec) for n in part.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in takes]
        if unknown or not wanted:
            raise UsageError(f"--backends {','.join(unknown) or '(empty)'}: with model files, choose `all` or "
                             f"backends from: {', '.join(takes)}")  # fmt: skip
    names: set[str] = set()
    out = []
    for f in files:
        for backend in (b for b in takes if b in wanted and f.path.suffix.lower() in takes[b]):
            name = f"{backend}-{f.path.stem}"
            if name in names:
                raise UsageError(f"{f.path}: two model files named {f.path.stem}; give files with different names")
            names.add(name)
            out.append(Row(name, f.kind, f.precision, backend, model=str(f.path), dynamic_batch=f.dynamic_batch))
    if not out:
        which = "; ".join(f"{name}: {' '.join(suffixes)}" for name, suffixes in takes.items() if name in wanted)
        raise UsageError(f"--backends {spec}: none of them runs {', '.join(f.path.name for f in files)} ({which})")
    return out


def file_reasons(rows: list[Row], files: list[ModelFile]) -> dict[str, str | None]:
    """`unavailable` for file rows, plus the CPU-form INT8 graphs that backends other than the CPU ones refuse."""
    from roadseg.runtime.backends import BACKENDS, available_backends

    installed = available_backends()
    out = {}
    cpu_form = {str(f.path) for f in files if f.cpu_form}
    for row in rows:
        reason = installed.get(row.backend or "", f"backend {row.backend} unknown to this roadseg")
        if reason is None and row.model in cpu_form and not BACKENDS[row.backend or ""].cpu_form:
            reason = "this INT8 graph is rewritten for ONNX Runtime's CPU kernels; export one for GPUs with --int8-activations s8"
        out[row.name] = reason
    return out


def file_reference(rows: list[Row], reasons: dict[str, str | None]) -> str | None:
    """The row agreement and speed-up are relative to: the most precise file's first row that can run."""
    runnable = [r for r in rows if reasons.get(r.name) is None]
    if not runnable:
        return None
    return min(runnable, key=lambda r: PRECISION_RANK.get(r.precision, 9)).name  # min keeps the first of equals


def same_task(files: list[ModelFile]) -> ModelCard:
    """The card the files share (classes and ignore index): their labels are compared with each other."""
    card = files[0].card
    for f in files[1:]:
        if (f.card.classes, f.card.ignore_index) != (card.classes, card.ignore_index):
            raise RoadsegError(f"{f.path}: its classes differ from {files[0].path.name}'s; bench files of one model")
    return card
