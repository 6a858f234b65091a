"""The ort-cuda backend's CUDA graph and channels-last logic, on this CPU: a fake CUDA session wraps a
real CPU session and behaves as ONNX Runtime's CUDA EP does with `enable_cuda_graph` (the input and
output must be bound OrtValues on the device; the first run captures, later runs replay what is at
those addresses). What these fakes cannot show (the speed, a real capture) is measured by
`.ci/gpu-check` on a GPU."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import TINY_FRAME_SIZE

from roadseg.core.errors import UsageError
from roadseg.runtime.backends import open_backend, probe
from roadseg.runtime.backends.ort import OrtBackend


class FakeOrtValue:
    """A device tensor: its buffer stays where it was allocated; update_inplace copies into it."""

    def __init__(self, array: np.ndarray, device: str):
        self.array, self.device = array, device

    @classmethod
    def ortvalue_from_numpy(cls, x, device="cpu", device_id=0):
        return cls(np.array(x, copy=True), device)

    @classmethod
    def ortvalue_from_shape_and_type(cls, shape, dtype, device="cpu", device_id=0):
        return cls(np.full(shape, 255, dtype), device)  # poisoned: every run must write it

    def update_inplace(self, x):
        assert x.shape == self.array.shape and x.dtype == self.array.dtype, "a captured graph's input cannot change shape"
        self.array[...] = x

    def shape(self):
        return list(self.array.shape)


class FakeBinding:
    def __init__(self, session):
        self.session, self.inputs, self.outputs = session, {}, {}

    def bind_ortvalue_input(self, name, value):
        self.inputs[name] = value

    def bind_ortvalue_output(self, name, value):
        self.outputs[name] = value

    def bind_cpu_input(self, name, x):
        self.inputs[name] = FakeOrtValue(np.array(x, copy=True), "cpu")

    def bind_output(self, name, device="cpu", device_id=0):
        self.outputs[name] = None

    def copy_outputs_to_cpu(self):
        return [v.array.copy() if v is not None else self.session.last[i] for i, v in enumerate(self.outputs.values())]


class FakeCudaSession:
    """ONNX Runtime's CUDA EP as seen from Python, computing on the CPU."""

    created: list[dict] = []  # the CUDA provider options of each session, in order
    refuse_graph = False  # as when a node lands on the CPU: "cannot use the CUDA Graph feature"

    def __init__(self, path, sess_options=None, providers=None, **kw):
        cuda = [p for p in providers if isinstance(p, tuple) and p[0] == "CUDAExecutionProvider"]
        opts = cuda[0][1] if cuda else {}
        self.on_cuda = bool(cuda)
        if cuda:
            FakeCudaSession.created.append(dict(opts))
        if opts.get("enable_cuda_graph") == "1" and FakeCudaSession.refuse_graph:
            raise RuntimeError("This session cannot use the CUDA Graph feature as requested by the user as all compute "
                               "graph nodes have not been partitioned to the CUDA EP.")  # fmt: skip
        self.graph = opts.get("enable_cuda_graph") == "1"
        self.cpu = _REAL_SESSION(path, sess_options=sess_options, providers=["CPUExecutionProvider"])
        self.captured_from: int | None = None  # the input buffer's id at capture
        self.runs = 0

    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.on_cuda else ["CPUExecutionProvider"]

    def get_inputs(self):
        return self.cpu.get_inputs()

    def get_outputs(self):
        return self.cpu.get_outputs()

    def get_modelmeta(self):
        return self.cpu.get_modelmeta()

    def io_binding(self):
        return FakeBinding(self)

    def run(self, *args, **kw):
        assert not self.on_cuda, "GPU providers run through IO binding"
        return self.cpu.run(*args, **kw)

    def run_with_iobinding(self, binding):
        (name, x), = binding.inputs.items()
        if self.graph:
            assert x.device == "cuda" and all(v is not None and v.device == "cuda" for v in binding.outputs.values())
            if self.captured_from is None:
                self.captured_from = id(x.array)
            assert id(x.array) == self.captured_from, "a replayed graph reads the address it captured"
        self.runs += 1
        self.last = self.cpu.run(None, {name: x.array})
        for value, y in zip(binding.outputs.values(), self.last):
            if value is not None:
                value.array[...] = y


_REAL_SESSION = ort.InferenceSession


@pytest.fixture
def fake_cuda(monkeypatch):
    FakeCudaSession.created = []
    FakeCudaSession.refuse_graph = False
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(probe, "gpu_reason", lambda name: None)
    monkeypatch.setattr(ort, "InferenceSession", FakeCudaSession)
    monkeypatch.setattr(ort, "OrtValue", FakeOrtValue)
    return FakeCudaSession


def _frames(n: int, size=TINY_FRAME_SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _cpu_labels(path, x):
    with OrtBackend(path, provider="cpu", threads=1) as cpu:
        return cpu.infer(x)


def test_fixed_shape_graph_is_captured_once_and_replayed(tiny_onnx, fake_cuda):
    """On by default for a fixed-shape graph: the frames go into the one bound device input, every
    run gives the labels of its own frames, and the bench can read that the graph was captured."""
    x = _frames(4)
    want = _cpu_labels(tiny_onnx, x)
    b = OrtBackend(tiny_onnx, provider="cuda")
    try:
        assert fake_cuda.created[-1]["enable_cuda_graph"] == "1" and "prefer_nhwc" not in fake_cuda.created[-1]
        assert b.graph == "off"  # not before it has been captured and replayed
        got = np.stack([b.infer(f) for f in x])
        np.testing.assert_array_equal(got, want)
        assert b.graph == "captured" and b.session.runs == 4
    finally:
        b.close()


def test_cuda_graph_off_by_flag_and_for_dynamic_graphs(tiny_onnx, tiny_onnx_dynamic, fake_cuda):
    x = _frames(2)
    with OrtBackend(tiny_onnx, provider="cuda", cuda_graph=False) as b:
        np.testing.assert_array_equal(b.infer(x), _cpu_labels(tiny_onnx, x))
        assert b.graph == "off" and "enable_cuda_graph" not in fake_cuda.created[-1]
    with OrtBackend(tiny_onnx_dynamic, provider="cuda") as b:
        assert b.graph.startswith("off: the graph's batch or frame size is not fixed")
        assert "enable_cuda_graph" not in fake_cuda.created[-1]
        y = _frames(3, size=(40, 56), seed=2)
        np.testing.assert_array_equal(b.infer(y), _cpu_labels(tiny_onnx_dynamic, y))
    with pytest.raises(UsageError, match="a CUDA graph needs a fixed-shape graph"):
        OrtBackend(tiny_onnx_dynamic, provider="cuda", cuda_graph=True)


def test_a_session_that_cannot_capture_is_opened_without(tiny_onnx, fake_cuda):
    fake_cuda.refuse_graph = True
    x = _frames(2)
    with OrtBackend(tiny_onnx, provider="cuda") as b:
        assert [o.get("enable_cuda_graph") for o in fake_cuda.created] == ["1", None]
        assert b.graph.startswith("off: ONNX Runtime could not capture it") and "partitioned to the CUDA EP" in b.graph
        np.testing.assert_array_equal(b.infer(x), _cpu_labels(tiny_onnx, x))


def test_channels_last_kernels_for_fp16_graphs(tiny_export, tiny_onnx, fake_cuda):
    """prefer_nhwc on by default for FP16 graphs only (FP16 tensor-core convolutions take NHWC)."""
    fp16 = tiny_export(frame_size=TINY_FRAME_SIZE, precision="fp16")
    OrtBackend(fp16, provider="cuda").close()
    assert fake_cuda.created[-1].get("prefer_nhwc") == "1"
    OrtBackend(fp16, provider="cuda", nhwc=False).close()
    assert "prefer_nhwc" not in fake_cuda.created[-1]
    OrtBackend(tiny_onnx, provider="cuda", nhwc=True).close()
    assert fake_cuda.created[-1].get("prefer_nhwc") == "1"


def test_open_backend_passes_cuda_graph_to_ort(tiny_onnx, fake_cuda):
    """`--no-cuda-graph` reaches the ONNX Runtime backend (it used to be a TensorRT-only option)."""
    with open_backend(tiny_onnx, "ort-cuda", cuda_graph=False) as b:
        assert b.graph == "off"
    assert "enable_cuda_graph" not in fake_cuda.created[-1]


def _real_cuda_ep() -> bool:
    return "CUDAExecutionProvider" in _REAL_PROVIDERS and probe.gpu_reason("ort-cuda") is None


_REAL_PROVIDERS = ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _real_cuda_ep(), reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_real_cuda_ep_graph_matches_the_cpu(tiny_onnx):
    """On a GPU: the captured graph replays with each call's frames, and labels agree with the CPU."""
    from roadseg.runtime.synthetic import make_scene

    frames = np.stack([make_scene(seed=s, size=TINY_FRAME_SIZE)[0] for s in range(4)])
    want = _cpu_labels(tiny_onnx, frames)
    with OrtBackend(tiny_onnx, provider="cuda") as b:
        for _ in range(2):
            got = np.stack([b.infer(f) for f in frames])
            assert (got == want).mean() >= 0.999
        assert b.graph == "captured", b.graph


def test_open_backend_reads_the_model_once_on_the_way_to_a_gpu_provider(tiny_onnx, fake_cuda, monkeypatch):
    """auto on a GPU machine inspects the file (CPU-form refusal, INT8 flag) once and hands the
    result to the backend, which used to inspect it again before opening its own session."""
    from roadseg.runtime import model as model_mod
    from roadseg.runtime.backends import ort as ort_backend

    calls = []
    real = model_mod.inspect_model

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(model_mod, "inspect_model", counting)
    monkeypatch.setattr(ort_backend, "inspect_model", counting)
    for backend in ("auto", "ort-cuda"):
        calls.clear()
        with open_backend(tiny_onnx, backend) as b:
            assert b.name == "ort-cuda"
        assert len(calls) == 1, (backend, calls)
