"""What can start here, asked before any session is opened.

onnxruntime-gpu lists TensorrtExecutionProvider and CUDAExecutionProvider whether or not a driver,
a GPU, TensorRT or ONNX Runtime's own provider library exist; a session asked for such a provider
then prints a banner on stdout, error lines on stderr, and falls back on its own. So each provider
is checked here first, cheaply and without ONNX Runtime: the driver library loads, it reports at
least one device, and the libraries the provider needs are on the library path.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
from pathlib import Path

EP = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider"}
# ONNX Runtime's provider library for each GPU provider, beside its own shared library (onnxruntime/capi)
PROVIDER_LIBRARY = {"ort-cuda": "onnxruntime_providers_cuda", "ort-trt": "onnxruntime_providers_tensorrt"}


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def loads_any(names: tuple[str, ...]) -> bool:
    """Whether any of these shared libraries loads here (how drivers and TensorRT are found)."""
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


@functools.cache
def cuda_devices() -> int | None:
    """How many CUDA devices the driver shows this process (CUDA_VISIBLE_DEVICES applies); None
    without a driver library. Asks the driver API directly (cuInit, cuDeviceGetCount), so it needs
    neither torch nor a CUDA toolkit, and costs one driver initialisation, once per process."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if lib.cuInit(0) != 0:  # e.g. CUDA_ERROR_NO_DEVICE, or a driver too old for the library
            return 0
        count = ctypes.c_int(0)
        return count.value if lib.cuDeviceGetCount(ctypes.byref(count)) == 0 else 0
    return None


def has_nvinfer() -> bool:
    if importlib.util.find_spec("tensorrt") is not None or importlib.util.find_spec("tensorrt_libs") is not None:
        return True
    return loads_any(("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so", "nvinfer.dll", "nvinfer_10.dll"))


def has_provider_library(name: str) -> bool:
    """Whether this onnxruntime build ships the provider's library (a trimmed or broken install may
    list the provider without it)."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.origin:
        return False
    capi = Path(spec.origin).parent / "capi"
    stem = PROVIDER_LIBRARY[name]
    return any((capi / f).is_file() for f in (f"lib{stem}.so", f"{stem}.dll", f"lib{stem}.dylib"))


def cuda_reason() -> str | None:
    """None when the driver shows at least one CUDA device, else why not (every GPU backend's first check)."""
    devices = cuda_devices()
    if devices is None:
        return "no NVIDIA driver (libcuda) on this machine"
    if devices == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return "the NVIDIA driver shows no CUDA device" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")
    return None


def gpu_reason(name: str) -> str | None:
    """None when the listed GPU provider `name` ("ort-cuda" | "ort-trt") can start here as far as
    can be told without opening a session, else why not."""
    why = cuda_reason()
    if why is not None:
        return why
    if not has_provider_library(name):
        return f"this onnxruntime lists {EP[name]} but has no {PROVIDER_LIBRARY[name]} library"
    if name == "ort-trt" and not has_nvinfer():
        return "TensorRT libraries (libnvinfer) not found; `pip install tensorrt`"
    return None


INSTALL_HINT = {
    "cuda": "install the GPU build of ONNX Runtime: `pip install roadseg[gpu]` (onnxruntime-gpu) with the CUDA and "
    "cuDNN 9 it was built for (onnxruntime-gpu 1.31: CUDA 13)",
    "trt": "install the GPU build of ONNX Runtime and TensorRT: `pip install roadseg[gpu]` (onnxruntime-gpu and tensorrt) "
    "with the CUDA and cuDNN 9 it was built for (onnxruntime-gpu 1.31: CUDA 13) and TensorRT 10 (libnvinfer on the library path)",
}
BOTH_WHEELS_HINT = ("onnxruntime and onnxruntime-gpu are both installed and share one `onnxruntime` module, so the CPU "
                    "build can win: `pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu`")  # fmt: skip


def _both_ort_wheels() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("onnxruntime")
        metadata.distribution("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def install_hint(provider: str) -> str:
    """What to do when a GPU provider is missing. roadseg depends on the CPU wheel, so `roadseg[gpu]`
    installs both wheels, which overwrite each other's files (microsoft/onnxruntime#26996)."""
    if provider in ("cuda", "trt") and _both_ort_wheels():
        return BOTH_WHEELS_HINT
    return INSTALL_HINT.get(provider, "check the onnxruntime install")
