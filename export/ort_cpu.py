"""Rewrites of a u8 INT8 graph (ONNX Runtime's CPU form, see precision.py) for ONNX Runtime's x86
kernels. stem, channels and nhwc compute exactly the same labels; pixels moves rounding (below). The
accuracy gate that follows every INT8 export measures the result against FP32. s8 graphs
(TensorRT's form) are left as they are. Each rewrite checks the pattern it rewrites and returns
None, leaving the graph alone, on anything else.

- pixels: the first convolution reads the uint8 pixels as its quantised input (DequantizeLinear
  with scale 1 and a zero point near the mean pixel), with colour order and mean/std folded into
  its weights. This drops the float Cast, the normalising 1x1 convolution, its NCHWc reorder and a
  QuantizeLinear, and the resize runs on uint8. What moves: (1) the convolution's zero padding
  pads the normalised image with (Z - mean)/std instead of 0 (at most 0.22 for the ImageNet mean),
  on its one-pixel border ring; (2) ONNX Runtime's uint8 Resize truncates where the float one is
  rounded to the quantisation grid (half a level low on average, added back in the bias); (3) the
  folded weights are quantised again. On the default model the first convolution's output moves
  by under half a quantisation level on average away from the border.
- stem: MLAS has no fast path for a convolution over 3 input channels, so the default model's 3x3
  stride-2 stem was a tenth of its INT8 graph's time. Seen channels-last, 4 neighbouring pixels of
  a row are 12 contiguous values, so a free Reshape makes a 12-channel image a quarter as wide; a
  3x2 convolution over it with stride (2, 1) and two outputs per block (output columns 2m and
  2m+1) computes the same integer sums, and a free Reshape puts the columns back. Exact, and 12
  channels take MLAS's fast kernels.
- channels: MLAS's QLinearConv is fast only when the input channels are a multiple of 4 (43 input
  channels take about twice as long as 44). Convolutions with at least 8 input channels and a
  count that is not a multiple of 4 get zero input channels: a uint8 Pad with the zero point, and
  zero weights. Images (3 channels) are left alone: ONNX Runtime's Pad on the innermost axis of a
  whole image costs more than the convolution would save (stem handles that convolution instead).
- nhwc: the logits' final upsampling and ArgMax run channels-last (a Transpose of the small
  low-resolution logits first): ONNX Runtime's bilinear Resize and ArgMax are faster over NHWC.

"Exact" holds on CPUs with VNNI (AVX512-VNNI, AVX-VNNI). On AVX2 without VNNI, ONNX Runtime's
u8 x s8 kernels add pairs of products in 16 bits with saturation (VPMADDUBSW; its quantisation
docs suggest reduce_range or U8U8 where that costs accuracy), so a different pairing (stem's and
channels' reordered and zero inputs) can round differently where a pair saturates, as can the u8
graph itself against FP32. A reduce-range graph (`--int8-reduce-range`: weights in [-64, 64], so
a pair sums to at most 2 x 255 x 64 = 32640) never saturates, and is exact on every x86 CPU;
pixels keeps that range when it quantises again. The accuracy gate measures the graph on the CPU
that exports it.
What each rewrite saved on the default model is in docs/EXPORT.md.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from roadseg.core.card import INPUT_NAME
from roadseg.runtime.model import ORT_CPU_KEY

from .graph import PRE_PREFIX
from .precision import REDUCED_QMAX, toposort
from .spec import set_props

PAD_MULTIPLE, PAD_MIN_CHANNELS = 4, 8


class _Graph:
    """Lookups over one graph that the rewrites below edit in place."""

    def __init__(self, model: onnx.ModelProto):
        self.model, self.g = model, model.graph
        self.inits = {i.name: i for i in self.g.initializer}

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        return next((n for n in self.g.node if tensor in n.output), None)

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return [n for n in self.g.node if tensor in n.input]

    def const(self, name: str) -> np.ndarray | None:
        """An initializer's or a Constant node's value, else None."""
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer(name)
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def set_const(self, name: str, value: np.ndarray) -> str:
        """Writes a new initializer `name` (replacing one of that name)."""
        tensor = numpy_helper.from_array(value, name)
        if name in self.inits:
            self.inits[name].CopyFrom(tensor)
        else:
            self.g.initializer.append(tensor)
            self.inits[name] = self.g.initializer[-1]
        return name

    def dequantized_weight(self, conv: onnx.NodeProto) -> tuple[onnx.NodeProto, np.ndarray] | None:
        """The per-channel DequantizeLinear feeding conv's weight and its float value."""
        dq = self.producer(conv.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q, s, z = (self.const(i) for i in dq.input[:3])
        if q is None or s is None or z is None:
            return None
        shape = (-1,) + (1,) * (q.ndim - 1)
        return dq, (q.astype(np.float64) - z.astype(np.float64).reshape(shape)) * s.astype(np.float64).reshape(shape)

    def forget_shapes(self, *tensors: str) -> None:
        """Drops the recorded shapes of tensors a rewrite changed (checkers compare them)."""
        keep = [v for v in self.g.value_info if v.name not in tensors]
        del self.g.value_info[:]
        self.g.value_info.extend(keep)

    def finish(self) -> onnx.ModelProto:
        """Drops nodes and initializers nothing reads any more, and orders the nodes."""
        outputs = {o.name for o in self.g.output}
        nodes = list(self.g.node)
        while True:
            used = outputs | {i for n in nodes for i in n.input}
            keep = [n for n in nodes if any(o in used for o in n.output)]
            if len(keep) == len(nodes):
                break
            nodes = keep
        used = {i for n in nodes for i in n.input}
        inits = [i for i in self.g.initializer if i.name in used]
        self.forget_shapes(*({v.name for v in self.g.value_info} - {o for n in nodes for o in n.output}))
        known = {i.name for i in self.g.input} | {i.name for i in inits}
        del self.g.node[:]
        self.g.node.extend(toposort(nodes, known))
        del self.g.initializer[:]
        self.g.initializer.extend(inits)
        return self.model


def _requantize_conv(gr: _Graph, conv: onnx.NodeProto, wdq: onnx.NodeProto, w: np.ndarray, bias: np.ndarray,
                     x_scale: float) -> None:  # fmt: skip
    """Writes float weights `w` (per-channel symmetric int8) and `bias` (int32 at x_scale * w_scale).
    The weights keep the range the graph's were quantised to: 127, or 64 for a reduce-range graph
    (7-bit weights, whose pair sums never saturate on CPUs without VNNI). A channel's scale is
    raised where its bias would not fit int32 (a dead channel: zero weights, non-zero bias), so the
    bias never wraps around."""
    old = gr.const(wdq.input[0])
    qmax = REDUCED_QMAX if old is not None and np.abs(old.astype(np.int32)).max() <= REDUCED_QMAX else 127
    absmax = np.abs(w).reshape(len(w), -1).max(1)
    scale = np.where(absmax > 0, absmax / qmax, 1.0)
    scale = np.maximum(scale, np.abs(bias) / (x_scale * (2**31 - 1) / 2))  # half the int32 range: rounding margin
    q = np.clip(np.round(w / scale.reshape(-1, 1, 1, 1)), -qmax, qmax).astype(np.int8)
    name = conv.name.strip("/").replace("/", "_")
    wdq.input[0] = gr.set_const(f"{name}_pixels_weight_q", q)
    wdq.input[1] = gr.set_const(f"{name}_pixels_weight_scale", scale.astype(np.float32))
    wdq.input[2] = gr.set_const(f"{name}_pixels_weight_zp", np.zeros(len(w), np.int8))
    _set_attr(wdq, "axis", 0)
    bscale = (scale * x_scale).astype(np.float32)
    bq = np.round(bias / bscale.astype(np.float64)).astype(np.int32)
    bdq = helper.make_node("DequantizeLinear", [gr.set_const(f"{name}_pixels_bias_q", bq), gr.set_const(f"{name}_pixels_bias_scale", bscale),
                                                gr.set_const(f"{name}_pixels_bias_zp", np.zeros(len(w), np.int32))],
                           [f"{name}_pixels_bias"], name=f"{conv.name}_bias_DequantizeLinear", axis=0)  # fmt: skip
    gr.g.node.append(bdq)
    if len(conv.input) > 2:
        conv.input[2] = bdq.output[0]
    else:
        conv.input.append(bdq.output[0])


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    """Sets attribute `name`, replacing the one of that name."""
    for a in node.attribute:
        if a.name == name:
            node.attribute.remove(a)
            break
    node.attribute.append(helper.make_attribute(name, value))


def _attr(node: onnx.NodeProto, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _resize_size(resize: onnx.NodeProto) -> int | None:
    """The input index of a Resize's target size: 3 (`sizes`) or 2 (`scales`), both in NCHW order;
    None for a Resize with a region of interest, whose roi would need reordering too."""
    roi = resize.input[1] if len(resize.input) > 1 else ""
    if roi or _attr(resize, "coordinate_transformation_mode") == b"tf_crop_and_resize":
        return None
    which = 3 if len(resize.input) > 3 and resize.input[3] else 2
    return which if len(resize.input) > which and resize.input[which] else None


def _nhwc_size(gr: _Graph, like: onnx.NodeProto, resize: onnx.NodeProto) -> onnx.NodeProto:
    """Gives `resize` (now reading NHWC data) `like`'s NCHW target size reordered to NHWC, through
    the returned Gather (constant-folded when the size is)."""
    which = _resize_size(like)
    assert which is not None
    order = gr.set_const("/nhwc_order", np.array([0, 2, 3, 1], np.int64))
    size = like.input[which]
    while len(resize.input) <= which:
        resize.input.append("")
    gather = helper.make_node("Gather", [size, order], [f"{resize.name}_nhwc_size"], name=f"{resize.name}_nhwc_size", axis=0)
    resize.input[which] = gather.output[0]
    return gather


def _pre_chain(gr: _Graph, tensor: str) -> dict[str, onnx.NodeProto] | None:
    """The float pre-processing from the frames to `tensor`, by op type, when it is exactly roadseg's:
    Cast to float, Transpose to NCHW, a 1x1 normalising convolution and at most one Resize (in
    either order), each read only by the next (and, for the Cast, by Shape nodes); else None."""
    chain: dict[str, onnx.NodeProto] = {}
    allowed = {"Cast", "Transpose", "Conv", "Resize"}
    while tensor != INPUT_NAME:
        node = gr.producer(tensor)
        if node is None or node.op_type not in allowed or node.op_type in chain or not node.name.startswith(PRE_PREFIX):
            return None
        readers = [n for n in gr.consumers(tensor) if not (node.op_type == "Cast" and n.op_type == "Shape")]
        if chain and len(readers) != 1:
            return None
        chain[node.op_type] = node
        tensor = node.input[0]
    cast, tr, conv = chain.get("Cast"), chain.get("Transpose"), chain.get("Conv")
    if cast is None or tr is None or conv is None or cast.input[0] != INPUT_NAME or tr.input[0] != cast.output[0]:
        return None
    if _attr(cast, "to") != onnx.TensorProto.FLOAT or list(_attr(tr, "perm", [])) != [0, 3, 1, 2]:
        return None
    if _attr(conv, "group", 1) != 1 or any(v != 1 for v in _attr(conv, "strides", [1, 1])) or any(_attr(conv, "pads", [0] * 4)):
        return None
    return chain


def pixels(model: onnx.ModelProto) -> str | None:
    """Feeds uint8 pixels to the first quantised convolution (see the module docstring); None when
    the graph is not roadseg's frames graph with its pre-processing in front of one convolution."""
    gr = _Graph(model)
    if gr.g.input[0].name != INPUT_NAME:
        return None
    pre_out = {o for n in gr.g.node if n.name.startswith(PRE_PREFIX) for o in n.output}
    qs = [n for n in gr.g.node if n.op_type == "QuantizeLinear" and n.input[0] in pre_out]
    if len(qs) != 1:
        return None
    chain = _pre_chain(gr, qs[0].input[0])
    if chain is None or len(gr.consumers(qs[0].input[0])) != 1:
        return None
    dqs = gr.consumers(qs[0].output[0])
    convs = [c for dq in dqs for c in gr.consumers(dq.output[0])]
    if (
        len(dqs) != 1
        or dqs[0].op_type != "DequantizeLinear"
        or len(convs) != 1
        or convs[0].op_type != "Conv"
        or _attr(convs[0], "group", 1) != 1
    ):
        return None
    conv, norm = convs[0], chain["Conv"]
    a, b = gr.const(norm.input[1]), gr.const(norm.input[2]) if len(norm.input) > 2 else None
    found = gr.dequantized_weight(conv)
    if a is None or b is None or found is None or a.shape != (3, 3, 1, 1) or len(gr.consumers(found[0].output[0])) != 1:
        return None
    wdq, w = found
    bias = np.zeros(len(w))
    if len(conv.input) > 2 and conv.input[2]:
        bdq = gr.producer(conv.input[2])
        bq, bs = (
            (gr.const(bdq.input[0]), gr.const(bdq.input[1]))
            if bdq is not None and bdq.op_type == "DequantizeLinear"
            else (None, None)
        )
        if bq is None or bs is None:
            return None
        bias = bq.astype(np.float64) * bs.astype(np.float64)
    a, b = a[:, :, 0, 0].astype(np.float64), b.astype(np.float64)
    # normalised = a @ pixel + b; the pixel that normalises to 0 is the mean (in frame channel order)
    zero = int(np.clip(np.round(np.linalg.solve(a, -b).mean()), 0, 255))
    w2 = np.einsum("ockl,cd->odkl", w, a)
    bias2 = bias + np.einsum("ockl,c->o", w, b) + zero * w2.sum((1, 2, 3))
    resize = chain.get("Resize")
    if resize is not None and _resize_size(resize) is None:
        return None
    if resize is not None:
        # ONNX Runtime's linear Resize on uint8 truncates where the float one rounds: add back half
        # a level, the mean of what truncation takes away
        bias2 = bias2 + 0.5 * w2.sum((1, 2, 3))
    _requantize_conv(gr, conv, wdq, w2, bias2, 1.0)
    # uint8 frames [N,H,W,3] -> Resize (channels-last) -> NCHW -> DequantizeLinear; ONNX Runtime
    # runs the Resize channels-last either way (its layout optimiser moves the Transpose), and
    # stem below needs the pixels channels-last
    x, nodes = INPUT_NAME, []
    if resize is not None:
        nodes.append(helper.make_node("Resize", [x], [f"{PRE_PREFIX}pixels_resized"], name=f"{PRE_PREFIX}pixels/Resize"))
        nodes[-1].attribute.extend(resize.attribute)
        nodes.append(_nhwc_size(gr, resize, nodes[-1]))
        x = nodes[0].output[0]
    nodes.append(helper.make_node("Transpose", [x], [f"{PRE_PREFIX}pixels_nchw"], name=f"{PRE_PREFIX}pixels/Transpose", perm=[0, 3, 1, 2]))
    nodes.append(helper.make_node("DequantizeLinear", [nodes[-1].output[0], gr.set_const(f"{PRE_PREFIX}pixels_scale", np.array(1.0, np.float32)),
                                                       gr.set_const(f"{PRE_PREFIX}pixels_zero_point", np.array(zero, np.uint8))],
                                  [f"{PRE_PREFIX}pixels"], name=f"{PRE_PREFIX}pixels/DequantizeLinear"))  # fmt: skip
    conv.input[0] = nodes[-1].output[0]
    gr.g.node.extend(nodes)
    # a dynamic graph reads the frame size off the float frames: read it off the uint8 ones, so
    # the Cast goes with the rest of the float pre-processing
    for shape in [n for n in gr.consumers(chain["Cast"].output[0]) if n.op_type == "Shape"]:
        shape.input[0] = INPUT_NAME
    gr.finish()
    return f"pixels (zero point {zero})"


def _ints(node: onnx.NodeProto, name: str, default: list[int]) -> list[int]:
    return list(_attr(node, name, default))


def stem(model: onnx.ModelProto) -> str | None:
    """Runs the first convolution (3x3, stride 2, on the 3-channel pixels) over 12 channels: see
    the module docstring. Reads what pixels wrote; None on anything else."""
    gr = _Graph(model)
    dq = gr.producer(f"{PRE_PREFIX}pixels")
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    tr = gr.producer(dq.input[0])
    if tr is None or tr.op_type != "Transpose" or _ints(tr, "perm", []) != [0, 3, 1, 2] or len(gr.consumers(tr.output[0])) != 1:
        return None
    convs = gr.consumers(dq.output[0])
    if len(convs) != 1 or convs[0].op_type != "Conv" or convs[0].input[0] != dq.output[0]:
        return None
    conv = convs[0]
    if (
        _attr(conv, "group", 1) != 1
        or _ints(conv, "kernel_shape", []) != [3, 3]
        or _ints(conv, "strides", [1, 1]) != [2, 2]
        or _ints(conv, "pads", [0] * 4) != [1, 1, 1, 1]
        or _ints(conv, "dilations", [1, 1]) != [1, 1]
        or _attr(conv, "auto_pad", b"NOTSET") != b"NOTSET"
        or len(conv.input) < 3
    ):
        return None
    wdq, bdq = gr.producer(conv.input[1]), gr.producer(conv.input[2])
    readers = gr.consumers(conv.output[0])
    if wdq is None or bdq is None or wdq.op_type != "DequantizeLinear" or bdq.op_type != "DequantizeLinear":
        return None
    if len(readers) != 1 or readers[0].op_type != "QuantizeLinear" or len(gr.consumers(wdq.output[0])) != 1:
        return None
    out_q = readers[0]
    # weight, its scale and zero point; the bias, its scale and zero point; the output's scale
    values = [gr.const(i) for i in list(wdq.input) + list(bdq.input) + [out_q.input[1]]]
    if len(wdq.input) != 3 or len(bdq.input) != 3 or any(v is None for v in values):
        return None
    w, wscale, wzp, bq, bscale, bzp, out_scale = (np.asarray(v) for v in values)
    o = w.shape[0]
    per_tensor_or_channel = all(v.size == 1 or v.shape == (o,) for v in (wscale, wzp, bq, bscale, bzp))
    if (
        w.shape[1:] != (3, 3, 3)
        or bq.shape != (o,)
        or not per_tensor_or_channel
        or np.any(wzp != 0)  # the added weights are zeros: symmetric weights only (pixels writes them)
        or out_scale.size != 1
        or ((wscale.ndim or wzp.ndim) and _attr(wdq, "axis", 1) != 0)
        or len(gr.consumers(bdq.output[0])) != 1
    ):
        return None
    pixel_params = [gr.const(i) for i in dq.input[1:]]
    if len(pixel_params) != 2 or any(v is None or v.size != 1 for v in pixel_params):  # one scale for all pixels
        return None
    # the pixels' width must split into blocks of 4 (it is the model input width, a multiple of 32)
    shapes = {v.name: v for v in onnx.shape_inference.infer_shapes(model, data_prop=True).graph.value_info}
    dims = shapes[dq.output[0]].type.tensor_type.shape.dim if dq.output[0] in shapes else []
    if len(dims) != 4 or not dims[3].HasField("dim_value") or dims[3].dim_value % 4:
        return None
    # Output column j = 2m + p (phase p) reads pixel columns 2j-1..2j+1 = 4m+2p-1..4m+2p+1, which
    # lie in 4-pixel blocks m-1 and m: a 2-wide kernel over blocks, 2 x O outputs (phase, channel).
    w2 = np.zeros((2 * o, 12, 3, 2), w.dtype)
    for p in range(2):
        for bx in range(2):
            for d in range(4):
                kx = 4 * bx + d - 2 * p - 3
                if 0 <= kx <= 2:
                    w2[p * o : (p + 1) * o, 3 * d : 3 * d + 3, :, bx] = w[:, :, :, kx]
    name = conv.name.strip("/").replace("/", "_")
    def twice(v: np.ndarray) -> np.ndarray:  # per-channel values, for both phases
        return np.tile(v, 2) if v.shape == (o,) else v

    wdq.input[0] = gr.set_const(f"{name}_stem_weight_q", w2)
    wdq.input[1] = gr.set_const(f"{name}_stem_weight_scale", twice(wscale))
    wdq.input[2] = gr.set_const(f"{name}_stem_weight_zp", twice(wzp))
    bdq.input[0] = gr.set_const(f"{name}_stem_bias_q", twice(bq))
    bdq.input[1] = gr.set_const(f"{name}_stem_bias_scale", twice(bscale))
    bdq.input[2] = gr.set_const(f"{name}_stem_bias_zp", twice(bzp))
    _set_attr(conv, "kernel_shape", [3, 2])
    _set_attr(conv, "strides", [2, 1])
    _set_attr(conv, "pads", [1, 1, 1, 0])  # one block (4 zero-point pixels) on the left
    # pixels [N,H,W,3] -> [N,H,W/4,12], a free reshape; the (phase, channel) outputs
    # [N,H/2,W/4,2O] -> [N,H/2,W/2,O], free too channels-last, where ONNX Runtime keeps them
    blocks = helper.make_node("Reshape", [tr.input[0], gr.set_const(f"{PRE_PREFIX}pixel_blocks_shape", np.array([0, 0, -1, 12], np.int64))],
                              [f"{PRE_PREFIX}pixel_blocks"], name=f"{PRE_PREFIX}pixels/Reshape")  # fmt: skip
    tr.input[0] = blocks.output[0]
    q = out_q.output[0]
    out_q.output[0] = f"{q}_phases"
    nodes = [
        blocks,
        helper.make_node("Transpose", [out_q.output[0]], [f"{q}_phases_nhwc"], name=f"{conv.name}_phases_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [f"{q}_phases_nhwc", gr.set_const(f"{name}_stem_columns", np.array([0, 0, -1, o], np.int64))],
                         [f"{q}_nhwc"], name=f"{conv.name}_columns"),
        helper.make_node("Transpose", [f"{q}_nhwc"], [q], name=f"{conv.name}_columns_nchw", perm=[0, 3, 1, 2]),
    ]  # fmt: skip
    gr.g.node.extend(nodes)
    gr.forget_shapes(dq.input[0], dq.output[0], wdq.output[0], bdq.output[0], conv.output[0], q)
    gr.finish()
    return "stem"


def channels(model: onnx.ModelProto) -> str | None:
    """Pads the quantised inputs of convolutions whose input channel count is not a multiple of 4
    (see the module docstring); None when there are none."""
    gr = _Graph(model)
    done = []
    for conv in [n for n in gr.g.node if n.op_type == "Conv" and _attr(n, "group", 1) == 1]:
        wdq, xdq = gr.producer(conv.input[1]), gr.producer(conv.input[0])
        if wdq is None or xdq is None or wdq.op_type != "DequantizeLinear" or xdq.op_type != "DequantizeLinear":
            continue
        q = gr.const(wdq.input[0])
        zp = gr.const(xdq.input[2]) if len(xdq.input) > 2 else None
        scale = gr.const(wdq.input[1])
        if q is None or q.ndim != 4 or scale is None or (scale.size > 1 and _attr(wdq, "axis", 1) != 0):
            continue  # per-channel weights must be quantised along the output channels
        if len(gr.consumers(wdq.output[0])) != 1:  # tied weights: another convolution reads them unpadded
            continue
        cin = q.shape[1]
        extra = -cin % PAD_MULTIPLE
        if not extra or cin < PAD_MIN_CHANNELS or zp is None or zp.size != 1:
            continue
        name = conv.name.strip("/").replace("/", "_")
        padded = np.concatenate([q, np.zeros((q.shape[0], extra) + q.shape[2:], q.dtype)], 1)
        wdq.input[0] = gr.set_const(f"{name}_padded_weight_q", padded)
        pads = gr.set_const(f"{name}_channel_pads", np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64))
        fill = gr.set_const(f"{name}_channel_fill", zp.reshape(()))
        pad = helper.make_node(
            "Pad",
            [xdq.input[0], pads, fill],
            [f"{name}_padded_input_q"],
            name=f"{conv.name}_channel_pad",
            mode="constant",
        )
        dq = helper.make_node("DequantizeLinear", [pad.output[0]] + list(xdq.input[1:]), [f"{name}_padded_input"],
                              name=f"{conv.name}_channel_pad_DequantizeLinear")  # fmt: skip
        conv.input[0] = dq.output[0]
        gr.g.node.extend([pad, dq])
        done.append(f"{cin}->{cin + extra}")
    if not done:
        return None
    gr.finish()
    return f"channels ({', '.join(done)})"


def nhwc(model: onnx.ModelProto) -> str | None:
    """Runs the final Resize and the ArgMax over channels-last logits; None without that ending."""
    gr = _Graph(model)
    argmax = [n for n in gr.g.node if n.op_type == "ArgMax"]
    if len(argmax) != 1:
        return None
    am = argmax[0]
    axis = next((a for a in am.attribute if a.name == "axis"), None)
    resize = gr.producer(am.input[0])
    if axis is None or axis.i != 1 or _attr(am, "keepdims", 1) != 0 or resize is None or resize.op_type != "Resize":
        return None
    if len(gr.consumers(resize.output[0])) != 1 or _resize_size(resize) is None:
        return None
    src = resize.input[0]
    nodes = [helper.make_node("Transpose", [src], [f"{src}_nhwc"], name=f"{resize.name}_nhwc", perm=[0, 2, 3, 1])]
    resize.input[0] = nodes[0].output[0]
    nodes.append(_nhwc_size(gr, resize, resize))
    axis.i = 3
    gr.g.node.extend(nodes)
    gr.forget_shapes(resize.output[0], *am.output)
    gr.finish()
    return "nhwc"


REWRITES = {"pixels": pixels, "stem": stem, "channels": channels, "nhwc": nhwc}


def tune(model: onnx.ModelProto) -> list[str]:
    """Applies every rewrite that fits `model` (a u8 INT8 graph), in place; says which ran, also in
    the graph's metadata (ORT_CPU_KEY), where the runtime reads it to keep the graph off GPUs."""
    done = [note for rewrite in REWRITES.values() if (note := rewrite(model))]
    if done:
        set_props(model, {ORT_CPU_KEY: ", ".join(done)})
    return done
