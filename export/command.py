"""`roadseg export`: checkpoint -> verified ONNX (fp32 / fp16 / int8), TensorRT engine, or a Triton
model repository. Every artifact is verified before it is moved into place; a variant that misses
its accuracy budget is refused and nothing is written."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from roadseg.core.atomic import atomic_path, check_writable
from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError, UsageError

from . import frames as framesrc
from .onnx_export import sample_frames, save_onnx, to_onnx
from .options import ExportOptions, for_tensorrt, output_path, target_path
from .spec import GraphSpec, read_metadata, set_metadata, set_props
from .verify import gate, parity

DEFAULT_MAX_DROP = {"fp16": 0.1, "int8": 1.0}  # mIoU points with labels
DEFAULT_MIN_AGREEMENT = {"fp16": 0.995, "int8": 0.97}  # label agreement with FP32 without labels
PARITY_FRAMES = 4
SYNTHETIC_GATE_FRAMES = 16
HOLDOUT_EVERY = 5  # from a folder or video, every 5th frame read is held back from calibration for the gate
MIN_HELD_FRAMES = 4  # a folder or video gives fewer: nothing is held back, and the gate uses synthetic scenes
MIN_CALIB_FRAMES = 8


def _preflight(opts: ExportOptions, card: ModelCard, spec: GraphSpec, src: Path | None) -> Path:
    """The checks that need no model work, made before tracing, calibration and the accuracy gate
    (minutes on a CPU): the output is writable and is none of the inputs, and TensorRT is present
    when the target needs it. Returns the target."""
    target = target_path(opts, card, spec, src)
    resolved = target.resolve()
    for flag, given in (("the model", src), ("--calib", opts.calib), ("--verify", opts.verify)):
        if given is None:
            continue
        path = Path(given).expanduser().resolve()
        if path == resolved or (opts.to == "triton" and resolved in path.parents):
            raise UsageError(f"{target}: is {flag} ({given}), which the export would overwrite; choose another --output")
    if opts.to == "triton":
        from .triton import check_options, check_repository_folder

        check_options(opts, spec.raw)
        check_repository_folder(target)
    else:
        check_writable(target)
        check_writable(target.with_name(target.name + ".json"))
    if for_tensorrt(opts):
        from .tensorrt import require_tensorrt

        require_tensorrt()
    return target


def _raw_inputs(frames: np.ndarray, card: ModelCard) -> np.ndarray:
    """What the bare network eats: normalised NCHW float at the model size (numpy, as users would)."""
    import cv2

    h, w = card.input_size
    out = []
    for f in frames:
        x = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) if f.shape[:2] != (h, w) else f
        if card.color_order == "RGB":
            x = x[..., ::-1]
        x = (x.astype(np.float32) / 255.0 - np.array(card.mean, np.float32)) / np.array(card.std, np.float32)
        out.append(x.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out))


@dataclass
class GateFrames:
    """The frames a variant is gated on, and where they come from (recorded in the .onnx.json)."""

    frames: list[np.ndarray]
    masks: list[np.ndarray] | None
    source: str
    split: str  # "val" of a dataset, "held out from --calib", "--verify" or "synthetic"
    names: list[str] = field(default_factory=list)

    def describe(self) -> str:
        kind = "labelled" if self.masks is not None else "unlabelled"
        if self.split == "synthetic":
            return f"{len(self.frames)} synthetic scenes"
        where = {"val": f"the val split of {self.source}", "held out from --calib": f"{self.source} (held out from calibration)"}
        return f"{len(self.frames)} {kind} frames of {where.get(self.split, self.source)}"

    def record(self) -> dict:
        return {"source": self.source, "split": self.split, "count": len(self.frames),
                "labelled": self.masks is not None, "names": self.names}  # fmt: skip


def _labelled_val(root: Path, card: ModelCard, spec: GraphSpec) -> GateFrames:
    pairs, info, names = framesrc.labelled(root, spec.frame_size, split="val")
    if info.classes != card.classes:
        raise RoadsegError(f"{root}: its classes differ from the model's; verify on the dataset the model was trained for")
    return GateFrames([p[0] for p in pairs], [p[1] for p in pairs], str(root), "val", names)


def _gate_frames(opts: ExportOptions, card: ModelCard, spec: GraphSpec, held: GateFrames | None) -> GateFrames:
    """The frames a precision variant is gated on, most telling first: --verify (a labelled dataset's
    val split, or a folder or video); for INT8 without --verify, what --calib holds apart from the
    calibration frames (a dataset root's val split, or `held`, frames held back from a folder or
    video); synthetic scenes as the last resort, said in one line. A graph of any frame size is
    scored on labelled frames at their own size, as a camera sends them (at the model's input size
    instead, with masks resized, CamVid val read 0.7218 where its frames give 0.7244)."""
    size = spec.frame_size or tuple(card.input_size)
    if opts.verify:
        root = Path(opts.verify).expanduser()
        if root.is_dir() and framesrc.detect_layout(root):
            return _labelled_val(root, card, spec)
        named = framesrc.unlabelled_named(root, size, 200)
        if not named:
            raise RoadsegError(f"{root}: no readable frames to verify on")
        return GateFrames([f for _, f in named], None, str(root), "--verify", [n for n, _ in named])
    if opts.precision == "int8" and opts.calib:
        root = Path(opts.calib).expanduser()
        if root.is_dir() and framesrc.detect_layout(root):
            try:
                return _labelled_val(root, card, spec)
            except RoadsegError as e:  # no val split, or other classes: the held-back frames, else synthetic
                print(f"{root}: cannot gate on its val split ({e}); gating on other frames")
        if held is not None:
            return held
    frames = list(sample_frames(card, size, SYNTHETIC_GATE_FRAMES))
    print(f"no real frames to gate the {opts.precision} variant on: gating on {len(frames)} synthetic scenes "
          "(pass --verify DIR, a labelled dataset or frames from your camera, for a real gate)")  # fmt: skip
    return GateFrames(frames, None, "synthetic scenes", "synthetic")


def _calib_frames(opts: ExportOptions, size: tuple[int, int]) -> tuple[list[np.ndarray], GateFrames | None]:
    """(calibration frames, frames held back from them for the gate or None). A dataset root
    calibrates on its train split (the gate takes its val split); from a folder or a video, every
    HOLDOUT_EVERY-th of the frames read is held back, so the gate never sees a calibration frame
    (unless that would leave too few of either: then all calibrate)."""
    if not opts.calib:
        raise UsageError("--precision int8 needs --calib DIR: a folder of real frames or a video from the target camera")
    src = Path(opts.calib).expanduser()
    if not src.exists() and not any(c in opts.calib for c in "*?["):  # a glob is listed by unlabelled()
        raise RoadsegError(f"{src}: calibration source not found; pass a folder of images or a video with --calib")
    held = None
    if src.is_dir() and framesrc.detect_layout(src):  # a dataset root: calibrate on its training images
        pairs, _, _ = framesrc.labelled(src, size, split="train", limit=opts.calib_count)
        frames = [p[0] for p in pairs]
    else:
        named = framesrc.unlabelled_named(src, size, opts.calib_count + opts.calib_count // (HOLDOUT_EVERY - 1))
        back = named[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]
        if len(back) >= MIN_HELD_FRAMES and len(named) - len(back) >= MIN_CALIB_FRAMES:
            held = GateFrames([f for _, f in back], None, str(opts.calib), "held out from --calib", [n for n, _ in back])
            named = [x for i, x in enumerate(named) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
        frames = [f for _, f in named[: opts.calib_count]]
    if len(frames) < MIN_CALIB_FRAMES:
        raise RoadsegError(f"{src}: only {len(frames)} usable calibration frames; INT8 calibration needs at least {MIN_CALIB_FRAMES} (about 100 is better)")
    return frames, held


def _load_source(opts: ExportOptions):
    """(torch model or None, card, spec of an existing ONNX or None, source path or None, onnx proto or None)."""
    p = Path(opts.model)
    if p.suffix == ".onnx":
        if not p.is_file():
            raise RoadsegError(f"{p}: ONNX file not found")
        from roadseg.runtime.model import check_onnx_file

        check_onnx_file(p)  # empty, a Git LFS pointer, an image or a pickle: refused before the parser sees it
        try:
            proto = onnx.load(str(p))
        except Exception as e:  # noqa: BLE001 - onnx raises several unrelated types for bad files
            raise RoadsegError(f"{p}: not a readable ONNX model ({type(e).__name__}); export it again with `roadseg export`") from None
        card, spec = read_metadata(proto, str(p))
        return None, card, spec, p, proto
    from roadseg.train.checkpoint import BUNDLED, load_model

    model, card, _ = load_model(opts.model)
    return model, card, None, (None if opts.model in BUNDLED else p), None


def export(opts: ExportOptions) -> Path:
    if opts.to not in ("onnx", "engine", "triton"):
        raise UsageError(f"--to {opts.to}: choose onnx, engine or triton")
    if opts.precision not in (None, "fp32", "fp16", "int8"):
        raise UsageError(f"--precision {opts.precision}: choose fp32, fp16 or int8")
    net, card, src_spec, src, proto = _load_source(opts)
    if proto is not None:
        if opts.to == "onnx":
            raise UsageError(f"{src}: is already ONNX; export from the checkpoint, or use --to engine|triton")
        _check_onnx_options(opts, src_spec, src, proto)
        _preflight(opts, card, src_spec, src)
        return _from_onnx(opts, card, src_spec, src, proto)
    precision = opts.precision or "fp32"
    opts = replace(opts, precision=precision)
    if opts.imgsz:
        card = card.replace(input_size=list(opts.imgsz))
    if opts.raw and opts.frame_size:
        raise UsageError("--raw exports the bare network at the model input size (--imgsz); --frame-size does not apply")
    frame_size = None if opts.dynamic else tuple(opts.frame_size or card.input_size)
    spec = GraphSpec(frame_size, opts.batch, opts.dynamic, opts.raw, precision)
    target = _preflight(opts, card, spec, src)
    out = target if opts.to == "onnx" else output_path(opts, card, spec, src, ".onnx")
    # calibration and verification frames are read (and an empty or too small set refused) before any tracing
    calib, held = _calib_frames(opts, frame_size or tuple(card.input_size)) if opts.precision == "int8" else (None, None)
    gate_frames = _gate_frames(opts, card, spec, held) if opts.precision != "fp32" else None
    t0 = time.perf_counter()
    print(f"exporting {card.name} ({card.arch}) -> {'raw network' if spec.raw else 'frames->labels graph'}, "
          f"{'dynamic N,H,W' if spec.dynamic else f'{frame_size[0]}x{frame_size[1]} batch {spec.batch}'}")  # type: ignore[index]  # fmt: skip
    fp32, module, dummy = to_onnx(net, card, GraphSpec(frame_size, opts.batch, opts.dynamic, opts.raw, "fp32"))

    # 1. the FP32 graph must compute what PyTorch computes
    vsize = frame_size or tuple(card.input_size)
    check = sample_frames(card, vsize, PARITY_FRAMES)
    inputs = _raw_inputs(check, card) if spec.raw else check
    if spec.batch != 1 and not spec.dynamic:
        inputs = inputs[: spec.batch] if len(inputs) >= spec.batch else np.concatenate([inputs] * spec.batch)[: spec.batch]
    par = parity(module, fp32, inputs, spec.raw)
    diff = f", logits max abs diff {par.max_abs_diff:.2e}" if par.max_abs_diff is not None else ""
    print(f"fp32 vs PyTorch: label agreement {par.agreement:.5f}{diff} on {len(inputs)} frames")
    if not par.ok():
        raise RoadsegError(f"{out}: the exported graph does not match PyTorch (agreement {par.agreement:.4f}{diff}); nothing written, please report it")
    report: dict = {"artifact": str(out), "card": card.to_dict(), "spec": spec.to_dict(), "parity_fp32": asdict(par)}

    # 2. reduced precision, gated on accuracy against FP32
    model = fp32
    if opts.precision != "fp32":
        model = _variant(fp32, card, spec, opts, report, calib, gate_frames)
    set_metadata(model, card, spec)
    report["export_seconds"] = round(time.perf_counter() - t0, 2)
    if opts.to == "onnx":
        save_onnx(model, out)
        _write_report(out, report)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {out}.json")
        return out
    return _from_onnx(opts, card, spec, None, model)


def int8_activations(opts: ExportOptions) -> str:
    """TensorRT consumes only symmetric INT8 Q/DQ; ONNX Runtime's x86 kernels are fastest with
    asymmetric UINT8 activations (U8S8). auto picks by target."""
    tensorrt = for_tensorrt(opts)
    if opts.int8_activations == "auto":
        return "s8" if tensorrt else "u8"
    if tensorrt and opts.int8_activations != "s8":
        raise UsageError("--int8-activations u8 cannot build a TensorRT engine: TensorRT takes symmetric INT8 only (use s8 or auto)")
    return opts.int8_activations


def _check_onnx_options(opts: ExportOptions, spec: GraphSpec, src: Path, proto: onnx.ModelProto) -> None:
    """An ONNX file already fixes precision, sizes, batch, pre/post and the INT8 activation type:
    options that would change them cannot apply, and are refused rather than silently ignored."""
    from .precision import int8_activation_type

    acts = int8_activation_type(proto) if spec.precision == "int8" else None
    given = {
        "--precision": opts.precision is not None and opts.precision != spec.precision,
        "--frame-size": opts.frame_size is not None and tuple(opts.frame_size) != tuple(spec.frame_size or ()),
        "--dynamic": opts.dynamic and not spec.dynamic,
        "--imgsz": opts.imgsz is not None,
        "--batch": opts.batch != 1 and opts.batch != spec.batch,
        "--raw": opts.raw and not spec.raw,
        "--calib": opts.calib is not None,
        "--verify": opts.verify is not None,
        "--int8-activations": opts.int8_activations != "auto" and opts.int8_activations != acts,
    }
    bad = [k for k, v in given.items() if v]
    if bad:
        raise UsageError(f"{src}: {', '.join(bad)} cannot change an exported ONNX ({spec.precision}{f' {acts}' if acts else ''}, "
                         f"{'dynamic' if spec.dynamic else spec.frame_size}); export from the checkpoint with these options")  # fmt: skip
    if for_tensorrt(opts) and acts == "u8":
        raise UsageError(f"{src}: its INT8 activations are asymmetric uint8 (ONNX Runtime's CPU form) and TensorRT takes "
                         "symmetric INT8 only; export from the checkpoint with --to engine, or with --int8-activations s8")  # fmt: skip


def int8_weight_bits(opts: ExportOptions, acts: str) -> int:
    """7-bit weights for the CPU form (u8): ONNX Runtime's u8 x s8 kernels never saturate on them, so
    every CPU gives the same labels at full speed. 8 for TensorRT's form (s8), which computes exactly
    on GPUs. An explicit --int8-weight-bits wins."""
    if opts.int8_weight_bits is not None:
        return opts.int8_weight_bits
    return 7 if acts == "u8" else 8


def _int8(fp32: onnx.ModelProto, card: ModelCard, spec: GraphSpec, opts: ExportOptions, report: dict,
          calib: list[np.ndarray]) -> onnx.ModelProto:  # fmt: skip
    """The INT8 variant (ungated), its form recorded in the graph (INT8_KEY) for the runtime."""
    from roadseg.runtime.int8 import INT8_KEY

    from .precision import int8_form, to_int8

    if spec.raw:
        calib = list(_raw_inputs(np.stack(calib), card))
    acts = int8_activations(opts)
    bits = int8_weight_bits(opts, acts)
    print(f"calibrating INT8 ({opts.calib_method}, {acts} activations, {bits}-bit weights) on {len(calib)} frames of {opts.calib}")
    model = to_int8(fp32, calib, opts.calib_method, opts.progress, acts, bits)
    if acts == "u8":  # ONNX Runtime's CPU form: fit it to MLAS's kernels (the gate checks it)
        from .ort_cpu import tune

        report["ort_cpu_rewrites"] = tune(model)
        if report["ort_cpu_rewrites"]:
            print(f"rewrote for ONNX Runtime's CPU kernels: {', '.join(report['ort_cpu_rewrites'])}")
    form = int8_form(model)
    assert form is not None  # to_int8 writes Q/DQ
    set_props(model, {INT8_KEY: form.to_json()})
    report["calibration"] = {"source": str(opts.calib), "frames": len(calib), "method": opts.calib_method,
                             "activations": form.activations, "weight_bits": form.weight_bits}  # fmt: skip
    return model


def _variant(fp32: onnx.ModelProto, card: ModelCard, spec: GraphSpec, opts: ExportOptions, report: dict,
             calib: list[np.ndarray] | None, gate_frames: GateFrames | None) -> onnx.ModelProto:  # fmt: skip
    """The FP16 or INT8 variant, gated on accuracy. `calib` (INT8) and `gate_frames` are read by
    export() before tracing, so a bad --calib or --verify fails before minutes of work."""
    from .precision import to_fp16

    precision = opts.precision or "fp32"
    if precision == "fp16":
        model = to_fp16(fp32)
    else:
        assert calib is not None  # export() reads it for every INT8 export
        model = _int8(fp32, card, spec, opts, report, calib)
    onnx.checker.check_model(model, full_check=True)
    assert gate_frames is not None  # export() reads them for every FP16 and INT8 export
    frames = gate_frames.frames
    if spec.raw:
        frames = list(_raw_inputs(np.stack(frames), card))
    max_drop = opts.max_drop if opts.max_drop is not None else DEFAULT_MAX_DROP[precision]
    min_agree = opts.min_agreement if opts.min_agreement is not None else DEFAULT_MIN_AGREEMENT[precision]
    rep = gate(card, fp32, model, precision, frames, gate_frames.masks, max_drop, min_agree, raw=spec.raw)
    print(f"accuracy gate on {gate_frames.describe()}: {rep.line()}")
    if rep.native_line():
        print(rep.native_line())
    report["gate"] = {**asdict(rep), "frames": gate_frames.record()}
    if not rep.passed:
        limit = "raise --max-drop" if rep.labelled else "lower --min-agreement"
        raise RoadsegError(f"{opts.model}: the {precision} variant misses its accuracy gate ({rep.failed}); nothing written. "
                           f"Try another --calib-method or more --calib frames, or {limit}")  # fmt: skip
    return model


def _write_report(artifact: Path, report: dict) -> None:
    with atomic_path(Path(f"{artifact}.json")) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str))


def _from_onnx(opts: ExportOptions, card: ModelCard, spec: GraphSpec, src: Path | None, model: onnx.ModelProto) -> Path:
    if opts.to == "engine":
        from .tensorrt import build_engine

        return build_engine(model, card, spec, opts, src)
    from .triton import write_repository

    return write_repository(model, card, spec, opts, src)
