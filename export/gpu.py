"""The GPU an engine is built on, as its sidecar records it: name, compute capability and CUDA
version, from the first of cuda-python, pycuda, torch.cuda and nvidia-smi that answers (none of them
is required: a field nothing can tell stays "unknown", and TensorRT then checks the plan itself).
Each probe imports its library only when it runs."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass
class GpuInfo:
    name: str = "unknown"
    compute_capability: str = "unknown"  # "8.7"
    cuda_version: str = "unknown"  # "12.8"


def _cuda_version(v: int) -> str:
    """CUDA's integer version (12080) -> "12.8"."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def _gpu_cuda_python(device_id: int) -> GpuInfo:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    err, props = cudart.cudaGetDeviceProperties(device_id)
    if int(err) != 0:
        raise RuntimeError(f"cudaGetDeviceProperties: {err}")
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    err, ver = cudart.cudaRuntimeGetVersion()
    return GpuInfo(name, f"{props.major}.{props.minor}", _cuda_version(int(ver)) if int(err) == 0 else "unknown")


def _gpu_pycuda(device_id: int) -> GpuInfo:
    import pycuda.driver as cuda

    cuda.init()
    dev = cuda.Device(device_id)
    major, minor = dev.compute_capability()
    ver = cuda.get_version()  # the CUDA version pycuda was built against, (12, 8, 0)
    return GpuInfo(str(dev.name()), f"{major}.{minor}", f"{ver[0]}.{ver[1]}")


def _gpu_torch(device_id: int) -> GpuInfo:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device")
    major, minor = torch.cuda.get_device_capability(device_id)
    return GpuInfo(torch.cuda.get_device_name(device_id), f"{major}.{minor}", str(torch.version.cuda or "unknown"))


def _gpu_nvidia_smi(device_id: int) -> GpuInfo:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise RuntimeError("no nvidia-smi")
    out = subprocess.run(
        [exe, f"--id={device_id}", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout.strip()  # fmt: skip
    name, cc = (s.strip() for s in out.splitlines()[0].rsplit(",", 1))
    return GpuInfo(name, cc)


def gpu_info(device_id: int = 0) -> GpuInfo:
    """Name, compute capability and CUDA version of the GPU the engine is built on, from the first
    of cuda-python, pycuda, torch.cuda and nvidia-smi that answers; "unknown" fields otherwise."""
    info = GpuInfo()
    for probe in (_gpu_cuda_python, _gpu_pycuda, _gpu_torch, _gpu_nvidia_smi):
        try:
            got = probe(device_id)
        except Exception:  # noqa: BLE001 - each probe is optional: missing module, no device, old driver
            continue
        info = GpuInfo(
            info.name if info.name != "unknown" else got.name,
            info.compute_capability if info.compute_capability != "unknown" else got.compute_capability,
            info.cuda_version if info.cuda_version != "unknown" else got.cuda_version,
        )
        if "unknown" not in (info.name, info.compute_capability, info.cuda_version):
            break
    return info



__all__ = ["GpuInfo", "gpu_info"]
