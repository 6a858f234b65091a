"""What `roadseg export` is asked for, and where each kind of artefact goes: the options every
target reads (command.py, tensorrt.py, triton.py import them from here, so none imports another
for them) and the default names of the ONNX file, the engine and the Triton repository.

Light on purpose: no torch, no onnx (GraphSpec is a type only here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roadseg.core.card import ModelCard
from roadseg.runtime.options import option, positive, size32, unit

if TYPE_CHECKING:
    from .spec import GraphSpec


@dataclass(frozen=True)
class ExportOptions:
    """What `roadseg export` is asked for; each field made with `option` is also its command-line
    flag (runtime.options builds the parser from these)."""

    model: str = option(positional=True, help="checkpoint, `default`, or (for --to engine|triton) an ONNX file made by roadseg")
    to: str = option("onnx", choices=["onnx", "engine", "triton"], help="target (default onnx)")
    precision: str | None = option(None, choices=["fp32", "fp16", "int8"],
                                   help="precision written into the graph (default fp32; from an ONNX file: its own)")  # fmt: skip
    calib: str | None = option(None, metavar="DIR", help="INT8 calibration frames: a dataset root (calibrates on its train split "
                               "and gates on its val split), or a folder of images or a video (a fifth held back for the gate)")  # fmt: skip
    calib_count: int = option(100, type=positive, help="calibration frames to use (default 100, at least 8)")
    calib_method: str = option("minmax", choices=["minmax", "entropy", "percentile"], help="INT8 calibration method (default minmax)")
    int8_activations: str = option("auto", choices=["auto", "u8", "s8"],
                                   help="INT8 activations: u8 (asymmetric, ONNX Runtime's fast CPU path), s8 (symmetric, what "
                                   "TensorRT takes); auto: s8 for engines, else u8")  # fmt: skip
    int8_weight_bits: int | None = option(None, type=int, choices=[7, 8],
                                          help="INT8 weight range: 7 (the default for u8: the same labels and full speed on every "
                                          "CPU) or 8 (the default for s8; for u8 only for CPUs with VNNI: elsewhere ONNX Runtime's "
                                          "kernels saturate and roadseg runs it exactly, slower)")  # fmt: skip
    imgsz: tuple[int, int] | None = option(None, type=size32, nargs=2, metavar=("H", "W"), help="model input size (default: the model card's)")
    frame_size: tuple[int, int] | None = option(None, type=positive, nargs=2, metavar=("H", "W"), group="size",
                                                help="fixed frame size the graph takes (default: the model input size)")  # fmt: skip
    dynamic: bool = option(False, action="store_true", group="size", help="dynamic batch and frame size")
    batch: int = option(1, type=positive, help="fixed batch size (default 1)")
    raw: bool = option(False, action="store_true", help="export the bare network: normalised float NCHW in, logits out")
    verify: str | None = option(None, metavar="DIR", help="verify variants on this dataset (mIoU) or folder/video of frames (agreement)")
    max_drop: float | None = option(None, type=float, help="largest mIoU drop in points a variant may have vs fp32 on labelled "
                                    "frames (default 0.1 fp16, 1.0 int8)")  # fmt: skip
    min_agreement: float | None = option(None, type=unit, help="smallest share of pixels a variant must label as fp32 does on "
                                         "unlabelled frames (default 0.995 fp16, 0.97 int8)")  # fmt: skip
    output: str | None = option(None, flag=("--output", "-o"), help="output path (default: next to the input, named by precision and size)")
    progress: bool = option(True, flag="--quiet", action="store_false", help="no progress bars")
    # engine / triton options
    workspace_gb: float = option(4.0, flag="--workspace", metavar="WORKSPACE", type=float, help="engine: builder workspace limit in GiB (default 4)")
    timing_cache: str | None = option(None, help="engine: persistent timing cache file (default: one per TensorRT version and GPU "
                                      "architecture in ~/.cache/roadseg, e.g. timing-trt10.13.0.35-sm87.cache)")  # fmt: skip
    version_compatible: bool = option(False, action="store_true", help="engine: build a version-compatible plan")
    hardware_compatible: bool = option(False, action="store_true", help="engine: build for all Ampere+ GPUs (hardware compatibility level)")
    min_shape: tuple[int, int, int] | None = option(None, type=positive, nargs=3, metavar=("N", "H", "W"),
                                                    help="engine --dynamic: smallest input (default 1 and half the model size)")  # fmt: skip
    opt_shape: tuple[int, int, int] | None = option(None, type=positive, nargs=3, metavar=("N", "H", "W"),
                                                    help="engine --dynamic: input the kernels are tuned for (default batch 1, model size)")  # fmt: skip
    max_shape: tuple[int, int, int] | None = option(None, type=positive, nargs=3, metavar=("N", "H", "W"),
                                                    help="engine --dynamic: largest input (default batch 8, 1080x1920)")  # fmt: skip
    instances: int = option(1, type=positive, help="triton: model instances per device (default 1)")
    triton_platform: str = option("onnxruntime", choices=["onnxruntime", "tensorrt", "python"],
                                  help="triton: serve the ONNX (onnxruntime backend), a TensorRT plan, or the ONNX through "
                                  "roadseg's runtime in Triton's Python backend (python; any frame size, dynamic batching) "
                                  "(default onnxruntime)")  # fmt: skip
    triton_instance: str | None = option(None, choices=["auto", "cpu", "gpu"],
                                         help="triton: where the instances run (default: gpu for tensorrt; cpu for an INT8 graph "
                                         "made for ONNX Runtime's CPU; else auto, Triton's KIND_AUTO: the GPUs where it has "
                                         "them, else the CPU)")  # fmt: skip


def for_tensorrt(opts: ExportOptions) -> bool:
    """The target is built by TensorRT: an engine, or a Triton repository on its TensorRT platform."""
    return opts.to == "engine" or (opts.to == "triton" and opts.triton_platform == "tensorrt")


def default_name(card: ModelCard, spec: GraphSpec, ext: str = ".onnx") -> str:
    size = "dynamic" if spec.dynamic else f"{spec.frame_size[0]}x{spec.frame_size[1]}"  # type: ignore[index]
    batch = f"_b{spec.batch}" if spec.batch != 1 and not spec.dynamic else ""
    return f"{card.name}_{spec.precision}_{size}{batch}{'_raw' if spec.raw else ''}{ext}"


def output_path(opts: ExportOptions, card: ModelCard, spec: GraphSpec, src: Path | None, ext: str) -> Path:
    """--output, else next to the source (bundled models: the current folder), named by default_name."""
    if opts.output:
        return Path(opts.output).expanduser()
    folder = src.parent if src is not None else Path.cwd()
    return folder / default_name(card, spec, ext)


def _beside_model(opts: ExportOptions) -> Path:
    model = Path(opts.model)
    return model.parent if model.is_file() else Path.cwd()


def engine_path(opts: ExportOptions, card: ModelCard, spec: GraphSpec, src: Path | None) -> Path:
    """--output, else next to the source ONNX with the .engine suffix, else (built straight from a
    checkpoint) next to the checkpoint, or in the current folder, named by default_name."""
    if opts.output:
        return Path(opts.output).expanduser()
    if src is not None:
        return src.with_suffix(".engine")
    return _beside_model(opts) / default_name(card, spec, ".engine")


def repository_path(opts: ExportOptions, card: ModelCard, src: Path | None) -> Path:
    """--output, else `<card.name>_triton` next to the source (or the checkpoint, or the current folder)."""
    if opts.output:
        return Path(opts.output).expanduser()
    folder = src.parent if src is not None else _beside_model(opts)
    return folder / f"{card.name}_triton"


def target_path(opts: ExportOptions, card: ModelCard, spec: GraphSpec, src: Path | None) -> Path:
    """What this export writes: the ONNX file, the engine, or the Triton repository folder."""
    if opts.to == "engine":
        return engine_path(opts, card, spec, src)
    if opts.to == "triton":
        return repository_path(opts, card, src)
    return output_path(opts, card, spec, src, ".onnx")


__all__ = ["ExportOptions", "default_name", "engine_path", "for_tensorrt", "output_path", "repository_path", "target_path"]
