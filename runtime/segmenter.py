"""The embedding API: a model on the best backend here, as a callable.

    from roadseg.runtime.segmenter import Segmenter

    with Segmenter("model.onnx") as seg:          # or "model.engine", or "default"
        labels = seg(frame)                       # uint8 BGR [H,W,3] -> uint8 class map [H,W]
        for frame, labels, timings in seg.stream("video.mp4"):
            ...
        for name, frame, labels, timings in seg.stream(["front.mp4", "rtsp://cam2/live"]):
            ...                                   # several streams, batched into one call per round

No torch is imported: `default` is a ready ONNX file from the package (runtime.defaults).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError

from .backends import open_backend
from .backends.base import Backend, TensorSpec


class Segmenter:
    """Segmenter(model, backend="auto", **opts).

    model: an .onnx or .engine made by `roadseg export`, or "default" (the bundled model).
    backend: "auto" or a name in roadseg.runtime.backends.BACKENDS; opts go to the backend, each
    taking the fields of its record's options dataclass (`roadseg.runtime.backends.registry.describe()`
    lists every backend and its options)."""

    def __init__(self, model: str | os.PathLike, backend: str = "auto", **opts: Any) -> None:
        self._backend: Backend | None = open_backend(model, backend, **opts)
        self.model = Path(getattr(self._backend, "path", model))

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise RoadsegError(f"{self.model}: this Segmenter is closed")
        return self._backend

    @property
    def card(self) -> ModelCard:
        return self.backend.card

    @property
    def name(self) -> str:
        """The backend in use, e.g. "ort-cpu"."""
        return self.backend.name

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.backend.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.backend.outputs

    def __call__(self, frame_or_batch: np.ndarray) -> np.ndarray:
        """uint8 BGR [H,W,3] -> uint8 [H,W]; [N,H,W,3] -> [N,H,W] class indices (see `card.classes`)."""
        return self.backend.infer(frame_or_batch)

    def stream(self, source: Any, **kwargs: Any) -> Iterator[tuple]:
        """Iterate (frame, labels, timings) over a source: a video file, a camera index, an rtsp://
        or http:// URL, an image folder or glob, or "synthetic"; over a list of sources, iterate
        (stream name, frame, labels, timings), their frames batched into one inference call per
        round (a stream that fails ends alone). Capture runs on its own thread per source; keyword
        options go to roadseg.runtime.iterate.iterate (e.g. live=True, max_frames=N per stream)."""
        from .iterate import iterate

        return iterate(self.backend, source, **kwargs)

    def close(self) -> None:
        if self._backend is not None:
            backend, self._backend = self._backend, None
            backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._backend.name if self._backend is not None else "closed"
        return f"Segmenter({str(self.model)!r}, backend={state!r})"
