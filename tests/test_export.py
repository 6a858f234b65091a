"""Export stage: the ONNX contract, parity with PyTorch, FP16/INT8 variants and their accuracy gates,
atomic writes under interruption, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from roadseg.core.card import CARD_KEY, ModelCard
from roadseg.core.errors import RoadsegError, UsageError
from roadseg.export.command import ExportOptions, export
from roadseg.export.graph import FramesToLabels
from roadseg.runtime import backends
from roadseg.runtime.backends import resolve_backend
from roadseg.runtime.backends.ort import OrtBackend
from roadseg.runtime.model import ORT_CPU_KEY
from roadseg.runtime.synthetic import make_dataset, make_scene
from roadseg.train.checkpoint import load_model

TINY_INPUT_SIZE = (64, 96)  # as in conftest.py
TINY_FRAME_SIZE = (72, 96)


def _sess(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """A CamVid-layout synthetic dataset at the tiny frame size (train split for calibration)."""
    return make_dataset(tmp_path_factory.mktemp("verify"), n_train=24, n_val=12, size=TINY_FRAME_SIZE, seed=11)


def test_contract_fixed(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(model, full_check=True)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "frames" and out.name == "labels"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert out.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, *TINY_FRAME_SIZE, 3]
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, *TINY_FRAME_SIZE]
    card = ModelCard.from_json({p.key: p.value for p in model.metadata_props}[CARD_KEY])
    assert card.num_classes == 11 and tuple(card.input_size) == TINY_INPUT_SIZE and card.precision == "fp32"
    labels = _sess(tiny_onnx).run(None, {"frames": make_scene(0, TINY_FRAME_SIZE)[0][None]})[0]
    assert labels.dtype == np.uint8 and labels.shape == (1, *TINY_FRAME_SIZE) and labels.max() < 11
    report = json.loads(Path(f"{tiny_onnx}.json").read_text())
    assert report["parity_fp32"]["agreement"] >= 0.999


def test_contract_dynamic_any_size(tiny_onnx_dynamic, tiny_checkpoint):
    sess = _sess(tiny_onnx_dynamic)
    shape = sess.get_inputs()[0].shape
    assert not isinstance(shape[0], int) and not isinstance(shape[1], int) and shape[3] == 3
    net, card, _ = load_model(tiny_checkpoint)
    ref = FramesToLabels(net, card, None).eval()
    for size, n in (((90, 120), 2), ((64, 96), 1), ((37, 51), 1)):
        frames = np.stack([make_scene(s, size)[0] for s in range(n)])
        got = sess.run(None, {"frames": frames})[0]
        with torch.no_grad():
            want = ref(torch.from_numpy(frames)).numpy()
        assert got.shape == (n, *size)
        assert (got == want).mean() >= 0.999


def test_graph_preprocessing_matches_training(tiny_onnx, tiny_checkpoint):
    """The graph's BGR->RGB, resize, mean/std and logits upsampling agree with the evaluation path
    used in training (cv2 resize of the RGB frame, normalise, network asked for logits at the frame
    size, ArgMax)."""
    from roadseg.train.data import EvalTransform

    net, card, _ = load_model(tiny_checkpoint)
    tf = EvalTransform(card.mean, card.std, card.input_size)
    agree = []
    for s in range(4):
        frame, mask = make_scene(20 + s, TINY_FRAME_SIZE)
        x, _ = tf(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), mask, 0)
        with torch.no_grad():
            logits = net(torch.from_numpy(x)[None], TINY_FRAME_SIZE)
        want = logits.argmax(1)[0].numpy()
        got = _sess(tiny_onnx).run(None, {"frames": frame[None]})[0][0]
        agree.append((got == want).mean())
    # the graph resizes float pixels, cv2 rounds to uint8 first: a few boundary pixels may differ
    assert np.mean(agree) >= 0.99


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("frame_size", [(60, 80), (72, 96), (64, 96), None], ids=["smaller", "larger", "same", "dynamic"])
def test_preprocess_is_resize_then_normalise(order, frame_size):
    """The graph's preprocessing (one 1x1 convolution for colour order and mean/std, at whichever of
    frame and model input is smaller) equals the plain recipe: BGR->card order, bilinear resize to
    the input size, (x/255 - mean)/std. Pixels of 0 and 255 reach the extremes of each channel."""
    from roadseg.export.graph import Preprocess

    card = ModelCard(name="t", arch="t", classes=[f"c{i}" for i in range(3)], palette=[[0, 0, 0]] * 3, ignore_index=3,
                     input_size=TINY_INPUT_SIZE, color_order=order, mean=(0.3, 0.5, 0.7), std=(0.2, 0.25, 0.3))  # fmt: skip
    size = frame_size or (50, 70)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8))
    frames[0, :4] = 0
    frames[1, :4] = 255
    x = frames.float().permute(0, 3, 1, 2)
    if order == "RGB":
        x = x.flip(1)
    if size != TINY_INPUT_SIZE:
        x = F.interpolate(x, size=TINY_INPUT_SIZE, mode="bilinear", align_corners=False)
    mean, std = torch.tensor(card.mean).view(1, 3, 1, 1), torch.tensor(card.std).view(1, 3, 1, 1)
    want = (x / 255 - mean) / std
    with torch.no_grad():
        got = Preprocess(card, frame_size)(frames)
    assert got.shape == (2, 3, *TINY_INPUT_SIZE)
    assert (got - want).abs().max() < 1e-4


def test_logits_never_materialised_at_model_size(tiny_onnx):
    """480x360-style frames into a different model size: the graph upsamples the logits once,
    to the frame size; no 11-channel tensor at the model input size exists (a second full-size pass;
    docs/EXPORT.md has its cost)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(tiny_onnx)))
    shapes = [tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in model.graph.value_info]
    assert (1, 11, *TINY_FRAME_SIZE) in shapes  # the logits, at the frame size
    assert (1, 11, *TINY_INPUT_SIZE) not in shapes
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert len([n for n in resizes if n.name.startswith("/pre/")]) == 1


def test_dynamic_fp16_runs_at_any_size(tiny_export, tiny_checkpoint):
    """FP16 with dynamic frame sizes: the shape nodes that size the final upsampling sit outside
    the converted network and feed it; the spliced graph must still be in topological order."""
    path = tiny_export(dynamic=True, precision="fp16")
    net, card, _ = load_model(tiny_checkpoint)
    ref = FramesToLabels(net, card, None).eval()
    sess = _sess(path)
    for size in ((72, 96), (41, 57)):
        frames = make_scene(5, size)[0][None]
        got = sess.run(None, {"frames": frames})[0]
        with torch.no_grad():
            want = ref(torch.from_numpy(frames)).numpy()
        assert got.shape == (1, *size) and (got == want).mean() >= 0.99


def test_raw_export_logits_parity(tiny_export, tiny_checkpoint):
    path = tiny_export(raw=True)
    report = json.loads(Path(f"{path}.json").read_text())
    assert report["parity_fp32"]["max_abs_diff"] < 1e-4
    sess = _sess(path)
    assert sess.get_inputs()[0].name == "input" and sess.get_inputs()[0].shape == [1, 3, *TINY_INPUT_SIZE]
    net, _, _ = load_model(tiny_checkpoint)
    x = torch.randn(1, 3, *TINY_INPUT_SIZE)
    with torch.no_grad():
        want = net(x).numpy()
    assert np.abs(sess.run(None, {"input": x.numpy()})[0] - want).max() < 1e-4


def test_fixed_batch(tiny_export):
    path = tiny_export(frame_size=TINY_FRAME_SIZE, batch=3)
    assert path.name.endswith(".onnx")
    frames = np.stack([make_scene(s, TINY_FRAME_SIZE)[0] for s in range(3)])
    out = _sess(path).run(None, {"frames": frames})[0]
    single = _sess(tiny_export(frame_size=TINY_FRAME_SIZE))
    for i in range(3):
        assert (out[i] == single.run(None, {"frames": frames[i : i + 1]})[0][0]).mean() >= 0.999


def test_fp16_variant_loads_and_passes_gate(tiny_export, labelled):
    path = tiny_export(frame_size=TINY_FRAME_SIZE, precision="fp16", verify=str(labelled))
    model = onnx.load(str(path))
    types = {i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types  # the network's weights are half precision
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8  # IO kept
    gate = json.loads(Path(f"{path}.json").read_text())["gate"]
    assert gate["labelled"] and gate["passed"] and gate["drop_points"] <= 0.1
    out = _sess(path).run(None, {"frames": make_scene(3, TINY_FRAME_SIZE)[0][None]})[0]
    assert out.dtype == np.uint8


def test_int8_variant_has_qdq_and_passes_gate(tiny_export, labelled):
    path = tiny_export(frame_size=TINY_FRAME_SIZE, precision="int8", calib=str(labelled), calib_count=16,
                       verify=str(labelled))  # fmt: skip
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # pre/post-processing and the ArgMax stay unquantised: none of their inputs is dequantised
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    pre_post = [n for n in model.graph.node if n.name.startswith(("/pre/", "/post/")) and "QuantizeLinear" not in n.op_type]
    assert any(n.op_type == "ArgMax" for n in pre_post)
    for n in pre_post:
        assert not dq_outputs.intersection(n.input), n.name
    rep = json.loads(Path(f"{path}.json").read_text())
    assert rep["calibration"]["frames"] == 16 and rep["gate"]["passed"] and rep["gate"]["drop_points"] <= 1.0


def test_gate_refuses_variant_and_writes_nothing(tiny_checkpoint, labelled, tmp_path):
    out = tmp_path / "refused.onnx"
    opts = ExportOptions(model=str(tiny_checkpoint), frame_size=TINY_FRAME_SIZE, precision="int8", calib=str(labelled),
                         calib_count=8, verify=str(labelled), max_drop=-50.0, output=str(out), progress=False)  # fmt: skip
    with pytest.raises(RoadsegError, match=r"misses its accuracy gate \(mIoU drop .* > --max-drop -50.0\).*raise --max-drop"):
        export(opts)
    assert list(tmp_path.iterdir()) == []


def test_an_agreement_refusal_names_min_agreement(tiny_checkpoint, tmp_path):
    """Without labels the gate is label agreement; its refusal names that criterion and the flag that
    sets it (it used to say "raise --max-drop", which sets the mIoU budget only)."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(12):
        cv2.imwrite(str(frames / f"{i:02d}.png"), make_scene(i, TINY_FRAME_SIZE)[0])
    opts = ExportOptions(model=str(tiny_checkpoint), frame_size=TINY_FRAME_SIZE, precision="fp16", verify=str(frames),
                         min_agreement=1.5, output=str(tmp_path / "x.onnx"), progress=False)  # fmt: skip
    with pytest.raises(RoadsegError, match=r"label agreement with fp32 [\d.]+ < --min-agreement 1.5.*lower --min-agreement"):
        export(opts)
    assert not (tmp_path / "x.onnx").exists()


def test_int8_from_a_dataset_root_gates_on_its_val_split_in_exact_arithmetic(tiny_export, labelled):
    """--calib DATASET alone: calibrated on train, gated on the (disjoint) val split's labels, INT8
    scored in exact integer arithmetic; the report says which frames, how many and how."""
    path = tiny_export(frame_size=TINY_FRAME_SIZE, precision="int8", calib=str(labelled), calib_count=16)
    gate = json.loads(Path(f"{path}.json").read_text())["gate"]
    assert gate["labelled"] and gate["arithmetic"] == "exact" and gate["native_agreement"] is not None
    val = sorted(p.name for p in (labelled / "val").iterdir())
    assert gate["frames"]["split"] == "val" and gate["frames"]["count"] == len(val) == 12
    assert sorted(gate["frames"]["names"]) == val


def test_int8_from_a_folder_gates_on_frames_held_back_from_calibration(tiny_checkpoint, tmp_path):
    frames = tmp_path / "cam"
    frames.mkdir()
    for i in range(25):
        cv2.imwrite(str(frames / f"f{i:02d}.png"), make_scene(100 + i, TINY_FRAME_SIZE)[0])
    out = export(ExportOptions(model=str(tiny_checkpoint), frame_size=TINY_FRAME_SIZE, precision="int8", calib=str(frames),
                               calib_count=20, output=str(tmp_path / "m.onnx"), progress=False))  # fmt: skip
    rep = json.loads(Path(f"{out}.json").read_text())
    held = rep["gate"]["frames"]
    assert held["split"] == "held out from --calib" and not held["labelled"] and held["count"] == 5
    assert held["names"] == [f"f{i:02d}.png" for i in (4, 9, 14, 19, 24)]  # every 5th, never calibrated on
    assert rep["calibration"]["frames"] == 20


def test_a_gate_without_real_frames_says_it_is_synthetic(tiny_checkpoint, tmp_path, capsys):
    out = export(ExportOptions(model=str(tiny_checkpoint), frame_size=TINY_FRAME_SIZE, precision="fp16",
                               output=str(tmp_path / "m.onnx"), progress=False))  # fmt: skip
    assert "gating on 16 synthetic scenes" in capsys.readouterr().out
    assert json.loads(Path(f"{out}.json").read_text())["gate"]["frames"]["split"] == "synthetic"


@pytest.mark.parametrize("acts,bits,want", [("u8", None, 7), ("s8", None, 8), ("u8", 8, 8)])
def test_int8_weight_bits_default_by_form_and_are_recorded_in_the_graph(tiny_export, labelled, acts, bits, want):
    """7-bit weights for the CPU form (same labels on every CPU), 8 for TensorRT's; read back from the
    graph's own weights and recorded in its metadata, where the runtime reads it."""
    from roadseg.export.precision import int8_form
    from roadseg.runtime.int8 import INT8_KEY, Int8Form

    path = tiny_export(frame_size=TINY_FRAME_SIZE, precision="int8", calib=str(labelled), calib_count=16,
                       int8_activations=acts, int8_weight_bits=bits)  # fmt: skip
    model = onnx.load(str(path))
    recorded = Int8Form.from_json({p.key: p.value for p in model.metadata_props}[INT8_KEY])
    assert recorded == int8_form(model) == Int8Form(acts, want)


def test_calibration_errors_before_work(tiny_checkpoint, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        cv2.imwrite(str(few / f"{i}.png"), make_scene(i, TINY_FRAME_SIZE)[0])
    (few / "broken.png").write_bytes(b"nope")
    base = dict(model=str(tiny_checkpoint), frame_size=TINY_FRAME_SIZE, precision="int8", progress=False,
                output=str(tmp_path / "x.onnx"))  # fmt: skip
    with pytest.raises(RoadsegError, match="only 3 usable calibration frames"):
        export(ExportOptions(calib=str(few), **base))
    with pytest.raises(UsageError, match="needs --calib"):
        export(ExportOptions(**base))
    assert not (tmp_path / "x.onnx").exists()


def test_interrupt_during_write_leaves_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"

    def interrupted_save(model, path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr("roadseg.export.onnx_export.onnx.save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        export(ExportOptions(model=str(tiny_checkpoint), frame_size=TINY_FRAME_SIZE, output=str(out), progress=False))
    assert list(tmp_path.iterdir()) == []  # no target, no temp file


@pytest.mark.parametrize(
    "kind,pattern",
    [
        ("onnx-over-checkpoint", "is the model"),
        ("engine-over-onnx", "is the model"),
        ("onnx-over-calib", "is --calib"),
        ("triton-around-model", "is the model"),
    ],
)
def test_an_export_never_overwrites_its_input(kind, pattern, tiny_checkpoint, tiny_onnx, tmp_path, monkeypatch):
    """`roadseg export m.pt -o m.pt` used to replace the weights with the ONNX graph."""
    import shutil

    monkeypatch.chdir(tmp_path)
    ckpt, graph = Path(shutil.copy(tiny_checkpoint, tmp_path / "m.pt")), Path(shutil.copy(tiny_onnx, tmp_path / "m.onnx"))
    (tmp_path / "repo" / "m" / "1").mkdir(parents=True)
    inner = Path(shutil.copy(tiny_onnx, tmp_path / "repo" / "m" / "1" / "model.onnx"))
    opts = {
        "onnx-over-checkpoint": dict(model=str(ckpt), output=str(ckpt)),
        "engine-over-onnx": dict(model=str(graph), to="engine", output=str(graph)),
        "onnx-over-calib": dict(model=str(ckpt), precision="int8", calib=str(graph), output=str(graph)),
        "triton-around-model": dict(model=str(inner), to="triton", output=str(tmp_path / "repo")),
    }[kind]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(UsageError, match=rf"is {pattern[3:]} .*which the export would overwrite; choose another --output"):
        export(ExportOptions(progress=False, **opts))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_export_checks_come_before_the_slow_work(tiny_checkpoint, labelled, tmp_path, monkeypatch, capsys):
    """A bad --verify, or an engine target without TensorRT, used to fail only after tracing and
    INT8 calibration; `-o ~/x.onnx` wrote the file and then crashed on the unexpanded name."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    int8 = dict(model=str(tiny_checkpoint), precision="int8", calib=str(labelled), calib_count=8, progress=False)
    with pytest.raises(RoadsegError, match="nowhere: not a folder of images"):
        export(ExportOptions(verify=str(tmp_path / "nowhere"), output=str(tmp_path / "a.onnx"), **int8))
    with pytest.raises(RoadsegError, match="TensorRT is not installed"):
        export(ExportOptions(to="engine", output=str(tmp_path / "a.engine"), **int8))
    assert "exporting" not in capsys.readouterr().out  # nothing was traced or calibrated
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = export(ExportOptions(model=str(tiny_checkpoint), output="~/x.onnx", progress=False))
    assert out == tmp_path / "home" / "x.onnx" and out.is_file() and Path(f"{out}.json").is_file()


def test_errors_for_foreign_onnx_and_bad_inputs(tiny_onnx, tmp_path):
    foreign = tmp_path / "foreign.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x],
              [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])), foreign)  # fmt: skip
    with pytest.raises(RoadsegError, match="no roadseg model card"):
        export(ExportOptions(model=str(foreign), to="triton"))
    with pytest.raises(UsageError, match="already ONNX"):
        export(ExportOptions(model=str(tiny_onnx), to="onnx"))
    with pytest.raises(RoadsegError, match="not found"):
        export(ExportOptions(model=str(tmp_path / "none.pt")))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not __import__("os").access(locked, __import__("os").W_OK):  # root can write anyway
            with pytest.raises(RoadsegError, match="not writable"):
                export(ExportOptions(model=str(tiny_onnx), to="triton", output=str(locked / "repo")))
    finally:
        locked.chmod(0o700)


def test_cli_export_one_line_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "roadseg", "export", str(tmp_path / "missing.pt")], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "missing.pt" in r.stderr
    r = subprocess.run([sys.executable, "-m", "roadseg", "export", "x.pt", "--imgsz", "100", "96"], capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "multiple of 32" in r.stderr


def test_unlabelled_frames_are_read_as_the_runtime_reads_them(tmp_path):
    """Calibration/verification frames: natural order, subfolders, gray/BGRA/16-bit converted like a
    stream's frames, undecodable files skipped, videos opened with a clear error when they cannot be."""
    from roadseg.core.images import list_images, read_bgr8
    from roadseg.export.frames import unlabelled

    d = tmp_path / "frames"
    (d / "sub").mkdir(parents=True)
    base = np.full((40, 60, 3), 100, np.uint8)
    for i, img in ((10, base), (2, base[..., 0]), (1, np.dstack([base, base[..., :1]]))):
        cv2.imwrite(str(d / f"f{i}.png"), img)
    cv2.imwrite(str(d / "sub" / "f3.png"), np.full((40, 60, 3), 0x6400, np.uint16))
    (d / "f4.jpg").write_bytes(b"not a jpeg")
    assert [p.name for p in list_images(d, recursive=True)] == ["f1.png", "f2.png", "f3.png", "f4.jpg", "f10.png"]
    got = unlabelled(d, (20, 30), 10)
    assert len(got) == 4 and all(f.shape == (20, 30, 3) and f.dtype == np.uint8 for f in got)
    assert int(got[2].max()) == 0x64  # the 16-bit frame, as `roadseg run` converts it
    np.testing.assert_array_equal(got[0], cv2.resize(read_bgr8(d / "f1.png"), (30, 20), interpolation=cv2.INTER_LINEAR))
    assert len(unlabelled(str(d / "f1*.png"), None, 10)) == 2  # a glob
    video = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(10):
        vw.write(np.full((48, 64, 3), i * 20, np.uint8))
    vw.release()
    assert len(unlabelled(video, (24, 32), 4)) == 4
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(RoadsegError, match="broken.mp4: cannot open"):
        unlabelled(tmp_path / "broken.mp4", None, 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RoadsegError, match="no images"):
        unlabelled(tmp_path / "empty", None, 4)


def test_int8_activation_types(tiny_export, labelled, monkeypatch):
    """u8 (default for ONNX): asymmetric uint8 activations, ONNX Runtime's fast CPU path; s8:
    symmetric int8 (zero point 0), the only form TensorRT consumes. A u8 file given to the engine
    or TensorRT-Triton path is refused before any TensorRT call, as is an --int8-activations that
    would change the file."""
    from roadseg.export.command import int8_activations
    from roadseg.export.precision import activation_zero_points, int8_activation_type

    u8_path = tiny_export(frame_size=TINY_FRAME_SIZE, precision="int8", calib=str(labelled), calib_count=8)
    s8_path = tiny_export(frame_size=TINY_FRAME_SIZE, precision="int8", calib=str(labelled), calib_count=8, int8_activations="s8")
    u8_model, s8_model = onnx.load(str(u8_path)), onnx.load(str(s8_path))
    u8, s8 = activation_zero_points(u8_model), activation_zero_points(s8_model)
    assert u8 and all(z.dtype == np.uint8 for z in u8)
    assert s8 and all(z.dtype == np.int8 and int(z) == 0 for z in s8)
    assert int8_activation_type(u8_model) == "u8"
    assert int8_activation_type(s8_model) == "s8"
    assert int8_activation_type(onnx.load(str(tiny_export(frame_size=TINY_FRAME_SIZE)))) is None
    # the u8 graph is rewritten for ONNX Runtime's CPU kernels (export/ort_cpu.py) and its sidecar
    # says how; the s8 graph, TensorRT's form, keeps its float pre-processing
    rewrites = json.loads(Path(f"{u8_path}.json").read_text())["ort_cpu_rewrites"]
    assert rewrites[0].startswith("pixels") and rewrites[-1] == "nhwc"
    assert "ort_cpu_rewrites" not in json.loads(Path(f"{s8_path}.json").read_text())
    assert {p.key: p.value for p in u8_model.metadata_props}[ORT_CPU_KEY] == ", ".join(rewrites)
    assert ORT_CPU_KEY not in {p.key for p in s8_model.metadata_props}
    # so the runtime keeps the rewritten graph off GPU providers (before looking for them), not the s8 one
    for provider in ("cuda", "trt"):
        with pytest.raises(UsageError, match=rf"{u8_path.name}: this INT8 graph was rewritten for ONNX Runtime's CPU kernels \(pixels"):
            OrtBackend(u8_path, provider=provider)
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with monkeypatch.context() as mp:  # auto on a GPU machine goes straight to the CPU for it
        mp.setattr(backends.probe, "ort_providers", lambda: gpu)
        mp.setattr(backends.probe, "gpu_reason", lambda name: None)  # as if they can start
        assert resolve_backend(u8_path) == ["ort-cpu"]
        assert resolve_backend(s8_path) == ["ort-trt", "ort-cuda", "ort-cpu"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RoadsegError) as e:
            OrtBackend(s8_path, provider="cuda").close()  # refused for the missing provider, not for its form
        assert "rewritten" not in str(e.value)
    assert not [n for n in u8_model.graph.node if n.op_type == "Cast" and "frames" in n.input]
    assert [n for n in s8_model.graph.node if n.name.startswith("/pre/") and n.op_type == "Conv"]
    assert int8_activations(ExportOptions(model="m", to="engine")) == "s8"
    with pytest.raises(UsageError, match="TensorRT takes symmetric INT8"):
        int8_activations(ExportOptions(model="m", to="engine", int8_activations="u8"))
    for opts in ({"to": "engine"}, {"to": "triton", "triton_platform": "tensorrt"}):
        with pytest.raises(UsageError, match=rf"{u8_path.name}: its INT8 activations are asymmetric uint8.*--int8-activations s8"):
            export(ExportOptions(model=str(u8_path), progress=False, **opts))
    with pytest.raises(UsageError, match=r"--int8-activations cannot change an exported ONNX \(int8 u8"):
        export(ExportOptions(model=str(u8_path), to="triton", int8_activations="s8", progress=False))


def test_fp16_clamping_is_one_warning():
    """The FP16 converter warns once per clamped tensor; export says it once."""
    import warnings

    from conftest import hand_onnx
    from onnx import numpy_helper

    from roadseg.export.precision import to_fp16

    model = onnx.load_from_string(hand_onnx(None, "raw"))
    w = numpy_helper.to_array(model.graph.initializer[0]).copy()
    w.flat[:2] = [1e-9, -1e-9]  # under FP16's smallest value: clamped to +-1e-7
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, model.graph.initializer[0].name))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        half = to_fp16(model)
    texts = [str(c.message) for c in caught]
    assert not [t for t in texts if "will be truncated" in t]
    assert [t for t in texts if t.startswith("fp16: the converter clamped")] == [
        "fp16: the converter clamped weights to FP16's range (|x| < 1e-7 or > 65504) in 2 places"
    ]
    assert numpy_helper.to_array(half.graph.initializer[0]).dtype == np.float16
