"""Checkpoint -> ONNX: the frames-to-labels graph (or the bare network with `raw=True`), simplified
with onnxslim, checked with onnx.checker (full_check), carrying the model card in metadata_props,
verified against PyTorch, then moved into place (temp file + rename).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxslim
import torch
from torch import nn

from roadseg.runtime.atomic import atomic_path
from roadseg.runtime.card import CARD_KEY, INPUT_NAME, OUTPUT_NAME, RAW_INPUT_NAME, RAW_OUTPUT_NAME, ModelCard
from roadseg.runtime.errors import RoadsegError
from roadseg.runtime.model import EXPORT_KEY

from .graph import FramesToLabels

OPSET = 17


@dataclass
class GraphSpec:
    """What `roadseg export` was asked to make."""

    frame_size: tuple[int, int] | None  # None with dynamic
    batch: int = 1
    dynamic: bool = False
    raw: bool = False
    precision: str = "fp32"

    def to_dict(self) -> dict:
        return {"frame_size": list(self.frame_size) if self.frame_size else None, "batch": None if self.dynamic else self.batch,
                "dynamic": self.dynamic, "raw": self.raw, "precision": self.precision}  # fmt: skip


def set_metadata(model: onnx.ModelProto, card: ModelCard, spec: GraphSpec) -> None:
    """Write (or replace) the card and the graph spec in metadata_props."""
    set_props(model, {CARD_KEY: card.replace(precision=spec.precision).to_json(), EXPORT_KEY: json.dumps(spec.to_dict())})


def set_props(model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Write (or replace) these keys in metadata_props, keeping the others."""
    keep = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in values.items():
        model.metadata_props.add(key=k, value=v)


def read_metadata(model: onnx.ModelProto, source: str) -> tuple[ModelCard, GraphSpec]:
    """The card and graph spec of a roadseg ONNX, validated (the file may come from anywhere)."""
    try:
        props = {p.key: p.value for p in model.metadata_props}
    except UnicodeDecodeError:
        raise RoadsegError(f"{source}: its metadata is not valid UTF-8 text (a corrupt file); export it again with `roadseg export`") from None
    if CARD_KEY not in props:
        raise RoadsegError(f"{source}: this ONNX has no roadseg model card; export it with `roadseg export` first")
    card = ModelCard.from_json(props[CARD_KEY], source)
    try:
        s = json.loads(props.get(EXPORT_KEY, "{}"))
    except ValueError:
        s = None
    bad = RoadsegError(f"{source}: its '{EXPORT_KEY}' metadata is malformed; export it again with `roadseg export`")
    if not isinstance(s, dict):
        raise bad
    fs, batch, precision = s.get("frame_size"), s.get("batch") or 1, s.get("precision", card.precision)

    def positive(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    if fs is not None and not (isinstance(fs, list) and len(fs) == 2 and all(positive(v) for v in fs)):
        raise bad
    if not positive(batch) or precision not in ("fp32", "fp16", "int8"):
        raise bad
    spec = GraphSpec(tuple(fs) if fs else None, batch, bool(s.get("dynamic")), bool(s.get("raw")), precision)
    return card, spec


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
