"""roadseg's model for Triton's Python backend: frames in, class labels out, through roadseg's runtime.

`roadseg export MODEL --to triton --triton-platform python` copies this file as
<repository>/<model>/1/model.py, beside model.onnx and roadseg_env.json.

Where roadseg, numpy and onnxruntime come from. Triton's Python backend runs this file in its
stub, a program that embeds its own Python (the system's libpython of that version) and inherits
neither a virtual environment nor, in Triton's containers, the packages of the Python that exported
the model; and the stub imports numpy (for its own utilities) right after importing this file,
before any of its code runs. So the export records that Python's site-packages folders and version
in roadseg_env.json ({"python": "3.11", "site_packages": [...]}), and importing this file adds the
folders that exist here with site.addsitedir (their .pth files count, so an editable install of
roadseg works too), ahead of the stub's own paths. Only a stub of the same Python version can load
those compiled packages: with another version the folders are left out. What the folders do not
provide comes from the stub's own Python. On another machine (a Triton container), install roadseg
into the Python that Triton's stub runs (`python3 -m pip install roadseg`, or `roadseg[gpu]` for GPU
instances), or edit roadseg_env.json to list the folders that hold it. The alternatives were
heavier: a conda-pack archive per model (EXECUTION_ENV_PATH), or copies of roadseg's modules in the
model folder, which still need numpy and onnxruntime from somewhere.

Instances: KIND_CPU runs ONNX Runtime on the CPU, KIND_GPU ONNX Runtime's CUDA provider on the
instance's device (never a silent CPU fallback: a missing provider fails the load with the fix).

Batching: Triton's dynamic batcher hands execute() several requests at once (those with frames of
the same size); they are stacked into one runtime call, [N,H,W,3] -> [N,H,W], and each request gets
its own labels back. A request that fails (a bad frame) gets its own error; the others are served.

Tensors cross to and from the stub through DLPack, not the stub's NumPy bridge: the stub in the
nvidia-pytriton wheel is built for NumPy 1.x and sends empty outputs made from NumPy 2 arrays.
"""

from __future__ import annotations

import json
import site
import sys
from pathlib import Path
from typing import Any

ENV_FILE = "roadseg_env.json"  # {"python": "3.11", "site_packages": [...]}, beside this file


def this_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def use_exporting_environment(env: dict) -> list[str]:
    """Add the exporting Python's site-packages folders (those that exist here) ahead of sys.path,
    when this Python has the exporting Python's version; returns the folders added."""
    if env.get("python") and env["python"] != this_python():
        return []
    before = list(sys.path)
    added = []
    for folder in env.get("site_packages") or []:
        if Path(folder).is_dir() and folder not in before:
            site.addsitedir(folder)
            added.append(folder)
    sys.path[:] = [p for p in sys.path if p not in before] + before
    return added


def read_env(path: Path) -> dict:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


def check_imports(env: dict, where: Path) -> None:
    """numpy, onnxruntime and roadseg's runtime import here, or one ImportError that says how to fix it."""
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401

        import roadseg.runtime.segmenter  # noqa: F401
    except ImportError as e:
        python, folders = env.get("python") or "?", env.get("site_packages") or []
        why = (f"exported by Python {python}, whose packages this stub cannot load" if python != this_python()
               else f"exported with its packages in {', '.join(folders) or 'no recorded folder'}")  # fmt: skip
        raise ImportError(
            f"{where}: cannot import {e.name or e} in Triton's Python backend (Python {this_python()} at {sys.prefix}; "
            f"{why}): install roadseg into that Python (`python3 -m pip install roadseg`), or list the site-packages "
            f"folders that hold it in {where.with_name(ENV_FILE)}"
        ) from None


if __name__ != "roadseg.export.triton_model":  # as Triton's model.py (roadseg's exporter imports it for its helpers)
    _ENV = read_env(Path(__file__).with_name(ENV_FILE))
    use_exporting_environment(_ENV)
    check_imports(_ENV, Path(__file__))


class TritonPythonModel:
    """Triton's Python-backend interface: initialize, execute, finalize."""

    def initialize(self, args: dict[str, Any]) -> None:
        import numpy as np
        import triton_python_backend_utils as pb_utils

        from roadseg.runtime.segmenter import Segmenter

        config = json.loads(args["model_config"])
        self.np, self.pb = np, pb_utils
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        model = Path(args["model_repository"]) / str(args["model_version"]) / "model.onnx"
        if args.get("model_instance_kind") == "GPU":
            self.segmenter = Segmenter(model, "ort-cuda", device_id=int(args["model_instance_device_id"]))
        else:
            self.segmenter = Segmenter(model, "ort-cpu")

    def _frames(self, request: Any) -> Any:
        tensor = self.pb.get_input_tensor_by_name(request, self.input)
        if tensor is None:
            raise ValueError(f"the request has no input '{self.input}'")
        frames = self.np.from_dlpack(tensor)
        if frames.dtype != self.np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
            raise ValueError(
                f"'{self.input}' must be uint8 [N,H,W,3] BGR frames; got {frames.dtype} {list(frames.shape)}"
            )
        return frames

    def execute(self, requests: list[Any]) -> list[Any]:
        """One runtime call per frame size among `requests`; one response per request, in order."""
        np, pb = self.np, self.pb
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, Any]]] = {}
        for i, request in enumerate(requests):
            try:
                frames = self._frames(request)
            except Exception as e:  # noqa: BLE001 - this request fails, the others are served
                responses[i] = pb.InferenceResponse(error=pb.TritonError(str(e)))
                continue
            groups.setdefault(tuple(frames.shape[1:]), []).append((i, frames))
        for members in groups.values():
            batch = members[0][1] if len(members) == 1 else np.concatenate([f for _, f in members])
            try:
                labels = self.segmenter(batch)
            except Exception as e:  # noqa: BLE001
                for i, _ in members:
                    responses[i] = pb.InferenceResponse(error=pb.TritonError(f"roadseg: {e}"))
                continue
            start = 0
            for i, frames in members:
                out = np.ascontiguousarray(labels[start : start + len(frames)])
                start += len(frames)
                responses[i] = pb.InferenceResponse([pb.Tensor.from_dlpack(self.output, out)])
        return responses

    def finalize(self) -> None:
        segmenter = getattr(self, "segmenter", None)
        if segmenter is not None:
            segmenter.close()
