"""`roadseg export MODEL --to triton`: a Triton Inference Server model repository.

    <card.name>_triton/                 the repository (--output, else next to the source)
      <model>/config.pbtxt              platform, tensors, batching, instances, the model card
      <model>/1/model.onnx              --triton-platform onnxruntime (default)
      <model>/1/model.plan (+ .json)    --triton-platform tensorrt: a plan built here (export/tensorrt.py)

config.pbtxt follows Triton's model configuration (ModelConfig protobuf, text format):
- platform "onnxruntime_onnx" or "tensorrt_plan"; input/output names and data types read from the
  ONNX graph itself (TYPE_UINT8 frames and labels for roadseg's frames->labels graph);
- batching: a graph whose inputs and outputs all start with a dynamic dimension (--dynamic) gets
  max_batch_size > 0 (the engine profile's largest batch, 8 by default) and `dims` without that batch
  dimension (Triton's full shape is [-1] + dims), dynamic H and W as -1, and dynamic_batching (Triton
  batches requests of the same frame size); a fixed-shape graph cannot be batched by Triton, so
  max_batch_size is 0 and `dims` are the full shape, batch dimension included;
- instance_group [{count: --instances, kind: KIND_GPU}];
- the model card as JSON in parameters {key: "roadseg"}.

The repository is written atomically: a new repository is built in a temporary folder beside the
target and renamed into place; in an existing repository only this model's folder is replaced (built
beside it, then swapped), so other models in it are left alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto

from roadseg import __version__
from roadseg.runtime.atomic import DIR_MODE
from roadseg.runtime.card import ModelCard
from roadseg.runtime.errors import RoadsegError, UsageError

from .options import ExportOptions, repository_path
from .spec import GraphSpec

CARD_PARAMETER = "roadseg"
PLATFORMS = {"onnxruntime": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}
DEFAULT_MAX_BATCH = 8  # runtime/engine.py DEFAULT_MAX_SHAPE[0]

# ONNX element types -> Triton model-config data types (Triton's "Datatypes" table)
TRITON_TYPES: dict[int, str] = {
    TensorProto.BOOL: "TYPE_BOOL", TensorProto.UINT8: "TYPE_UINT8", TensorProto.UINT16: "TYPE_UINT16",
    TensorProto.UINT32: "TYPE_UINT32", TensorProto.UINT64: "TYPE_UINT64", TensorProto.INT8: "TYPE_INT8",
    TensorProto.INT16: "TYPE_INT16", TensorProto.INT32: "TYPE_INT32", TensorProto.INT64: "TYPE_INT64",
    TensorProto.FLOAT16: "TYPE_FP16", TensorProto.FLOAT: "TYPE_FP32", TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.BFLOAT16: "TYPE_BF16", TensorProto.STRING: "TYPE_STRING",
}  # fmt: skip


def model_name(card: ModelCard) -> str:
    """The model's folder (and config) name: the card name with anything but [A-Za-z0-9_.-] as _."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", card.name).strip(".") or "model"
    return name


def graph_io(model: onnx.ModelProto) -> tuple[list[tuple[str, int, list[int]]], list[tuple[str, int, list[int]]]]:
    """([(name, onnx elem type, dims with -1 for dynamic)] of the inputs, the same of the outputs)."""
    inits = {i.name for i in model.graph.initializer}

    def describe(v: onnx.ValueInfoProto) -> tuple[str, int, list[int]]:
        t = v.type.tensor_type
        dims = [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim]
        return v.name, int(t.elem_type), dims

    inputs = [describe(v) for v in model.graph.input if v.name not in inits]
    return inputs, [describe(v) for v in model.graph.output]


def _escape(text: str) -> str:
    from google.protobuf import text_encoding

    return str(text_encoding.CEscape(text, as_utf8=True))


def _tensor_block(kind: str, tensors: list[tuple[str, str, list[int]]]) -> list[str]:
    lines = [f"{kind} ["]
    for k, (name, dtype, dims) in enumerate(tensors):
        lines += [
            "  {",
            f'    name: "{_escape(name)}"',
            f"    data_type: {dtype}",
            f"    dims: [ {', '.join(str(d) for d in dims)} ]",
            "  }" + ("," if k < len(tensors) - 1 else ""),
        ]
    return [*lines, "]"]


def triton_config(
    model: onnx.ModelProto, card: ModelCard, spec: GraphSpec, opts: ExportOptions, name: str | None = None
) -> str:
    """config.pbtxt for `model` served on opts.triton_platform (see the module docstring)."""
    if opts.triton_platform not in PLATFORMS:
        raise UsageError(f"--triton-platform {opts.triton_platform}: choose {' or '.join(PLATFORMS)}")
    if not isinstance(opts.instances, int) or opts.instances < 1:
        raise UsageError(f"--instances {opts.instances}: give a positive number of model instances")
    platform = PLATFORMS[opts.triton_platform][0]
    inputs, outputs = graph_io(model)
    if not inputs or not outputs:
        raise RoadsegError("the ONNX graph has no inputs or outputs; export it again with roadseg")
    every = inputs + outputs
    batching = all(dims and dims[0] == -1 for _, _, dims in every)
    max_batch = 0
    if batching:
        from .tensorrt import profiles_for

        max_batch = int(profiles_for(spec, card, opts)[0]["max"][0]) if spec.dynamic else DEFAULT_MAX_BATCH

    def convert(tensors: list[tuple[str, int, list[int]]]) -> list[tuple[str, str, list[int]]]:
        out = []
        for tname, elem, dims in tensors:
            if elem not in TRITON_TYPES:
                raise RoadsegError(
                    f"tensor '{tname}' has ONNX type {TensorProto.DataType.Name(elem)}, which Triton cannot serve"
                )
            if not dims:
                raise RoadsegError(f"tensor '{tname}' is a scalar; Triton needs tensors of rank >= 1")
            out.append((tname, TRITON_TYPES[elem], dims[1:] if batching else dims))
        return out

    card_json = card.replace(precision=spec.precision).to_json()
    lines = [
        f"# Triton model configuration written by roadseg {__version__} (`roadseg export --to triton`)",
        f"# {card.name} ({card.arch}, {spec.precision}): frames uint8 [N,H,W,3] BGR -> labels uint8 [N,H,W]"
        if not spec.raw
        else f"# {card.name} ({card.arch}, {spec.precision}): raw network, normalised float NCHW -> logits",
        f'name: "{_escape(name or model_name(card))}"',
        f'platform: "{platform}"',
        f"max_batch_size: {max_batch}",
        *_tensor_block("input", convert(inputs)),
        *_tensor_block("output", convert(outputs)),
    ]
    if batching:
        lines.append("dynamic_batching { }")
    lines += [
        "instance_group [",
        "  {",
        f"    count: {opts.instances}",
        "    kind: KIND_GPU",
        "  }",
        "]",
        "parameters {",
        f'  key: "{CARD_PARAMETER}"',
        f'  value: {{ string_value: "{_escape(card_json)}" }}',
        "}",
    ]
    return "\n".join(lines) + "\n"


def check_repository_folder(repo: Path) -> None:
    if repo.exists() and not repo.is_dir():
        raise RoadsegError(f"{repo}: exists and is not a folder; give a folder for the Triton model repository")
    parent = repo.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RoadsegError(f"{repo}: cannot create folder {parent} ({e.strerror}); choose another --output") from None
    target = repo if repo.is_dir() else parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise RoadsegError(f"{repo}: folder {target} is not writable; choose another --output")


def _fill_model_folder(folder: Path, model: onnx.ModelProto, card: ModelCard, spec: GraphSpec, opts: ExportOptions,
                       src: Path | None, config: str) -> None:  # fmt: skip
    version = folder / "1"
    version.mkdir(parents=True)
    filename = PLATFORMS[opts.triton_platform][1]
    if opts.triton_platform == "tensorrt":
        from .tensorrt import build_engine

        build_engine(model, card, spec, replace(opts, output=str(version / filename)), src)
    else:
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(version / filename))
    (folder / "config.pbtxt").write_text(config, encoding="utf-8")


def write_repository(
    model: onnx.ModelProto, card: ModelCard, spec: GraphSpec, opts: ExportOptions, src: Path | None
) -> Path:
    """Write a Triton model repository for `model` (see the module docstring); returns its path."""
    repo = repository_path(opts, card, src)
    name = model_name(card)
    config = triton_config(model, card, spec, opts, name)  # usage errors before anything is written
    check_repository_folder(repo)
    existing = repo.is_dir()
    # new repository: build all of it beside the target; existing one: build only this model's folder
    staging = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", suffix=".tmp", dir=repo.parent))
    os.chmod(staging, DIR_MODE)  # mkdtemp makes 0700; the repository gets the usual permissions
    backup: Path | None = None
    try:
        folder = staging / name
        _fill_model_folder(folder, model, card, spec, opts, src, config)
        if not existing:
            os.replace(staging, repo)
        else:
            target = repo / name
            if target.exists():
                backup = staging / ".previous"
                os.replace(target, backup)
            try:
                os.replace(folder, target)
            except BaseException:
                if backup is not None and not target.exists():
                    os.replace(backup, target)  # put the previous version back
                    backup = None
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    kind = "TensorRT plan" if opts.triton_platform == "tensorrt" else "ONNX"
    print(f"wrote Triton model repository {repo} (model '{name}', {kind}); serve it with "
          f"`tritonserver --model-repository={repo}`")  # fmt: skip
    return repo


def read_card_parameter(config_text: str) -> dict[str, Any]:
    """The model card JSON from a config.pbtxt written here (for tools and tests)."""
    m = re.search(r'key:\s*"' + CARD_PARAMETER + r'"\s*value:\s*\{\s*string_value:\s*"((?:[^"\\]|\\.)*)"', config_text)
    if not m:
        raise RoadsegError("config.pbtxt has no roadseg model card parameter")
    from google.protobuf import text_encoding

    return dict(json.loads(text_encoding.CUnescape(m.group(1)).decode("utf-8")))
