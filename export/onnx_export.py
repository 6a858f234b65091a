"""Checkpoint -> ONNX: the frames-to-labels graph (or the bare network with `raw=True`), simplified
with onnxslim, checked with onnx.checker (full_check), carrying the model card in metadata_props,
verified against PyTorch, then moved into place (temp file + rename).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxslim
import torch
from torch import nn

from roadseg.core.atomic import atomic_path
from roadseg.core.card import INPUT_NAME, OUTPUT_NAME, RAW_INPUT_NAME, RAW_OUTPUT_NAME, ModelCard

from .graph import FramesToLabels
from .spec import GraphSpec, set_metadata

OPSET = 17


def sample_frames(card: ModelCard, size: tuple[int, int], n: int) -> np.ndarray:
    """Synthetic driving scenes (BGR uint8) for tracing and parity checks when no frames are given."""
    from roadseg.runtime.synthetic import make_scene

    return np.stack([make_scene(seed=1000 + i, size=size)[0] for i in range(n)])


def _export(module: nn.Module, dummy: torch.Tensor, path: Path, spec: GraphSpec) -> None:
    in_name, out_name = (RAW_INPUT_NAME, RAW_OUTPUT_NAME) if spec.raw else (INPUT_NAME, OUTPUT_NAME)
    axes = None
    if spec.dynamic:
        if spec.raw:
            axes = {in_name: {0: "N", 2: "H", 3: "W"}, out_name: {0: "N", 2: "H", 3: "W"}}
        else:
            axes = {in_name: {0: "N", 1: "H", 2: "W"}, out_name: {0: "N", 1: "H", 2: "W"}}
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo, but it is the one whose
        # graphs the FP16 converter and the INT8 quantiser handle cleanly (docs/EXPORT.md)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (dummy,), str(path), input_names=[in_name], output_names=[out_name], opset_version=OPSET,
            dynamic_axes=axes, do_constant_folding=True, dynamo=False,
        )  # fmt: skip


def to_onnx(net: nn.Module, card: ModelCard, spec: GraphSpec) -> tuple[onnx.ModelProto, nn.Module, torch.Tensor]:
    """Trace and simplify; returns (model proto, the traced torch module, its dummy input)."""
    net = net.eval()
    trace_size = spec.frame_size or tuple(card.input_size)
    if spec.raw:
        module: nn.Module = net
        h, w = card.input_size
        dummy = torch.randn(spec.batch, 3, h, w)
    else:
        module = FramesToLabels(net, card, None if spec.dynamic else spec.frame_size).eval()
        dummy = torch.from_numpy(sample_frames(card, trace_size, spec.batch))
    with tempfile.TemporaryDirectory(prefix="roadseg-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        with torch.no_grad():
            _export(module, dummy, path, spec)
        model = onnx.load(str(path))
    model = onnxslim.slim(model)
    set_metadata(model, card, spec)
    onnx.checker.check_model(model, full_check=True)
    return model, module, dummy


def save_onnx(model: onnx.ModelProto, out: Path) -> Path:
    """Check, then write through a temporary file so nothing half-written lands at `out`."""
    onnx.checker.check_model(model, full_check=True)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return out
