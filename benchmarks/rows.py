"""The rows of a benchmark: a plain dict registry, name -> Row, and why a row cannot run here.

A row is one way of running the model: PyTorch eager (the FP32 reference), PyTorch FP16 on CUDA
(FP16 weights, channels-last, a CUDA graph), torch.compile (on CUDA with CUDA graphs), ONNX Runtime
on a provider with a precision variant of the exported graph, or a native TensorRT engine built
from that variant. Availability is decided before anything is exported or opened, from what is
installed (`roadseg.runtime.backends.available_backends`); a row that then fails while it runs is
reported as failed with the error, never silently dropped.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass

from roadseg.runtime.errors import UsageError

REFERENCE = "torch"  # the FP32 reference: agreement and speed-up are relative to it


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "torch" | "onnx" (ONNX Runtime) | "engine" (native TensorRT)
    precision: str  # fp32 | fp16 | int8
    backend: str | None = None  # runtime backend name for onnx / engine rows
    compile: bool = False  # torch.compile (torch rows)
    cuda: bool = False  # needs a CUDA device (torch rows); onnx/engine rows: the backend decides


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
        if reason is None and row.kind == "engine" and importlib.util.find_spec("tensorrt") is None:
            reason = "tensorrt is not installed (needed to build the engine); `pip install roadseg[gpu]`"
        out[name] = reason
    return out
