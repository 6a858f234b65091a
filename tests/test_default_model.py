"""The bundled default model: its card, its size, and its CamVid val mIoU against the number its
model card page (docs/MODEL.md) quotes, so a regression (or a page that stops telling the truth)
fails; the README's summary of the model must quote the same numbers."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import CAMVID, needs_camvid

from roadseg.train.checkpoint import BUNDLED, WEIGHTS_DIR, load_model, resolve

ROOT = Path(__file__).resolve().parents[1]
MODEL_MD = ROOT / "docs" / "MODEL.md"


def _card_miou() -> float:
    m = re.search(r"val mIoU \(FP32\) \| \*\*([0-9.]+)\*\*", MODEL_MD.read_text())
    assert m, "docs/MODEL.md's model card must quote the val mIoU as '| val mIoU (FP32) | **0.xxxx** |'"
    return float(m.group(1))


def _input_size(text: str, where: str) -> tuple[int, int]:
    size = re.search(r"resized in the graph to\s+(\d+)×(\d+)", text)
    assert size, f"{where} must give the input size as 'resized in the graph to H×W'"
    return int(size[1]), int(size[2])


def test_default_is_bundled_and_small():
    path = resolve("default")
    assert path == WEIGHTS_DIR / BUNDLED["default"] and path == resolve("ddrnet23s_camvid")
    assert path.stat().st_size <= 20 * 1024 * 1024


def test_default_card():
    model, card, ckpt = load_model("default")
    assert ckpt["model"]["name"] == "ddrnet23s" and card.arch == "ddrnet23s"
    assert card.num_classes == 11 and card.classes[3] == "Road" and card.ignore_index == 11
    assert tuple(card.input_size) == _input_size(MODEL_MD.read_text(), "docs/MODEL.md") and card.color_order == "RGB"
    assert card.dataset == "camvid" and "CamVid" in card.license
    assert ckpt["metrics"]["val_miou"] == pytest.approx(_card_miou(), abs=1e-4)
    assert "train_state" not in ckpt  # a release checkpoint: no optimizer state


def test_readme_summary_quotes_the_model_card():
    """The README's few lines on the default model repeat the card's input size and val mIoU."""
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"val mIoU \*\*([0-9.]+)\*\* in FP32", readme)
    assert m, "README's default-model section must quote the val mIoU as 'val mIoU **0.xxxx** in FP32'"
    assert float(m.group(1)) == _card_miou()
    assert _input_size(readme, "README's default-model section") == _input_size(MODEL_MD.read_text(), "docs/MODEL.md")


@pytest.mark.slow
@needs_camvid
def test_default_miou_on_camvid_val():
    from roadseg.train.data import load_dataset
    from roadseg.train.evaluate import evaluate

    model, card, _ = load_model("default")
    cm = evaluate(model, load_dataset(CAMVID, "camvid", "val"), card, progress=False)
    assert cm.miou() == pytest.approx(_card_miou(), abs=2e-3)


# -- the shipped ONNX variants (runtime/models/, made by `python -m roadseg.export.variants`) --------


def _variant(kind: str) -> Path:
    from roadseg.runtime.defaults import VARIANT_FILES, variants_dir

    return variants_dir() / VARIANT_FILES[kind]


@pytest.mark.parametrize("kind", ["int8", "fp16"])
def test_shipped_variant_carries_its_passed_gate(kind):
    """Each variant is the bundled model, takes any batch and frame size, and its metadata holds
    the accuracy gate it passed against FP32 on CamVid val (the budgets of `roadseg export`)."""
    import json

    from roadseg.runtime.defaults import GATE_KEY
    from roadseg.runtime.model import ORT_CPU_KEY, inspect_model

    info = inspect_model(_variant(kind))
    gate = json.loads(info.metadata[GATE_KEY])
    assert gate["passed"] and gate["labelled"] and gate["precision"] == kind and gate["data"] == "camvid"
    # scored on the frames at their own 480x360, the FP32 graph is the card's model (its val mIoU to 4 places)
    assert gate["drop_points"] <= gate["max_drop"] and gate["fp32_miou"] == pytest.approx(_card_miou(), abs=1e-4)
    assert info.batch is None and info.frame_size is None  # one graph for every camera and for batched streams
    assert info.card.name == "ddrnet23s_camvid" and info.card.precision == kind
    assert bool(info.metadata.get(ORT_CPU_KEY)) == (kind == "int8")  # the CPU form: GPUs refuse it, auto keeps it off them
    assert _variant(kind).stat().st_size <= (8 if kind == "int8" else 13) * 1024 * 1024
    if kind == "int8":  # the CPU form: 7-bit weights, so native kernels are exact on every CPU; gated exactly
        assert info.int8_form is not None and info.int8_form.describe() == "u8 activations, 7-bit weights"
        assert gate["arithmetic"] == "exact" and gate["native_agreement"] == 1.0
        assert gate["frames"] == {**gate["frames"], "split": "val", "count": 101, "source": "camvid"}


def test_default_picks_the_variant_of_its_backend():
    from roadseg.runtime.defaults import resolve_model

    assert resolve_model("default", "ort-cpu") == _variant("int8")
    assert resolve_model("default", "ort-cuda") == resolve_model("ddrnet23s_camvid", "ort-trt") == _variant("fp16")


def test_default_runs_without_pytorch(tmp_path):
    """With PyTorch unimportable (as after `pip install roadseg` without extras), `roadseg demo` and
    `roadseg run default` work on the shipped INT8, the summary says so, and torch is never
    imported; a command that needs PyTorch says so in one line."""
    import subprocess
    import sys

    import cv2
    import numpy as np

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(4):
        writer.write(np.full((120, 160, 3), 40 * i, np.uint8))
    writer.release()
    block = (
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from roadseg.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('torch imported' if 'torch' in sys.modules else 'torch never imported')\n"
        "sys.exit(rc)\n"
    )

    def roadseg(*args):
        return subprocess.run([sys.executable, "-c", block, *map(str, args)], capture_output=True, text=True, timeout=300)

    run = roadseg("run", "default", "--source", clip, "--save-masks", tmp_path / "masks", "--backend", "ort-cpu",
                  "--threads", "1")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "-> ort-cpu (ddrnet23s_camvid_int8.onnx, INT8)" in run.stdout and "torch never imported" in run.stdout
    assert len(list((tmp_path / "masks").iterdir())) == 4
    demo = roadseg("demo", "--out", tmp_path / "demo", "--frames", "3", "--threads", "1")
    assert demo.returncode == 0, demo.stderr
    assert "ddrnet23s_camvid_int8.onnx, INT8" in demo.stdout and "torch never imported" in demo.stdout
    assert (tmp_path / "demo" / "demo.mp4").is_file()
    train = roadseg("train", "--model", "fcn", "--data", tmp_path)
    assert train.returncode == 1 and train.stderr.strip().splitlines() == [
        'roadseg train: error: roadseg train needs PyTorch: pip install "roadseg[train]" (the base install is the '
        "runtime: run, demo, bench on .onnx/.engine files)"]  # fmt: skip


@pytest.fixture
def fake_tensorrt(tmp_path, monkeypatch):
    """TensorRT 10.13 on a fake GPU: `build_engine` writes a plan and its sidecar the way the real
    one does (atomic files) and counts its builds; no real TensorRT runs here (tests/test_tensorrt
    covers the build against the stubs)."""
    from roadseg.export import gpu, tensorrt
    from roadseg.runtime.engine import sidecar_path

    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    state = {"gpu": gpu.GpuInfo("NVIDIA H200", "9.0", "13.0"), "builds": []}

    def build(proto, card, spec, opts, src):
        print("building ... (TensorRT's own lines)")
        state["builds"].append((src, spec.precision, spec.dynamic, opts.output))
        out = Path(opts.output)
        out.write_bytes(b"plan")
        sidecar_path(out).write_text("{}")
        return out

    monkeypatch.setattr(tensorrt, "require_tensorrt", lambda: "10.13.0.35")
    monkeypatch.setattr(tensorrt, "build_engine", build)
    monkeypatch.setattr(gpu, "gpu_info", lambda device_id=0: state["gpu"])
    return state


def test_default_engine_is_built_once_per_tensorrt_and_gpu(fake_tensorrt, tmp_path, capsys):
    from roadseg.export.gpu import GpuInfo
    from roadseg.runtime.defaults import resolve_model

    state = fake_tensorrt
    first = resolve_model("default", "trt")
    assert first.parent == tmp_path / "cache" / "engines" and first.suffix == ".engine"
    assert first.name.startswith("ddrnet23s_camvid_fp16-")
    assert state["builds"] == [(_variant("fp16"), "fp16", True, str(first))]  # the FP16 variant, dynamic N, H, W
    out = capsys.readouterr()
    assert out.out == "" and "building a TensorRT engine from ddrnet23s_camvid_fp16.onnx once" in out.err
    assert resolve_model("ddrnet23s_camvid", "trt") == first and len(state["builds"]) == 1  # cached
    state["gpu"] = GpuInfo("NVIDIA L4", "8.9", "13.0")
    other = resolve_model("default", "trt")
    assert other != first and len(state["builds"]) == 2  # a plan is tied to its GPU
    first.with_name(first.name + ".json").unlink()
    state["gpu"] = GpuInfo("NVIDIA H200", "9.0", "13.0")
    assert resolve_model("default", "trt") == first and len(state["builds"]) == 3  # a plan without sidecar: rebuilt


def test_auto_runs_default_on_native_tensorrt_and_falls_back_when_the_build_fails(fake_tensorrt, monkeypatch, caplog):
    import roadseg.runtime.backends as backends
    from roadseg.core.errors import RoadsegError
    from roadseg.export.gpu import GpuInfo

    state = fake_tensorrt
    opened = []

    class Fake:
        def __init__(self, path, **opts):
            opened.append(Path(path))

    # as if TensorRT, pycuda and a GPU were here
    monkeypatch.setitem(backends.BACKENDS, "trt", replace(backends.BACKENDS["trt"], probe=lambda: None, load=lambda: Fake))
    backends.open_backend("default", "auto")
    assert len(opened) == 1 and opened[0].suffix == ".engine" and len(state["builds"]) == 1

    def broken(*a):
        raise RoadsegError("x.onnx: TensorRT could not build an engine")

    from roadseg.export import tensorrt

    monkeypatch.setattr(tensorrt, "build_engine", broken)
    state["gpu"] = GpuInfo("NVIDIA L4", "8.9", "13.0")  # a new GPU: a build, which fails
    cpu = backends.open_backend("default", "auto", threads=1)
    assert Path(cpu.path) == _variant("int8") and len(opened) == 1
    assert "skipped trt: x.onnx: TensorRT could not build an engine" in caplog.text
    cpu.close()
