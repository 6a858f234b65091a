"""Backends: a plain dict registry, name -> constructor(path, **opts), and `open_backend`.

- "ort-cpu", "ort-cuda", "ort-trt": ONNX Runtime with the CPU, CUDA or TensorRT execution provider
  (backends/ort.py), for .onnx files.
- "trt": native TensorRT with pycuda (backends/tensorrt.py), for .engine files.

Each backend module is imported only when it is opened, so listing or choosing backends imports
neither onnxruntime's GPU libraries nor tensorrt. `auto` picks "trt" for an engine, else the best
ONNX Runtime provider that starts here (TensorRT EP > CUDA EP > CPU). An explicitly named backend
that cannot start is an error that says what to install, never a silent fallback.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import MissingDependencyError, RoadsegError, UsageError
from .base import Backend, TensorSpec

__all__ = ["BACKENDS", "Backend", "TensorSpec", "available_backends", "open_backend", "resolve_backend"]

log = logging.getLogger("roadseg")

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # TensorRT plans; the one list (runtime/model.py still has a copy)
# options only ONNX Runtime understands: not passed to the native TensorRT backend
ORT_OPTIONS = frozenset({"provider", "threads", "graph_opt", "trt_fp16", "trt_int8", "trt_cache_dir"})
TRT_OPTIONS = frozenset({"allow_plugins", "cuda_graph"})  # native TensorRT backend only


def _ort(provider: str) -> Callable[..., Backend]:
    def open_ort(path: str | os.PathLike, **opts) -> Backend:
        from .ort import OrtBackend

        return OrtBackend(path, provider=provider, **opts)

    open_ort.__name__ = f"open_ort_{provider}"
    return open_ort


def _trt(path: str | os.PathLike, **opts) -> Backend:
    try:
        from .tensorrt import TensorRTBackend
    except ImportError as e:
        raise MissingDependencyError(
            f"backend trt: cannot import the TensorRT backend ({e}); install TensorRT and pycuda: `pip install roadseg[gpu]`"
        ) from None
    return TensorRTBackend(path, **opts)


BACKENDS: dict[str, Callable[..., Backend]] = {
    "ort-cpu": _ort("cpu"),
    "ort-cuda": _ort("cuda"),
    "ort-trt": _ort("trt"),
    "trt": _trt,
}
AUTO_ORDER = ("ort-trt", "ort-cuda", "ort-cpu")  # best first, for ONNX models
_EP = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider"}


def is_engine(model: str | os.PathLike) -> bool:
    return Path(model).suffix.lower() in ENGINE_SUFFIXES


def _check_name(backend: str) -> None:
    if backend != "auto" and backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; choose one of: auto, {', '.join(BACKENDS)}")


def _ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def _loads_any(names: tuple[str, ...]) -> bool:
    """Whether any of these shared libraries loads here (how drivers and TensorRT are found)."""
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def _has_cuda_driver() -> bool:
    return _loads_any(("libcuda.so.1", "libcuda.so", "nvcuda.dll"))


def _has_nvinfer() -> bool:
    if importlib.util.find_spec("tensorrt") is not None or importlib.util.find_spec("tensorrt_libs") is not None:
        return True
    return _loads_any(("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so", "nvinfer.dll", "nvinfer_10.dll"))


def _reasons_without_model() -> dict[str, str | None]:
    from .ort import install_hint

    have = _ort_providers()
    out: dict[str, str | None] = {}
    out["ort-cpu"] = None if "CPUExecutionProvider" in have else "onnxruntime is not installed (`pip install roadseg`)"
    driver = _has_cuda_driver()
    for name in ("ort-cuda", "ort-trt"):
        if _EP[name] not in have:
            out[name] = f"onnxruntime has no {_EP[name]} here; {install_hint(name.removeprefix('ort-'))}"
        elif not driver:
            out[name] = "no NVIDIA driver (libcuda) on this machine"
        elif name == "ort-trt" and not _has_nvinfer():
            out[name] = "TensorRT libraries (libnvinfer) not found; `pip install tensorrt`"
        else:
            out[name] = None
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        out["trt"] = f"{' and '.join(missing)} not installed; `pip install roadseg[gpu]`"
    elif not driver:
        out["trt"] = "no NVIDIA driver (libcuda) on this machine"
    elif importlib.util.find_spec("roadseg.runtime.backends.tensorrt") is None:
        out["trt"] = "this roadseg has no native TensorRT backend"
    else:
        out["trt"] = None
    return out


def available_backends(model: str | os.PathLike | None = None, **opts) -> dict[str, str | None]:
    """name -> None when usable here, else the reason it is not (what to install).

    Without `model` this checks what is installed (providers, driver, libraries). With `model` it
    opens the model on each backend that applies and closes it again, so the answer is exact
    (ONNX Runtime lists GPU providers it then cannot start); backends that do not apply to the
    model's format say so."""
    reasons = _reasons_without_model()
    if model is None:
        return reasons
    engine = is_engine(model)
    for name in BACKENDS:
        if (name == "trt") != engine:
            reasons[name] = (
                "needs an .onnx model" if engine else "needs a TensorRT .engine (`roadseg export MODEL --to engine`)"
            )
            continue
        if reasons[name] is not None:
            continue
        try:
            _open(name, model, opts).close()
        except RoadsegError as e:
            reasons[name] = str(e)
    return reasons


def _open(name: str, model: str | os.PathLike, opts: dict) -> Backend:
    opts = {k: v for k, v in opts.items() if v is not None}
    if name == "trt":
        opts = {k: v for k, v in opts.items() if k not in ORT_OPTIONS}
    else:
        opts = {k: v for k, v in opts.items() if k not in TRT_OPTIONS}
    return BACKENDS[name](model, **opts)


def resolve_backend(model: str | os.PathLike, backend: str = "auto") -> list[str]:
    """The backend names `open_backend` tries for `model`, in order (one unless `auto`)."""
    _check_name(backend)
    if backend != "auto":
        return [backend]
    if is_engine(model):
        return ["trt"]
    have = _ort_providers()
    names = [name for name in AUTO_ORDER if _EP[name] in have] or ["ort-cpu"]
    return ["ort-cpu"] if names != ["ort-cpu"] and _cpu_form(model) else names


def _cpu_form(model: str | os.PathLike) -> bool:
    """An INT8 graph rewritten for ONNX Runtime's CPU kernels (the GPU providers refuse it)."""
    from ..model import ORT_CPU_KEY, inspect_model

    try:
        return bool(inspect_model(model).metadata.get(ORT_CPU_KEY))
    except RoadsegError:  # opening it says what is wrong
        return False


def open_backend(model: str | os.PathLike, backend: str = "auto", **opts) -> Backend:
    """Open `model` (an .onnx, an .engine, or `default`) on `backend`.

    auto: "trt" for .engine files, else the best ONNX Runtime provider that starts here (TensorRT EP
    > CUDA EP > CPU; a GPU provider that is listed but cannot start, or fails with any other
    RoadsegError, is skipped with a log line; an error of the last one, CPU, is raised).
    A named backend that cannot start raises MissingDependencyError saying what to install.
    Options (None values are ignored): threads, graph_opt, device_id, trt_fp16, trt_int8,
    trt_cache_dir for ONNX Runtime; ONNX Runtime-only options are not passed to "trt"."""
    _check_name(backend)
    from ..defaults import resolve_model
    from ..model import check_model_file

    path = check_model_file(resolve_model(model))
    if backend != "auto" and (backend == "trt") != is_engine(path):
        need = "a TensorRT .engine (`roadseg export MODEL --to engine`)" if backend == "trt" else "an .onnx model"
        raise UsageError(f"{path}: --backend {backend} needs {need}; use --backend auto to pick by file type")
    names = resolve_backend(path, backend)
    for name in names[:-1]:  # auto only: try the better providers, fall through on any that fails to start
        try:
            return _open(name, path, opts)
        except MissingDependencyError as e:
            log.info("backend auto: skipping %s: %s", name, e)
        except RoadsegError as e:  # e.g. a GPU provider that fails on this model or device: the next one may not
            log.warning("backend auto: skipping %s: %s", name, e)
    return _open(names[-1], path, opts)  # the last one (CPU) raises what stops it
