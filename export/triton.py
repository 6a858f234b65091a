"""`roadseg export MODEL --to triton`: a Triton Inference Server model repository.

    <card.name>_triton/                 the repository (--output, else next to the source)
      <model>/config.pbtxt              platform or backend, tensors, batching, instances, the model card
      <model>/1/model.onnx              --triton-platform onnxruntime (default)
      <model>/1/model.plan (+ .json)    --triton-platform tensorrt: a plan built here (export/tensorrt.py)
      <model>/1/model.py + model.onnx   --triton-platform python: roadseg's runtime in Triton's Python
                                        backend (export/triton_model.py says how it finds roadseg)

config.pbtxt follows Triton's model configuration (ModelConfig protobuf, text format):
- platform "onnxruntime_onnx" or "tensorrt_plan", or backend "python"; input/output names and data
  types read from the ONNX graph itself (TYPE_UINT8 frames and labels for roadseg's frames->labels graph);
- batching: a graph whose inputs and outputs all start with a dynamic dimension (--dynamic) gets
  max_batch_size > 0 (the engine profile's largest batch, 8 by default) and `dims` without that batch
  dimension (Triton's full shape is [-1] + dims), dynamic H and W as -1, and dynamic_batching (Triton
  batches requests of the same frame size); a fixed-shape graph cannot be batched by Triton, so
  max_batch_size is 0 and `dims` are the full shape, batch dimension included. The python platform
  always takes frames of any size and batches them ([-1, -1, 3] -> [-1, -1], max_batch_size as a
  dynamic graph's, dynamic_batching): roadseg's runtime resizes frames for a fixed-size graph and
  splits batches for a fixed-batch one, as it does outside Triton;
- instance_group [{count: --instances, kind}] with kind from --triton-instance: KIND_AUTO by default
  (Triton's GPUs where it has them, else its CPU, so a CPU-only server loads the model), KIND_GPU for
  a TensorRT plan (which runs only on a GPU; cpu is refused), KIND_CPU for an INT8 graph rewritten for
  ONNX Runtime's CPU kernels (which its GPU kernels do not compute alike; gpu is refused). An explicit
  `gpu` is written as asked, with a line saying that a server without GPUs refuses it;
- the model card as JSON in parameters {key: "roadseg"}. The python platform's version folder also
  holds roadseg_env.json: the exporting Python's version and site-packages folders, where the model
  finds roadseg in Triton's Python backend (export/triton_model.py).

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

from roadseg.core.atomic import DIR_MODE
from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError, UsageError
from roadseg.core.version import __version__

from .options import ExportOptions, repository_path
from .spec import GraphSpec

CARD_PARAMETER = "roadseg"
# --triton-platform -> (config line, the file in the version folder)
PLATFORMS = {
    "onnxruntime": ('platform: "onnxruntime_onnx"', "model.onnx"),
    "tensorrt": ('platform: "tensorrt_plan"', "model.plan"),
    "python": ('backend: "python"', "model.onnx"),
}
INSTANCE_KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
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


def _cpu_form(model: onnx.ModelProto) -> bool:
    from roadseg.runtime.model import ORT_CPU_KEY

    return any(p.key == ORT_CPU_KEY and p.value for p in model.metadata_props)


def instance_kind(model: onnx.ModelProto, opts: ExportOptions) -> str:
    """The instance_group kind for opts.triton_instance (None: the platform's default; see the module docstring)."""
    if opts.triton_platform == "tensorrt":
        return INSTANCE_KINDS["gpu"]
    if _cpu_form(model):
        if opts.triton_instance == "gpu":
            raise UsageError("--triton-instance gpu: this INT8 graph is rewritten for ONNX Runtime's CPU kernels, which its "
                             "GPU kernels do not compute alike; serve it on cpu, or export one for GPUs with --int8-activations s8")  # fmt: skip
        return INSTANCE_KINDS["cpu"]
    return INSTANCE_KINDS[opts.triton_instance or "auto"]


def python_environment() -> dict:
    """This Python's version ("major.minor") and site-packages folders: where Triton's Python
    backend finds roadseg (export/triton_model.py, roadseg_env.json)."""
    import site
    import sys

    folders = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        folders.append(site.getusersitepackages())
    return {"python": f"{sys.version_info[0]}.{sys.version_info[1]}", "site_packages": list(dict.fromkeys(folders))}


def _parameter(key: str, value: str) -> list[str]:
    return ["parameters {", f'  key: "{key}"', f'  value: {{ string_value: "{_escape(value)}" }}', "}"]


def _batching(every: list[tuple[str, int, list[int]]], spec: GraphSpec, card: ModelCard, opts: ExportOptions) -> int:
    """max_batch_size: 0 for a graph Triton cannot batch, else the largest batch the graph takes."""
    if opts.triton_platform != "python" and not all(dims and dims[0] == -1 for _, _, dims in every):
        return 0
    if not spec.dynamic:
        return DEFAULT_MAX_BATCH
    from .tensorrt import profiles_for

    return int(profiles_for(spec, card, opts)[0]["max"][0])


def check_options(opts: ExportOptions, raw: bool) -> None:
    """The Triton options that need no model (export checks them before any model work)."""
    if opts.triton_platform not in PLATFORMS:
        raise UsageError(f"--triton-platform {opts.triton_platform}: choose {' or '.join(PLATFORMS)}")
    if not isinstance(opts.instances, int) or opts.instances < 1:
        raise UsageError(f"--instances {opts.instances}: give a positive number of model instances")
    if opts.triton_instance is not None and opts.triton_instance not in INSTANCE_KINDS:
        raise UsageError(f"--triton-instance {opts.triton_instance}: choose {', '.join(INSTANCE_KINDS)}")
    if opts.triton_platform == "tensorrt" and opts.triton_instance == "cpu":
        raise UsageError("--triton-instance cpu: a TensorRT plan runs only on a GPU; for CPU instances use "
                         "--triton-platform onnxruntime or python")  # fmt: skip
    if opts.triton_platform == "python" and raw:
        raise UsageError("--triton-platform python serves roadseg's frames->labels graph; export it without --raw")


def triton_config(
    model: onnx.ModelProto, card: ModelCard, spec: GraphSpec, opts: ExportOptions, name: str | None = None
) -> str:
    """config.pbtxt for `model` served on opts.triton_platform (see the module docstring)."""
    check_options(opts, spec.raw)
    kind = instance_kind(model, opts)
    inputs, outputs = graph_io(model)
    if not inputs or not outputs:
        raise RoadsegError("the ONNX graph has no inputs or outputs; export it again with roadseg")
    max_batch = _batching(inputs + outputs, spec, card, opts)
    python = opts.triton_platform == "python"

    def convert(tensors: list[tuple[str, int, list[int]]]) -> list[tuple[str, str, list[int]]]:
        out = []
        for tname, elem, dims in tensors:
            if elem not in TRITON_TYPES:
                raise RoadsegError(
                    f"tensor '{tname}' has ONNX type {TensorProto.DataType.Name(elem)}, which Triton cannot serve"
                )
            if not dims:
                raise RoadsegError(f"tensor '{tname}' is a scalar; Triton needs tensors of rank >= 1")
            if python:  # roadseg's runtime takes frames of any size and any batch
                dims = [-1] * len(dims)
                dims[-1] = 3 if len(dims) == 4 else -1
            out.append((tname, TRITON_TYPES[elem], dims[1:] if max_batch else dims))
        return out

    card_json = card.replace(precision=spec.precision).to_json()
    lines = [
        f"# Triton model configuration written by roadseg {__version__} (`roadseg export --to triton`)",
        f"# {card.name} ({card.arch}, {spec.precision}): frames uint8 [N,H,W,3] BGR -> labels uint8 [N,H,W]"
        if not spec.raw
        else f"# {card.name} ({card.arch}, {spec.precision}): raw network, normalised float NCHW -> logits",
        f'name: "{_escape(name or model_name(card))}"',
        PLATFORMS[opts.triton_platform][0],
        f"max_batch_size: {max_batch}",
        *_tensor_block("input", convert(inputs)),
        *_tensor_block("output", convert(outputs)),
    ]
    if max_batch:
        lines.append("dynamic_batching { }")
    lines += ["instance_group [", "  {", f"    count: {opts.instances}", f"    kind: {kind}", "  }", "]"]
    lines += _parameter(CARD_PARAMETER, card_json)
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
    if opts.triton_platform == "python":
        from . import triton_model

        shutil.copyfile(triton_model.__file__, version / "model.py")
        env = json.dumps(python_environment(), indent=2) + "\n"
        (version / triton_model.ENV_FILE).write_text(env, encoding="utf-8")
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
    what = {"tensorrt": "TensorRT plan", "python": "roadseg's runtime in the Python backend"}.get(
        opts.triton_platform, "ONNX"
    )
    kind = instance_kind(model, opts)
    print(f"wrote Triton model repository {repo} (model '{name}', {what}, {kind} instances); serve it with "
          f"`tritonserver --model-repository={repo}`")  # fmt: skip
    if kind == "KIND_GPU" and opts.triton_platform != "tensorrt":
        print(
            "note: KIND_GPU instances: a Triton server without GPUs refuses this model (--triton-instance auto or cpu load there)"
        )
    return repo


def read_card_parameter(config_text: str) -> dict[str, Any]:
    """The model card JSON from a config.pbtxt written here (for tools and tests)."""
    m = re.search(r'key:\s*"' + CARD_PARAMETER + r'"\s*value:\s*\{\s*string_value:\s*"((?:[^"\\]|\\.)*)"', config_text)
    if not m:
        raise RoadsegError("config.pbtxt has no roadseg model card parameter")
    from google.protobuf import text_encoding

    return dict(json.loads(text_encoding.CUnescape(m.group(1)).decode("utf-8")))
