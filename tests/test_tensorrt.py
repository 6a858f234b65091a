"""TensorRT: the engine sidecar and its checks, engine build options, and the native backend.

TensorRT cannot be installed without an NVIDIA GPU, so most tests run the real code against small
fakes of `tensorrt` and `pycuda.driver` that model what these modules do (named tensors, device
buffers as numpy arrays, a "network" that maps frames to labels deterministically). They check our
logic (what is verified, refused, bound, allocated, resized, chunked, written), not TensorRT. The
`gpu`-marked test at the end builds and runs a real engine and compares it with ONNX Runtime; it is
skipped where TensorRT, pycuda or a GPU is missing.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import types
import weakref
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
from roadseg.core.errors import MissingDependencyError, RoadsegError, UsageError
from roadseg.export.command import ExportOptions
from roadseg.export.spec import GraphSpec
from roadseg.runtime.engine import (
    EngineSidecar,
    read_sidecar,
    sha256_file,
    sidecar_path,
    verify_engine,
    write_sidecar,
)

TRT_VERSION = "10.13.0.35"
CARD = ModelCard(name="tiny", arch="fastscnn", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11,
                 input_size=(64, 96))  # fmt: skip


# -- sidecar and verify_engine ----------------------------------------------------------------------


def make_sidecar(plan: Path, **changes) -> EngineSidecar:
    sc = EngineSidecar(
        card=CARD.to_dict(), plan_sha256=sha256_file(plan), onnx_sha256="0" * 64, tensorrt_version=TRT_VERSION,
        cuda_version="12.6", gpu_name="NVIDIA Jetson AGX Orin", compute_capability="8.7", precision="fp16",
        profiles=[{"input": "frames", "min": [1, 72, 96, 3], "opt": [1, 72, 96, 3], "max": [1, 72, 96, 3]}],
        build_seconds=12.5, roadseg_version="0.1.0", created="2026-01-01T00:00:00+00:00", source="models/tiny.onnx",
    )  # fmt: skip
    return replace(sc, **changes)


@pytest.fixture
def engine(tmp_path) -> Path:
    plan = tmp_path / "tiny.engine"
    plan.write_bytes(bytes(range(256)) * 64)  # 16 KiB standing in for a plan
    write_sidecar(plan, make_sidecar(plan))
    return plan


def test_sidecar_round_trip(engine):
    side = sidecar_path(engine)
    assert side.name == "tiny.engine.json"
    data = json.loads(side.read_text())
    for key in ("card", "plan_sha256", "onnx_sha256", "tensorrt_version", "cuda_version", "gpu_name", "compute_capability",
                "precision", "profiles", "build_seconds", "version_compatible", "hardware_compatibility", "roadseg_version",
                "created", "platform"):  # fmt: skip
        assert key in data, key
    sc = read_sidecar(engine)
    assert sc == make_sidecar(engine)
    assert sc.model_card() == CARD
    assert not [p for p in engine.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write left no temp file


def test_verify_accepts_a_matching_engine(engine):
    assert verify_engine(engine, TRT_VERSION, "8.7").plan_sha256 == sha256_file(engine)


def _refused(engine, trt=TRT_VERSION, cc="8.7") -> str:
    with pytest.raises(RoadsegError) as e:
        verify_engine(engine, trt, cc)
    msg = str(e.value)
    assert "\n" not in msg, "one line"
    assert str(engine) in msg
    return msg


def _refused_on(engine, platform: str) -> str:
    with pytest.raises(RoadsegError) as e:
        verify_engine(engine, TRT_VERSION, "8.7", platform=platform)
    msg = str(e.value)
    assert "\n" not in msg and str(engine) in msg
    return msg


def _has_rebuild(msg: str) -> None:
    assert "roadseg export models/tiny.onnx --to engine" in msg, msg


def test_verify_refuses_a_truncated_plan(engine):
    engine.write_bytes(engine.read_bytes()[:-100])
    msg = _refused(engine)
    assert "sha256" in msg and "truncated" in msg
    _has_rebuild(msg)


def test_verify_refuses_a_bit_flip(engine):
    data = bytearray(engine.read_bytes())
    data[5000] ^= 0x10
    engine.write_bytes(bytes(data))
    msg = _refused(engine)
    assert "sha256" in msg and "differs from its sidecar" in msg
    _has_rebuild(msg)


def test_verify_refuses_a_missing_sidecar(engine):
    sidecar_path(engine).unlink()
    msg = _refused(engine)
    assert "sidecar tiny.engine.json is missing" in msg
    assert "roadseg export" in msg and "--to engine" in msg


def test_verify_refuses_a_missing_engine(tmp_path):
    with pytest.raises(RoadsegError, match="engine file not found"):
        verify_engine(tmp_path / "nope.engine", TRT_VERSION, "8.7")


def test_verify_refuses_another_tensorrt_version(engine):
    msg = _refused(engine, trt="10.3.0.26")
    assert "built with TensorRT 10.13.0.35" in msg and "this machine has TensorRT 10.3.0.26" in msg
    _has_rebuild(msg)
    _refused(engine, trt="11.0.0.1")
    # TensorRT refuses a plan from another patch or build of the same major.minor, so roadseg does too
    for other in ("10.13.3.9", "10.13.0.34", "10.13.1.35"):
        assert "exact TensorRT release" in _refused(engine, trt=other)


def test_version_compatible_plan_runs_on_newer_tensorrt_only(engine):
    write_sidecar(engine, make_sidecar(engine, tensorrt_version="10.3.0.26", version_compatible=True))
    assert verify_engine(engine, TRT_VERSION, "8.7")
    assert verify_engine(engine, "10.3.0.27", "8.7")
    assert verify_engine(engine, "11.1.0.2", "8.7")
    msg = _refused(engine, trt="10.1.0.27")
    assert "version-compatible" in msg and "TensorRT 10 or 11" in msg
    _has_rebuild(msg)
    _refused(engine, trt="10.3.0.25")  # an older build of the same release
    _refused(engine, trt="12.0.0.1")  # one major forward at most
    write_sidecar(engine, make_sidecar(engine, tensorrt_version="8.6.1.6", version_compatible=True))
    assert "TensorRT 8 or 9" in _refused(engine, trt="11.1.0.2")


def test_verify_refuses_another_platform(engine):
    write_sidecar(engine, make_sidecar(engine, platform="linux-aarch64-jetson"))
    assert verify_engine(engine, TRT_VERSION, "8.7", platform="linux-aarch64-jetson")
    for here in ("linux-aarch64", "linux-x86_64", "windows-x86_64"):
        msg = _refused_on(engine, here)
        assert "built on linux-aarch64-jetson" in msg and f"this machine is {here}" in msg
        _has_rebuild(msg)
    write_sidecar(engine, make_sidecar(engine))  # an older sidecar without a platform: not compared
    assert verify_engine(engine, TRT_VERSION, "8.7", platform="linux-x86_64")


def test_hardware_compatible_plan_is_refused_on_jetson(engine):
    """Hardware compatibility is not supported on JetPack: an Ampere+ plan must not pass on Orin (8.7)."""
    for recorded in ("linux-aarch64", ""):  # built on an aarch64 server (SBSA), or not recorded
        write_sidecar(engine, make_sidecar(engine, compute_capability="8.6", hardware_compatibility="ampere_plus",
                                           platform=recorded))  # fmt: skip
        msg = _refused_on(engine, "linux-aarch64-jetson")
        assert ("not support on Jetson" in msg) if not recorded else ("built on linux-aarch64" in msg), msg
        if not recorded:
            assert "--hardware-compatible" not in msg.split("Rebuild it here without --hardware-compatible:")[1]
    assert verify_engine(engine, TRT_VERSION, "8.7", platform="linux-aarch64")  # an Ampere+ server GPU: fine


def test_platform_tag(monkeypatch):
    from roadseg.runtime import engine as eng

    monkeypatch.setattr(eng._platform, "system", lambda: "Linux")
    monkeypatch.setattr(eng._platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(eng, "on_jetson", lambda: True)
    assert eng.platform_tag() == "linux-aarch64-jetson"
    monkeypatch.setattr(eng, "on_jetson", lambda: False)
    monkeypatch.setattr(eng._platform, "machine", lambda: "AMD64")
    assert eng.platform_tag() == "linux-x86_64"


def test_verify_refuses_another_compute_capability(engine):
    msg = _refused(engine, cc="8.6")
    assert (
        "built for compute capability 8.7 (NVIDIA Jetson AGX Orin)" in msg
        and "this GPU has compute capability 8.6" in msg
    )
    _has_rebuild(msg)


def test_hardware_compatible_plan_runs_on_ampere_and_newer(engine):
    write_sidecar(engine, make_sidecar(engine, compute_capability="8.6", hardware_compatibility="ampere_plus"))
    for cc in ("8.0", "8.9", "9.0", "12.0"):
        assert verify_engine(engine, TRT_VERSION, cc)
    msg = _refused(engine, cc="7.5")
    assert "Ampere" in msg and "7.5" in msg
    _has_rebuild(msg)


@pytest.mark.parametrize(
    "text",
    [
        b"", b"not json", b"\xff\xfe\x00", b"[]", b"{}", b'{"card": 1}', b"[" * 100000,
        json.dumps({"format": 99}).encode(),
    ],
)  # fmt: skip
def test_corrupt_sidecars_are_one_clear_error(engine, text):
    sidecar_path(engine).write_bytes(text)
    with pytest.raises(RoadsegError) as e:
        verify_engine(engine, TRT_VERSION, "8.7")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"plan_sha256": "abc"}, {"plan_sha256": 5}, {"build_seconds": "fast"}, {"build_seconds": float("nan")},
        {"version_compatible": "yes"}, {"hardware_compatibility": "all"}, {"profiles": [{"input": "frames", "min": [0]}]},
        {"profiles": "x"}, {"plugins": [1]}, {"card": {"name": "x"}}, {"card": {**CARD.to_dict(), "palette": 3}},
        {"card": {**CARD.to_dict(), "input_size": "ab"}}, {"gpu_name": None},
    ],
)  # fmt: skip
def test_sidecar_fields_are_validated(engine, changes):
    data = {**make_sidecar(engine).to_dict(), **changes}
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(RoadsegError, match="(?i)rebuild: roadseg export"):
        read_sidecar(engine)


def test_mutated_sidecars_never_crash(engine):
    good = sidecar_path(engine).read_bytes()
    rng = np.random.default_rng(0)
    for _ in range(300):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(len(data)))]
        sidecar_path(engine).write_bytes(bytes(data))
        try:
            verify_engine(engine, TRT_VERSION, "8.7")
        except RoadsegError as e:  # anything else (KeyError, TypeError, ...) fails the test
            assert "\n" not in str(e) and engine.name in str(e), str(e)  # one line naming the file


# -- engine build options ---------------------------------------------------------------------------


def opts(**kw) -> ExportOptions:
    return ExportOptions(model="models/tiny.onnx", to="engine", progress=False, **kw)


def test_profiles_fixed_shape():
    from roadseg.export.tensorrt import profiles_for

    spec = GraphSpec((72, 96), batch=2)
    assert profiles_for(spec, CARD, opts()) == [
        {"input": "frames", "min": [2, 72, 96, 3], "opt": [2, 72, 96, 3], "max": [2, 72, 96, 3]}
    ]
    raw = GraphSpec(None, raw=True)
    assert profiles_for(raw, CARD, opts())[0] == {
        "input": "input",
        "min": [1, 3, 64, 96],
        "opt": [1, 3, 64, 96],
        "max": [1, 3, 64, 96],
    }
    with pytest.raises(UsageError, match="--dynamic"):
        profiles_for(spec, CARD, opts(max_shape=(4, 720, 1280)))


def test_profiles_dynamic_defaults_and_overrides():
    from roadseg.export.tensorrt import profiles_for

    dyn = GraphSpec(None, dynamic=True)
    card = CARD.replace(input_size=[360, 480])
    assert profiles_for(dyn, card, opts()) == [
        {"input": "frames", "min": [1, 180, 240, 3], "opt": [1, 360, 480, 3], "max": [8, 1080, 1920, 3]}
    ]
    odd = CARD.replace(input_size=[65, 97])
    assert profiles_for(dyn, odd, opts())[0]["min"] == [1, 33, 49, 3]
    p = profiles_for(dyn, card, opts(min_shape=(1, 240, 320), opt_shape=(2, 480, 640), max_shape=(4, 720, 1280)))[0]
    assert (p["min"], p["opt"], p["max"]) == ([1, 240, 320, 3], [2, 480, 640, 3], [4, 720, 1280, 3])
    big = profiles_for(dyn, card, opts(opt_shape=(16, 2160, 3840)))[0]  # defaults stretch around a large opt
    assert big["max"] == [16, 2160, 3840, 3] and big["min"] == [1, 180, 240, 3]
    raw = profiles_for(GraphSpec(None, dynamic=True, raw=True), card, opts())[0]
    assert raw["input"] == "input" and raw["opt"] == [1, 3, 360, 480]


@pytest.mark.parametrize("kw", [{"min_shape": (2, 100, 100), "opt_shape": (1, 360, 480)}, {"max_shape": (1, 100, 100)},
                                {"opt_shape": (0, 360, 480)}, {"max_shape": (1, 2)}])  # fmt: skip
def test_profiles_refuse_impossible_ranges(kw):
    from roadseg.export.tensorrt import profiles_for

    with pytest.raises(UsageError):
        profiles_for(GraphSpec(None, dynamic=True), CARD.replace(input_size=[360, 480]), opts(**kw))


def test_gpu_description_takes_each_field_from_the_first_probe_that_knows_it(monkeypatch):
    from roadseg.export import gpu

    def missing(device_id):
        raise ImportError("no cuda-python")

    monkeypatch.setattr(gpu, "_gpu_cuda_python", missing)
    monkeypatch.setattr(gpu, "_gpu_pycuda", lambda i: gpu.GpuInfo("Orin", "8.7", "unknown"))
    monkeypatch.setattr(gpu, "_gpu_torch", lambda i: gpu.GpuInfo("torch name", "9.0", "12.6"))
    monkeypatch.setattr(gpu, "_gpu_nvidia_smi", lambda i: pytest.fail("not asked once everything is known"))
    assert gpu.gpu_info() == gpu.GpuInfo("Orin", "8.7", "12.6")
    for name in ("_gpu_pycuda", "_gpu_torch", "_gpu_nvidia_smi"):
        monkeypatch.setattr(gpu, name, missing)
    assert gpu.gpu_info() == gpu.GpuInfo()  # nothing answers: "unknown", never an error
    assert gpu._cuda_version(12080) == "12.8"


def test_engine_path_defaults(tmp_path):
    from roadseg.export.options import engine_path

    spec = GraphSpec((72, 96), precision="fp16")
    assert engine_path(opts(output=str(tmp_path / "x.plan")), CARD, spec, None) == tmp_path / "x.plan"
    assert engine_path(opts(), CARD, spec, tmp_path / "m.onnx") == tmp_path / "m.engine"
    ckpt = tmp_path / "tiny.pt"
    ckpt.write_bytes(b"x")
    assert engine_path(replace(opts(), model=str(ckpt)), CARD, spec, None) == tmp_path / "tiny_fp16_72x96.engine"


def tiny_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("frames", TensorProto.UINT8, ["N", "H", "W", 3])
    y = helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])
    node = helper.make_node("ReduceMax", ["frames"], ["labels"], axes=[3], keepdims=0)
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_missing_tensorrt_is_a_clear_error(tmp_path, monkeypatch):
    from roadseg.export.tensorrt import build_engine

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    spec = GraphSpec((72, 96))
    with pytest.raises(
        MissingDependencyError,
        match=r"TensorRT is not installed: pip install roadseg\[gpu\] on a machine with an NVIDIA GPU",
    ):
        build_engine(tiny_model(), CARD, spec, opts(output=str(tmp_path / "m.engine")), None)
    assert not list(tmp_path.iterdir())
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    with pytest.raises(MissingDependencyError, match=r"m\.engine: TensorRT is not installed"):
        TensorRTBackend(tmp_path / "m.engine")


@pytest.mark.parametrize("version", ["8.6.1.6", "8.5.2.2", "9.3.0.1"])
def test_tensorrt_older_than_10_is_refused(monkeypatch, version):
    """TensorRT 8.x (JetPack 5) has no STRONGLY_TYPED flag: the network would be implicit-batch."""
    from roadseg.export.tensorrt import require_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", FakeTRT(version=version).module)
    with pytest.raises(MissingDependencyError) as e:
        require_tensorrt()
    msg = str(e.value)
    assert "\n" not in msg and f"TensorRT {version} is too old" in msg and "tensorrt>=10" in msg and "JetPack 6.1" in msg
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTRT(version="10.3.0.26").module)
    assert require_tensorrt() == "10.3.0.26"


def test_stub_only_tensorrt_counts_as_missing(monkeypatch):
    """tensorrt-stubs installed into site-packages import as an empty namespace package."""
    from roadseg.export.tensorrt import require_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    with pytest.raises(MissingDependencyError, match="has no builder"):
        require_tensorrt()


@pytest.mark.parametrize(
    "members,expected", [({"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}, 2), ({"STRONGLY_TYPED": 0}, 1), ({}, 0)]
)
def test_strongly_typed_flag_follows_the_enum(monkeypatch, members, expected):
    """TensorRT 10: STRONGLY_TYPED = 1 (EXPLICIT_BATCH = 0); TensorRT 11 dropped EXPLICIT_BATCH."""
    from roadseg.export.tensorrt import network_flags

    fake = types.ModuleType("tensorrt")
    fake.NetworkDefinitionCreationFlag = types.SimpleNamespace(**members)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert network_flags() == expected


# -- fakes of tensorrt and pycuda.driver -------------------------------------------------------------


def fake_network_fn(frames: np.ndarray) -> np.ndarray:
    """What the fake engine computes: a deterministic per-pixel label from the BGR frame."""
    return (frames[..., 1] // 24).astype(np.uint8)


def refused_casts(model: onnx.ModelProto) -> list[str]:
    """The Casts TensorRT's builder refuses: UINT8 converts only to and from FLOAT and HALF
    (NvInferRuntimeBase.h); onnx-tensorrt gives ArgMax INT64 indices, as ONNX does."""
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info, *g.output)}
    ok = {TensorProto.FLOAT, TensorProto.FLOAT16}
    bad = []
    for n in g.node:
        if n.op_type == "Cast":
            src, dst = types.get(n.input[0]), n.attribute[0].i
            if src != dst and ((src == TensorProto.UINT8 and dst not in ok) or (dst == TensorProto.UINT8 and src not in ok)):
                bad.append(n.name)
    return bad


class FakeTRT:
    """Enough of the tensorrt module for export/tensorrt.py and runtime/backends/tensorrt.py."""

    def __init__(self, input_shape=(1, 72, 96, 3), profile=None, version=TRT_VERSION, fail_build=False,
                 output_dtype="UINT8", no_context=False):  # fmt: skip
        self.input_shape, self.profile = tuple(input_shape), profile
        self.log: list = []
        self.fail_build = fail_build
        self.output_dtype = output_dtype
        self.during_build = None  # called in the middle of build_serialized_network
        self.no_context = no_context  # create_execution_context returns None (out of GPU memory)
        # (object, whether a valid CUDA context was current on the thread that freed it): TensorRT
        # frees device memory when its runtime, engine and context objects go, and needs the context
        self.freed: list[tuple[str, bool]] = []
        m = types.ModuleType("tensorrt")
        m.__version__ = version
        t = self

        class DataType:  # the real enum; trt.nptype has no numpy type for BF16, FP8, INT4, FP4, E8M0
            def __init__(self, name):
                self.name = name

            def __repr__(self):
                return f"<DataType.{self.name}>"

        for name in ("FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64", "INT4", "FP4"):
            setattr(DataType, name, DataType(name))
        numpy_of = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                    "BOOL": np.bool_, "UINT8": np.uint8}  # fmt: skip

        def nptype(dt):
            if dt.name not in numpy_of:
                raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
            return numpy_of[dt.name]

        class Freed:
            """Records, when collected, whether a valid CUDA context was current (FakeCuda.current)."""

            def __del__(self):
                t.freed.append((type(self).__name__, FakeCuda.current() is not None))

        class Logger:
            WARNING = "warning"

            def __init__(self, severity=None):
                self.severity = severity

        class IProgressMonitor:
            def __init__(self):
                pass

        class Dims(list):
            pass

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, lo, opt, hi):
                self.shapes[name] = (list(lo), list(opt), list(hi))

        class Cache:
            """A timing cache: TC|<TensorRT version>|entry,entry. TensorRT refuses a cache of another
            version or GPU (set_timing_cache / combine return False unless ignore_mismatch)."""

            def __init__(self, data):
                self.data = bytes(data)
                self.owner, self.entries = None, set()
                if data:
                    magic, owner, entries = bytes(data).decode().split("|")
                    assert magic == "TC", "not a timing cache"
                    self.owner, self.entries = owner, {e for e in entries.split(",") if e}

            def serialize(self):
                return f"TC|{self.owner}|{','.join(sorted(self.entries))}".encode()

            def combine(self, other, ignore_mismatch):
                if other.owner not in (None, self.owner) and not ignore_mismatch:
                    return False
                self.entries |= other.entries
                return True

        class Config:
            def __init__(self):
                self.flags, self.pools, self.profiles = [], {}, []
                self.hardware_compatibility_level = None
                self.progress_monitor = None
                self.cache = None

            def set_memory_pool_limit(self, pool, size):
                self.pools[pool] = size

            def set_flag(self, flag):
                self.flags.append(flag)

            def add_optimization_profile(self, p):
                self.profiles.append(p)
                return 0

            def create_timing_cache(self, data):
                return Cache(data)

            def set_timing_cache(self, cache, ignore_mismatch):
                if cache.owner not in (None, version) and not ignore_mismatch:
                    return False
                cache.owner = version
                self.cache = cache
                return True

            def get_timing_cache(self):
                return self.cache

        class Tensor:
            def __init__(self, name, shape):
                self.name, self.shape = name, Dims(shape)

        class Network:
            num_layers = 0
            num_inputs = 1

            def __init__(self, flags):
                self.flags = flags
                self.bad_casts: list[str] = []

            def get_input(self, i):
                return Tensor("frames", [-1, -1, -1, 3] if t.profile else list(t.input_shape))

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse(self, data):
                t.log.append(("parse", len(data)))
                self.network.bad_casts = refused_casts(onnx.load_from_string(data))
                return True

            def get_used_vc_plugin_libraries(self):
                return []

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                t.network = Network(flags)
                return t.network

            def create_builder_config(self):
                t.config = Config()
                return t.config

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                if network.bad_casts:  # TensorRT's Cast layer: UINT8 only to and from FLOAT and HALF
                    t.log.append(("cast refused", network.bad_casts))
                    return None
                mon = config.progress_monitor

                def call(method, *args):
                    """TensorRT's trampoline (pyCore.cpp): an exception in the monitor is swallowed
                    and stops the build, as a cancellation does."""
                    try:
                        return getattr(mon, method)(*args)
                    except BaseException as e:  # noqa: BLE001 - what the trampoline does
                        t.log.append(("monitor raised", type(e).__name__))
                        return False

                if mon is not None:
                    if call("phase_start", "Building", None, 3) is False:
                        return None
                    for s in range(3):
                        if t.during_build is not None and s == 1:
                            t.during_build()
                        if not call("step_complete", "Building", s):
                            call("phase_finish", "Building")
                            return None
                    if call("phase_finish", "Building") is False:
                        return None
                if config.cache is not None:
                    config.cache.entries.add(f"tactic-{len(config.pools)}-{sorted(config.pools.values())}")
                return None if t.fail_build else b"FAKEPLAN" + repr(config.pools).encode()

        class Context(Freed):
            def __init__(self, engine):
                self.engine, self.shapes, self.addresses, self.runs = engine, {}, {}, 0

            def set_input_shape(self, name, shape):
                lo, _, hi = t.profile or (t.input_shape,) * 3
                if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                    return False
                self.shapes[name] = tuple(shape)
                return True

            def get_tensor_shape(self, name):
                return Dims(self.shapes["frames"][:3] if name == "labels" else self.shapes[name])

            def set_tensor_address(self, name, address):
                self.addresses[name] = address
                return True

            def execute_async_v3(self, stream):
                x = FakeCuda.memory[self.addresses["frames"]]
                y = FakeCuda.memory[self.addresses["labels"]]
                shape = self.shapes["frames"]
                frames = x[: int(np.prod(shape))].reshape(shape)
                labels = fake_network_fn(frames)
                y[: labels.size] = labels.ravel()
                self.runs += 1
                return True

        class Engine(Freed):
            num_io_tensors = 2

            def get_tensor_name(self, i):
                return ["frames", "labels"][i]

            def get_tensor_mode(self, name):
                return "in" if name == "frames" else "out"

            def get_tensor_shape(self, name):
                shape = [-1, -1, -1, 3] if t.profile else list(t.input_shape)
                return Dims(shape if name == "frames" else shape[:3])

            def get_tensor_dtype(self, name):
                return getattr(DataType, "UINT8" if name == "frames" else t.output_dtype)

            def get_tensor_location(self, name):
                return "device"

            def get_tensor_profile_shape(self, name, index):
                return [Dims(s) for s in t.profile]

            def create_execution_context(self):
                if t.no_context:
                    return None
                context = Context(self)
                t._context = weakref.ref(context)  # the fake keeps no TensorRT object alive
                return context

        class Runtime(Freed):
            def __init__(self, logger):
                self.engine_host_code_allowed = False
                t._runtime = weakref.ref(self)

            def deserialize_cuda_engine(self, data):
                t.log.append(("deserialize", len(data)))
                return Engine()

            def get_plugin_registry(self):
                raise AssertionError("plugins are never loaded without allow_plugins")

        def init_libnvinfer_plugins(logger, namespace):
            raise AssertionError("plugins are never loaded without allow_plugins")

        ns = types.SimpleNamespace
        m.Logger, m.IProgressMonitor, m.Dims, m.Builder, m.OnnxParser, m.Runtime = (
            Logger,
            IProgressMonitor,
            Dims,
            Builder,
            Parser,
            Runtime,
        )
        m.init_libnvinfer_plugins = init_libnvinfer_plugins
        m.DataType, m.nptype = DataType, nptype
        m.NetworkDefinitionCreationFlag = ns(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
        m.MemoryPoolType = ns(WORKSPACE="workspace")
        m.BuilderFlag = ns(VERSION_COMPATIBLE="version_compatible")
        m.HardwareCompatibilityLevel = ns(NONE="none", AMPERE_PLUS="ampere_plus")
        m.LayerType = ns(PLUGIN="plugin", PLUGIN_V2="plugin_v2", PLUGIN_V3="plugin_v3")
        m.TensorIOMode = ns(INPUT="in", OUTPUT="out")
        m.TensorLocation = ns(DEVICE="device", HOST="host")
        self.module = m


    @property
    def runtime(self):
        return self._runtime()

    @property
    def context(self):
        return self._context()


class FakeCuda:
    """pycuda.driver: device memory is a dict address -> numpy uint8 array. Each thread has its own
    context stack, as in CUDA, and Context.detach follows pycuda (src/cpp/cuda.hpp, context::detach):
    a context current on the calling thread is destroyed and popped; one that is not current is
    pushed, destroyed and popped only on the thread that created it; from any other thread it is
    just marked invalid and leaks, with its device memory."""

    memory: dict[int, np.ndarray] = {}
    active: FakeCuda | None = None

    def __init__(self, cc=(8, 7)):
        self.allocs = 0
        self.stacks: dict[int, list] = {}
        self.contexts: list = []
        self.copies = 0
        FakeCuda.active = self
        d = types.ModuleType("pycuda.driver")
        f = self

        class Device:
            @staticmethod
            def count():
                return 1

            def __init__(self, i):
                self.i = i

            def compute_capability(self):
                return cc

            def make_context(self):
                ctx = Ctx()
                f.contexts.append(ctx)
                f.stack.append(ctx)
                return ctx

        class Ctx:
            def __init__(self):
                self.thread = threading.get_ident()
                self.valid, self.destroyed, self.leaked = True, False, False

            @property
            def detached(self):
                return self.destroyed

            def push(self):
                assert self.valid, "push of an invalid context"
                f.stack.append(self)

            def pop(self):
                assert f.stack and f.stack[-1] is self
                f.stack.pop()

            def detach(self):
                if not self.valid:
                    raise RuntimeError("context::detach failed: invalid context: cannot detach from invalid context")
                if f.stack and f.stack[-1] is self:
                    f.stack.pop()
                    self.destroyed = True
                elif self.thread == threading.get_ident():
                    self.destroyed = True
                else:
                    self.leaked = True  # pycuda: out-of-thread context, silently left behind
                self.valid = False

        class Alloc:
            def __init__(self, n):
                self.buf = np.zeros(n, np.uint8)
                FakeCuda.memory[id(self)] = self.buf
                f.allocs += 1

            def __int__(self):
                return id(self)

            def free(self):
                FakeCuda.memory.pop(id(self), None)

        class Stream:
            handle = 1234

            def synchronize(self):
                pass

        def memcpy_htod_async(dev, host, stream=None):
            assert f.stack, "a context must be current"
            dev.buf[: host.nbytes] = np.ascontiguousarray(host).view(np.uint8).ravel()
            f.copies += 1

        def memcpy_dtoh_async(host, dev, stream=None):
            host.reshape(-1).view(np.uint8)[:] = dev.buf[: host.nbytes]

        d.init = lambda: None
        d.Context = Ctx
        d.Device, d.Stream, d.mem_alloc = Device, Stream, Alloc
        d.pagelocked_empty = lambda n, dtype: np.zeros(n, dtype)
        d.memcpy_htod_async, d.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
        self.module = d

    @property
    def stack(self) -> list:
        """The calling thread's context stack."""
        return self.stacks.setdefault(threading.get_ident(), [])

    @classmethod
    def current(cls) -> object | None:
        """The valid context current on the calling thread, if any."""
        f = cls.active
        top = f.stack[-1] if f is not None and f.stack else None
        return top if top is not None and top.valid else None


@pytest.fixture
def fakes(monkeypatch):
    def install(trt: FakeTRT, cuda: FakeCuda | None = None) -> tuple[FakeTRT, FakeCuda]:
        cuda = cuda or FakeCuda()
        pkg = types.ModuleType("pycuda")
        pkg.driver = cuda.module  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorrt", trt.module)
        monkeypatch.setitem(sys.modules, "pycuda", pkg)
        monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.module)
        return trt, cuda

    return install


@pytest.fixture
def fake_gpu(monkeypatch):
    from roadseg.export import tensorrt as build
    from roadseg.export.gpu import GpuInfo

    monkeypatch.setattr(build, "gpu_info", lambda device_id=0: GpuInfo("Fake Orin", "8.7", "12.6"))


# -- engine build with the fake TensorRT -------------------------------------------------------------


def test_sidecar_onnx_hash_is_the_file_sha256(tmp_path, fakes, fake_gpu):
    """onnx_sha256 must equal `sha256sum model.onnx`, also when serialising the loaded proto again
    gives other bytes (fields in another order, as other writers may put them)."""
    from roadseg.export.tensorrt import build_engine

    fakes(FakeTRT())
    m = tiny_model()
    head = onnx.ModelProto()
    head.CopyFrom(m)
    head.ClearField("ir_version")
    src = tmp_path / "m.onnx"
    src.write_bytes(head.SerializeToString() + onnx.ModelProto(ir_version=m.ir_version).SerializeToString())
    loaded = onnx.load(str(src))
    assert loaded.SerializeToString() != src.read_bytes()
    out = build_engine(loaded, CARD, GraphSpec((72, 96)), opts(output=str(tmp_path / "m.engine"),
                                                                timing_cache=str(tmp_path / "c")), src)  # fmt: skip
    assert read_sidecar(out).onnx_sha256 == sha256_file(src)


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    """A plan (or any artefact) renamed into place before its bytes are on the disk can be empty
    after a power loss: fsync the file, then rename, then fsync the folder."""
    import os

    from roadseg.core import atomic

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    target = tmp_path / "m.engine"
    with atomic.atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"plan")
    assert target.read_bytes() == b"plan" and events == ["fsync file", "rename", "fsync dir"]
    events.clear()
    with atomic.atomic_path(tmp_path / "mask.png", sync=False) as tmp:  # per-frame writers opt out
        tmp.write_bytes(b"png")
    assert events == ["rename"]


def test_build_writes_plan_then_sidecar(tmp_path, fakes, fake_gpu):
    from roadseg.export.tensorrt import GIB, build_engine

    trt, _ = fakes(FakeTRT())
    cache = tmp_path / "cache" / "timing.cache"
    out = build_engine(tiny_model(), CARD, GraphSpec((72, 96), precision="fp16"),
                       opts(output=str(tmp_path / "m.engine"), timing_cache=str(cache), workspace_gb=2), Path("models/tiny.onnx"))  # fmt: skip
    assert out == tmp_path / "m.engine" and out.read_bytes().startswith(b"FAKEPLAN")
    assert trt.network.flags == 1 << 1  # strongly typed, from the ONNX graph's own precision
    assert trt.config.pools == {"workspace": 2 * GIB}
    assert trt.config.flags == [] and trt.config.hardware_compatibility_level is None
    assert trt.config.profiles == []  # fixed shape: no profile needed
    assert cache.read_bytes() == b"TC|10.13.0.35|tactic-1-[2147483648]"  # saved after the build
    sc = verify_engine(out, TRT_VERSION, "8.7")
    assert (sc.precision, sc.gpu_name, sc.compute_capability, sc.cuda_version) == ("fp16", "Fake Orin", "8.7", "12.6")
    assert sc.model_card().precision == "fp16" and sc.source == "models/tiny.onnx"
    assert sc.platform == __import__("roadseg.runtime.engine").runtime.engine.platform_tag()
    assert sc.onnx_sha256 == __import__("hashlib").sha256(tiny_model().SerializeToString()).hexdigest()  # no file
    assert sc.profiles[0]["min"] == [1, 72, 96, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "m.engine", "m.engine.json"]


def test_build_dynamic_profile_flags_and_timing_cache_reuse(tmp_path, fakes, fake_gpu):
    from roadseg.export.tensorrt import build_engine

    profile = ((1, 32, 48, 3), (1, 64, 96, 3), (8, 1080, 1920, 3))
    trt, _ = fakes(FakeTRT(profile=profile))
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"TC|10.13.0.35|old")
    o = opts(
        output=str(tmp_path / "d.engine"), timing_cache=str(cache), version_compatible=True, hardware_compatible=True
    )
    build_engine(tiny_model(), CARD, GraphSpec(None, dynamic=True), o, None)
    assert trt.config.cache.data == b"TC|10.13.0.35|old"
    assert cache.read_bytes() == b"TC|10.13.0.35|old,tactic-1-[4294967296]"
    assert trt.config.flags == ["version_compatible"] and trt.config.hardware_compatibility_level == "ampere_plus"
    (p,) = trt.config.profiles
    assert p.shapes == {"frames": ([1, 32, 48, 3], [1, 64, 96, 3], [8, 1080, 1920, 3])}
    sc = read_sidecar(tmp_path / "d.engine")
    assert sc.version_compatible and sc.hardware_compatibility == "ampere_plus"


def argmax_model() -> onnx.ModelProto:
    """frames -> Cast(FLOAT) -> ArgMax -> Cast(UINT8) -> labels: the end of every roadseg graph."""
    x = helper.make_tensor_value_info("frames", TensorProto.UINT8, ["N", "H", "W", 3])
    y = helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])
    nodes = [
        helper.make_node("Cast", ["frames"], ["f"], name="/pre/Cast", to=TensorProto.FLOAT),
        helper.make_node("ArgMax", ["f"], ["idx"], name="/post/ArgMax", axis=3, keepdims=0),
        helper.make_node("Cast", ["idx"], ["labels"], name="/post/Cast", to=TensorProto.UINT8),
    ]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_engine_builds_from_a_graph_ending_in_argmax_cast_uint8(tmp_path, fakes, fake_gpu):
    from roadseg.export.tensorrt import build_engine

    trt, _ = fakes(FakeTRT())
    model = argmax_model()
    assert refused_casts(model) == ["/post/Cast"]
    before = model.SerializeToString()
    out = build_engine(model, CARD, GraphSpec((72, 96)), opts(output=str(tmp_path / "m.engine"),
                                                               timing_cache=str(tmp_path / "c")), None)  # fmt: skip
    assert out.is_file() and not [e for e in trt.log if e[0] == "cast refused"]
    assert model.SerializeToString() == before, "the caller's graph is left as it is"
    assert read_sidecar(out).onnx_sha256 == __import__("hashlib").sha256(before).hexdigest()


def test_tensorrt_form_routes_uint8_casts_through_float(tiny_onnx_dynamic):
    """The exported graph's INT64 -> UINT8 Cast goes through FLOAT; ONNX Runtime gives the same labels."""
    import onnxruntime as ort

    from roadseg.export.trt_graph import tensorrt_form, uint8_cast_violations
    from roadseg.runtime.synthetic import make_scene

    model = onnx.load(str(tiny_onnx_dynamic))
    assert uint8_cast_violations(model) == refused_casts(model) == ["/post/Cast"]
    form, split = tensorrt_form(model)
    assert split == ["/post/Cast"] and uint8_cast_violations(form) == refused_casts(form) == []
    onnx.checker.check_model(form, full_check=True)
    assert tensorrt_form(form)[1] == []  # idempotent
    frames = np.stack([make_scene(seed=s, size=(90, 120))[0] for s in range(3)])
    runs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"frames": frames})[0]
            for m in (model, form)]  # fmt: skip
    assert runs[1].dtype == np.uint8 and np.array_equal(runs[0], runs[1]) and len(np.unique(runs[0])) > 2
    u = argmax_model()  # a UINT8 -> INT32 cast (input side) goes through FLOAT too
    u.graph.node[0].attribute[0].i = TensorProto.INT32
    assert uint8_cast_violations(u) == ["/pre/Cast", "/post/Cast"] and uint8_cast_violations(tensorrt_form(u)[0]) == []


def test_default_timing_cache_is_per_tensorrt_and_gpu(tmp_path, fakes, fake_gpu, monkeypatch):
    from roadseg.export import tensorrt as build

    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "rc"))
    from roadseg.export.timing_cache import default_timing_cache

    a = default_timing_cache("10.13.0.35", "8.7")
    assert a == tmp_path / "rc" / "timing-trt10.13.0.35-sm87.cache"
    assert len({a, default_timing_cache("10.13.0.35", "8.6"), default_timing_cache("10.3.0.26", "8.7")}) == 3
    trt, _ = fakes(FakeTRT())
    build.build_engine(tiny_model(), CARD, GraphSpec((72, 96)), opts(output=str(tmp_path / "m.engine")), None)
    assert a.read_bytes().startswith(b"TC|10.13.0.35|tactic")  # fake_gpu: compute capability 8.7


def test_timing_cache_of_another_version_is_not_used(tmp_path, fakes, fake_gpu, capsys):
    from roadseg.export.tensorrt import build_engine

    trt, _ = fakes(FakeTRT())
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"TC|10.3.0.26|foreign")
    build_engine(tiny_model(), CARD, GraphSpec((72, 96)), opts(output=str(tmp_path / "m.engine"), timing_cache=str(cache)), None)
    err = capsys.readouterr().err
    assert "made on another GPU or TensorRT version; starting a new one" in err
    assert "foreign" not in trt.config.cache.entries and trt.config.cache.owner == TRT_VERSION
    assert cache.read_bytes() == b"TC|10.13.0.35|tactic-1-[4294967296]" and "is replaced" in err


def test_timing_cache_keeps_what_a_concurrent_build_saved(tmp_path, fakes, fake_gpu):
    """Another build saves its timings while this one runs: saving combines them with ours, under a
    lock, instead of overwriting them."""
    from roadseg.export.tensorrt import build_engine

    trt, _ = fakes(FakeTRT())
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"TC|10.13.0.35|first")
    trt.during_build = lambda: cache.write_bytes(b"TC|10.13.0.35|first,other-build")
    build_engine(tiny_model(), CARD, GraphSpec((72, 96)), opts(output=str(tmp_path / "m.engine"), timing_cache=str(cache)), None)
    assert cache.read_bytes() == b"TC|10.13.0.35|first,other-build,tactic-1-[4294967296]"


def test_progress_display_failure_does_not_cancel_the_build(tmp_path, fakes, fake_gpu, monkeypatch, capsys):
    """tqdm on a closed stderr raises inside the monitor; TensorRT's trampoline would swallow it and
    stop the build, reported as "could not build"."""
    from roadseg.export import tensorrt as build

    trt, _ = fakes(FakeTRT())

    def closed(*a, **k):
        raise ValueError("I/O operation on closed file.")

    monkeypatch.setattr(build._Progress, "start", closed)
    out = build.build_engine(tiny_model(), CARD, GraphSpec((72, 96)),
                             opts(output=str(tmp_path / "m.engine"), timing_cache=str(tmp_path / "c")), None)  # fmt: skip
    assert out.is_file() and not [e for e in trt.log if e[0] == "monitor raised"]
    assert "progress display stopped (ValueError" in capsys.readouterr().err


def test_keyboard_interrupt_inside_the_monitor_cancels(tmp_path, fakes, fake_gpu, monkeypatch):
    """SIGINT with Python's own handler (a build off the main thread) raises inside a callback."""
    from roadseg.export import tensorrt as build

    trt, _ = fakes(FakeTRT())
    steps: list[int] = []

    def interrupted(self, phase, step):
        steps.append(step)
        raise KeyboardInterrupt

    monkeypatch.setattr(build._Progress, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build.build_engine(tiny_model(), CARD, GraphSpec((72, 96)),
                           opts(output=str(tmp_path / "m.engine"), timing_cache=str(tmp_path / "c")), None)  # fmt: skip
    assert steps == [0] and not (tmp_path / "m.engine").exists()


def test_second_ctrl_c_forces_through_the_default_handler():
    """The second SIGINT must end the process, not raise a KeyboardInterrupt that TensorRT's
    trampoline would swallow (or that waits for TensorRT's next callback): the first one puts back
    the default action, so the kernel ends the process on the second."""
    import signal

    from roadseg.export import tensorrt as build

    progress = build._Progress(False)
    before = signal.getsignal(signal.SIGINT)
    with build._Cancel(progress, active=True) as cancel:
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler) and handler is not signal.default_int_handler
        handler(signal.SIGINT, None)  # raises nothing: the build is inside TensorRT
        assert progress.cancelled and cancel.interrupted
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
        cancel.interrupted = False  # leave the block without the KeyboardInterrupt a cancelled build raises
    assert signal.getsignal(signal.SIGINT) == before


def test_failed_build_writes_nothing(tmp_path, fakes, fake_gpu):
    from roadseg.export.tensorrt import build_engine

    fakes(FakeTRT(fail_build=True))
    with pytest.raises(RoadsegError, match="could not build an engine"):
        build_engine(
            tiny_model(),
            CARD,
            GraphSpec((72, 96)),
            opts(output=str(tmp_path / "m.engine"), timing_cache=str(tmp_path / "c")),
            None,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cancelled_build_stops_through_the_progress_monitor(tmp_path, fakes, fake_gpu, monkeypatch):
    from roadseg.export import tensorrt as build

    fakes(FakeTRT())
    real = build._Progress.step

    def cancel_on_first_step(self, phase, step):
        self.cancelled = True  # what the SIGINT handler does
        return real(self, phase, step)

    monkeypatch.setattr(build._Progress, "step", cancel_on_first_step)
    with pytest.raises(KeyboardInterrupt):
        build.build_engine(
            tiny_model(),
            CARD,
            GraphSpec((72, 96)),
            opts(output=str(tmp_path / "m.engine"), timing_cache=str(tmp_path / "c")),
            None,
        )
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "m.engine.json").exists()


# -- pure backend planning ---------------------------------------------------------------------------


def test_binding_plan_checks_the_frames_contract():
    from roadseg.runtime.backends.tensorrt_plan import TensorInfo, binding_plan

    fi = TensorInfo("frames", True, "uint8", (1, 72, 96, 3))
    lo = TensorInfo("labels", False, "uint8", (1, 72, 96))
    plan = binding_plan([lo, fi], "m.engine")
    assert plan.input is fi and plan.output is lo and plan.fixed_size == (72, 96) and plan.batch_range == (1, 1)
    raw = TensorInfo("input", True, "float32", (1, 3, 64, 96))
    with pytest.raises(RoadsegError, match="raw-network export"):
        binding_plan([raw, TensorInfo("logits", False, "float32", (1, 11, 64, 96))], "m.engine")
    with pytest.raises(RoadsegError, match="one input"):
        binding_plan([fi, fi, lo], "m.engine")
    with pytest.raises(RoadsegError, match="host memory"):
        binding_plan([replace(fi, on_device=False), lo], "m.engine")
    with pytest.raises(RoadsegError, match="no optimisation profile"):
        binding_plan([replace(fi, shape=(-1, -1, -1, 3)), lo], "m.engine")


def test_run_plan_fixed_and_dynamic():
    """How one call runs on an engine: the frame size (BindingPlan.run_hw) and the batches (its
    batch_range, which BaseBackend.infer chunks with batch_chunks and pads)."""
    from roadseg.runtime.backends.base import batch_chunks
    from roadseg.runtime.backends.tensorrt_plan import BindingPlan, TensorInfo

    def plan_run(n, h, w, plan):
        return plan.run_hw(h, w), tuple(batch_chunks(n, *plan.batch_range))

    lo = TensorInfo("labels", False, "uint8", (-1, -1, -1))
    fixed = BindingPlan(TensorInfo("frames", True, "uint8", (2, 72, 96, 3)), lo)
    assert plan_run(5, 480, 640, fixed) == ((72, 96), ((0, 2, 2), (2, 4, 2), (4, 5, 2)))
    assert plan_run(2, 72, 96, fixed)[0] == (72, 96)
    prof = ((1, 32, 48, 3), (1, 64, 96, 3), (8, 1080, 1920, 3))
    dyn = BindingPlan(TensorInfo("frames", True, "uint8", (-1, -1, -1, 3), profile=prof), lo)
    assert plan_run(3, 480, 640, dyn) == ((480, 640), ((0, 3, 3),))
    # outside the profile: runs at opt size, chunks of 8, last not padded
    assert plan_run(19, 2160, 3840, dyn) == ((64, 96), ((0, 8, 8), (8, 16, 8), (16, 19, 3)))
    prof2 = ((2, 32, 48, 3), (2, 64, 96, 3), (4, 1080, 1920, 3))
    assert plan_run(1, 64, 96, replace(dyn, input=replace(dyn.input, profile=prof2)))[1] == ((0, 1, 2),)


def test_buffer_pool_reuses_and_grows_only():
    from roadseg.runtime.backends.tensorrt_plan import BufferPool

    freed = []

    class Dev:
        def __init__(self, n):
            self.n = n

        def free(self):
            freed.append(self.n)

    pool = BufferPool(lambda n: np.zeros(n, np.uint8), Dev)
    a, da, grew = pool.get("frames", (1, 72, 96, 3), np.uint8)
    assert grew and a.shape == (1, 72, 96, 3) and pool.allocations == 1
    b, db, grew = pool.get("frames", (1, 72, 96, 3), np.uint8)
    assert not grew and db is da and np.shares_memory(a, b)
    c, dc, grew = pool.get("frames", (1, 36, 48, 3), np.uint8)  # smaller: same buffers
    assert not grew and dc is da and pool.allocations == 1
    _, dd, grew = pool.get("frames", (2, 72, 96, 3), np.uint8)  # larger: reallocated once
    assert grew and dd is not da and pool.allocations == 2 and freed == [72 * 96 * 3]
    assert pool.capacity("frames") == 2 * 72 * 96 * 3
    pool.clear()
    assert freed == [72 * 96 * 3, 2 * 72 * 96 * 3] and pool.capacity("frames") == 0


def test_rebuild_command_never_writes_over_its_source(tmp_path, monkeypatch):
    from roadseg.runtime.engine import rebuild_command

    plan = tmp_path / "tiny.engine"
    plan.write_bytes(b"plan")
    assert rebuild_command(plan, make_sidecar(plan)).endswith(f"--output {plan}")  # the usual case: the plan's path
    cmd = rebuild_command(plan, make_sidecar(plan, source=str(plan)))  # a sidecar naming the plan as its source
    assert cmd.endswith(f"--output {tmp_path / 'tiny.rebuilt.engine'}")
    monkeypatch.chdir(tmp_path)
    cmd = rebuild_command(plan, make_sidecar(plan, source="tiny.engine"))  # the same file, spelled otherwise
    assert cmd.endswith(f"--output {tmp_path / 'tiny.rebuilt.engine'}")
    odd = tmp_path / "m.onnx"  # a plan named like an ONNX: the guessed source is the plan itself
    odd.write_bytes(b"plan")
    cmd = rebuild_command(odd)
    assert f"export {odd} --to engine" in cmd and cmd.endswith(f"--output {tmp_path / 'm.engine'}")


def test_plugin_policy(engine):
    from roadseg.runtime.backends.tensorrt_plan import check_plugin_policy

    sc = make_sidecar(engine)
    check_plugin_policy(sc, engine, allow_plugins=False)
    with pytest.raises(RoadsegError, match="lean runtime") as e:
        check_plugin_policy(replace(sc, version_compatible=True), engine, allow_plugins=False)
    assert "without --version-compatible: roadseg export models/tiny.onnx --to engine --output" in str(e.value)
    assert str(e.value).count("--version-compatible") == 1
    with pytest.raises(RoadsegError, match="plugins"):
        check_plugin_policy(replace(sc, plugins=["library:/opt/libevil.so"]), engine, allow_plugins=False)
    check_plugin_policy(replace(sc, version_compatible=True, plugins=["layer:x"]), engine, allow_plugins=True)


# -- the backend on the fakes -------------------------------------------------------------------------


def fake_engine(tmp_path: Path, trt: FakeTRT, **changes) -> Path:
    plan = tmp_path / "fake.engine"
    plan.write_bytes(b"FAKEPLAN" * 100)
    shape = list(trt.input_shape)
    prof = [list(p) for p in trt.profile] if trt.profile else [shape] * 3
    write_sidecar(
        plan,
        make_sidecar(plan, profiles=[{"input": "frames", "min": prof[0], "opt": prof[1], "max": prof[2]}], **changes),
    )
    return plan


def expected_labels(frames: np.ndarray, run_hw: tuple[int, int]) -> np.ndarray:
    h, w = frames.shape[1:3]
    out = []
    for f in frames:
        if (h, w) != run_hw:
            small = cv2.resize(f, (run_hw[1], run_hw[0]), interpolation=cv2.INTER_LINEAR)
            out.append(cv2.resize(fake_network_fn(small), (w, h), interpolation=cv2.INTER_NEAREST))
        else:
            out.append(fake_network_fn(f))
    return np.stack(out)


def frames_of(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_backend_fixed_engine(tmp_path, fakes):
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt, cuda = fakes(FakeTRT(input_shape=(1, 72, 96, 3)))
    path = fake_engine(tmp_path, trt)
    be = TensorRTBackend(path)
    assert be.name == "trt" and be.card == CARD
    assert [(s.name, s.shape, s.dtype) for s in be.inputs] == [("frames", (1, 72, 96, 3), "uint8")]
    assert [(s.name, s.shape) for s in be.outputs] == [("labels", (1, 72, 96))]
    assert not trt.log and not cuda.contexts, "nothing deserialised and no context before the first frame"
    x = frames_of(3, 72, 96)
    assert np.array_equal(be.infer(x), fake_network_fn(x))
    assert trt.runtime.engine_host_code_allowed is False
    assert (
        trt.log == [("deserialize", 800)] and len(cuda.contexts) == 1 and cuda.stack == []
    )  # context popped after use
    allocs = cuda.allocs
    for seed in range(3):  # same shape: no allocation per frame
        one = frames_of(1, 72, 96, seed)[0]
        assert np.array_equal(be.infer(one), fake_network_fn(one))
    assert cuda.allocs == allocs == 2
    big = frames_of(2, 480, 640)  # other frame size: resized to the engine's, labels back
    assert np.array_equal(be.infer(big), expected_labels(big, (72, 96)))
    assert trt.context.runs == 3 + 3 + 2
    be.close()
    assert cuda.contexts[0].detached and cuda.stack == []
    with pytest.raises(RoadsegError, match="closed"):
        be.infer(x)


def test_backend_dynamic_engine(tmp_path, fakes):
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt, cuda = fakes(FakeTRT(profile=((1, 32, 48, 3), (1, 64, 96, 3), (4, 720, 1280, 3))))
    with TensorRTBackend(fake_engine(tmp_path, trt)) as be:
        assert [s.shape for s in be.inputs] == [("N", "H", "W", 3)]
        x = frames_of(6, 120, 160)  # 6 > max batch 4: two runs, no padding needed
        assert np.array_equal(be.infer(x), fake_network_fn(x))
        assert [s.shape for s in be.inputs] == [("N", "H", "W", 3)]  # now from the engine itself
        allocs = cuda.allocs
        small = frames_of(2, 60, 80)
        assert np.array_equal(be.infer(small), fake_network_fn(small))
        assert cuda.allocs == allocs, "a smaller shape reuses the buffers"
        huge = frames_of(1, 1080, 1920)  # outside the profile: run at opt size
        assert np.array_equal(be.infer(huge), expected_labels(huge, (64, 96)))
    assert cuda.contexts[0].detached


def test_backend_refuses_before_deserialising(tmp_path, fakes):
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt, cuda = fakes(FakeTRT())
    path = fake_engine(tmp_path, trt)
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RoadsegError, match="sha256"):
        TensorRTBackend(path)
    path = fake_engine(tmp_path, trt, compute_capability="8.6")
    with pytest.raises(RoadsegError, match="compute capability 8.6"):
        TensorRTBackend(path)
    path = fake_engine(tmp_path, trt, tensorrt_version="10.3.0.26")
    with pytest.raises(RoadsegError, match="TensorRT 10.3.0.26"):
        TensorRTBackend(path)
    path = fake_engine(tmp_path, trt, version_compatible=True)
    with pytest.raises(RoadsegError, match="allow_plugins"):
        TensorRTBackend(path)
    assert trt.log == [] and cuda.contexts == [], "nothing was deserialised"


def test_backend_notices_a_plan_changed_after_verification(tmp_path, fakes):
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt, cuda = fakes(FakeTRT())
    path = fake_engine(tmp_path, trt)
    be = TensorRTBackend(path)
    path.write_bytes(b"EVILPLAN" * 100)  # swapped between the check and the first frame
    with pytest.raises(RoadsegError, match="changed on disk"):
        be.infer(frames_of(1, 72, 96))
    assert trt.log == [] and cuda.stack == [] and cuda.contexts[0].detached


def test_backend_bad_frames_and_device(tmp_path, fakes):
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt, _ = fakes(FakeTRT())
    path = fake_engine(tmp_path, trt)
    with pytest.raises(UsageError):
        TensorRTBackend(path, device_id=-1)
    with pytest.raises(RoadsegError, match="no CUDA device 3"):
        TensorRTBackend(path, device_id=3)
    be = TensorRTBackend(path)
    for bad in (
        np.zeros((72, 96), np.uint8),
        np.zeros((72, 96, 4), np.uint8),
        np.zeros((72, 96, 3), np.uint16),
        np.zeros((0, 96, 3), np.uint8),
    ):
        with pytest.raises(RoadsegError, match="frames must be uint8"):
            be.infer(bad)


def test_backend_closed_on_another_thread_frees_its_context(tmp_path, fakes):
    """A stream thread loads the engine (and creates the context); the main thread closes it."""
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt, cuda = fakes(FakeTRT())
    be = TensorRTBackend(fake_engine(tmp_path, trt))
    x = frames_of(2, 72, 96)
    worker = threading.Thread(target=be.infer, args=(x,))
    worker.start()
    worker.join()
    (ctx,) = cuda.contexts
    assert ctx.thread != threading.get_ident() and ctx.valid
    be.close()
    assert ctx.destroyed and not ctx.leaked, "detached out of its thread while not current: leaked"
    assert all(not st for st in cuda.stacks.values()), "no context left current on any thread"
    assert {name for name, _ in trt.freed} == {"Runtime", "Engine", "Context"} and all(ok for _, ok in trt.freed)


@pytest.mark.parametrize("failure", ["no_context", "bf16_output"])
def test_failed_load_frees_tensorrt_objects_before_the_context(tmp_path, fakes, failure):
    """The exception of a failed load keeps its frames (and their runtime and engine) alive: they
    must go while the context is still current, not when the traceback is dropped."""
    import gc

    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt_fake = FakeTRT(no_context=True) if failure == "no_context" else FakeTRT(output_dtype="BF16")
    trt, cuda = fakes(trt_fake)
    be = TensorRTBackend(fake_engine(tmp_path, trt))
    with pytest.raises(RoadsegError) as e:
        be.infer(frames_of(1, 72, 96))
    kept = e  # what a caller's `except ... as e` or a logger holding the exception keeps
    (ctx,) = cuda.contexts
    assert ctx.destroyed and cuda.stack == []
    assert {"Runtime", "Engine"} <= {name for name, _ in trt.freed}, "freed before the context went"
    del kept, e
    gc.collect()
    assert trt.freed and all(ok for _, ok in trt.freed), trt.freed


def test_backend_never_closed_is_released_with_its_context(tmp_path, fakes, monkeypatch):
    import atexit
    import gc

    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    hooks: list = []
    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", hooks.remove)
    trt, cuda = fakes(FakeTRT())
    be = TensorRTBackend(fake_engine(tmp_path, trt))
    be.infer(frames_of(1, 72, 96))
    assert len(hooks) == 1  # interpreter exit: closed before the libraries are torn down
    hooks[0]()
    assert cuda.contexts[0].destroyed and hooks == [] and all(ok for _, ok in trt.freed)
    be2 = TensorRTBackend(fake_engine(tmp_path, trt))  # dropped without close()
    be2.infer(frames_of(1, 72, 96))
    del be2
    gc.collect()
    assert cuda.contexts[1].destroyed and not cuda.contexts[1].leaked and hooks == []
    assert len(trt.freed) == 6 and all(ok for _, ok in trt.freed)


@pytest.mark.parametrize("kind", ["BF16", "FP8", "INT4", "FP4"])
def test_unsupported_io_dtype_is_one_line(tmp_path, fakes, kind):
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt, cuda = fakes(FakeTRT(output_dtype=kind))
    path = fake_engine(tmp_path, trt)
    with pytest.raises(RoadsegError) as e:
        TensorRTBackend(path).load()
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and f"'labels' is {kind}" in msg and "roadseg export" in msg


class FakeGraph:
    """runtime.backends.tensorrt.CudaGraph without libcuda: capture snapshots the work's effect
    (the context's shape and addresses at capture), launch replays that snapshot."""

    live: list[FakeGraph] = []
    captures = launches = 0

    def __init__(self):
        self.work = None

    def capture(self, stream, work):
        FakeGraph.captures += 1
        self.work = work
        FakeGraph.live.append(self)

    def launch(self, stream):
        FakeGraph.launches += 1
        self.work()

    def destroy(self):
        if self in FakeGraph.live:
            FakeGraph.live.remove(self)


@pytest.fixture
def fake_graphs(monkeypatch):
    from roadseg.runtime.backends import tensorrt as backend

    monkeypatch.setattr(backend, "CudaGraph", FakeGraph)
    FakeGraph.live, FakeGraph.captures, FakeGraph.launches = [], 0, 0
    return FakeGraph


def test_cuda_graph_is_captured_once_a_shape_repeats(tmp_path, fakes, fake_graphs):
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt, _ = fakes(FakeTRT(profile=((1, 32, 48, 3), (1, 64, 96, 3), (4, 720, 1280, 3))))
    with TensorRTBackend(fake_engine(tmp_path, trt), cuda_graph=True) as be:
        for i in range(6):  # batches of 4, 2, 4, 2 ...: a short last chunk every other call
            x = frames_of(4 if i % 2 == 0 else 2, 72, 96, seed=i)
            assert np.array_equal(be.infer(x), fake_network_fn(x))
        assert fake_graphs.captures == 0, "no graph captured for shapes that never repeat in a row"
        for i in range(4):  # alternating frame sizes
            x = frames_of(1, 72, 96) if i % 2 else frames_of(1, 120, 160)
            assert np.array_equal(be.infer(x), fake_network_fn(x))
        assert fake_graphs.captures == 0
        for i in range(5):  # a steady shape: captured on its second run, replayed after
            x = frames_of(2, 72, 96, seed=10 + i)
            assert np.array_equal(be.infer(x), fake_network_fn(x))
        assert (fake_graphs.captures, fake_graphs.launches) == (1, 3) and len(fake_graphs.live) == 1
        x = frames_of(1, 72, 96)  # another shape: plain run, the stale graph dropped (one per context)
        assert np.array_equal(be.infer(x), fake_network_fn(x)) and fake_graphs.live == []
    assert fake_graphs.live == []


def test_cuda_graph_on_a_fixed_engine(tmp_path, fakes, fake_graphs):
    from roadseg.runtime.backends.tensorrt import TensorRTBackend

    trt, _ = fakes(FakeTRT(input_shape=(2, 72, 96, 3)))
    with TensorRTBackend(fake_engine(tmp_path, trt), cuda_graph=True) as be:
        for n in (2, 1, 2, 1, 2):  # padded to the fixed batch: one shape, one capture
            x = frames_of(n, 72, 96, seed=n)
            assert np.array_equal(be.infer(x), fake_network_fn(x))
    assert (fake_graphs.captures, fake_graphs.launches) == (1, 3)


def test_backend_is_registered():
    from roadseg.runtime.backends import BACKENDS, resolve_backend

    assert "trt" in BACKENDS and resolve_backend("m.engine") == ["trt"]


# -- the real thing (needs TensorRT, pycuda and an NVIDIA GPU) -----------------------------------------


def _have_gpu_stack() -> bool:
    if importlib.util.find_spec("pycuda") is None or importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import pycuda.driver as cuda
        import tensorrt

        cuda.init()
        return hasattr(tensorrt, "Builder") and cuda.Device.count() > 0
    except Exception:  # noqa: BLE001 - any failure means: not here
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _have_gpu_stack(), reason="needs TensorRT, pycuda and an NVIDIA GPU")
@pytest.mark.parametrize("dynamic", [False, True])
def test_gpu_engine_matches_onnxruntime(tmp_path, dynamic, tiny_checkpoint):
    """The trained tiny model (an untrained one predicts one class everywhere, which would hide
    preprocessing, resize, channel-order, batching and CUDA-graph mistakes)."""
    import onnxruntime as ort

    from roadseg.export.command import export
    from roadseg.runtime.backends.tensorrt import TensorRTBackend
    from roadseg.runtime.synthetic import make_scene

    ckpt = tiny_checkpoint
    size = {"dynamic": True} if dynamic else {"frame_size": (72, 96)}
    onnx_path = Path(export(ExportOptions(model=str(ckpt), output=str(tmp_path / "tiny.onnx"), progress=False, **size)))
    plan = Path(export(ExportOptions(model=str(onnx_path), to="engine", progress=False, timing_cache=str(tmp_path / "t.cache"),
                                     max_shape=(4, 480, 640) if dynamic else None)))  # fmt: skip
    assert plan == onnx_path.with_suffix(".engine") and verify_engine(
        plan, __import__("tensorrt").__version__, "unknown"
    )
    frames = np.stack([make_scene(seed=s, size=(72, 96))[0] for s in range(3)])
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"frames": f[None]})[0] for f in frames])
    assert len(np.unique(ref)) > 2, "the reference labels must vary for agreement to mean anything"
    for graph in (False, True):
        with TensorRTBackend(plan, cuda_graph=graph) as be:
            for _ in range(2):  # one shape throughout: captured on its second run, replayed after
                got = np.stack([be.infer(f) for f in frames])
                assert got.shape == ref.shape and got.dtype == np.uint8
                assert (got == ref).mean() >= 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not _have_gpu_stack(), reason="needs TensorRT, pycuda and an NVIDIA GPU")
def test_gpu_default_model_engine_matches_onnxruntime(tmp_path, monkeypatch):
    """The bundled default model's dynamic ONNX, built in TensorRT's form (its ArgMax -> UINT8 Cast
    routed through FLOAT), against ONNX Runtime on the same ONNX file."""
    import onnxruntime as ort

    from roadseg.export.command import export
    from roadseg.export.trt_graph import tensorrt_form
    from roadseg.runtime.backends.tensorrt import TensorRTBackend
    from roadseg.runtime.defaults import default_onnx
    from roadseg.runtime.synthetic import make_scene

    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    onnx_path = default_onnx()
    assert tensorrt_form(onnx.load(str(onnx_path)))[1], "the default graph has a Cast TensorRT would refuse"
    plan = Path(export(ExportOptions(model=str(onnx_path), to="engine", progress=False, output=str(tmp_path / "d.engine"),
                                     timing_cache=str(tmp_path / "t.cache"), max_shape=(2, 720, 960))))  # fmt: skip
    assert read_sidecar(plan).onnx_sha256 == sha256_file(onnx_path)
    frames = np.stack([make_scene(seed=s, size=(360, 480))[0] for s in range(2)])
    ref = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"frames": frames})[0]
    assert len(np.unique(ref)) > 2
    with TensorRTBackend(plan) as be:
        got = be.infer(frames)
    assert got.shape == ref.shape and got.dtype == np.uint8 and (got == ref).mean() >= 0.99


# -- ONNX Runtime's TensorRT provider (runtime/backends/ort.py) -------------------------------------


class TrtEpSession:
    """An ONNX Runtime session that claims the TensorRT EP: runs on a real CPU session, and enforces
    the explicit profile it was given (shapes outside it fail, as the EP's engine does)."""

    def __init__(self, cpu, options):
        self.cpu, self.options, self.shapes, self.fail = cpu, options, [], None
        name, dims = options["trt_profile_min_shapes"].split(":")
        self.lo = tuple(int(d) for d in dims.split("x"))
        self.hi = tuple(int(d) for d in options["trt_profile_max_shapes"].split(":")[1].split("x"))

    def get_providers(self):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def __getattr__(self, name):
        return getattr(self.cpu, name)

    def io_binding(self):
        session = self

        class Binding:
            def bind_cpu_input(self, name, x):
                self.x = x

            def bind_output(self, name, device, device_id):
                pass

            def copy_outputs_to_cpu(self):
                return [self.y]

        session.binding = Binding()
        return session.binding

    def run_with_iobinding(self, b):
        shape = tuple(b.x.shape)
        self.shapes.append(shape)
        if self.fail or not all(a <= s <= z for a, s, z in zip(self.lo, shape, self.hi)):
            raise RuntimeError(f"[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : {self.fail or 'shape out of profile'}\nTRT says more")
        b.y = self.cpu.run(None, {"frames": b.x})[0]


def test_ort_tensorrt_provider_gets_the_export_profile(tiny_onnx_dynamic, monkeypatch, tmp_path):
    import onnxruntime as ort

    from roadseg.runtime.backends import ort as ort_backend
    from roadseg.runtime.backends.ort import OrtBackend

    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])  # fmt: skip
    monkeypatch.setattr(ort_backend.probe, "gpu_reason", lambda name: None)  # as if driver, GPU and TensorRT were here
    real_open = ort_backend.open_session
    sessions: list[TrtEpSession] = []

    def open_session(path, providers, options=None):
        if providers[0] == "CPUExecutionProvider":
            return real_open(path, providers, options)
        assert providers[0][0] == "TensorrtExecutionProvider"
        sessions.append(TrtEpSession(real_open(path, ["CPUExecutionProvider"], options), providers[0][1]))
        return sessions[-1]

    monkeypatch.setattr(ort_backend, "open_session", open_session)
    be = OrtBackend(tiny_onnx_dynamic, provider="trt")
    (s,) = sessions
    h, w = be.card.input_size
    assert s.options["trt_profile_min_shapes"] == f"frames:1x{(h + 1) // 2}x{(w + 1) // 2}x3"
    assert s.options["trt_profile_opt_shapes"] == f"frames:1x{h}x{w}x3"
    assert s.options["trt_profile_max_shapes"] == "frames:8x1080x1920x3"
    cpu = OrtBackend(tiny_onnx_dynamic, threads=1)
    x = frames_of(10, 72, 96)  # more than the profile's batch: chunks of 8 and 2
    assert np.array_equal(be.infer(x), cpu.infer(x)) and s.shapes == [(8, 72, 96, 3), (2, 72, 96, 3)]
    small = frames_of(1, 20, 30)  # below the profile: run at its opt size, labels back at 20x30
    assert be.infer(small).shape == (1, 20, 30) and s.shapes[-1] == (1, h, w, 3)
    s.fail = "Non-zero status code returned while running TRTKernel_graph_main_graph_0 node"
    with pytest.raises(RoadsegError) as e:
        be.infer(x[:1])
    msg = str(e.value)
    assert "\n" not in msg and str(tiny_onnx_dynamic) in msg and "TensorRT provider failed" in msg
    assert "TRTKernel_graph" in msg and "[ONNXRuntimeError]" not in msg and "--backend ort-cuda" in msg


# -- code seams ----------------------------------------------------------------------------------------


def test_export_modules_import_no_circle():
    """The export targets share their options and naming through export/options.py: no module of
    export/ imports (even lazily, inside a function) one that imports it back."""
    import ast

    folder = Path(__import__("roadseg.export.options").export.options.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    deps.add(node.module.split(".")[0])
                elif node.level == 1:
                    deps.update(a.name for a in node.names)
                elif (node.module or "").startswith("roadseg.export."):
                    deps.add(node.module.split(".")[2])  # type: ignore[union-attr]
        graph[path.stem] = deps & {p.stem for p in folder.glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(d == goal or (d not in seen and reaches(d, goal, seen | {d})) for d in graph.get(start, ()))

    circles = sorted(m for m in graph if reaches(m, m, set()))
    assert circles == [], f"import circles through {circles}"
    assert graph["tensorrt"] >= {"options"} and graph["triton"] >= {"options"}
