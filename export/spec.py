"""What an export is (`GraphSpec`) and how a roadseg ONNX carries it: the model card and the spec in
metadata_props. Apart from the exporter (onnx_export.py imports torch), so building an engine from
a ready ONNX file (export/tensorrt.py, the default model's first-use engine) needs no PyTorch."""

from __future__ import annotations

import json
from dataclasses import dataclass

import onnx

from roadseg.core.card import CARD_KEY, ModelCard
from roadseg.core.errors import RoadsegError
from roadseg.runtime.model import EXPORT_KEY


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
