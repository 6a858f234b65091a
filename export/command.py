"""`roadseg export`: checkpoint -> verified ONNX (fp32 / fp16 / int8), TensorRT engine, or a Triton
model repository. Every artifact is verified before it is moved into place; a variant that misses
its accuracy budget is refused and nothing is written."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx

from roadseg.runtime.atomic import atomic_path, check_writable
from roadseg.runtime.card import ModelCard
from roadseg.runtime.errors import RoadsegError, UsageError

from . import frames as framesrc
from .onnx_export import sample_frames, save_onnx, to_onnx
from .options import ExportOptions, for_tensorrt, output_path, target_path
from .spec import GraphSpec, read_metadata, set_metadata
from .verify import gate, parity

DEFAULT_MAX_DROP = {"fp16": 0.1, "int8": 1.0}  # mIoU points with labels
DEFAULT_MIN_AGREEMENT = {"fp16": 0.995, "int8": 0.97}  # label agreement with FP32 without labels
PARITY_FRAMES = 4


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


def _gate_frames(opts: ExportOptions, card: ModelCard, spec: GraphSpec):
    """(frames, masks or None, description) used to verify precision variants. A graph of any frame
    size is scored on labelled frames at their own size, as a camera sends them (at the model's
    input size instead, with masks resized, CamVid val read 0.7218 where its frames give 0.7244)."""
    size = spec.frame_size or tuple(card.input_size)
    if opts.verify:
        root = Path(opts.verify).expanduser()
        if root.is_dir() and framesrc.detect_layout(root):
            pairs, info = framesrc.labelled(root, spec.frame_size)
            if info.classes != card.classes:
                raise RoadsegError(f"{root}: its classes differ from the model's; verify on the dataset the model was trained for")
            return [p[0] for p in pairs], [p[1] for p in pairs], f"{len(pairs)} labelled frames of {root}"
        frames = framesrc.unlabelled(root, size, 200)
        if not frames:
            raise RoadsegError(f"{root}: no readable frames to verify on")
        return frames, None, f"{len(frames)} unlabelled frames of {root}"
    frames = list(sample_frames(card, size, 16))
    return frames, None, "16 synthetic scenes (pass --verify DIR for real frames)"


def _calib_frames(opts: ExportOptions, size: tuple[int, int]) -> list[np.ndarray]:
    if not opts.calib:
        raise UsageError("--precision int8 needs --calib DIR: a folder of real frames or a video from the target camera")
    src = Path(opts.calib).expanduser()
    if not src.exists() and not any(c in opts.calib for c in "*?["):  # a glob is listed by unlabelled()
        raise RoadsegError(f"{src}: calibration source not found; pass a folder of images or a video with --calib")
    if src.is_dir() and framesrc.detect_layout(src):  # a dataset root: calibrate on its training images
        pairs, _ = framesrc.labelled(src, size, split="train", limit=opts.calib_count)
        frames = [p[0] for p in pairs]
    else:
        frames = framesrc.unlabelled(src, size, opts.calib_count)
    if len(frames) < 8:
        raise RoadsegError(f"{src}: only {len(frames)} usable calibration frames; INT8 calibration needs at least 8 (about 100 is better)")
    return frames


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
    opts.precision = opts.precision or "fp32"
    if opts.imgsz:
        card = card.replace(input_size=list(opts.imgsz))
    if opts.raw and opts.frame_size:
        raise UsageError("--raw exports the bare network at the model input size (--imgsz); --frame-size does not apply")
    frame_size = None if opts.dynamic else tuple(opts.frame_size or card.input_size)
    spec = GraphSpec(frame_size, opts.batch, opts.dynamic, opts.raw, opts.precision)
    target = _preflight(opts, card, spec, src)
    out = target if opts.to == "onnx" else output_path(opts, card, spec, src, ".onnx")
    # calibration and verification frames are read (and an empty or too small set refused) before any tracing
    calib = _calib_frames(opts, frame_size or tuple(card.input_size)) if opts.precision == "int8" else None
    gate_frames = _gate_frames(opts, card, spec) if opts.precision != "fp32" else None
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


def _variant(fp32: onnx.ModelProto, card: ModelCard, spec: GraphSpec, opts: ExportOptions, report: dict,
             calib: list[np.ndarray] | None, gate_frames: tuple | None) -> onnx.ModelProto:  # fmt: skip
    """The FP16 or INT8 variant, gated on accuracy. `calib` (INT8) and `gate_frames` are read by
    export() before tracing, so a bad --calib or --verify fails before minutes of work."""
    from .precision import to_fp16, to_int8

    precision = opts.precision or "fp32"
    if opts.precision == "fp16":
        model = to_fp16(fp32)
    else:
        assert calib is not None  # export() reads it for every INT8 export
        if spec.raw:
            calib = list(_raw_inputs(np.stack(calib), card))
        acts = int8_activations(opts)
        rr = ", 7-bit weights" if opts.int8_reduce_range else ""
        print(f"calibrating INT8 ({opts.calib_method}, {acts} activations{rr}) on {len(calib)} frames of {opts.calib}")
        model = to_int8(fp32, calib, opts.calib_method, opts.progress, acts, opts.int8_reduce_range)
        report["calibration"] = {"source": str(opts.calib), "frames": len(calib), "method": opts.calib_method,
                                 "activations": acts, "reduce_range": opts.int8_reduce_range}  # fmt: skip
        if acts == "u8":  # ONNX Runtime's CPU form: fit it to MLAS's kernels (the gate below checks it)
            from .ort_cpu import tune

            report["ort_cpu_rewrites"] = tune(model)
            if report["ort_cpu_rewrites"]:
                print(f"rewrote for ONNX Runtime's CPU kernels: {', '.join(report['ort_cpu_rewrites'])}")
    onnx.checker.check_model(model, full_check=True)
    assert gate_frames is not None  # export() reads them for every FP16 and INT8 export
    frames, masks, what = gate_frames
    if spec.raw:
        frames = list(_raw_inputs(np.stack(frames), card))
    max_drop = opts.max_drop if opts.max_drop is not None else DEFAULT_MAX_DROP[precision]
    rep = gate(card, fp32, model, precision, frames, masks, max_drop, DEFAULT_MIN_AGREEMENT[precision], raw=spec.raw)
    print(f"accuracy gate on {what}: {rep.line()}")
    report["gate"] = asdict(rep)
    if not rep.passed:
        budget = f"drop {rep.drop_points:.2f} > --max-drop {max_drop}" if rep.labelled else f"agreement {rep.agreement_with_fp32:.4f} < {DEFAULT_MIN_AGREEMENT[precision]}"
        raise RoadsegError(f"{opts.model}: the {opts.precision} variant misses its accuracy budget ({budget}); nothing written. "
                           "Try another --calib-method, more --calib frames, or raise --max-drop")  # fmt: skip
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
