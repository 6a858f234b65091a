"""roadseg: real-time driving-scene segmentation, from PyTorch training to an edge video stream.

The public API lives at the package root and is loaded on first use (PEP 562), so
`import roadseg` imports neither PyTorch nor ONNX Runtime::

    import roadseg

    with roadseg.Segmenter("default") as seg:        # or "model.onnx", "model.engine"
        labels = seg(frame_bgr)                      # uint8 [H,W] class indices

    backend = roadseg.open_backend("model.onnx", "ort-cpu")
    roadseg.export_model(roadseg.ExportOptions(model="default", precision="int8", calib="data/camvid"))
    roadseg.run_bench(roadseg.BenchConfig(model="default", data="data/camvid"))
    roadseg.train_model(roadseg.TrainConfig(model="ddrnet23s", data="data/camvid"))

`export_model` and `train_model` are the `roadseg export` and `roadseg train` commands (the names
`roadseg.export` and `roadseg.train` are the subpackages). Only Segmenter, open_backend and the
error classes work on the base install; the rest need the `train` extra (PyTorch).
"""

from __future__ import annotations

import importlib
import os as _os
from pathlib import Path as _Path
from typing import TYPE_CHECKING, Any

from roadseg.core.version import __version__

# OpenCV decodes any image whose header claims up to 2^30 pixels: a 700-byte JPEG claiming
# 30000x30000 takes seconds and 5 GB. roadseg lowers the limit to 2^25 pixels (8K UHD fits) unless
# it is set already; OpenCV reads it once, when cv2 is first imported (docs/RELIABILITY.md).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 25))

from roadseg.runtime import defaults as _defaults  # noqa: E402 - after the limit: nothing may import cv2 first

# public name -> (module, attribute in it)
_LAZY: dict[str, tuple[str, str]] = {
    "Segmenter": ("roadseg.runtime.segmenter", "Segmenter"),
    "open_backend": ("roadseg.runtime.backends", "open_backend"),
    "available_backends": ("roadseg.runtime.backends", "available_backends"),
    "ModelCard": ("roadseg.core.card", "ModelCard"),
    "RoadsegError": ("roadseg.core.errors", "RoadsegError"),
    "UsageError": ("roadseg.core.errors", "UsageError"),
    "ExportOptions": ("roadseg.export.options", "ExportOptions"),
    "export_model": ("roadseg.export.command", "export"),
    "BenchConfig": ("roadseg.benchmarks.harness", "BenchConfig"),
    "run_bench": ("roadseg.benchmarks.harness", "run_bench"),
    "TrainConfig": ("roadseg.train.config", "TrainConfig"),
    "train_model": ("roadseg.train.trainer", "train"),
}

__all__ = [  # a literal list, for linters; a test holds it equal to _LAZY's names
    "__version__", "Segmenter", "open_backend", "available_backends", "ModelCard", "RoadsegError", "UsageError",
    "ExportOptions", "export_model", "BenchConfig", "run_bench", "TrainConfig", "train_model",
]


def _export_default_onnx(checkpoint: _Path, target: _Path) -> _Path:
    """`default`'s first-use export (roadseg.runtime.defaults): the checkpoint as a dynamic-size FP32
    ONNX at `target`; the export's progress lines go to stderr, keeping stdout for the caller."""
    import contextlib
    import sys

    from roadseg.export.command import ExportOptions, export

    with contextlib.redirect_stdout(sys.stderr):
        return _Path(export(ExportOptions(model=str(checkpoint), dynamic=True, output=str(target), progress=False)))


def _build_default_engine(onnx_file: _Path) -> _Path:
    """`default`'s first-use TensorRT engine (roadseg.runtime.defaults), built once and cached."""
    from roadseg.export.default_engine import cached_engine

    return cached_engine(onnx_file)


# the runtime never imports the exporter (.importlinter): its first-use steps are handed down here
_defaults.FIRST_USE.update(export_onnx=_export_default_onnx, build_engine=_build_default_engine)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name in this module."""
    if name not in _LAZY:
        raise AttributeError(f"module 'roadseg' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what static checkers and IDEs see; nothing is imported at run time
    from roadseg.benchmarks.harness import BenchConfig, run_bench
    from roadseg.core.card import ModelCard
    from roadseg.core.errors import RoadsegError, UsageError
    from roadseg.export.command import export as export_model
    from roadseg.export.options import ExportOptions
    from roadseg.runtime.backends import available_backends, open_backend
    from roadseg.runtime.segmenter import Segmenter
    from roadseg.train.config import TrainConfig
    from roadseg.train.trainer import train as train_model
