"""What a benchmark ran on: CPU, GPU, driver, CUDA, library versions, git sha and date.

Every probe is optional: a missing library or tool gives None, and a probe that fails gives None
with its error under "probe_errors", never a lost report.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from roadseg.runtime.int8 import cpu_class, native_int8_exact


def _run(cmd: list[str], timeout: float = 10.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu() -> dict:
    """{name, memory_mb, driver, cuda (driver's CUDA version)} from nvidia-smi, or {} without one."""
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"])
    if not out or not out.strip():
        return {}
    name, mem, driver = (s.strip() for s in out.strip().splitlines()[0].split(","))
    info: dict = {
        "name": name,
        "memory_mb": int(float(mem)) if mem.replace(".", "").isdigit() else None,
        "driver": driver,
    }
    head = _run(["nvidia-smi"]) or ""
    m = re.search(r"CUDA Version:\s*([\d.]+)", head)
    info["cuda"] = m.group(1) if m else None
    return info


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_sha() -> str | None:
    out = _run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"])
    if not out:
        return None
    dirty = _run(["git", "-C", str(Path(__file__).resolve().parent), "status", "--porcelain", "--untracked-files=no"])
    return out.strip() + ("-dirty" if dirty and dirty.strip() else "")


REFERENCE_SHAPE = (1, 32, 90, 120)  # a 3x3, 32->32 convolution on this: ~0.2 GFLOP, a few ms on a 2-core CPU


def reference_model():
    """The fixed workload: one 3x3, 32->32 convolution with seeded weights, opset 17, at the oldest
    IR version that carries opset 17 (not the onnx package's newest, which an older ONNX Runtime
    refuses: onnx 1.23 writes IR 14, ONNX Runtime 1.31 reads up to 13)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    c = REFERENCE_SHAPE[1]
    weight = numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "reference",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(REFERENCE_SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(REFERENCE_SHAPE))], [weight],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))


def cpu_reference_ms(threads: int | None = None, runs: int = 200) -> float | None:
    """Median ms of a fixed ONNX Runtime workload (`reference_model`) on the CPU with the bench's
    thread count. Shared and cloud machines change speed from day to day (CPU steal, boost clocks,
    neighbours): two reports' latencies compare only as far as their reference times agree.
    None without onnxruntime or onnx."""
    try:
        import numpy as np
        import onnxruntime as ort

        model = reference_model()
    except ImportError:
        return None
    import time

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal(REFERENCE_SHAPE).astype(np.float32)
    for _ in range(5):
        sess.run(None, {"x": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        times.append((time.perf_counter() - t0) * 1000.0)
    return round(float(np.median(times)), 3)


def _dotted_cudnn(v: int | None) -> str | None:
    """cuDNN's version integer as text: 91002 -> 9.10.2 (cuDNN 9: major*10000 + minor*100 + patch),
    8902 -> 8.9.2 (cuDNN 8: major*1000 + minor*100 + patch)."""
    if not v:
        return None
    major, rest = divmod(int(v), 10000 if v >= 10000 else 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def _probe(errors: dict[str, str], name: str, fn, *args):
    """fn(*args), or None with the error kept in `errors`: one probe never costs the whole report."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - any library's failure; the report says which probe and why
        errors[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
        return None


def collect(threads: int | None = None) -> dict:
    """The environment block of results.json."""
    from roadseg.core.version import __version__

    torch_version = torch_cuda = cudnn = None
    try:
        import torch

        torch_version, torch_cuda = torch.__version__, torch.version.cuda
        if torch_cuda is not None and torch.backends.cudnn.is_available():
            cudnn = _dotted_cudnn(torch.backends.cudnn.version())
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        ort_version, providers = ort.__version__, list(ort.get_available_providers())
    except ImportError:
        ort_version, providers = None, []
    tensorrt = _version("tensorrt") or _version("tensorrt-cu12") or _version("tensorrt-cu13")
    errors: dict[str, str] = {}
    g = _probe(errors, "gpu", gpu) or {}
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "gpu": g.get("name"),
        "gpu_memory_mb": g.get("memory_mb"),
        "driver": g.get("driver"),
        "cuda": g.get("cuda") or torch_cuda,
        "torch_cuda": torch_cuda,
        "cudnn": cudnn,
        "tensorrt": tensorrt,
        "onnxruntime": ort_version,
        "onnxruntime_providers": providers,
        "torch": torch_version,
        "opencv": _version("opencv-python-headless") or _version("opencv-python"),
        "numpy": _version("numpy"),
        "roadseg": __version__,
        "git_sha": git_sha(),
        "cpu_reference_ms": _probe(errors, "cpu_reference_ms", cpu_reference_ms, threads),
        "cpu_class": _probe(errors, "cpu_class", cpu_class),
        "int8_native_exact": _probe(errors, "int8_native_exact", native_int8_exact),
        "probe_errors": errors,
    }
