"""The ready ONNX variants of the bundled model that ship in the package (runtime/models/), so
`roadseg run default` needs no PyTorch: made from the release checkpoint by the real export, each
gated on accuracy against FP32 on a labelled split, with the gate's result in the file's metadata
(`roadseg_gate`), read back by `roadseg run` and tests.

    python -m roadseg.export.variants --data data/camvid

- INT8 for ONNX Runtime's CPU: u8 activations, rewritten for its x86 kernels, 7-bit weights (the
  CPU form's default), so the labels are the same on every CPU, with or without VNNI (8-bit
  weights saturate on x86 without VNNI: runtime/int8.py). One file instead of a VNNI and a
  non-VNNI pair: the gate measures what the 7th bit costs.
- FP16 for GPUs (ONNX Runtime CUDA / TensorRT EP, and the source of a TensorRT engine).
- No FP32: FP16 is as accurate for a GPU and INT8 faster on a CPU, so 23 MB more would buy nothing;
  with PyTorch installed, `roadseg export default` makes one.
Both take any batch and frame size (one graph for every camera, batched streams).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from roadseg.core.errors import RoadsegError
from roadseg.runtime.defaults import GATE_KEY, VARIANT_FILES, variants_dir

RECIPES = {  # file -> export options
    VARIANT_FILES["int8"]: {"precision": "int8", "int8_activations": "u8", "int8_weight_bits": 7},
    VARIANT_FILES["fp16"]: {"precision": "fp16"},
}


def make_variants(data: str, out: Path | None = None, checkpoint: str = "default") -> dict[str, dict]:
    """Export and gate every variant into `out` (runtime/models/); returns file -> gate result."""
    import onnx

    from roadseg.export.command import ExportOptions, export
    from roadseg.export.spec import set_props

    out = out or variants_dir()
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, recipe in RECIPES.items():
        target = out / name
        path = Path(export(ExportOptions(model=checkpoint, output=str(target), dynamic=True, calib=data, verify=data,
                                         progress=False, **recipe)))  # type: ignore[arg-type]  # fmt: skip
        report = json.loads(path.with_name(path.name + ".json").read_text())
        gate = {**report["gate"], "data": Path(data).name}
        gate["frames"] = {**gate["frames"], "source": Path(data).name}  # the dataset's name, not this machine's path
        model = onnx.load(str(path))
        set_props(model, {GATE_KEY: json.dumps(gate, sort_keys=True)})
        onnx.save(model, str(path))
        path.with_name(path.name + ".json").unlink()  # the gate is in the file; the export report stays a build log
        results[name] = gate
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="labelled dataset root (CamVid): INT8 calibration and every gate")
    p.add_argument("--out", help="folder (default: the package's runtime/models)")
    a = p.parse_args(argv)
    try:
        for name, gate in make_variants(a.data, Path(a.out) if a.out else None).items():
            print(f"{name}: {json.dumps(gate, sort_keys=True)}")
    except RoadsegError as e:
        print(f"variants: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
