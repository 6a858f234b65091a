"""Backends: the registry (backends/registry.py: one record per backend), `available_backends` and `open_backend`.

Each backend module is imported only when it is opened, so listing or choosing backends imports
neither onnxruntime's GPU libraries nor tensorrt. `auto` tries the backends that take the file (and
have an auto rank) best first: "trt" for an engine; for an ONNX model the best ONNX Runtime provider
that starts here (TensorRT EP > CUDA EP > CPU). An explicitly named backend that cannot start is an
error that says what to install, never a silent fallback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from roadseg.core.errors import RoadsegError, UsageError

from .base import Backend, TensorSpec
from .registry import BACKENDS, ENGINE_SUFFIXES, BackendSpec, check_options, ranked

__all__ = ["BACKENDS", "Backend", "BackendSpec", "TensorSpec", "available_backends", "open_backend", "resolve_backend"]

log = logging.getLogger("roadseg")
CPU_FORM_SKIP = "this INT8 graph is rewritten for ONNX Runtime's CPU kernels"


def is_engine(model: str | os.PathLike) -> bool:
    return Path(model).suffix.lower() in ENGINE_SUFFIXES


def _check_name(backend: str) -> None:
    if backend != "auto" and backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; choose one of: auto, {', '.join(BACKENDS)}")


def _reasons_without_model() -> dict[str, str | None]:
    return {name: spec.probe() for name, spec in BACKENDS.items()}


def available_backends(model: str | os.PathLike | None = None, **opts) -> dict[str, str | None]:
    """name -> None when usable here, else the reason it is not (what to install).

    Without `model` this checks what is installed (providers, driver, libraries). With `model` it
    opens the model on each backend that applies and closes it again, so the answer is exact
    (ONNX Runtime lists GPU providers it then cannot start); backends that do not apply to the
    model's format say so."""
    reasons = _reasons_without_model()
    if model is None:
        return reasons
    for name, spec in BACKENDS.items():
        if not spec.takes(model):
            reasons[name] = f"needs {spec.needs}"
            continue
        if reasons[name] is not None:
            continue
        try:
            _open(name, model, opts).close()
        except RoadsegError as e:
            reasons[name] = str(e)
    return reasons


def _open(name: str, model: str | os.PathLike, opts: dict, info: Any = None) -> Backend:
    """BACKENDS[name] opened with the options it takes; `info`, the model already inspected by
    open_backend, is handed on so the file is read and checked once."""
    return BACKENDS[name].open(model, opts, info)


def resolve_backend(model: str | os.PathLike, backend: str = "auto") -> list[str]:
    """The backend names `open_backend` tries for `model`, in order (one unless `auto`)."""
    _check_name(backend)
    if backend != "auto":
        return [backend]
    from ..defaults import is_bundled

    return _auto(model, bundled=is_bundled(model))[0]


def _candidates(model: str | os.PathLike, bundled: bool) -> list[BackendSpec]:
    """auto's backends for `model`, best first: those that take its file type (for `default`, those
    that run a shipped variant). The last one is tried whether or not it looks installed: its error
    is the answer."""
    applicable = [s for s in ranked() if (s.variant is not None if bundled else s.takes(model))]
    if not applicable:
        raise UsageError(f"{model}: no backend takes this file type; give an .onnx or .engine made by `roadseg export`")
    *better, last = applicable
    return [s for s in better if s.is_present()] + [last]


def _auto(model: str | os.PathLike, info: Any = None, bundled: bool = False) -> tuple[list[str], dict[str, str], Any]:
    """auto's candidates for `model`, best first, why each better one that is installed is left
    out (checked before any session opens: see probe.py), and the model's ModelInfo when it had to
    be read (a CPU-form INT8 graph is for the backends that take it: `BackendSpec.cpu_form`)."""
    *better, last = _candidates(model, bundled)
    skipped: dict[str, str] = {}
    if any(not s.cpu_form for s in better) and not is_engine(model):
        info = info if info is not None else _inspect(model)
        if _cpu_form(info):
            skipped = {s.name: CPU_FORM_SKIP for s in better if not s.cpu_form}
    for s in better:
        if s.name not in skipped and (why := s.probe()):
            skipped[s.name] = why
    return [s.name for s in better if s.name not in skipped] + [last.name], skipped, info


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

    auto: the backends that take the file, best first by their record's auto rank: "trt" for
    .engine files, else the best ONNX Runtime provider that starts here (TensorRT EP > CUDA EP >
    CPU); for `default`, native TensorRT first where it is installed (resolve_model builds its engine
    on first use). Installed backends are first checked without opening a session (probe.py: driver,
    device, libraries); one that fails that check, or fails to open with any RoadsegError, is
    skipped, and one warning line on the "roadseg" logger names the choice and each skip; an error
    of the last one, CPU, is raised.

    Args:
        model: an .onnx or .engine made by `roadseg export`, or `default` (the bundled model).
        backend: "auto" or a name in BACKENDS (registry.describe() lists them and their options).
        **opts: backend options, None values ignored; each backend takes the fields of its record's
            options dataclass (OrtOptions, TrtOptions, ...) and ignores the others'.
    Returns:
        An open Backend (`infer(frames) -> labels`, `card`, `close()`).
    Raises:
        MissingDependencyError: a named backend that cannot start here, saying what to install.
        UsageError: an unknown backend or option, or a backend that does not take this file type.
        RoadsegError: a missing, broken or foreign model file (one line naming it and the fix).
    """
    _check_name(backend)
    check_options(opts)
    from ..defaults import is_bundled, resolve_model
    from ..model import check_model_file

    bundled = is_bundled(model)
    # `default` is a file per backend (its record's variant: INT8 for the CPU, FP16 for GPUs); auto
    # starts from the best ONNX backend's
    first = backend if backend != "auto" else next(s.name for s in ranked() if s.takes("x.onnx"))
    path = check_model_file(resolve_model(model, first))
    if backend != "auto":
        spec = BACKENDS[backend]
        if not spec.takes(path):
            raise UsageError(f"{path}: --backend {backend} needs {spec.needs}; use --backend auto to pick by file type")
        # a backend that refuses CPU-form INT8 graphs needs to know what the file is before it opens
        # it (ort.py's refusal, the TensorRT EP's INT8 flag): it is inspected once here and handed on
        return _open(backend, path, opts, None if spec.cpu_form or is_engine(path) else _inspect(path))
    names, skipped, info = _auto(path, bundled=bundled)
    for i, name in enumerate(names):
        try:
            own = check_model_file(resolve_model(model, name)) if bundled else path  # `default`: its own variant
            chosen = _open(name, own, opts, info if own == path else None)
        except RoadsegError as e:  # a backend that fails on this model or device: the next one may not
            if i == len(names) - 1:  # the last one (CPU): its error is the answer
                raise
            skipped[name] = str(e)
            continue
        _say_choice(name, skipped)
        return chosen
    raise AssertionError("unreachable: _auto always ends with a candidate")


def _say_choice(name: str, skipped: dict[str, str]) -> None:
    """One line when auto passed over a backend that is installed (nothing to say otherwise)."""
    if skipped:
        log.warning("backend auto chose %s (skipped %s)", name, "; ".join(f"{n}: {why}" for n, why in skipped.items()))
