"""Check a model file before any frame: is it there, is it a real file (not empty, not a Git LFS
pointer, not a JPEG renamed .onnx), was it made by roadseg (the model card in metadata_props), and
does its graph keep the ONNX contract (`frames` uint8 [N,H,W,3] BGR -> `labels` uint8 [N,H,W])?

Only onnxruntime is used to read the graph (the runtime stays light: no onnx, no torch). Every
failure is one RoadsegError that names the file and the fix.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadseg.core.card import CARD_KEY, ModelCard
from roadseg.core.errors import RoadsegError

from .backends import ENGINE_SUFFIXES
from .backends.base import TensorSpec
from .int8 import INT8_KEY, Int8Form

EXPORT_KEY = "roadseg_export"  # how the graph was made: {"frame_size", "batch", "dynamic", "raw", "precision"}
ORT_CPU_KEY = "roadseg_ort_cpu_rewrites"  # the rewrites export/ort_cpu.py made for ONNX Runtime's CPU kernels
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
LFS_MAGIC = b"version https://git-lfs"

# leading bytes of files that are often mistaken for (or renamed to) a model
_MAGIC: list[tuple[bytes, str]] = [
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a zip archive (a PyTorch checkpoint?)"),
    (b"\x80\x02", "a Python pickle (a PyTorch checkpoint?)"),
    (b"\x80\x04", "a Python pickle (a PyTorch checkpoint?)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
    (b"<", "an HTML/XML page (a failed download?)"),
    (b"{", "a JSON file"),
    (b"\x00\x00\x00", "a video or binary container, not ONNX"),
]

# ONNX Runtime type strings -> numpy dtype names
_ORT_TYPES = {
    "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(float)": "float32", "tensor(float16)": "float16",
    "tensor(double)": "float64", "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
    "tensor(uint16)": "uint16", "tensor(int16)": "int16", "tensor(bfloat16)": "bfloat16",
}  # fmt: skip


@dataclass
class ModelInfo:
    """What a roadseg ONNX model is, read from the file alone."""

    path: Path
    card: ModelCard
    export: dict[str, Any]  # the `roadseg_export` spec ({} when the file predates it)
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    raw: bool  # the bare network (float NCHW in, logits out), not the frames->labels graph
    frame_size: tuple[int, int] | None  # fixed (H, W) of the graph input, None when dynamic
    batch: int | None  # fixed batch of the graph input, None when dynamic
    metadata: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def dynamic(self) -> bool:
        return self.frame_size is None or self.batch is None

    @property
    def precision(self) -> str:
        return str(self.export.get("precision") or self.card.precision)

    @property
    def int8_form(self) -> Int8Form | None:
        """An INT8 graph's activation type and weight bits as its export recorded them; None when
        not recorded (files from before the record: the runtime then assumes 8-bit weights)."""
        return Int8Form.from_json(self.metadata.get(INT8_KEY)) if self.precision == "int8" else None

    def require_frames_graph(self) -> None:
        """The streaming runtime feeds frames: refuse the bare-network export with the fix."""
        if self.raw:
            raise RoadsegError(
                f"{self.path}: is a raw-network export (float NCHW in, logits out); the runtime streams frames->labels "
                "graphs: export it again without --raw (`roadseg export CHECKPOINT`)"
            )


def check_model_file(path: str | os.PathLike) -> Path:
    """The checks every model file gets, whatever its format: exists, is a file, not empty, not a
    Git LFS pointer. Returns the path."""
    p = Path(path)
    if not p.exists():
        raise RoadsegError(
            f"{p}: model file not found; pass an .onnx or .engine made by `roadseg export`, or `default`"
        )
    if p.is_dir():
        raise RoadsegError(f"{p}: is a folder; pass the .onnx or .engine file inside it")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise RoadsegError(f"{p}: cannot read the model file ({e.strerror}); check its permissions") from None
    if size == 0:
        raise RoadsegError(
            f"{p}: model file is empty (0 bytes); export it again with `roadseg export` or copy it again"
        )
    if head.startswith(LFS_MAGIC):
        raise RoadsegError(
            f"{p}: is a Git LFS pointer, not the model itself; fetch it with `git lfs pull` (or download the real file)"
        )
    return p


def _sniff(head: bytes) -> str | None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    return None


def _not_onnx(p: Path, what: str) -> RoadsegError:
    return RoadsegError(
        f"{p}: is not an ONNX model ({what}); pass an .onnx file made by `roadseg export` "
        "(or export your checkpoint with `roadseg export CHECKPOINT.pt`)"
    )


def check_onnx_file(path: str | os.PathLike) -> Path:
    """check_model_file, plus the cheap signs that a file is not ONNX at all: a checkpoint suffix,
    or the leading bytes of an image, archive, pickle or web page."""
    p = check_model_file(path)
    suffix = p.suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        raise RoadsegError(f"{p}: is a TensorRT engine, not ONNX; open it with the `trt` backend (or backend auto)")
    if suffix in CHECKPOINT_SUFFIXES:
        raise RoadsegError(
            f"{p}: is a checkpoint, not a runnable model; export it first: `roadseg export {p}` and run the .onnx it writes"
        )
    with open(p, "rb") as f:
        head = f.read(64)
    what = _sniff(head)
    if what is not None:
        raise _not_onnx(p, what)
    return p


def strip_ort_prefix(text: str) -> str:
    """An ONNX Runtime error message without its "[ONNXRuntimeError] : N : CODE : " prefix."""
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]


def ort_log_severity() -> int:
    """ONNX Runtime's log level for roadseg's sessions: its errors become roadseg's own one-line
    errors, so it logs nothing (4, fatal only) unless the "roadseg" logger is at DEBUG (`--verbose`),
    where its warnings show too (2)."""
    return 2 if logging.getLogger("roadseg").isEnabledFor(logging.DEBUG) else 4


def open_session(path: Path, providers: list, options: Any = None) -> Any:
    """onnxruntime.InferenceSession with every parse failure turned into one RoadsegError, and with
    ONNX Runtime's own output held back: a provider that cannot start makes it log error lines on
    stderr and print an "EP Error ... Falling back" banner on stdout before it retries on others
    (callers check get_providers()). Held-back output goes to the "roadseg" logger at DEBUG."""
    import onnxruntime as ort

    level = ort_log_severity()
    ort.set_default_logger_severity(level)  # provider start-up logs through ONNX Runtime's default logger
    if options is None:
        options = ort.SessionOptions()
    options.log_severity_level = level
    banner = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(banner):
            warnings.simplefilter("ignore", UserWarning)  # "provider not available": callers check get_providers()
            return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises pybind types (InvalidProtobuf, Fail, InvalidGraph, ...)
        msg = strip_ort_prefix(_first_line(e, 400))[:200]
        if type(e).__name__ == "InvalidProtobuf" or "protobuf parsing failed" in msg.lower():
            raise _not_onnx(path, "it does not parse as ONNX: truncated, corrupt or another format") from None
        raise RoadsegError(
            f"{path}: ONNX Runtime cannot load this model ({msg}); export it again with `roadseg export`"
        ) from None
    finally:
        if banner.getvalue().strip():
            logging.getLogger("roadseg").debug("onnxruntime (%s): %s", path.name, banner.getvalue().strip())


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) or d is None else str(d) for d in (arg.shape or ()))
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))


def _static(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def describe_session(path: str | os.PathLike, session: Any) -> ModelInfo:
    """Validate an open session against roadseg's contract and describe it."""
    p = Path(path)
    try:  # ONNX Runtime decodes names and metadata as UTF-8 only when asked: a corrupt file fails here
        meta = dict(session.get_modelmeta().custom_metadata_map or {})
        inputs = [_spec(a) for a in session.get_inputs()]
        outputs = [_spec(a) for a in session.get_outputs()]
    except UnicodeDecodeError:
        raise RoadsegError(
            f"{p}: its metadata or tensor names are not valid UTF-8 text (a corrupt file); export it again with `roadseg export`"
        ) from None
    if CARD_KEY not in meta:
        raise RoadsegError(
            f"{p}: this ONNX was not made by roadseg (no model card in its metadata); export it with `roadseg export`"
        )
    try:
        card = ModelCard.from_json(meta[CARD_KEY], str(p))
    except RoadsegError as e:
        msg = str(e)
        raise RoadsegError(msg if str(p) in msg else f"{p}: {msg}; export it again with `roadseg export`") from None
    try:
        export = json.loads(meta.get(EXPORT_KEY) or "{}")
    except json.JSONDecodeError:
        export = None
    if not isinstance(export, dict):
        raise RoadsegError(
            f"{p}: its '{EXPORT_KEY}' metadata is not a JSON object; export it again with `roadseg export`"
        )
    if len(inputs) != 1 or len(outputs) != 1:
        raise RoadsegError(
            f"{p}: has {len(inputs)} inputs and {len(outputs)} outputs; a roadseg graph has one of each "
            "(frames -> labels); export it again with `roadseg export`"
        )
    i, o = inputs[0], outputs[0]
    raw = bool(export.get("raw"))
    if raw:
        if i.dtype not in ("float32", "float16") or len(i.shape) != 4 or i.shape[1] != 3:
            raise RoadsegError(
                f"{p}: raw-network input '{i.name}' is {i.dtype} {list(i.shape)}; expected float [N,3,H,W]; export it again"
            )
        if o.dtype not in ("float32", "float16") or len(o.shape) != 4:
            raise RoadsegError(
                f"{p}: raw-network output '{o.name}' is {o.dtype} {list(o.shape)}; expected float logits [N,C,H,W]; export it again"
            )
        if _static(o.shape[1]) is not None and o.shape[1] != card.num_classes:
            raise RoadsegError(
                f"{p}: the network outputs {o.shape[1]} classes but its model card names {card.num_classes}; export it again"
            )
        h, w = _static(i.shape[2]), _static(i.shape[3])
    else:
        if i.dtype != "uint8" or len(i.shape) != 4 or i.shape[3] != 3:
            raise RoadsegError(
                f"{p}: input '{i.name}' is {i.dtype} {list(i.shape)}; roadseg runs graphs that take uint8 BGR frames "
                "[N,H,W,3]: export it with `roadseg export` (without --raw)"
            )
        if o.dtype != "uint8" or len(o.shape) != 3:
            raise RoadsegError(
                f"{p}: output '{o.name}' is {o.dtype} {list(o.shape)}; roadseg expects uint8 class maps [N,H,W]: "
                "export it with `roadseg export` (without --raw)"
            )
        h, w = _static(i.shape[1]), _static(i.shape[2])
    frame_size = (h, w) if h is not None and w is not None else None
    return ModelInfo(p, card, export, inputs, outputs, raw, frame_size, _static(i.shape[0]), meta)


def inspect_model(path: str | os.PathLike) -> ModelInfo:
    """Validate an ONNX model file before any frame and describe it; one RoadsegError otherwise.

    Engines (.engine) are checked by runtime/engine.py against their sidecar; this refuses them with
    a pointer to the `trt` backend."""
    p = check_onnx_file(path)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only reading: do not optimise
    so.intra_op_num_threads = 1
    session = open_session(p, ["CPUExecutionProvider"], so)
    try:
        return describe_session(p, session)
    finally:
        del session
