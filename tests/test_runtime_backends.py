"""Model checks before any frame, the ONNX Runtime backend, the backend registry, the Segmenter API
and the cached default model. CPU only; GPU providers are tested for their missing-provider error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, CARD_KEY, ModelCard
from roadseg.core.errors import MissingDependencyError, RoadsegError, UsageError
from roadseg.runtime import defaults
from roadseg.runtime.backends import BACKENDS, available_backends, open_backend, probe, resolve_backend
from roadseg.runtime.backends.base import Backend
from roadseg.runtime.backends.ort import OrtBackend
from roadseg.runtime.model import EXPORT_KEY, inspect_model
from roadseg.runtime.segmenter import Segmenter
from roadseg.runtime.synthetic import make_scene

REPO = Path(__file__).resolve().parents[1]


def frames(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.stack([make_scene(seed=seed + i, size=size)[0] for i in range(n)])


def direct(path: Path, x: np.ndarray) -> np.ndarray:
    """The graph called with onnxruntime itself: the reference for every backend result."""
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


# -- hand-made ONNX files (onnx.helper) for the format checks -------------------------------------


def card_json(**changes) -> str:
    card = ModelCard(name="hand", arch="none", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, input_size=(4, 4))
    d = card.to_dict()
    d.update(changes)
    return json.dumps(d)


def hand_onnx(path: Path, in_type=None, in_shape=(1, 4, 4, 3), out_type=None, out_shape=(1, 4, 4), card: str | None = "",
              export: dict | None = None) -> Path:  # fmt: skip
    """A one-node graph: ReduceMax over the channel axis when the shapes say so, else Identity."""
    import onnx
    from onnx import TensorProto, helper

    in_type = TensorProto.UINT8 if in_type is None else in_type
    out_type = in_type if out_type is None else out_type
    x = helper.make_tensor_value_info("frames", in_type, list(in_shape))
    y = helper.make_tensor_value_info("labels", out_type, list(out_shape))
    if len(in_shape) == len(out_shape) + 1:
        axes = helper.make_tensor("axes", TensorProto.INT64, [1], [len(in_shape) - 1])
        node = helper.make_node("ReduceMax", ["frames", "axes"], ["labels"], keepdims=0)
        graph = helper.make_graph([node], "g", [x], [y], initializer=[axes])
    else:
        graph = helper.make_graph([helper.make_node("Identity", ["frames"], ["labels"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if card is not None:
        model.metadata_props.add(key=CARD_KEY, value=card or card_json())
    if export is not None:
        model.metadata_props.add(key=EXPORT_KEY, value=json.dumps(export))
    onnx.save(model, str(path))
    return path


def test_hand_made_graph_passes(tmp_path):
    info = inspect_model(hand_onnx(tmp_path / "ok.onnx"))
    assert info.frame_size == (4, 4) and info.batch == 1 and not info.raw
    assert info.inputs[0].dtype == "uint8" and info.outputs[0].shape == (1, 4, 4)


# -- inspect_model: one clear error before any frame -----------------------------------------------


def _error(path) -> str:
    with pytest.raises(RoadsegError) as e:
        inspect_model(path)
    msg = str(e.value)
    assert str(path) in msg, msg  # every message names the file
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    assert "not found" in _error(tmp_path / "nope.onnx")


def test_folder(tmp_path):
    assert "folder" in _error(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert "empty" in _error(tmp_path / "empty.onnx")


def test_git_lfs_pointer(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 4512345\n")
    assert "git lfs pull" in _error(p)


def test_jpeg_named_onnx(tmp_path):
    p = tmp_path / "photo.onnx"
    ok, buf = cv2.imencode(".jpg", make_scene(seed=0, size=(32, 48))[0])
    p.write_bytes(buf.tobytes())
    msg = _error(p)
    assert "JPEG" in msg and "roadseg export" in msg


def test_random_bytes_and_truncated_onnx(tmp_path, tiny_onnx):
    rng = np.random.default_rng(0)
    p = tmp_path / "noise.onnx"
    p.write_bytes(b"\x08\x07" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    assert "not an ONNX model" in _error(p)
    t = tmp_path / "truncated.onnx"
    t.write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    assert "not an ONNX model" in _error(t)


def test_checkpoint_and_engine_suffixes(tmp_path, tiny_checkpoint):
    assert "roadseg export" in _error(tiny_checkpoint)
    e = tmp_path / "m.engine"
    e.write_bytes(b"ftrt" + bytes(100))
    assert "trt" in _error(e)


def test_one_list_of_engine_suffixes():
    """runtime/backends holds the one list; the model checks and the bench harness use that object."""
    from roadseg.benchmarks import harness
    from roadseg.runtime import backends, model

    assert model.ENGINE_SUFFIXES is backends.ENGINE_SUFFIXES is harness.ENGINE_SUFFIXES
    assert ".trt" in backends.ENGINE_SUFFIXES


def test_onnx_without_card(tmp_path):
    msg = _error(hand_onnx(tmp_path / "foreign.onnx", card=None))
    assert "not made by roadseg" in msg and "roadseg export" in msg


def test_card_not_json_and_palette_mismatch(tmp_path):
    assert "JSON" in _error(hand_onnx(tmp_path / "a.onnx", card="{not json"))
    msg = _error(hand_onnx(tmp_path / "b.onnx", card=card_json(palette=CAMVID_PALETTE[:5])))
    assert "11 classes but 5 palette" in msg


def test_wrong_input_dtype(tmp_path):
    from onnx import TensorProto

    msg = _error(hand_onnx(tmp_path / "float.onnx", in_type=TensorProto.FLOAT, out_type=TensorProto.FLOAT))
    assert "float32" in msg and "uint8" in msg


def test_wrong_input_rank_and_channels(tmp_path):
    assert "uint8 BGR" in _error(hand_onnx(tmp_path / "r3.onnx", in_shape=(4, 4, 3), out_shape=(4, 4)))
    assert "uint8 BGR" in _error(hand_onnx(tmp_path / "c4.onnx", in_shape=(1, 4, 4, 4), out_shape=(1, 4, 4)))


def test_wrong_output(tmp_path):
    assert "class maps" in _error(hand_onnx(tmp_path / "o4.onnx", out_shape=(1, 4, 4, 3)))


def test_inspect_real_exports(tiny_onnx, tiny_onnx_dynamic):
    fixed = inspect_model(tiny_onnx)
    assert (fixed.frame_size, fixed.batch, fixed.dynamic, fixed.raw) == ((72, 96), 1, False, False)
    assert fixed.card.name == "tiny" and fixed.card.num_classes == 11 and fixed.precision == "fp32"
    assert fixed.inputs[0].name == "frames" and fixed.outputs[0].name == "labels"
    dyn = inspect_model(tiny_onnx_dynamic)
    assert (dyn.frame_size, dyn.batch, dyn.dynamic) == (None, None, True)
    assert dyn.export["dynamic"] is True


def test_raw_export_inspected_but_refused_by_the_runtime(tiny_export):
    raw = tiny_export(raw=True)
    info = inspect_model(raw)
    assert info.raw and info.inputs[0].dtype == "float32" and info.outputs[0].shape[1] == 11
    with pytest.raises(RoadsegError, match="without --raw"):
        OrtBackend(raw)


# -- the ONNX Runtime backend ---------------------------------------------------------------------


def test_ort_backend_matches_onnxruntime(tiny_onnx):
    x = frames(1, (72, 96))
    with OrtBackend(tiny_onnx) as b:
        assert isinstance(b, Backend) and b.name == "ort-cpu" and b.providers[0] == "CPUExecutionProvider"
        assert b.inputs[0].shape == (1, 72, 96, 3) and b.outputs[0].dtype == "uint8"
        got = b.infer(x)
    ref = direct(tiny_onnx, x)
    assert got.dtype == np.uint8 and got.shape == (1, 72, 96)
    assert len(np.unique(ref)) > 2  # a model whose labels vary: resize mistakes would show
    np.testing.assert_array_equal(got, ref)


def test_single_frame_in_single_map_out(tiny_onnx):
    x = frames(1, (72, 96))
    with OrtBackend(tiny_onnx, threads=1, graph_opt="basic") as b:
        one = b.infer(x[0])
    assert one.shape == (72, 96) and one.dtype == np.uint8
    np.testing.assert_array_equal(one, direct(tiny_onnx, x)[0])


def test_frame_size_mismatch_on_a_fixed_graph(tiny_onnx):
    x = frames(2, (144, 200), seed=5)
    with OrtBackend(tiny_onnx, threads=1) as b:
        got = b.infer(x)
    assert got.shape == (2, 144, 200)
    for f, m in zip(x, got):
        small = cv2.resize(f, (96, 72), interpolation=cv2.INTER_LINEAR)
        ref = cv2.resize(direct(tiny_onnx, small[None])[0], (200, 144), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(m, ref)


def test_dynamic_graph_any_size_and_batch(tiny_onnx_dynamic):
    with OrtBackend(tiny_onnx_dynamic, threads=1) as b:
        for size in [(72, 96), (50, 70)]:
            x = frames(3, size, seed=2)
            got = b.infer(x)
            assert got.shape == (3, *size)
            np.testing.assert_array_equal(got, direct(tiny_onnx_dynamic, x))  # whole batch at once


def test_batch_on_a_batch_one_graph(tiny_onnx):
    x = frames(3, (72, 96), seed=3)
    with OrtBackend(tiny_onnx, threads=1) as b:
        got = b.infer(x)
    np.testing.assert_array_equal(got, np.concatenate([direct(tiny_onnx, f[None]) for f in x]))


def test_fixed_batch_graph_pads(tiny_export):
    b2 = tiny_export(frame_size=(64, 96), batch=2)
    x = frames(3, (64, 96), seed=4)
    with OrtBackend(b2, threads=1) as b:
        assert b.info.batch == 2
        got3, got1 = b.infer(x), b.infer(x[0])
    assert got3.shape == (3, 64, 96) and got1.shape == (64, 96)
    ref = np.concatenate([direct(b2, x[:2]), direct(b2, np.stack([x[2], x[2]]))[:1]])
    np.testing.assert_array_equal(got3, ref)
    np.testing.assert_array_equal(got1, ref[0])


def test_io_binding_path(tiny_onnx, tiny_onnx_dynamic):
    """The GPU providers' IO-binding code, run here with host memory: same labels, the fixed-shape
    graph reuses one preallocated output buffer."""
    for path, size in [(tiny_onnx, (72, 96)), (tiny_onnx_dynamic, (40, 56))]:
        with OrtBackend(path, threads=1) as b:
            b._binding, b._device = b.session.io_binding(), "cpu"
            x = frames(2, size, seed=9)
            first = b.infer(x)
            buffer = b._out_value
            np.testing.assert_array_equal(first, np.concatenate([direct(path, f[None]) for f in x]))
            np.testing.assert_array_equal(b.infer(x[1]), first[1])
            assert (buffer is None) == (path == tiny_onnx_dynamic) and b._out_value is buffer


def test_io_binding_path_from_several_threads(tiny_onnx):
    """The shared IO binding and output buffer: concurrent callers each get their own frame's labels."""
    import concurrent.futures

    x = frames(6, (72, 96), seed=11)
    ref = [direct(tiny_onnx, f[None])[0] for f in x]
    with OrtBackend(tiny_onnx, threads=1) as b:
        b._binding, b._device = b.session.io_binding(), "cpu"
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda i: b.infer(x[i % 6]), range(24)))
    for i, labels in enumerate(got):
        np.testing.assert_array_equal(labels, ref[i % 6])


@pytest.mark.parametrize(
    "bad",
    [np.zeros((72, 96), np.uint8), np.zeros((72, 96, 4), np.uint8), np.zeros((72, 96, 3), np.float32),
     np.zeros((72, 96, 3), np.uint16), np.zeros((0, 0, 3), np.uint8), np.zeros((2, 1, 72, 96, 3), np.uint8)],
)  # fmt: skip
def test_bad_frames_are_a_clear_error(tiny_onnx, bad):
    with OrtBackend(tiny_onnx, threads=1) as b, pytest.raises(RoadsegError, match="uint8 BGR"):
        b.infer(bad)


def test_closed_backend(tiny_onnx):
    b = OrtBackend(tiny_onnx, threads=1)
    b.close()
    b.close()
    with pytest.raises(RoadsegError, match="closed"):
        b.infer(frames(1, (72, 96)))


@pytest.mark.parametrize(
    "opts", [{"provider": "rocm"}, {"graph_opt": "max"}, {"threads": 0}, {"threads": -2}, {"device_id": -1}]
)
def test_bad_options_are_usage_errors(tiny_onnx, opts):
    with pytest.raises(UsageError):
        OrtBackend(tiny_onnx, **opts)


@pytest.mark.parametrize(
    "backend,provider", [("ort-cuda", "CUDAExecutionProvider"), ("ort-trt", "TensorrtExecutionProvider")]
)
def test_missing_provider_is_an_error_not_a_cpu_fallback(tiny_onnx, backend, provider):
    if provider in ort.get_available_providers():
        pytest.skip(f"{provider} is installed here")
    with pytest.raises(MissingDependencyError) as e:
        open_backend(tiny_onnx, backend)
    msg = str(e.value)
    assert provider in msg and "roadseg[gpu]" in msg and "onnxruntime-gpu" in msg
    assert available_backends()[backend] is not None


def test_both_onnxruntime_wheels_get_their_own_hint(tiny_onnx, monkeypatch):
    """`roadseg[gpu]` adds onnxruntime-gpu next to the CPU wheel; both install one module and the
    CPU build can win: the error then names that, not the install that was already done."""
    from roadseg.runtime.backends import probe as ort_backend  # the hints live with the probes

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDAExecutionProvider is installed here")
    assert ort_backend._both_ort_wheels() is False  # this machine has the CPU wheel only
    monkeypatch.setattr(ort_backend, "_both_ort_wheels", lambda: True)
    with pytest.raises(MissingDependencyError, match=r"both installed .*pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"):
        open_backend(tiny_onnx, "ort-cuda")
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in available_backends()["ort-cuda"]
    assert ort_backend.install_hint("cpu") == "check the onnxruntime install"


def test_provider_that_silently_falls_back_is_refused(tiny_onnx, monkeypatch):
    """onnxruntime lists CUDA but the session starts on CPU (no driver, wrong cuDNN): an error."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA provider installed: cannot fake its failure")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(MissingDependencyError, match="backend ort-cuda: (no NVIDIA driver|this onnxruntime lists)"):
        OrtBackend(tiny_onnx, provider="cuda")  # the probe: refused before ONNX Runtime is asked
    monkeypatch.setattr(probe, "gpu_reason", lambda name: None)  # the probe passes, the session still falls back
    with pytest.raises(MissingDependencyError, match="fell back to CPUExecutionProvider"):
        OrtBackend(tiny_onnx, provider="cuda")


def test_auto_probes_listed_gpu_providers_and_says_what_it_chose(tiny_onnx, noisy_onnxruntime, monkeypatch, capfd, caplog):
    """onnxruntime-gpu on a machine that cannot run it (no driver here): auto never asks ONNX
    Runtime for the GPU providers, one log line names the choice and why, and nothing of ONNX
    Runtime's reaches stdout or stderr; a named GPU backend is one error, also silent."""
    monkeypatch.setattr(probe, "cuda_devices", lambda: None)  # no driver, whatever this machine has
    assert resolve_backend(tiny_onnx) == ["ort-cpu"]
    with caplog.at_level("WARNING", logger="roadseg"):
        with open_backend(tiny_onnx, threads=1) as b:
            assert b.name == "ort-cpu"
    assert [r.getMessage() for r in caplog.records] == [
        "backend auto chose ort-cpu (skipped ort-trt: no NVIDIA driver (libcuda) on this machine; "
        "ort-cuda: no NVIDIA driver (libcuda) on this machine)"
    ]
    for name in ("ort-cuda", "ort-trt"):
        with pytest.raises(MissingDependencyError, match=rf"^backend {name}: no NVIDIA driver \(libcuda\)"):
            open_backend(tiny_onnx, name)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_onnxruntime_output_is_held_back_unless_verbose(tiny_onnx, noisy_onnxruntime, monkeypatch, capfd, caplog):
    """Where the probe passes but the provider still fails (a wrong cuDNN, say), ONNX Runtime's
    banner and error lines stay off stdout and stderr; at DEBUG (`--verbose`) the banner is logged."""
    monkeypatch.setattr(probe, "gpu_reason", lambda name: None)
    with pytest.raises(MissingDependencyError, match="fell back to CPUExecutionProvider"):
        OrtBackend(tiny_onnx, provider="cuda")
    with caplog.at_level("WARNING", logger="roadseg"):
        with open_backend(tiny_onnx, threads=1) as b:
            assert b.name == "ort-cpu"
    assert "skipped ort-trt: backend ort-trt: ONNX Runtime could not start TensorrtExecutionProvider" in caplog.text
    assert capfd.readouterr() == ("", "")
    with caplog.at_level("DEBUG", logger="roadseg"):
        with pytest.raises(MissingDependencyError):
            OrtBackend(tiny_onnx, provider="cuda")
    assert "EP Error" in caplog.text and "Falling back" in caplog.text
    assert capfd.readouterr().out == ""


# -- registry and open_backend --------------------------------------------------------------------


def test_registry_names():
    assert {"ort-cpu", "ort-cuda", "ort-trt", "trt", "ov-cpu"} <= set(BACKENDS)
    assert all(name == spec.name for name, spec in BACKENDS.items())


def test_auto_picks_ort_cpu_here(tiny_onnx):
    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        pytest.skip("a GPU provider is installed here")
    b = open_backend(tiny_onnx, threads=1, trt_fp16=None)  # None options are ignored
    try:
        assert b.name == "ort-cpu"
    finally:
        b.close()
    assert resolve_backend(tiny_onnx) == ["ort-cpu"]


def test_auto_skips_a_gpu_provider_that_cannot_start(tiny_onnx, monkeypatch, tmp_path):
    """onnxruntime-gpu lists the TensorRT and CUDA providers even where they cannot start: auto
    moves on to the next one (an explicitly named backend would raise instead)."""
    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        pytest.skip("a GPU provider is installed here: it may really start")
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(probe, "gpu_reason", lambda name: None)  # as if driver, device and libraries were there
    assert resolve_backend(tiny_onnx) == ["ort-trt", "ort-cuda", "ort-cpu"]
    b = open_backend(tiny_onnx, "auto", threads=1)
    try:
        assert b.name == "ort-cpu"
    finally:
        b.close()
    assert (tmp_path / "cache" / "ort-trt").is_dir()  # the TensorRT EP engine cache lives in the roadseg cache


def test_auto_falls_through_any_error_of_a_gpu_provider_but_not_of_the_last(tiny_onnx, monkeypatch, caplog):
    """A GPU provider that fails with any RoadsegError (not only a missing library) is skipped,
    with a log line; the last one's error (CPU) is raised."""
    # as if onnxruntime-gpu listed both GPU providers here and the probe passed them
    monkeypatch.setattr(probe, "ort_providers", lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(probe, "gpu_reason", lambda name: None)
    tried = []

    def failing(name, exc):
        def open_(path, **opts):
            tried.append(name)
            raise exc

        return replace(BACKENDS[name], load=lambda: open_)

    monkeypatch.setitem(BACKENDS, "ort-trt", failing("ort-trt", RoadsegError("TensorRT EP: engine build failed")))
    monkeypatch.setitem(BACKENDS, "ort-cuda", failing("ort-cuda", MissingDependencyError("no cuDNN")))
    with caplog.at_level("INFO", logger="roadseg"):
        b = open_backend(tiny_onnx, "auto", threads=1)
    try:
        assert b.name == "ort-cpu" and tried == ["ort-trt", "ort-cuda"]
    finally:
        b.close()
    assert caplog.messages == ["backend auto chose ort-cpu (skipped ort-trt: TensorRT EP: engine build failed; ort-cuda: no cuDNN)"]
    monkeypatch.setitem(BACKENDS, "ort-cpu", failing("ort-cpu", RoadsegError("cpu failed")))
    with pytest.raises(RoadsegError, match="cpu failed"):
        open_backend(tiny_onnx, "auto", threads=1)
    with pytest.raises(RoadsegError, match="engine build failed"):  # named: never a fallback
        open_backend(tiny_onnx, "ort-trt", threads=1)


def test_auto_picks_trt_for_engines():
    assert resolve_backend("model.engine") == ["trt"]
    assert resolve_backend("model.onnx", "ort-cuda") == ["ort-cuda"]


def test_unknown_backend_is_a_usage_error(tiny_onnx):
    with pytest.raises(UsageError) as e:
        open_backend(tiny_onnx, "openvino")
    assert e.value.exit_code == 2
    for name in ("auto", "ort-cpu", "ort-cuda", "ort-trt", "trt"):
        assert name in str(e.value)


def test_open_backend_checks_the_file_first(tmp_path):
    with pytest.raises(RoadsegError, match="not found"):
        open_backend(tmp_path / "missing.engine")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(RoadsegError, match="empty"):
        open_backend(tmp_path / "empty.onnx", "ort-cpu")


def test_available_backends(tiny_onnx):
    plain = available_backends()
    assert set(plain) == set(BACKENDS) and plain["ort-cpu"] is None
    for reason in plain.values():
        assert reason is None or isinstance(reason, str) and reason
    exact = available_backends(tiny_onnx, threads=1)
    assert exact["ort-cpu"] is None and "engine" in exact["trt"]  # type: ignore[operator]


# -- Segmenter --------------------------------------------------------------------------------------


def test_segmenter_call(tiny_onnx_dynamic):
    x = frames(2, (60, 80), seed=7)
    with Segmenter(tiny_onnx_dynamic, backend="ort-cpu", threads=1) as seg:
        assert seg.name == "ort-cpu" and seg.card.classes == CAMVID_CLASSES and seg.classes == CAMVID_CLASSES
        one, two = seg(x[0]), seg(x)
        assert one.shape == (60, 80) and one.dtype == np.uint8
        assert two.shape == (2, 60, 80) and two.dtype == np.uint8
        np.testing.assert_array_equal(two, direct(tiny_onnx_dynamic, x))
        np.testing.assert_array_equal(one, two[0])
        assert "ort-cpu" in repr(seg)
    with pytest.raises(RoadsegError, match="closed"):
        seg(x[0])
    seg.close()


def test_segmenter_stream_delegates_to_the_pipeline(tiny_onnx, monkeypatch):
    calls = []

    def iterate(backend, source, **kwargs):
        calls.append((backend.name, source, kwargs))
        f = frames(1, (72, 96))[0]
        yield f, backend.infer(f), {"infer": 0.001}

    monkeypatch.setitem(sys.modules, "roadseg.runtime.iterate", types.SimpleNamespace(iterate=iterate))
    with Segmenter(tiny_onnx, backend="ort-cpu", threads=1) as seg:  # pinned: delegation is tested, not auto
        out = list(seg.stream("synthetic", max_frames=1))
    assert calls == [("ort-cpu", "synthetic", {"max_frames": 1})]
    assert len(out) == 1 and out[0][1].shape == (72, 96)


def test_runtime_never_imports_torch(tiny_onnx):
    code = f"""
import sys
import numpy as np
import roadseg.runtime, roadseg.runtime.backends, roadseg.runtime.segmenter, roadseg.runtime.model
import roadseg.runtime.backends.ort, roadseg.runtime.defaults
from roadseg.runtime.segmenter import Segmenter
from roadseg.runtime.model import inspect_model
from roadseg.runtime.backends import available_backends
inspect_model({str(tiny_onnx)!r})
available_backends({str(tiny_onnx)!r})
with Segmenter({str(tiny_onnx)!r}, threads=1) as seg:
    assert seg(np.zeros((72, 96, 3), np.uint8)).shape == (72, 96)
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "roadseg.train", "roadseg.export")))
print("LEAKED", bad)
"""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "LEAKED []" in r.stdout, r.stdout


# -- the cached default model -----------------------------------------------------------------------


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("ROADSEG_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert defaults.cache_dir() == tmp_path / "home" / ".cache" / "roadseg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert defaults.cache_dir() == tmp_path / "xdg" / "roadseg"
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "rc"))
    assert defaults.cache_dir() == tmp_path / "rc"


def test_default_checkpoint_name_matches_the_bundle():
    from roadseg.train.checkpoint import BUNDLED

    assert set(BUNDLED) == set(defaults.BUNDLED_NAMES)
    assert set(BUNDLED.values()) == {defaults.DEFAULT_CHECKPOINT}


def test_missing_bundled_checkpoint_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(defaults, "DEFAULT_CHECKPOINT", "no_such_checkpoint.pt")
    with pytest.raises(RoadsegError, match="bundled default checkpoint is missing"):
        defaults.default_onnx()


def test_default_model_exported_once_then_reused(monkeypatch, tmp_path, tiny_checkpoint):
    """Where the shipped variants are missing (a source checkout without them) and PyTorch is here."""
    import roadseg.export.command as command

    ckpt = tmp_path / "bundled.pt"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.setattr(defaults, "bundled_checkpoint", lambda: ckpt)
    monkeypatch.setattr(defaults, "variants_dir", lambda: tmp_path / "no-variants")
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    first = defaults.default_onnx()
    assert first.parent == tmp_path / "cache" / "models" and first.is_file()
    info = inspect_model(first)
    assert info.dynamic and info.card.name == "tiny"  # dynamic N, H, W: any camera works

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(command, "export", no_export)
    assert defaults.default_onnx() == first
    with Segmenter("default", threads=1) as seg:  # "default" resolves to the cached file
        assert seg.model == first and seg(frames(1, (40, 64))[0]).shape == (40, 64)
    assert defaults.resolve_model("ddrnet23s_camvid") == first  # its own name, as training commands take

    # the key is the checkpoint's sha256 and the roadseg version
    version = defaults._version
    monkeypatch.setattr(defaults, "_version", lambda: "999.0")
    assert defaults.cached_path(ckpt) != first
    monkeypatch.setattr(defaults, "_version", version)
    assert defaults.cached_path(ckpt) == first
    changed = tmp_path / "changed.pt"
    changed.write_bytes(ckpt.read_bytes() + b"\0")
    assert defaults.cached_path(changed) != defaults.cached_path(ckpt)


def test_resolve_model_passes_paths_through(tmp_path):
    assert defaults.resolve_model(tmp_path / "m.onnx") == tmp_path / "m.onnx"
