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

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, RoadsegError, UsageError
from . import probe
from .base import Backend, TensorSpec

__all__ = ["BACKENDS", "Backend", "TensorSpec", "available_backends", "open_backend", "resolve_backend"]

log = logging.getLogger("roadseg")

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # TensorRT plans: the one list (runtime/model.py imports it)
# options only ONNX Runtime understands: not passed to the native TensorRT backend
ORT_OPTIONS = frozenset({"provider", "threads", "graph_opt", "trt_fp16", "trt_int8", "trt_cache_dir", "nhwc"})
TRT_OPTIONS = frozenset({"allow_plugins"})  # native TensorRT backend only (both take cuda_graph)


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


def is_engine(model: str | os.PathLike) -> bool:
    return Path(model).suffix.lower() in ENGINE_SUFFIXES


def _check_name(backend: str) -> None:
    if backend != "auto" and backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; choose one of: auto, {', '.join(BACKENDS)}")


def _reasons_without_model() -> dict[str, str | None]:
    from .ort import install_hint

    have = probe.ort_providers()
    out: dict[str, str | None] = {}
    out["ort-cpu"] = None if "CPUExecutionProvider" in have else "onnxruntime is not installed (`pip install roadseg`)"
    for name in ("ort-cuda", "ort-trt"):
        if probe.EP[name] not in have:
            out[name] = f"onnxruntime has no {probe.EP[name]} here; {install_hint(name.removeprefix('ort-'))}"
        else:
            out[name] = probe.gpu_reason(name)
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        out["trt"] = f"{' and '.join(missing)} not installed; `pip install roadseg[gpu]`"
    elif (why := probe.cuda_reason()) is not None:
        out["trt"] = why
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


def _open(name: str, model: str | os.PathLike, opts: dict, info: Any = None) -> Backend:
    """BACKENDS[name] with the options it takes; `info`, the model already inspected by
    open_backend, is handed to ONNX Runtime backends so the file is read and checked once."""
    opts = {k: v for k, v in opts.items() if v is not None}
    if name == "trt":
        opts = {k: v for k, v in opts.items() if k not in ORT_OPTIONS}
    else:
        opts = {k: v for k, v in opts.items() if k not in TRT_OPTIONS}
        if info is not None:
            opts["info"] = info
    return BACKENDS[name](model, **opts)


def resolve_backend(model: str | os.PathLike, backend: str = "auto") -> list[str]:
    """The backend names `open_backend` tries for `model`, in order (one unless `auto`)."""
    _check_name(backend)
    return [backend] if backend != "auto" else _auto(model)[0]


def _auto(model: str | os.PathLike, info: Any = None) -> tuple[list[str], dict[str, str]]:
    """auto's candidates for `model`, best first, and why each better one that onnxruntime lists
    is left out (checked before any session opens: see probe.py). ONNX models end with ort-cpu.
    `info`: the model already inspected (else it is inspected here when a GPU provider is listed)."""
    if is_engine(model):
        return ["trt"], {}
    have = probe.ort_providers()
    listed = [name for name in AUTO_ORDER[:-1] if probe.EP[name] in have]
    if listed and _cpu_form(info if info is not None else _inspect(model)):
        return ["ort-cpu"], dict.fromkeys(listed, "this INT8 graph is rewritten for ONNX Runtime's CPU kernels")
    skipped = {name: why for name in listed if (why := probe.gpu_reason(name))}
    return [name for name in listed if name not in skipped] + ["ort-cpu"], skipped


def _inspect(model: str | os.PathLike) -> Any:
    """The model's ModelInfo, or None when it does not open (opening it on a backend says why)."""
    from ..model import inspect_model

    try:
        return inspect_model(model)
    except RoadsegError:
        return None


def _cpu_form(info: Any) -> bool:
    """An INT8 graph rewritten for ONNX Runtime's CPU kernels (the GPU providers refuse it)."""
    from ..model import ORT_CPU_KEY

    return info is not None and bool(info.metadata.get(ORT_CPU_KEY))


def open_backend(model: str | os.PathLike, backend: str = "auto", **opts) -> Backend:
    """Open `model` (an .onnx, an .engine, or `default`) on `backend`.

    auto: "trt" for .engine files, else the best ONNX Runtime provider that starts here (TensorRT EP
    > CUDA EP > CPU); for `default`, native TensorRT first where it is installed (resolve_model
    builds its engine on first use). Providers that onnxruntime lists are first checked without opening a session
    (probe.py: driver, device, libraries); one that fails that check, or fails to open with any
    RoadsegError, is skipped, and one warning line on the "roadseg" logger names the choice and
    each skip; an error of the last one, CPU, is raised.

    Args:
        model: an .onnx or .engine made by `roadseg export`, or `default` (the bundled model).
        backend: "auto", "ort-cpu", "ort-cuda", "ort-trt" or "trt".
        **opts: backend options, None values ignored: threads, graph_opt, device_id, trt_fp16,
            trt_int8, trt_cache_dir, nhwc for ONNX Runtime (not passed to "trt"); allow_plugins
            for "trt"; cuda_graph for both.
    Returns:
        An open Backend (`infer(frames) -> labels`, `card`, `close()`).
    Raises:
        MissingDependencyError: a named backend that cannot start here, saying what to install.
        UsageError: an unknown backend, or one that does not take this file type.
        RoadsegError: a missing, broken or foreign model file (one line naming it and the fix).
    """
    _check_name(backend)
    from ..defaults import is_bundled, resolve_model
    from ..model import check_model_file

    # `default` is a file per backend (defaults.shipped_variant: INT8 for the CPU, FP16 for GPUs)
    path = check_model_file(resolve_model(model, "ort-cuda" if backend == "auto" else backend))
    if backend != "auto" and (backend == "trt") != is_engine(path):
        need = "a TensorRT .engine (`roadseg export MODEL --to engine`)" if backend == "trt" else "an .onnx model"
        raise UsageError(f"{path}: --backend {backend} needs {need}; use --backend auto to pick by file type")
    # GPU providers need to know what the file is before they open it (ort.py's CPU-form refusal,
    # the TensorRT EP's INT8 flag): it is inspected once here and handed on
    gpu = backend in ("ort-cuda", "ort-trt") or (
        backend == "auto" and not is_engine(path) and any(probe.EP[n] in probe.ort_providers() for n in AUTO_ORDER[:-1])
    )
    info = _inspect(path) if gpu else None
    if backend != "auto":
        return _open(backend, path, opts, info)
    names, skipped = _auto(path, info)
    if is_bundled(model) and _reasons_without_model()["trt"] is None:
        names.insert(0, "trt")  # native TensorRT where it is installed: its engine is built on first use
    for i, name in enumerate(names):
        try:
            if is_bundled(model) and name in ("ort-cpu", "trt"):  # their own file: the INT8, or the FP16's engine
                own = check_model_file(resolve_model(model, name))
                chosen = _open(name, own, opts, info if own == path else None)
            else:
                chosen = _open(name, path, opts, info)
        except RoadsegError as e:  # a GPU provider that fails on this model or device: the next one may not
            if i == len(names) - 1:  # the last one (CPU): its error is the answer
                raise
            skipped[name] = str(e)
            continue
        _say_choice(name, skipped)
        return chosen
    raise AssertionError("unreachable: _auto always ends with a candidate")


def _say_choice(name: str, skipped: dict[str, str]) -> None:
    """One line when auto passed over a provider that onnxruntime lists (nothing to say otherwise)."""
    if skipped:
        log.warning("backend auto chose %s (skipped %s)", name, "; ".join(f"{n}: {why}" for n, why in skipped.items()))
