"""Reduced precision written into the ONNX graph (docs/ARCHITECTURE.md, "Precision lives in the graph"), so the
same file runs on ONNX Runtime CPU for measurement and builds as a strongly typed TensorRT network.

- FP16: onnxconverter-common's converter with IO types kept; pre/post nodes (cast, resize,
  normalisation, ArgMax) and numerically sensitive op types stay FP32.
- INT8: ONNX Runtime's static post-training quantisation, explicit Q/DQ, per-channel symmetric
  INT8 weights, calibrated on real frames; pre/post nodes and the logits stay FP32. Activations
  are either asymmetric UINT8 ("u8": ONNX Runtime's fast x86 path, U8S8 VNNI kernels, about
  twice as fast as s8 there; docs/EXPORT.md) or symmetric INT8 ("s8": the only form TensorRT
  consumes).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from roadseg.core.errors import RoadsegError
from roadseg.runtime.int8 import Int8Form

from .graph import POST_PREFIX, PRE_PREFIX

# op types kept in FP32 inside the FP16 network: reductions lose the most in half precision.
# (Resize is not listed: blocking the network's final Resize makes the converter fail, and bilinear
# interpolation of FP16 logits agrees with FP32. That final Resize, to the frame size, is inside
# /net/: FP16 in an FP16 graph, cast to FP32 before the ArgMax in /post/; FP32 in an INT8 graph,
# where _logit_nodes keeps it out of quantisation.)
FP16_BLOCK_OPS = ["GlobalAveragePool", "ReduceMean", "ReduceSum", "Softmax"]
CALIB_METHODS = ("minmax", "entropy", "percentile")
NET_PREFIX = "/net/"
REDUCED_QMAX = 64  # ONNX Runtime's reduce_range for symmetric int8 weights: [-64, 64]


def _pre_post_nodes(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.name.startswith((PRE_PREFIX, POST_PREFIX))]


def _logit_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes that produce the network's logits: the last node before post-processing (or the
    graph output), and through a trailing Resize the classifier feeding it. They stay FP32 so the
    ArgMax never compares INT8-rounded logits."""
    g = model.graph
    raw = not any(n.name.startswith(NET_PREFIX) for n in g.node)
    targets = [o.name for o in g.output] if raw else _net_boundary(g)[1]
    producer = {o: n for n in g.node for o in n.output}
    names, frontier = [], list(targets)
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or node.name in names:
            continue
        names.append(node.name)
        if node.op_type in ("Resize", "Upsample") and node.input:
            frontier.append(node.input[0])
    return names


def _net_boundary(graph: onnx.GraphProto) -> tuple[list[str], list[str]]:
    """Tensors entering and leaving the `/net/` nodes of a frames->labels graph."""
    net = [n for n in graph.node if n.name.startswith(NET_PREFIX)]
    produced = {o for n in net for o in n.output}
    inits = {i.name for i in graph.initializer}
    inputs = sorted({i for n in net for i in n.input if i and i not in produced and i not in inits})
    used_outside = {i for n in graph.node if not n.name.startswith(NET_PREFIX) for i in n.input}
    outputs = sorted(o for o in produced if o in used_outside or o in {x.name for x in graph.output})
    return inputs, outputs


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Mixed precision: FP16 weights and activations inside the network, pre/post in FP32.

    The converter (onnxconverter-common) runs on the network alone, cut out of the graph at the
    `/net/` boundary: run on the whole graph it retypes the outputs of the uint8->float Cast and
    of blocked ops without retyping the Cast nodes, which ONNX Runtime refuses to load ("Type
    Error: Type (tensor(float16)) of output arg ... does not match"). The converted network is
    then spliced back between the untouched FP32 pre- and post-processing nodes."""
    from onnx import helper
    from onnxconverter_common import float16

    g = model.graph
    raw = not any(n.name.startswith(NET_PREFIX) for n in g.node)  # a raw graph is all network
    if raw:
        net_in, net_out = [i.name for i in g.input], [o.name for o in g.output]
    else:
        net_in, net_out = _net_boundary(g)
    net = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(model)).extract_model(net_in, net_out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net16 = float16.convert_float_to_float16(net, keep_io_types=True, op_block_list=FP16_BLOCK_OPS)
    # the converter warns once per tensor whose values it clamps to FP16's range (|x| under 1e-7
    # or over 65504): dozens of lines for any trained net. One line says the same.
    clamped = [w for w in caught if "will be truncated to" in str(w.message)]
    for w in caught:
        if w not in clamped:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if clamped:
        warnings.warn(f"fp16: the converter clamped weights to FP16's range (|x| < 1e-7 or > 65504) in {len(clamped)} places", stacklevel=2)
    if raw:
        net16.metadata_props.extend(model.metadata_props)
        return net16
    outside = [n for n in g.node if not n.name.startswith(NET_PREFIX)]
    net_inits = {i.name for i in net.graph.initializer}
    inits = [i for i in g.initializer if i.name not in net_inits] + list(net16.graph.initializer)
    nodes = toposort(outside + list(net16.graph.node), {i.name for i in g.input} | {i.name for i in inits})
    graph = helper.make_graph(nodes, g.name, g.input, g.output, inits)
    out = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    out.metadata_props.extend(model.metadata_props)
    return out


def toposort(nodes: list[onnx.NodeProto], known: set[str]) -> list[onnx.NodeProto]:
    """`nodes` in an order ONNX accepts: in waves, each of the nodes whose inputs are all known by
    then, in their given order. The spliced FP16 graph needs it (with dynamic frame sizes, the
    nodes that read the frame's shape for the network's final upsampling sit outside the network
    but feed it), and so do the rewrites in ort_cpu.py, which append their nodes."""
    known = known | {""}
    done: list[onnx.NodeProto] = []
    while nodes:
        ready = [n for n in nodes if all(i in known for i in n.input)]
        if not ready:
            raise RoadsegError("the rewritten graph has a cycle or an input nobody produces; report this as a bug")
        for n in ready:
            known.update(n.output)
        done += ready
        taken = {id(n) for n in ready}
        nodes = [n for n in nodes if id(n) not in taken]
    return done


class _FrameReader:
    """ONNX Runtime CalibrationDataReader over a list of frames, with a progress bar."""

    def __init__(self, input_name: str, frames: Sequence[np.ndarray], progress: bool):
        self.name, self.frames, self.i = input_name, frames, 0
        self.bar = tqdm(total=len(frames), desc="calibrate", disable=not progress, leave=False)

    def get_next(self):
        if self.i >= len(self.frames):
            self.bar.close()
            return None
        x = self.frames[self.i]
        self.i += 1
        self.bar.update(1)
        return {self.name: x[None] if x.ndim == 3 else x}

    def rewind(self) -> None:
        self.i = 0


INT8_ACTIVATIONS = ("u8", "s8")
INT8_WEIGHT_BITS = (7, 8)


def activation_zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    """The zero points of the graph's QuantizeLinear nodes. Weights are stored already quantised
    (int8 initializers feeding DequantizeLinear), so every QuantizeLinear quantises an activation."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    return [numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]  # fmt: skip


def int8_activation_type(model: onnx.ModelProto) -> str | None:
    """"u8" or "s8" for a Q/DQ graph (u8 if any activation is asymmetric uint8), None without Q/DQ."""
    zps = activation_zero_points(model)
    if not zps:
        return None
    return "u8" if any(z.dtype == np.uint8 for z in zps) else "s8"


def int8_form(model: onnx.ModelProto) -> Int8Form | None:
    """What a Q/DQ graph computes, read from the graph itself: its activation type, and 7-bit
    weights when every quantised weight lies in [-64, 64] (8 otherwise). None without Q/DQ."""
    from onnx import numpy_helper

    acts = int8_activation_type(model)
    if acts is None:
        return None
    inits = {i.name: i for i in model.graph.initializer}
    widest = 0
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            w = numpy_helper.to_array(inits[n.input[0]])
            if w.dtype == np.int8 and w.size:
                widest = max(widest, int(np.abs(w.astype(np.int32)).max()))
    return Int8Form(acts, 7 if widest <= REDUCED_QMAX else 8)


def to_int8(model: onnx.ModelProto, frames: Sequence[np.ndarray], method: str = "minmax", progress: bool = True,
            activations: str = "u8", weight_bits: int = 7) -> onnx.ModelProto:  # fmt: skip
    """Static PTQ with explicit Q/DQ.

    Args:
        frames: uint8 [H,W,3] BGR calibration frames at the graph's size.
        activations: "u8" (asymmetric uint8, fast on ONNX Runtime CPU) or "s8" (symmetric int8, TensorRT).
        weight_bits: 7 ([-64, 64], ONNX Runtime's reduce_range): ONNX Runtime's u8 x s8 kernels never
            saturate on x86 CPUs without VNNI, so every CPU gives the same labels at full speed, for a
            little accuracy (the gate says how much); 8: full range (TensorRT, VNNI CPUs).

    Raises:
        RoadsegError: an unknown activation type, weight range or calibration method."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if activations not in INT8_ACTIVATIONS:
        raise RoadsegError(f"unknown INT8 activation type '{activations}'; choose u8 or s8")
    if weight_bits not in INT8_WEIGHT_BITS:
        raise RoadsegError(f"INT8 weights of {weight_bits} bits; choose 7 or 8")
    if method not in CALIB_METHODS:
        raise RoadsegError(f"unknown calibration method '{method}'; choose {', '.join(CALIB_METHODS)}")
    calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}[method]  # fmt: skip
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="roadseg-int8-") as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        # shape inference + graph cleanup the quantiser expects (BatchNorm is already folded)
        quant_pre_process(str(src), str(pre), skip_optimization=False, skip_symbolic_shape=False)
        pre_model = onnx.load(str(pre))
        exclude = _pre_post_nodes(pre_model) + _logit_nodes(pre_model)
        # the quantiser logs "Axis 1 is out-of-range" on the root logger for every BatchNorm that
        # cannot fold into a convolution (DDRNet's pre-activation DAPPM: per-tensor there, as intended)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_static(
                str(pre), str(dst), _FrameReader(input_name, frames, progress), quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=QuantType.QInt8 if activations == "s8" else QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=calib, nodes_to_exclude=exclude, reduce_range=weight_bits == 7,
                # no CalibMaxIntermediateOutputs: in onnxruntime 1.32 the MinMax calibrater clears each
                # full buffer without reducing it (only the last partial buffer counts), and the
                # histogram calibraters ignore it. MinMax keeps only per-tensor min/max anyway.
                extra_options={"ActivationSymmetric": activations == "s8", "WeightSymmetric": True},
            )  # fmt: skip
        finally:
            root.setLevel(level)
        return onnx.load(str(dst))
