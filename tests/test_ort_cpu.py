"""The u8 INT8 graph's rewrites for ONNX Runtime's CPU kernels (export/ort_cpu.py): each keeps the
labels, changes the graph the way it says, and stays away from graphs it does not fit."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
from roadseg.export import ort_cpu
from roadseg.export.onnx_export import to_onnx
from roadseg.export.precision import to_int8
from roadseg.export.spec import GraphSpec
from roadseg.runtime.synthetic import make_scene
from roadseg.train.models.blocks import resize

INPUT_SIZE = (64, 96)


class OddNet(nn.Module):
    """A small net with a 13-channel feature map (not a multiple of 4) read by a quantised
    convolution (the classifier stays FP32: it makes the logits)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, 3, 2, 1)
        self.c2 = nn.Conv2d(12, 13, 3, 1, 1)
        self.c3 = nn.Conv2d(13, 16, 3, 1, 1)
        self.cls = nn.Conv2d(16, 11, 1)

    def forward(self, x, size=None):
        size = x.shape[-2:] if size is None else size
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return resize(self.cls(torch.relu(self.c3(x))), size)


def _frames(size, n, seed):
    return [make_scene(seed=seed + i, size=size)[0] for i in range(n)]


def _exact():
    """Sessions that add the u8 x s8 products exactly on every CPU: with AVX2 but no VNNI, MLAS
    otherwise sums pairs in 16 bits with saturation, so the same integer sums in another order
    (what stem and channels make) can round differently. ONNX Runtime's x64 quantisation
    precision mode turns that off; with VNNI the sums are exact either way. These tests are about
    the rewrites' arithmetic, not about one CPU's kernels."""
    so = ort.SessionOptions()
    so.add_session_config_entry("session.x64quantprecision", "1")
    return so


def _first_conv_output(model: onnx.ModelProto, frames) -> np.ndarray:
    """The network's first convolution's quantised output (uint8, as int), read off the graph."""
    m = copy.deepcopy(model)
    conv = next(n for n in m.graph.node if n.op_type == "Conv" and not n.name.startswith("/pre/"))
    t = conv.output[0]
    while (nxt := next(n for n in m.graph.node if t in n.input)).op_type != "QuantizeLinear":
        t = nxt.output[0]  # through a Relu, if the quantiser kept it
    m.graph.output.append(onnx.helper.make_tensor_value_info(nxt.output[0], onnx.TensorProto.UINT8, None))
    s = ort.InferenceSession(m.SerializeToString(), _exact(), providers=["CPUExecutionProvider"])
    return np.stack([s.run([nxt.output[0]], {"frames": f[None]})[0][0] for f in frames]).astype(int)


def _labels(model: onnx.ModelProto, frames) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), _exact(), providers=["CPUExecutionProvider"])
    return np.stack([s.run(None, {"frames": f[None]})[0][0] for f in frames])


@pytest.fixture(
    scope="module", params=[(72, 96), (56, 80), INPUT_SIZE, None], ids=["upscale", "downscale", "same", "dynamic"]
)
def u8_graph(request):
    """(u8 INT8 graph of OddNet, frames to run it on, card) for a fixed frame size larger than,
    smaller than and equal to the model input, and for dynamic frame sizes."""
    torch.manual_seed(0)
    card = ModelCard(
        name="odd", arch="odd", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11, input_size=INPUT_SIZE
    )
    size = request.param
    fp32, _, _ = to_onnx(OddNet(), card, GraphSpec(frame_size=size, dynamic=size is None))
    calib = _frames(size or INPUT_SIZE, 8, 100)
    model = to_int8(fp32, calib, "minmax", progress=False, activations="u8")
    return model, _frames(size or (80, 112), 6, 500), fp32


def test_each_rewrite_keeps_the_labels(u8_graph):
    """Applied in turn (stem reads what pixels wrote), stem, channels and nhwc are exact (the same
    integer sums over other layouts; zero channels add exact zeros; the same bilinear weights).
    pixels moves where the input is rounded, so it is held to the INT8 graph's own agreement with
    FP32 (about 0.975 for this random net, whose logits are close everywhere)."""
    model, frames, fp32 = u8_graph
    before, ref = _labels(model, frames), _labels(fp32, frames)
    m = copy.deepcopy(model)
    for name, rewrite in ort_cpu.REWRITES.items():
        assert rewrite(m), f"{name} did not apply"
        onnx.checker.check_model(m, full_check=True)
        after = _labels(m, frames)
        if name == "pixels":
            assert np.mean(after == ref) >= np.mean(before == ref) - 0.01, name
        else:
            assert np.mean(after == before) >= 0.9999, name
        before = after


def test_pixels_feeds_uint8_to_the_first_convolution(u8_graph):
    model, _, _ = u8_graph
    m = copy.deepcopy(model)
    assert ort_cpu.pixels(m).startswith("pixels (zero point ")
    nodes = {o: n for n in m.graph.node for o in n.output}
    # nothing converts the frames to float any more, and the normalising convolution is gone
    assert not [n for n in m.graph.node if n.op_type == "Cast" and "frames" in n.input]
    assert not [n for n in m.graph.node if n.name.startswith("/pre/") and n.op_type == "Conv"]
    first = next(n for n in m.graph.node if n.op_type == "Conv")
    dq = nodes[first.input[0]]
    assert dq.op_type == "DequantizeLinear"
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    assert float(inits[dq.input[1]]) == 1.0 and inits[dq.input[2]].dtype == np.uint8
    # the zero point is the mean pixel (ImageNet mean, 114 to 124 on 0-255) so padding stays near 0
    assert 100 <= int(inits[dq.input[2]]) <= 130
    chain, t = [], dq.input[0]
    while t != "frames":
        chain.append(nodes[t].op_type)
        t = nodes[t].input[0]
    # uint8 all the way: a channels-last Resize (when the frame is not the model's size), then NCHW
    assert chain in (["Transpose"], ["Transpose", "Resize"])


def test_pixels_keeps_the_first_convolution(u8_graph):
    """Away from its one-pixel border, the first convolution's quantised output moves by rounding
    only: under half a level on average, no drift. (Folding the normalisation with its matrix
    transposed, a 2% error per colour channel, moves it by over 1 level on average.)"""
    model, frames, _ = u8_graph
    m = copy.deepcopy(model)
    ort_cpu.pixels(m)
    d = (_first_conv_output(m, frames) - _first_conv_output(model, frames))[..., 1:-1, 1:-1]
    assert np.abs(d).mean() < 0.5 and abs(d.mean()) < 0.1 and np.abs(d).max() <= 4, (np.abs(d).mean(), d.mean())


def test_pixels_dead_channel_keeps_its_bias(u8_graph):
    """A first-convolution channel with zero weights and a bias (a BatchNorm with gamma 0 folded
    in) keeps its constant output: its int32 bias must not wrap around."""
    model, frames, _ = u8_graph
    m = copy.deepcopy(model)
    conv = next(n for n in m.graph.node if n.op_type == "Conv" and not n.name.startswith("/pre/"))
    nodes = {o: n for n in m.graph.node for o in n.output}
    inits = {i.name: i for i in m.graph.initializer}
    wq = onnx.numpy_helper.to_array(inits[nodes[conv.input[1]].input[0]]).copy()
    wq[0] = 0
    inits[nodes[conv.input[1]].input[0]].CopyFrom(onnx.numpy_helper.from_array(wq, nodes[conv.input[1]].input[0]))
    bq = onnx.numpy_helper.to_array(inits[nodes[conv.input[2]].input[0]]).copy()
    bq[0] = 10**6  # a positive output, so the ReLU lets it through
    inits[nodes[conv.input[2]].input[0]].CopyFrom(onnx.numpy_helper.from_array(bq, nodes[conv.input[2]].input[0]))
    before = _first_conv_output(m, frames[:2])[:, 0]
    ort_cpu.pixels(m)
    after = _first_conv_output(m, frames[:2])[:, 0]
    assert before.max() > 0 and np.abs(after - before).max() <= 1


def test_stem_blocks_the_first_convolution(u8_graph):
    """The 3x3 stride-2 convolution over 3 channels becomes a 3x2 stride-(2,1) one over blocks of 4
    pixels (12 channels), with two outputs per block: same integer sums, so its quantised output,
    back in its own layout, is bit-identical."""
    model, frames, _ = u8_graph
    m = copy.deepcopy(model)
    ort_cpu.pixels(m)
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and conv.output[0] in n.input).output[0]
    blocked = onnx.shape_inference.infer_shapes(m)  # recorded shapes that stem changes must go
    assert ort_cpu.stem(blocked) == "stem"
    onnx.checker.check_model(blocked, full_check=True)
    nodes = {o: n for n in blocked.graph.node for o in n.output}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in blocked.graph.initializer}
    conv = next(n for n in blocked.graph.node if n.op_type == "Conv")
    attrs = {a.name: list(a.ints) for a in conv.attribute if a.ints}
    assert attrs["kernel_shape"] == [3, 2] and attrs["strides"] == [2, 1] and attrs["pads"] == [1, 1, 1, 0]
    assert inits[nodes[conv.input[1]].input[0]].shape == (24, 12, 3, 2)  # (phase, channel), (4 pixels x BGR)
    reshape = nodes[nodes[nodes[conv.input[0]].input[0]].input[0]]  # DequantizeLinear <- Transpose <- Reshape
    assert reshape.op_type == "Reshape" and inits[reshape.input[1]].tolist() == [0, 0, -1, 12]
    outputs = []
    for g in (m, blocked):
        g.graph.output.append(onnx.helper.make_tensor_value_info(q, onnx.TensorProto.UINT8, None))
        s = ort.InferenceSession(g.SerializeToString(), _exact(), providers=["CPUExecutionProvider"])
        outputs.append(np.stack([s.run([q], {"frames": f[None]})[0][0] for f in frames]))
    assert outputs[0].shape == outputs[1].shape and np.array_equal(outputs[0], outputs[1])
    assert ort_cpu.stem(blocked) is None  # a second pass finds no 3-channel convolution


def test_stem_needs_a_width_of_whole_blocks():
    """A model input 90 pixels wide does not split into blocks of 4: stem leaves it alone."""
    torch.manual_seed(0)
    card = ModelCard(
        name="odd", arch="odd", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11, input_size=(64, 90)
    )
    fp32, _, _ = to_onnx(OddNet(), card, GraphSpec(frame_size=(72, 96)))
    m = to_int8(fp32, _frames((72, 96), 8, 100), "minmax", progress=False, activations="u8")
    assert ort_cpu.pixels(m)
    saved = m.SerializeToString()
    assert ort_cpu.stem(m) is None and m.SerializeToString() == saved


def test_channels_pads_odd_inputs_only(u8_graph):
    model, _, _ = u8_graph
    m = copy.deepcopy(model)
    assert ort_cpu.channels(m) == "channels (13->16)"
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    nodes = {o: n for n in m.graph.node for o in n.output}
    quantised = [
        c
        for c in m.graph.node
        if c.op_type == "Conv" and c.input[1] in nodes and nodes[c.input[1]].op_type == "DequantizeLinear"
    ]
    cins = sorted(inits[nodes[c.input[1]].input[0]].shape[1] for c in quantised)
    # c1, c2, c3 (the FP32 classifier has no quantised weight); the image (3) is left alone:
    # padding it costs more than it saves
    assert cins == [3, 12, 16]
    pads = [n for n in m.graph.node if n.op_type == "Pad"]
    assert len(pads) == 1 and inits[pads[0].input[1]].tolist() == [0, 0, 0, 0, 0, 3, 0, 0]  # channel axis, at the end
    assert ort_cpu.channels(m) is None  # nothing left to pad


def test_nhwc_moves_the_final_resize_and_argmax(u8_graph):
    model, _, _ = u8_graph
    m = copy.deepcopy(model)
    assert ort_cpu.nhwc(m) == "nhwc"
    am = next(n for n in m.graph.node if n.op_type == "ArgMax")
    assert next(a.i for a in am.attribute if a.name == "axis") == 3
    resize = next(n for n in m.graph.node if am.input[0] in n.output)
    assert resize.op_type == "Resize"
    assert next(n for n in m.graph.node if resize.input[0] in n.output).op_type == "Transpose"


def test_rewrites_leave_graphs_they_do_not_fit(u8_graph):
    """A raw graph (no pre/post) has no pixels or ArgMax to rewrite; a second pass finds nothing."""
    torch.manual_seed(0)
    card = ModelCard(
        name="odd", arch="odd", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11, input_size=INPUT_SIZE
    )
    raw, _, _ = to_onnx(OddNet(), card, GraphSpec(frame_size=None, raw=True))
    x = np.random.default_rng(0).normal(size=(8, 1, 3, *INPUT_SIZE)).astype(np.float32)
    q = to_int8(raw, list(x), "minmax", progress=False, activations="u8")
    assert ort_cpu.pixels(q) is None and ort_cpu.stem(q) is None and ort_cpu.nhwc(q) is None
    model, _, _ = u8_graph
    m = copy.deepcopy(model)
    assert len(ort_cpu.tune(m)) == 4
    assert ort_cpu.tune(m) == []


def _node(m: onnx.ModelProto, op: str, prefix: str = "") -> onnx.NodeProto:
    return next(n for n in m.graph.node if n.op_type == op and n.name.startswith(prefix))


def test_rewrites_refuse_graphs_they_would_break(u8_graph):
    """A pre-processing chain with an op pixels does not know, tied weights (channels would pad
    one reader's weights for both), a first convolution of stride 1 or with asymmetric weights
    (stem), and an ArgMax that keeps its axis (nhwc would move it): each rewrite returns None and leaves the graph as it was."""
    model, _, _ = u8_graph
    m = copy.deepcopy(model)
    tr = _node(m, "Transpose", "/pre/")
    m.graph.node.append(onnx.helper.make_node("Identity", [tr.output[0]], ["extra"], name="/pre/Extra"))
    for n in m.graph.node:
        if n.name != "/pre/Extra":
            n.input[:] = ["extra" if i == tr.output[0] else i for i in n.input]
    saved = m.SerializeToString()
    assert ort_cpu.pixels(m) is None and m.SerializeToString() == saved

    m = copy.deepcopy(model)
    conv = next(n for n in m.graph.node if n.op_type == "Conv" and n.name.startswith("/net/c3/"))
    twin = copy.deepcopy(conv)
    twin.name, twin.output[0] = "/net/c3/Twin", "twin_out"
    m.graph.node.append(twin)
    m.graph.output.append(onnx.helper.make_tensor_value_info("twin_out", onnx.TensorProto.FLOAT, None))
    saved = m.SerializeToString()
    assert ort_cpu.channels(m) is None and m.SerializeToString() == saved

    m = copy.deepcopy(model)
    ort_cpu.pixels(m)
    for a in _node(m, "Conv").attribute:
        if a.name == "strides":
            a.ints[0] = 1  # stem blocks stride-2 convolutions only
    saved = m.SerializeToString()
    assert ort_cpu.stem(m) is None and m.SerializeToString() == saved

    m = copy.deepcopy(model)
    ort_cpu.pixels(m)
    inits = {i.name: i for i in m.graph.initializer}
    zp = inits[next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == _node(m, "Conv").input[1]).input[2]]
    zp.CopyFrom(onnx.numpy_helper.from_array(np.ones_like(onnx.numpy_helper.to_array(zp)), zp.name))
    saved = m.SerializeToString()
    assert ort_cpu.stem(m) is None and m.SerializeToString() == saved  # the added weights would not be zeros

    m = copy.deepcopy(model)
    for a in _node(m, "ArgMax").attribute:
        if a.name == "keepdims":
            a.i = 1
    saved = m.SerializeToString()
    assert ort_cpu.nhwc(m) is None and m.SerializeToString() == saved


def test_a_reduce_range_graph_is_exact_without_the_precision_mode():
    """7-bit weights (the u8 default): weights in [-64, 64] (pixels' requantised ones too), so a pair of u8 x s8
    products never saturates and the rewritten graph gives the same labels with ONNX Runtime's
    default kernels as with the exact x64 mode, on this CPU whatever its VNNI (the test is
    decisive on AVX2 machines without VNNI and holds trivially with VNNI)."""
    torch.manual_seed(0)
    card = ModelCard(name="odd", arch="odd", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11,
                     input_size=INPUT_SIZE)  # fmt: skip
    fp32, _, _ = to_onnx(OddNet(), card, GraphSpec(frame_size=(72, 96)))
    model = to_int8(fp32, _frames((72, 96), 8, 100), "minmax", progress=False, activations="u8", weight_bits=7)
    assert ort_cpu.tune(model)  # the rewrites apply, pixels included
    init = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    weights = [init[n.input[0]] for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in init and init[n.input[0]].dtype == np.int8]  # fmt: skip
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= ort_cpu.REDUCED_QMAX
    frames = _frames((72, 96), 6, 500)
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = np.stack([plain.run(None, {"frames": f[None]})[0][0] for f in frames])
    np.testing.assert_array_equal(got, _labels(model, frames))
