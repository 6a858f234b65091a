"""The model card: the one place where class names, palette, ignore index, input size, colour
order, normalisation and tensor names live.

Training writes it once into the checkpoint; export copies it into the ONNX `metadata_props` (key
`roadseg`) and the engine sidecar; the runtime reads it back. No stage writes these constants again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from .errors import RoadsegError

CARD_KEY = "roadseg"


@dataclass
class ModelCard:
    name: str
    arch: str
    classes: list[str]
    palette: list[list[int]]  # RGB per class
    ignore_index: int = 255
    input_size: tuple[int, int] = (360, 480)  # (H, W) the network sees
    color_order: str = "RGB"  # channel order the network was trained on
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # on 0..1 pixels, in color_order
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resize_mode: str = "bilinear"  # align_corners=False, for both the frame resize and logits
    input_name: str = "frames"
    output_name: str = "labels"
    precision: str = "fp32"
    dataset: str = ""
    license: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if len(self.palette) != len(self.classes):
            raise RoadsegError(
                f"model card '{self.name}': {len(self.classes)} classes but {len(self.palette)} palette colours; "
                "give one RGB colour per class"
            )
        if self.color_order not in ("RGB", "BGR"):
            raise RoadsegError(f"model card '{self.name}': color_order must be RGB or BGR, not {self.color_order!r}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict, source: str = "model card") -> ModelCard:
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as e:
            raise RoadsegError(f"{source}: incomplete model card ({e}); re-export it with roadseg") from None

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> ModelCard:
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            raise RoadsegError(f"{source}: model card is not valid JSON; re-export the model with roadseg") from None
        if not isinstance(d, dict):
            raise RoadsegError(f"{source}: model card is not a JSON object; re-export the model with roadseg")
        return cls.from_dict(d, source)

    def replace(self, **changes) -> ModelCard:
        d = self.to_dict()
        d.update(changes)
        return ModelCard.from_dict(d)


CAMVID_CLASSES = [
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
]  # fmt: skip
CAMVID_PALETTE = [
    [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
    [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192],
]  # fmt: skip
CAMVID_IGNORE = 11
