"""roadseg's ONNX graph in the form TensorRT builds: every UINT8 conversion to or from FLOAT/HALF.

TensorRT's Cast layer converts UINT8 only to and from FLOAT and HALF (NvInferRuntimeBase.h, TensorRT
10.3 and 11.1; the operators page is looser). The frames->labels graph ends in ArgMax -> Cast(UINT8),
and onnx-tensorrt turns ArgMax indices into INT64, so TensorRT would see an INT64 -> UINT8 Cast. Here
such a Cast is split in two through FLOAT: INT64 -> FLOAT -> UINT8, exact for the class ids (and any
integer below 2^24). A Cast from UINT8 to anything but FLOAT/HALF is split the same way. The graph
on disk stays as exported (ONNX Runtime runs it as is); build_engine hands TensorRT this form, so an
ONNX exported by an older roadseg builds too.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

UINT8_PARTNERS = (TensorProto.FLOAT, TensorProto.FLOAT16)  # what TensorRT casts UINT8 to and from


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value of the main graph whose type ONNX's inference knows."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return {k: v for k, v in types.items() if v != TensorProto.UNDEFINED}


def _bad(src: int | None, dst: int) -> bool:
    """A Cast TensorRT refuses: UINT8 on one side and neither FLOAT nor HALF on the other. An input
    of unknown type cast to UINT8 counts too (routing it through FLOAT is harmless)."""
    if src == dst:
        return False
    if dst == TensorProto.UINT8:
        return src not in UINT8_PARTNERS
    return src == TensorProto.UINT8 and dst not in UINT8_PARTNERS


def uint8_cast_violations(model: onnx.ModelProto) -> list[str]:
    """Names of the Casts TensorRT would refuse (see the module docstring)."""
    types = _elem_types(model)
    out = []
    for node in model.graph.node:
        if node.op_type == "Cast":
            to = helper.get_attribute_value(next(a for a in node.attribute if a.name == "to"))
            if _bad(types.get(node.input[0]), int(to)):
                out.append(node.name or node.output[0])
    return out


def tensorrt_form(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of `model` whose Casts TensorRT accepts, and the names of the Casts that were split
    (INT64 -> UINT8 becomes INT64 -> FLOAT -> UINT8; UINT8 -> INT32 becomes UINT8 -> FLOAT -> INT32)."""
    types = _elem_types(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    split = []
    for node in out.graph.node:
        if node.op_type == "Cast":
            to = int(helper.get_attribute_value(next(a for a in node.attribute if a.name == "to")))
            if _bad(types.get(node.input[0]), to):
                name = node.name or node.output[0]
                mid = f"{node.output[0]}__as_float"
                nodes.append(helper.make_node("Cast", [node.input[0]], [mid], name=f"{name}__to_float", to=TensorProto.FLOAT))
                node.input[0] = mid
                split.append(name)
        nodes.append(node)
    if split:
        del out.graph.node[:]
        out.graph.node.extend(nodes)
    return out, split


__all__ = ["tensorrt_form", "uint8_cast_violations"]
