"""`default`: the bundled model, as the ready ONNX variant for the backend that runs it.

The package ships gated variants of the bundled checkpoint in runtime/models/ (made by
`python -m roadseg.export.variants`; its docstring says why these two): an INT8 for ONNX Runtime's
CPU, exact on every x86 CPU, and an FP16 for GPUs, both taking any batch and frame size. So
`roadseg run default` needs no PyTorch. The native TensorRT backend gets an engine built from the
FP16 on first use (export/default_engine.py), cached per TensorRT version and GPU. Where a variant is missing (a source checkout without
them), the checkpoint (train/weights/, see roadseg.train.checkpoint.BUNDLED) is exported once into
the cache folder as a dynamic-size FP32 graph, keyed by the sha256 of the checkpoint file plus the
roadseg version; only that step imports torch. The runtime never imports the exporter: both
first-use steps are done by the callables in FIRST_USE, which the package root (roadseg/__init__.py)
fills in; the runtime only calls them.
Cache folder: $ROADSEG_CACHE, else $XDG_CACHE_HOME/roadseg, else ~/.cache/roadseg.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from roadseg.core.errors import RoadsegError
from roadseg.core.hashing import sha256_file

# the names and the file of roadseg.train.checkpoint.BUNDLED (a test keeps the two in step); found
# here without importing roadseg.train, which imports torch
BUNDLED_NAMES = ("default", "ddrnet23s_camvid")
DEFAULT_CHECKPOINT = "ddrnet23s_camvid.pt"
VARIANT_FILES = {"int8": "ddrnet23s_camvid_int8.onnx", "fp16": "ddrnet23s_camvid_fp16.onnx"}
GATE_KEY = "roadseg_gate"  # metadata: the variant's accuracy gate against FP32, as JSON


# the first-use steps of `default` that need the exporter, filled in by the package root, which
# Python imports before any of its subpackages: "export_onnx"(checkpoint, target) -> the exported
# ONNX; "build_engine"(onnx) -> the cached engine
FIRST_USE: dict[str, Callable[..., Path]] = {}


def variants_dir() -> Path:
    """runtime/models/ of this install (found without importing anything heavy)."""
    return Path(__file__).resolve().parent / "models"


def is_bundled(model: str | os.PathLike) -> bool:
    """`default` or the bundled model's own name, unless a file of that name is in the current folder."""
    return str(model) in BUNDLED_NAMES and not Path(model).exists()


def shipped_variant(backend: str) -> Path | None:
    """The packaged variant of the bundled model for `backend` (its registry record's variant, the
    fastest it runs within the gate: INT8 for ONNX Runtime's CPU, FP16 for GPUs), or None."""
    from .backends.registry import BACKENDS

    spec = BACKENDS.get(backend)
    name = spec.variant if spec is not None else None
    path = variants_dir() / VARIANT_FILES[name] if name else None
    return path if path is not None and path.is_file() else None


def cache_dir() -> Path:
    env = os.environ.get("ROADSEG_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "roadseg"


def bundled_checkpoint() -> Path:
    """The bundled default checkpoint's path, found without importing roadseg.train (or torch)."""
    spec = importlib.util.find_spec("roadseg.train")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        p = Path(loc) / "weights" / DEFAULT_CHECKPOINT
        if p.is_file():
            return p
    where = (
        Path(locations[0]) / "weights" / DEFAULT_CHECKPOINT
        if locations
        else Path("roadseg/train/weights") / DEFAULT_CHECKPOINT
    )
    raise RoadsegError(
        f"{where}: the bundled default checkpoint is missing from this install; reinstall roadseg, "
        "or pass your own model (an .onnx made by `roadseg export`)"
    )


def _version() -> str:
    from roadseg.core.version import __version__

    return __version__


def cache_key(checkpoint: Path) -> str:
    """sha256 of the checkpoint file and the roadseg version."""
    return hashlib.sha256(f"{sha256_file(checkpoint)}:{_version()}".encode()).hexdigest()


def cached_path(checkpoint: Path) -> Path:
    return cache_dir() / "models" / f"default-{cache_key(checkpoint)[:16]}.onnx"


def default_onnx(checkpoint: str | os.PathLike | None = None) -> Path:
    """The bundled model (or `checkpoint`) as a dynamic-size ONNX in the cache: exported on first
    use (this step imports torch), reused afterwards (this one does not)."""
    ckpt = Path(checkpoint) if checkpoint is not None else bundled_checkpoint()
    if not ckpt.is_file():
        raise RoadsegError(f"{ckpt}: checkpoint not found; cannot export the default model")
    target = cached_path(ckpt)
    if target.is_file() and target.stat().st_size > 0:
        return target
    from roadseg.core.atomic import check_writable

    check_writable(target, fix="set ROADSEG_CACHE to a writable folder")  # the user named no output path
    if importlib.util.find_spec("torch") is None:
        raise RoadsegError(f"{variants_dir()}: the default model's ready ONNX variants are missing from this install, and "
                           "exporting it needs PyTorch: reinstall roadseg, or pip install \"roadseg[train]\"")  # fmt: skip
    print(f"roadseg: exporting the default model to ONNX once (cached at {target})", file=sys.stderr)
    return FIRST_USE["export_onnx"](ckpt, target)


def resolve_model(model: str | os.PathLike, backend: str = "ort-cpu") -> Path:
    """`default` (or its own name) -> the shipped variant for `backend`, else the cached FP32 export
    (made on first use, with PyTorch); for a backend that takes no .onnx (native TensorRT), the engine built from that
    file on first use and cached (export/default_engine.py: needs TensorRT and onnx, not PyTorch).
    Anything else -> its path. A file of that name in the current folder wins."""
    if not is_bundled(model):
        return Path(model)
    from .backends.registry import BACKENDS

    onnx_file = shipped_variant(backend) or default_onnx()
    if backend not in BACKENDS or BACKENDS[backend].takes(onnx_file):
        return onnx_file
    return FIRST_USE["build_engine"](onnx_file)
