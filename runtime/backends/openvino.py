"""The OpenVINO backend ("ov-cpu", "ov-gpu", "ov-npu"): roadseg's ONNX files on OpenVINO Runtime.

OpenVINO reads the ONNX file itself (FP32, FP16 and the INT8 Q/DQ forms; no conversion step) and
compiles it for one device: CPU, or an Intel GPU or NPU that `openvino.Core().available_devices`
lists. Compiled models are cached in roadseg's cache folder (OpenVINO's CACHE_DIR, keyed by the file
and the device), so opening the same model again skips the compile.

On the CPU the inference precision is pinned to f32: OpenVINO would otherwise run an FP32 graph in
bf16 on CPUs that have it, and roadseg's precision is the file's (FP16 and INT8 are exports of
their own, each with its accuracy gate). GPUs and NPUs keep OpenVINO's default precision.

INT8 graphs with 8-bit weights are refused on a CPU whose OpenVINO kernels saturate their 16-bit
pair sums (x86 without VNNI; asked of OpenVINO itself with runtime/int8.py's probe graph, once per
process): OpenVINO has no exact mode, and roadseg's labels do not depend on the CPU. 7-bit weights
(roadseg's default INT8 export) never saturate.

openvino is an optional dependency (`pip install roadseg[openvino]`), imported only when a backend is
opened (the registry's probe asks OpenVINO which devices it lists). Frames, batching and the
labels' checks are BaseBackend's.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from roadseg.core.card import ModelCard
from roadseg.core.errors import MissingDependencyError, RoadsegError, UsageError

from ..int8 import (
    PROBE_FILE,
    PROBE_OUT_SCALE,
    describe_form,
    needs_exact_mode,
    probe_exact,
    probe_feeds,
    saturating_cpu,
)
from ..model import ModelInfo, check_onnx_file, inspect_model
from .base import BaseBackend
from .registry import openvino_reason

NAMES = {"CPU": "ov-cpu", "GPU": "ov-gpu", "NPU": "ov-npu"}


def default_cache_dir() -> Path:
    from ..defaults import cache_dir

    return cache_dir() / "openvino"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__


@functools.cache
def int8_exact() -> bool:
    """Whether OpenVINO's CPU kernels compute full-range (8-bit weight) INT8 graphs exactly here, for
    both activation types: the probe graph whose pair sums pass 16 bits (runtime/int8.py), run once
    per process. x86 CPUs without VNNI saturate those sums in OpenVINO as in ONNX Runtime."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(PROBE_FILE), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled.create_infer_request().infer(probe_feeds())
    got = {a: float(out[compiled.output(f"y_{a}")].flat[0]) for a in ("u8", "s8")}
    return probe_exact(got, within=PROBE_OUT_SCALE / 2)  # f32 dequantisation: not bit-equal


def _refuse_saturating(info: ModelInfo, name: str) -> None:
    """An INT8 graph with 8-bit weights on a CPU whose OpenVINO kernels saturate: its labels would
    differ from the graph's, and OpenVINO has no exact mode (ONNX Runtime's ort-cpu has)."""
    if info.precision != "int8" or not needs_exact_mode(info.int8_form, int8_exact):
        return
    raise RoadsegError(
        f"{info.path}: {describe_form(info.int8_form)}, and OpenVINO's CPU kernels saturate on 8-bit weights on this CPU ({saturating_cpu()}), "
        f"so {name} would give other labels than the graph means; run it with --backend ort-cpu (exact arithmetic), "
        "or export it with 7-bit weights (the default: roadseg export ... --precision int8)"
    )


class OpenVinoBackend(BaseBackend):
    """OpenVINO on `device` ("CPU" | "GPU" | "NPU") for a roadseg .onnx file.

    threads: CPU inference threads (None: OpenVINO's default, one stream with its own thread count).
    cache_dir: the compiled-model cache folder (None: the roadseg cache folder's openvino/).
    info: the file's ModelInfo when the caller has inspected it already (open_backend does).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "CPU",
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        info: ModelInfo | None = None,
    ) -> None:
        if device not in NAMES:
            raise UsageError(f"OpenVINO device '{device}': choose one of {', '.join(NAMES)}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise UsageError(f"threads {threads!r}: give a positive number of threads (or leave it unset)")
        self.name = NAMES[device]
        self.device = device
        self.path = info.path if info is not None else check_onnx_file(path)
        self.info = info or inspect_model(self.path)
        self.info.require_frames_graph()
        self.card: ModelCard = self.info.card
        self._inputs, self._outputs = list(self.info.inputs), list(self.info.outputs)
        why = openvino_reason(device)
        if why is not None:
            raise MissingDependencyError(f"backend {self.name}: {why}")
        if device == "CPU":
            _refuse_saturating(self.info, self.name)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RoadsegError(f"{cache}: cannot create OpenVINO's model cache folder ({e.strerror}); pass another one") from None
        self.cache_dir = cache
        self._compiled: Any = self._compile(threads)
        self._request: Any = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: one run at a time, and close() waits for it

    def _compile(self, threads: int | None) -> Any:
        import openvino as ov

        config: dict[str, Any] = {"CACHE_DIR": str(self.cache_dir), "PERFORMANCE_HINT": "LATENCY"}
        if self.device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = "f32"
            if threads is not None:
                config["INFERENCE_NUM_THREADS"] = threads
        try:
            return ov.Core().compile_model(str(self.path), self.device, config)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own types
            raise RoadsegError(
                f"{self.path}: OpenVINO could not compile it for {self.device} ({_one_line(e)}); "
                "run it with --backend ort-cpu"
            ) from None

    @property
    def closed(self) -> bool:
        return self._request is None

    def close(self) -> None:
        with self._lock:
            self._request = None
            self._compiled = None

    def __repr__(self) -> str:
        return f"OpenVinoBackend({str(self.path)!r}, device={self.device!r})"

    def run_size(self, h: int, w: int) -> tuple[int, int] | None:
        return self.info.frame_size

    def batch_range(self, n: int) -> tuple[int, int]:
        batch = self.info.batch
        return (batch, batch) if batch is not None else (1, max(n, 1))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._request is None:
                raise self.closed_error()
            try:
                result = self._request.infer({0: batch})
            except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own types
                raise RoadsegError(
                    f"{self.path}: OpenVINO failed on frames {list(batch.shape)} ({_one_line(e)}); "
                    "run it with --backend ort-cpu"
                ) from None
            return np.array(result[0], copy=True)
