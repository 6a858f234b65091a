"""The model card: the one place where class names, palette, ignore index, input size, colour
order, normalisation and tensor names live.

Training writes it once into the checkpoint; export copies it into the ONNX `metadata_props` (key
`roadseg`) and the engine sidecar; the runtime reads it back. No stage writes these constants again.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from .errors import RoadsegError

CARD_KEY = "roadseg"
# the exported graph's tensors: frames uint8 [N,H,W,3] -> labels uint8 [N,H,W] (docs/ARCHITECTURE.md: the ONNX
# contract); a --raw graph's: normalised float NCHW -> logits
INPUT_NAME, OUTPUT_NAME = "frames", "labels"
RAW_INPUT_NAME, RAW_OUTPUT_NAME = "input", "logits"
MAX_CLASSES = 256  # class maps are uint8
MAX_SIDE = 16384  # largest model input side, pixels
_STR_FIELDS = ("name", "arch", "color_order", "resize_mode", "input_name", "output_name", "precision", "dataset", "license")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short(v: object, limit: int = 40) -> str:
    s = repr(v) if not isinstance(v, BaseException) else str(v)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


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
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    precision: str = "fp32"
    dataset: str = ""
    license: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a card may come from any file (checkpoint, ONNX metadata, engine sidecar): every field is
        # checked here, so a malformed one is refused at load and never reaches the first frame
        where = f"model card '{self.name}'" if isinstance(self.name, str) else "model card"

        def bad(why: str) -> RoadsegError:
            return RoadsegError(f"{where}: {why}")

        for name in _STR_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise bad(f"'{name}' must be a string, not {type(getattr(self, name)).__name__}")
        if not isinstance(self.classes, (list, tuple)) or not all(isinstance(c, str) for c in self.classes):
            raise bad("'classes' must be a list of class names")
        if not isinstance(self.palette, (list, tuple)):
            raise bad("'palette' must be a list of RGB colours")
        if len(self.palette) != len(self.classes):
            raise bad(f"{len(self.classes)} classes but {len(self.palette)} palette colours; give one RGB colour per class")
        if not 1 <= len(self.classes) <= MAX_CLASSES:
            raise bad(f"{len(self.classes)} classes; a model has 1 to {MAX_CLASSES} (class maps are 8-bit)")
        for c in self.palette:
            if not isinstance(c, (list, tuple)) or len(c) != 3 or not all(_is_int(v) and 0 <= v <= 255 for v in c):
                raise bad(f"palette colour {_short(c)} is not three integers 0-255")
        self.classes = list(self.classes)
        self.palette = [[int(v) for v in c] for c in self.palette]
        if not _is_int(self.ignore_index) or not 0 <= self.ignore_index <= 255:
            raise bad(f"ignore_index {_short(self.ignore_index)} is not an integer 0-255")
        size = self.input_size
        if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) and 0 < v <= MAX_SIDE for v in size):
            raise bad(f"input_size {_short(size)} is not (H, W) in pixels, 1 to {MAX_SIDE}")
        self.input_size = (int(size[0]), int(size[1]))
        for name in ("mean", "std"):
            v = getattr(self, name)
            if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(_is_number(x) for x in v):
                raise bad(f"'{name}' {_short(v)} is not three finite numbers")
            setattr(self, name, tuple(float(x) for x in v))
        if not all(s > 0 for s in self.std):
            raise bad(f"'std' {_short(self.std)} must be positive")
        if not isinstance(self.metrics, dict):
            raise bad("'metrics' must be an object")
        if self.color_order not in ("RGB", "BGR"):
            raise bad(f"color_order must be RGB or BGR, not {_short(self.color_order)}")

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
        except RoadsegError as e:  # name the file the card came from
            msg = str(e)
            raise RoadsegError(msg if source == "model card" or source in msg else f"{source}: {msg}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            raise RoadsegError(f"{source}: incomplete model card ({_short(e, 120)}); re-export it with roadseg") from None

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> ModelCard:
        try:
            d = json.loads(text)
        except (ValueError, TypeError, RecursionError):  # JSONDecodeError, UnicodeDecodeError (bytes), deep nesting
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
