"""The default model as a native TensorRT engine, built once from its shipped FP16 variant and cached.

A TensorRT plan is tied to the TensorRT version and the GPU it was built on, so it cannot ship in
the package: `roadseg run default --backend trt` (and `auto` where TensorRT is installed) builds it
on first use with the same code as `roadseg export model.onnx --to engine` (export/tensorrt.py,
which needs onnx and TensorRT but not PyTorch), into
`<cache>/engines/<variant>-<key>.engine` beside its sidecar. The key hashes the variant file, the
TensorRT version, the GPU's name and compute capability and the roadseg version, so a new driver
stack, GPU or release builds afresh and a stale plan is never loaded; later runs load the plan in
seconds. The build's own lines go to stderr, keeping stdout for the caller's output.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from pathlib import Path

from roadseg.core.atomic import check_writable
from roadseg.core.errors import MissingDependencyError
from roadseg.core.hashing import sha256_file
from roadseg.core.version import __version__
from roadseg.runtime.defaults import cache_dir
from roadseg.runtime.engine import sidecar_path


def engine_key(onnx_file: Path, trt_version: str, gpu_name: str, compute_capability: str) -> str:
    text = f"{sha256_file(onnx_file)}:{trt_version}:{gpu_name}:{compute_capability}:{__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_engine(onnx_file: Path, progress: bool = True) -> Path:
    """The engine of `onnx_file` for this TensorRT and GPU: built on the first call, reused after."""
    try:
        import onnx

        from .gpu import gpu_info
        from .spec import read_metadata
        from .tensorrt import build_engine, require_tensorrt
    except ImportError as e:
        raise MissingDependencyError(f"building a TensorRT engine needs {e.name or e}: pip install \"roadseg[gpu]\"") from None
    from .options import ExportOptions

    trt_version = require_tensorrt()
    gpu = gpu_info()
    key = engine_key(onnx_file, trt_version, gpu.name, gpu.compute_capability)
    target = cache_dir() / "engines" / f"{onnx_file.stem}-{key}.engine"
    if target.is_file() and sidecar_path(target).is_file():
        return target
    check_writable(target, fix="set ROADSEG_CACHE to a writable folder")  # the user named no output path
    print(f"roadseg: building a TensorRT engine from {onnx_file.name} once for this GPU (cached at {target})",
          file=sys.stderr)  # fmt: skip
    proto = onnx.load(str(onnx_file))
    card, spec = read_metadata(proto, str(onnx_file))
    opts = ExportOptions(model=str(onnx_file), to="engine", output=str(target), progress=progress)
    with contextlib.redirect_stdout(sys.stderr):
        return build_engine(proto, card, spec, opts, onnx_file)
