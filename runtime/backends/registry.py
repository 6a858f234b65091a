"""The backend registry: one record per backend in a plain dict, name -> BackendSpec.

Everything that names backends derives from these records: the CLI's `--backend` choices,
`available_backends`, auto's order, which shipped variant of `default` a backend runs
(runtime/defaults.py), the options `open_backend` and `Segmenter` take, and the bench's rows for
ready model files. A backend is one module, imported only when it is opened or probed, plus its
record here; nothing else names it.

This module imports nothing heavy: no onnxruntime, tensorrt or numpy until a record's `load` or
`probe` is called.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from roadseg.core.errors import MissingDependencyError, UsageError

from . import probe as _probe

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # TensorRT plans: the one list (runtime/model.py imports it)
ONNX_NEEDS = "an .onnx model"


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime's options (backends/ort.py OrtBackend says what each does); None: its default."""

    threads: int | None = None
    graph_opt: str | None = None
    device_id: int | None = None
    trt_fp16: bool | None = None
    trt_int8: bool | None = None
    trt_cache_dir: str | os.PathLike | None = None
    cuda_graph: bool | None = None
    nhwc: bool | None = None


@dataclass(frozen=True)
class TrtOptions:
    """The native TensorRT backend's options (backends/tensorrt.py); None: its default."""

    device_id: int | None = None
    cuda_graph: bool | None = None
    allow_plugins: bool | None = None


@dataclass(frozen=True)
class OpenVinoOptions:
    """OpenVINO's options (backends/openvino.py); None: its default."""

    threads: int | None = None
    cache_dir: str | os.PathLike | None = None


@dataclass(frozen=True)
class BackendSpec:
    """One backend: what it opens and how, whether it can run here, and where auto and `default` place it.

    load: imports the backend module and returns its constructor, (path, **options) -> Backend.
    probe: None when the backend can start here as far as can be told without a model, else why not
      and what to install.
    present: whether it is installed at all; auto tries (and says why it skipped) only present
      backends other than its last. None: present when `probe` passes.
    auto_rank: auto's order among backends that take the file, lowest first; None: never chosen by auto.
    variant: the shipped variant of `default` it runs ("int8" | "fp16"); None: it does not run `default`.
    cpu_form: it runs INT8 graphs rewritten for ONNX Runtime's CPU kernels (export/ort_cpu.py).
    device: where it runs ("cpu" or a GPU kind): the bench's device column and memory sampling.
    """

    name: str
    suffixes: tuple[str, ...]
    needs: str  # what `--backend NAME` takes, for errors: "an .onnx model"
    options: type
    load: Callable[[], Callable[..., Any]]
    probe: Callable[[], str | None]
    present: Callable[[], bool] | None = None
    auto_rank: int | None = None
    variant: str | None = None
    cpu_form: bool = False
    device: str = "cpu"
    summary: str = field(default="", compare=False)

    def takes(self, path: str | os.PathLike) -> bool:
        return Path(path).suffix.lower() in self.suffixes

    def is_present(self) -> bool:
        return self.present() if self.present is not None else self.probe() is None

    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.options))

    def open(self, path: str | os.PathLike, opts: dict[str, Any], info: Any = None) -> Any:
        """Open `path` with the options this backend takes (None values and other backends' options
        dropped); `info`, the file's ModelInfo when the caller read it already, goes to ONNX backends."""
        typed = self.options(**{k: v for k, v in opts.items() if k in self.option_names()})
        kwargs = {f.name: getattr(typed, f.name) for f in fields(typed) if getattr(typed, f.name) is not None}
        if info is not None:
            kwargs["info"] = info
        return self.load()(path, **kwargs)


def check_options(opts: dict[str, Any]) -> None:
    """A UsageError for an option no backend takes (a typo would otherwise be dropped silently)."""
    known = sorted({n for spec in BACKENDS.values() for n in spec.option_names()})
    unknown = [k for k in opts if k not in known]
    if unknown:
        raise UsageError(f"backend option {', '.join(unknown)}: no backend takes it; options: {', '.join(known)}")


def describe() -> str:
    """One line per backend: its name, what it runs and its options (for help texts and docs)."""
    return "\n".join(f"{s.name}: {s.summary} (options: {', '.join(s.option_names())})" for s in BACKENDS.values())


def _lazy(module: str, cls: str, **fixed: Any) -> Callable[[], Callable[..., Any]]:
    """A loader: imports backends/<module>.py when called, and gives its class with `fixed` arguments."""

    def load() -> Callable[..., Any]:
        return partial(getattr(importlib.import_module(f"{__package__}.{module}"), cls), **fixed)

    return load


# -- ONNX Runtime -----------------------------------------------------------------------------------


def _ort_probe(name: str) -> Callable[[], str | None]:
    def reason() -> str | None:
        have = _probe.ort_providers()
        if name == "ort-cpu":
            return None if "CPUExecutionProvider" in have else "onnxruntime is not installed (`pip install roadseg`)"
        if _probe.EP[name] not in have:
            return f"onnxruntime has no {_probe.EP[name]} here; {_probe.install_hint(name.removeprefix('ort-'))}"
        return _probe.gpu_reason(name)

    return reason


def _ort_listed(name: str) -> Callable[[], bool]:
    return lambda: _probe.EP[name] in _probe.ort_providers()


# -- native TensorRT --------------------------------------------------------------------------------


def _trt() -> Callable[..., Any]:
    try:
        from .tensorrt import TensorRTBackend
    except ImportError as e:
        raise MissingDependencyError(
            f"backend trt: cannot import the TensorRT backend ({e}); install TensorRT and pycuda: `pip install roadseg[gpu]`"
        ) from None
    return TensorRTBackend


def _trt_probe() -> str | None:
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed; `pip install roadseg[gpu]`"
    if (why := _probe.cuda_reason()) is not None:
        return why
    if importlib.util.find_spec("roadseg.runtime.backends.tensorrt") is None:
        return "this roadseg has no native TensorRT backend"
    return None


# -- OpenVINO ---------------------------------------------------------------------------------------


@functools.cache
def openvino_devices() -> tuple[str, ...]:
    """The devices OpenVINO lists here ("CPU", "GPU.0", "NPU", ...); asked once per process."""
    import openvino as ov

    return tuple(ov.Core().available_devices)


def openvino_reason(device: str) -> str | None:
    """None when OpenVINO is installed and lists `device` ("CPU" | "GPU" | "NPU"), else why not."""
    if importlib.util.find_spec("openvino") is None:
        return "openvino is not installed; `pip install roadseg[openvino]`"
    try:
        devices = openvino_devices()
    except Exception as e:  # noqa: BLE001 - a broken install raises its own types
        return f"OpenVINO does not start here ({' '.join(str(e).split())[:160]})"
    if not any(d == device or d.startswith(f"{device}.") for d in devices):
        return f"OpenVINO lists no {device} device here (it has {', '.join(devices) or 'none'})"
    return None


def _openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


# -- the registry -----------------------------------------------------------------------------------

_ORT = "ONNX Runtime's {} execution provider, for .onnx files"
_OV = "OpenVINO on {}, for .onnx files (FP32, FP16, INT8)"
BACKENDS: dict[str, BackendSpec] = {
    s.name: s
    for s in (
        BackendSpec("ort-cpu", ONNX_SUFFIXES, ONNX_NEEDS, OrtOptions,
                    load=_lazy("ort", "OrtBackend", provider="cpu"), probe=_ort_probe("ort-cpu"),
                    auto_rank=3, variant="int8", cpu_form=True, summary=_ORT.format("CPU")),
        BackendSpec("ort-cuda", ONNX_SUFFIXES, ONNX_NEEDS, OrtOptions,
                    load=_lazy("ort", "OrtBackend", provider="cuda"), probe=_ort_probe("ort-cuda"),
                    present=_ort_listed("ort-cuda"), auto_rank=2, variant="fp16", device="cuda", summary=_ORT.format("CUDA")),
        BackendSpec("ort-trt", ONNX_SUFFIXES, ONNX_NEEDS, OrtOptions,
                    load=_lazy("ort", "OrtBackend", provider="trt"), probe=_ort_probe("ort-trt"),
                    present=_ort_listed("ort-trt"), auto_rank=1, variant="fp16", device="cuda", summary=_ORT.format("TensorRT")),
        BackendSpec("trt", ENGINE_SUFFIXES, "a TensorRT .engine (`roadseg export MODEL --to engine`)", TrtOptions,
                    load=_trt, probe=_trt_probe, auto_rank=0, variant="fp16", device="cuda",
                    summary="native TensorRT with pycuda, for .engine files (`default`: an engine built on first use)"),
        BackendSpec("ov-cpu", ONNX_SUFFIXES, ONNX_NEEDS, OpenVinoOptions,
                    load=_lazy("openvino", "OpenVinoBackend", device="CPU"), probe=partial(openvino_reason, "CPU"),
                    present=_openvino_installed, variant="int8", cpu_form=True, summary=_OV.format("the CPU")),
        BackendSpec("ov-gpu", ONNX_SUFFIXES, ONNX_NEEDS, OpenVinoOptions,
                    load=_lazy("openvino", "OpenVinoBackend", device="GPU"), probe=partial(openvino_reason, "GPU"),
                    variant="fp16", device="gpu", summary=_OV.format("an Intel GPU")),
        BackendSpec("ov-npu", ONNX_SUFFIXES, ONNX_NEEDS, OpenVinoOptions,
                    load=_lazy("openvino", "OpenVinoBackend", device="NPU"), probe=partial(openvino_reason, "NPU"),
                    variant="fp16", device="npu", summary=_OV.format("an Intel NPU")),
    )
}  # fmt: skip


def ranked() -> list[BackendSpec]:
    """The backends auto may choose, best first."""
    return sorted((s for s in BACKENDS.values() if s.auto_rank is not None), key=lambda s: s.auto_rank or 0)
