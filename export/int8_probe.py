"""Builds runtime/models/int8_probe.onnx, the graph runtime/int8.py runs to ask ONNX Runtime whether
its CPU kernels add u8 x s8 products exactly here. The runtime has no `onnx` package, so the probe
ships as a file; tests check that the file is what this builds.

Two branches, one per activation type, each as roadseg's INT8 graphs have them (float ->
QuantizeLinear -> DequantizeLinear -> Conv with per-channel int8 weights -> QuantizeLinear ->
DequantizeLinear): a 1x1 convolution over 8 channels of the largest activation (255 for u8, 127
for s8) times weight 127. Every pair of products passes 32767, so kernels that add pairs in 16 bits
with saturation give a visibly smaller (u8) or wrong (s8, shifted to u8 inside ONNX Runtime) result.

    python -m roadseg.export.int8_probe      # writes the file again
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from roadseg.runtime.int8 import PROBE_CHANNELS, PROBE_FILE, PROBE_OUT_SCALE


def _branch(act: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    zt = np.uint8 if act == "u8" else np.int8
    x, n = f"x_{act}", act
    nodes = [
        helper.make_node("QuantizeLinear", [x, f"sx_{n}", f"zx_{n}"], [f"xq_{n}"]),
        helper.make_node("DequantizeLinear", [f"xq_{n}", f"sx_{n}", f"zx_{n}"], [f"xf_{n}"]),
        helper.make_node("DequantizeLinear", [f"w_{n}", f"sw_{n}", f"zw_{n}"], [f"wf_{n}"], axis=0),
        helper.make_node("Conv", [f"xf_{n}", f"wf_{n}"], [f"c_{n}"]),
        helper.make_node("QuantizeLinear", [f"c_{n}", f"sy_{n}", f"zy_{n}"], [f"yq_{n}"]),
        helper.make_node("DequantizeLinear", [f"yq_{n}", f"sy_{n}", f"zy_{n}"], [f"y_{n}"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), f"sx_{n}"),
        numpy_helper.from_array(np.array(0, zt), f"zx_{n}"),
        numpy_helper.from_array(np.full((1, PROBE_CHANNELS, 1, 1), 127, np.int8), f"w_{n}"),
        numpy_helper.from_array(np.array([1.0], np.float32), f"sw_{n}"),
        numpy_helper.from_array(np.array([0], np.int8), f"zw_{n}"),
        numpy_helper.from_array(np.array(PROBE_OUT_SCALE, np.float32), f"sy_{n}"),
        numpy_helper.from_array(np.array(0, zt), f"zy_{n}"),
    ]
    return nodes, inits


def build() -> onnx.ModelProto:
    nodes, inits = [], []
    for act in ("u8", "s8"):
        n, i = _branch(act)
        nodes += n
        inits += i
    shape_in, shape_out = [1, PROBE_CHANNELS, 2, 2], [1, 1, 2, 2]
    graph = helper.make_graph(
        nodes, "roadseg_int8_probe",
        [helper.make_tensor_value_info(f"x_{a}", TensorProto.FLOAT, shape_in) for a in ("u8", "s8")],
        [helper.make_tensor_value_info(f"y_{a}", TensorProto.FLOAT, shape_out) for a in ("u8", "s8")],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], producer_name="roadseg")
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    PROBE_FILE.write_bytes(build().SerializeToString())
    print(f"wrote {PROBE_FILE}")
