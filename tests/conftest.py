"""Shared test fixtures.

Tiny roadseg models (runtime/backends tests): a Fast-SCNN at input 64x96, trained for a few steps
on synthetic scenes so its labels vary across the frame (an untrained net predicts one class
everywhere, which would hide resize and batching mistakes), then exported with the real export API.
- `tiny_checkpoint`: the .pt (session scope).
- `tiny_export(**ExportOptions fields)`: a factory that exports it (cached per options) -> .onnx path.
- `tiny_onnx`: fixed frame size 72x96, batch 1.  `tiny_onnx_dynamic`: dynamic N, H, W.
Building all of it takes a few seconds on one CPU thread.
- `CAMVID`, `needs_camvid`: real CamVid, from the ROADSEG_CAMVID environment variable (tests skip,
  naming it, where it is unset).
- `hand_onnx(card, kind)`: a 16x16 graph written node by node (no torch), for the loader tests.
- `run_until_masks(model, folder, n, timeout)`: a real `roadseg run` process, returned mid-stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

CAMVID_ENV = "ROADSEG_CAMVID"  # the one way tests find real CamVid: a folder from `roadseg data camvid DIR`
CAMVID: Path | None = Path(os.environ[CAMVID_ENV]).expanduser() if os.environ.get(CAMVID_ENV) else None
needs_camvid = pytest.mark.skipif(
    CAMVID is None or not CAMVID.is_dir(),
    reason=f"needs CamVid: set {CAMVID_ENV} to a folder made by `roadseg data camvid DIR`"
    + (f" ({CAMVID} is not a folder)" if CAMVID is not None else ""),
)

TINY_INPUT_SIZE = (64, 96)  # (H, W) the tiny network sees
TINY_FRAME_SIZE = (72, 96)  # (H, W) of the fixed-size tiny graph


def _train_tiny(steps: int = 30):
    import torch

    from roadseg.runtime.synthetic import make_scene
    from roadseg.train.models import build

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build("fastscnn", 11)
        scenes = [make_scene(seed=s, size=TINY_INPUT_SIZE) for s in range(8)]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        x = torch.stack(
            [(torch.from_numpy(f[..., ::-1].copy()).permute(2, 0, 1).float() / 255 - mean) / std for f, _ in scenes]
        )
        y = torch.stack([torch.from_numpy(m.astype(np.int64)) for _, m in scenes])
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        model.train()
        for _ in range(steps):
            out = model(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = torch.nn.functional.cross_entropy(out, y, ignore_index=11)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
    from roadseg.train.checkpoint import atomic_save, make_checkpoint

    model = _train_tiny()
    card = ModelCard(name="tiny", arch="fastscnn", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11,
                     input_size=TINY_INPUT_SIZE)  # fmt: skip
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.pt"
    atomic_save(make_checkpoint(model, "fastscnn", {}, card), path)
    return path


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory) -> Callable[..., Path]:
    """tiny_export(frame_size=(72, 96)) / (dynamic=True) / (batch=2, frame_size=...) / (raw=True) /
    (precision="int8", calib=DIR) ... -> the exported .onnx (one export per distinct options)."""
    from roadseg.export.command import ExportOptions, export

    cache: dict[tuple, Path] = {}
    folder = tmp_path_factory.mktemp("tiny_onnx")

    def make(**options) -> Path:
        key = tuple(sorted((k, repr(v)) for k, v in options.items()))
        if key not in cache:
            out = folder / f"tiny_{len(cache)}.onnx"
            cache[key] = Path(
                export(ExportOptions(model=str(tiny_checkpoint), output=str(out), progress=False, **options))
            )
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_onnx(tiny_export) -> Path:
    """frames uint8 [1,72,96,3] -> labels uint8 [1,72,96]."""
    return tiny_export(frame_size=TINY_FRAME_SIZE)


@pytest.fixture(scope="session")
def tiny_onnx_dynamic(tiny_export) -> Path:
    """frames uint8 [N,H,W,3] -> labels uint8 [N,H,W], any N, H, W."""
    return tiny_export(dynamic=True)


def decode_count(path) -> int:
    """Frames OpenCV decodes from a written video: what a player would see (shared by the stream tests)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def hand_onnx(card: dict | str | None, kind: str = "conv", classes: int = 11, export: dict | None = None) -> bytes:
    """A checked 16x16 ONNX file made node by node, the card (if any) in metadata_props:
    `conv`: frames uint8 [1,16,16,3] -> Cast, Transpose, Conv (`classes` outputs), ArgMax, Cast -> labels uint8 [1,16,16];
    `reduce`: the same tensors through one ReduceMax node;
    `raw`: the bare network, input float [1,3,16,16] -> Conv -> logits [1,classes,16,16]."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from roadseg.core.card import CARD_KEY
    from roadseg.runtime.model import EXPORT_KEY

    frames = helper.make_tensor_value_info("frames", TensorProto.UINT8, [1, 16, 16, 3])
    labels = helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, 16, 16])
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((classes, 3, 3, 3)).astype(np.float32), "w")
    spec = {"frame_size": [16, 16], "batch": 1, "dynamic": False, "raw": False, "precision": "fp32"}
    if kind == "conv":
        nodes = [
            helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["nchw", "w"], ["logits"], pads=[1, 1, 1, 1]),
            helper.make_node("ArgMax", ["logits"], ["idx"], axis=1, keepdims=0),
            helper.make_node("Cast", ["idx"], ["labels"], to=TensorProto.UINT8),
        ]
        graph = helper.make_graph(nodes, "g", [frames], [labels], initializer=[w])
    elif kind == "reduce":
        axes = helper.make_tensor("axes", TensorProto.INT64, [1], [3])
        graph = helper.make_graph([helper.make_node("ReduceMax", ["frames", "axes"], ["labels"], keepdims=0)], "g",
                                  [frames], [labels], initializer=[axes])  # fmt: skip
    elif kind == "raw":
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes, 16, 16])
        graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["logits"], pads=[1, 1, 1, 1])], "g", [x], [y],
                                  initializer=[w])  # fmt: skip
        spec = {**spec, "frame_size": None, "raw": True}
    else:
        raise ValueError(kind)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    if card is not None:
        model.metadata_props.add(key=CARD_KEY, value=card if isinstance(card, str) else json.dumps(card))
    model.metadata_props.add(key=EXPORT_KEY, value=json.dumps(export or spec))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def run_until_masks(model: Path, folder: Path, n: int, timeout: float):
    """Start `roadseg run MODEL --source synthetic:100000 --save FOLDER/out.mp4 --save-masks FOLDER/masks`
    (one thread) and return the still-running process once `n` mask PNGs exist (for signal tests)."""
    import os
    import subprocess
    import sys
    import time

    masks = folder / "masks"
    cmd = [sys.executable, "-m", "roadseg", "run", str(model), "--source", "synthetic:100000", "--save",
           str(folder / "out.mp4"), "--save-masks", str(masks), "--threads", "1"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not (masks.is_dir() and len(list(masks.glob("*.png"))) >= n):
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, f"fewer than {n} masks written in {timeout:g} s"
            time.sleep(0.05)
    except BaseException:
        p.kill()
        raise
    return p


@pytest.fixture
def noisy_onnxruntime(monkeypatch):
    """ONNX Runtime as onnxruntime-gpu behaves where a listed provider cannot start: an "EP Error"
    banner printed on stdout, error lines on stderr (only when its log level lets them through),
    then the session silently runs on the providers that remain."""
    import onnxruntime as ort

    real = ort.InferenceSession
    severity = {"default": 2}
    monkeypatch.setattr(ort, "set_default_logger_severity", lambda level: severity.update(default=level))

    def session(path, sess_options=None, providers=None, **kw):
        names = [p if isinstance(p, str) else p[0] for p in providers or []]
        if names and names[0] != "CPUExecutionProvider":
            print("*************** EP Error ***************")
            print(f"EP Error ... when using {names}\nFalling back to ['CPUExecutionProvider'] and retrying.")
            if severity["default"] <= 3:
                os.write(2, b"[E:onnxruntime:Default, provider_bridge_ort.cc] Failed to load library\n")
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])  # fmt: skip
