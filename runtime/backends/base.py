"""The Backend protocol every inference backend implements, and the helpers they share.

A backend opens one model file made by roadseg (the ONNX contract: input `frames` uint8
[N,H,W,3] BGR -> output `labels` uint8 [N,H,W]), reports its tensor specs, and maps a batch of
frames to a batch of label maps. Backends never fall back silently: a requested provider or
library that is missing raises MissingDependencyError saying what to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..card import ModelCard


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str | None, ...]  # symbolic dims as str/None
    dtype: str  # numpy dtype name, e.g. "uint8", "float32"


@runtime_checkable
class Backend(Protocol):
    name: str  # e.g. "ort-cpu", "ort-cuda", "ort-trt", "trt"
    card: ModelCard

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N,H,W,3] BGR -> uint8 [N,H,W] class indices."""
        ...

    def close(self) -> None: ...
