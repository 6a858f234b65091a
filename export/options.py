"""What `roadseg export` is asked for, and where each kind of artefact goes: the options every
target reads (command.py, tensorrt.py, triton.py import them from here, so none imports another
for them) and the default names of the ONNX file, the engine and the Triton repository.

Light on purpose: no torch, no onnx (GraphSpec is a type only here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roadseg.runtime.card import ModelCard

if TYPE_CHECKING:
    from .spec import GraphSpec


@dataclass
class ExportOptions:
    model: str
    to: str = "onnx"
    precision: str | None = None  # fp32 for checkpoints; from an ONNX file: the file's own
    calib: str | None = None
    calib_count: int = 100
    calib_method: str = "minmax"
    int8_activations: str = "auto"  # u8 (ONNX Runtime CPU), s8 (TensorRT); auto: s8 for engines
    int8_weight_bits: int | None = None  # 7 or 8; None: 7 for u8 (same labels on every CPU), 8 for s8 (TensorRT)
    imgsz: tuple[int, int] | None = None
    frame_size: tuple[int, int] | None = None
    dynamic: bool = False
    batch: int = 1
    raw: bool = False
    verify: str | None = None
    max_drop: float | None = None
    min_agreement: float | None = None
    output: str | None = None
    progress: bool = True
    # engine / triton options
    workspace_gb: float = 4.0
    timing_cache: str | None = None
    version_compatible: bool = False
    hardware_compatible: bool = False
    min_shape: tuple[int, int, int] | None = None  # (N, H, W) for --dynamic profiles
    opt_shape: tuple[int, int, int] | None = None
    max_shape: tuple[int, int, int] | None = None
    instances: int = 1
    triton_platform: str = "onnxruntime"  # onnxruntime | tensorrt | python (roadseg's runtime in Triton's Python backend)
    triton_instance: str | None = None  # auto | cpu | gpu; None: the platform's default (export/triton.py)


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
