"""Backends as plug-ins: a backend is one module plus one registry record, and everything that names
backends (CLI choices, auto, available_backends, default's variant, bench rows) follows the record;
BaseBackend does the frame checks, fitting and batching once; OpenVINO (ov-cpu) is the proof."""

from __future__ import annotations

import importlib.util
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from roadseg.benchmarks import harness, rows
from roadseg.cli import build_parser
from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
from roadseg.core.errors import RoadsegError, UsageError
from roadseg.runtime import defaults
from roadseg.runtime.backends import BACKENDS, available_backends, open_backend, resolve_backend
from roadseg.runtime.backends.base import BaseBackend
from roadseg.runtime.backends.registry import BackendSpec, describe

CARD = ModelCard(name="m", arch="a", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11, input_size=[8, 12])


def frames(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


@dataclass(frozen=True)
class FakeOptions:
    gain: int | None = None


class FakeBackend(BaseBackend):
    """A graph of fixed batch 2 and frame size 8 x 12 whose label is the frame's mean blue value // 32 * gain."""

    name = "fake-npu"

    def __init__(self, path, gain: int = 1, dtype=np.uint8) -> None:
        self.path, self.card, self.gain, self.dtype = Path(path), CARD, gain, dtype
        self._inputs, self._outputs, self.runs, self._open = [], [], [], True

    @property
    def closed(self) -> bool:
        return not self._open

    def close(self) -> None:
        self._open = False

    def run_size(self, h: int, w: int) -> tuple[int, int]:
        return (8, 12)

    def batch_range(self, n: int) -> tuple[int, int]:
        return (2, 2)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.runs.append(batch.shape)
        value = batch[..., 0].mean(axis=(1, 2)) // 32 * self.gain
        return np.broadcast_to(value.astype(self.dtype)[:, None, None], batch.shape[:3]).copy()


@pytest.fixture
def fake(monkeypatch):
    """The fake backend registered the way a real one is: one record, nothing else edited."""
    spec = BackendSpec("fake-npu", (".onnx",), "an .onnx model", FakeOptions, lambda: FakeBackend, lambda: None,
                       auto_rank=-1, variant="fp16", cpu_form=True, device="npu")  # fmt: skip
    monkeypatch.setitem(BACKENDS, "fake-npu", spec)
    return spec


def test_base_backend_fits_pads_and_checks_once():
    b = FakeBackend("m.onnx", gain=1)
    x = frames(3, (30, 40))
    x[0, ..., 0], x[1, ..., 0], x[2, ..., 0] = 0, 100, 255
    labels = b.infer(x)
    assert labels.shape == (3, 30, 40) and labels.dtype == np.uint8
    assert [int(v) for v in labels[:, 0, 0]] == [0, 3, 7]  # the padding (a copy of frame 2) is dropped
    assert b.runs == [(2, 8, 12, 3), (2, 8, 12, 3)]  # fitted to the run size, chunks of the fixed batch
    assert b.infer(x[1]).shape == (30, 40)  # one frame in, one label map out
    with pytest.raises(RoadsegError, match=r"frames must be uint8 BGR"):
        b.infer(x.astype(np.float32))
    with pytest.raises(RoadsegError, match=r"the graph returned int32 \[2, 8, 12\].*expected uint8"):
        FakeBackend("m.onnx", dtype=np.int32).infer(x)
    b.close()
    with pytest.raises(RoadsegError, match="m.onnx: backend fake-npu is closed"):
        b.infer(x)


def test_a_registered_backend_appears_everywhere_backends_are_named(fake, tiny_onnx, monkeypatch):
    parser = build_parser()
    for command in (["run", "m.onnx", "--source", "synthetic"], ["demo"]):
        assert parser.parse_args([*command, "--backend", "fake-npu"]).backend == "fake-npu"
    assert available_backends()["fake-npu"] is None and "\nfake-npu: " in describe()
    assert resolve_backend(tiny_onnx)[0] == "fake-npu"  # auto rank -1: before every other backend
    b = open_backend(tiny_onnx, "auto", gain=3, threads=1)  # threads: ONNX Runtime's option, not the fake's
    assert isinstance(b, FakeBackend) and b.gain == 3
    with pytest.raises(UsageError, match="backend option gian: no backend takes it"):
        open_backend(tiny_onnx, "fake-npu", gian=3)
    assert defaults.shipped_variant("fake-npu") == defaults.shipped_variant("ort-cuda")  # its record's variant
    files = [rows.ModelFile(Path("m.onnx"), "onnx", "fp32", CARD, True, False)]
    got = rows.file_rows(files, "all")
    assert "fake-npu-m" in [r.name for r in got]
    row = next(r for r in got if r.backend == "fake-npu")
    assert rows.file_reasons([row], files)[row.name] is None and harness._device(row, None) == "npu"
    monkeypatch.setitem(BACKENDS, "fake-npu", BackendSpec(**{**vars(fake), "probe": lambda: "no NPU here"}))
    assert rows.file_reasons([row], files)[row.name] == "no NPU here"


def test_auto_skips_an_installed_backend_whose_probe_fails(fake, tiny_onnx, monkeypatch, caplog):
    monkeypatch.setitem(BACKENDS, "fake-npu", BackendSpec(**{**vars(fake), "probe": lambda: "no NPU driver", "present": lambda: True}))
    assert "fake-npu" not in resolve_backend(tiny_onnx)
    with caplog.at_level("WARNING", logger="roadseg"):
        b = open_backend(tiny_onnx, "auto", threads=1)
    b.close()
    assert b.name == "ort-cpu" and "skipped fake-npu: no NPU driver" in caplog.text


# -- OpenVINO ---------------------------------------------------------------------------------------

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")


@needs_openvino
def test_ov_cpu_gives_the_labels_of_ort_cpu(tiny_onnx, tiny_onnx_dynamic, tmp_path, monkeypatch):
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    x = frames(3, (60, 80), seed=3)
    for model in (tiny_onnx_dynamic, tiny_onnx):  # any size and batch; a fixed 72 x 96 graph of batch 1
        with open_backend(model, "ov-cpu", threads=1) as ov, open_backend(model, "ort-cpu", threads=1) as ort:
            got, want = ov.infer(x), ort.infer(x)
            assert ov.name == "ov-cpu" and ov.card == ort.card and got.shape == (3, 60, 80)
            assert (got == want).mean() >= 0.999
            np.testing.assert_array_equal(ov.infer(x[0]), got[0])
    assert any((tmp_path / "cache" / "openvino").iterdir())  # OpenVINO's compiled-model cache
    assert available_backends()["ov-cpu"] is None and "ov-cpu" not in resolve_backend(tiny_onnx)  # never auto's
    ov.close()
    with pytest.raises(RoadsegError, match="closed"):
        ov.infer(x)


def test_ov_backends_say_what_is_missing(tiny_onnx, monkeypatch):
    from roadseg.runtime.backends import registry

    monkeypatch.setattr(registry, "openvino_devices", lambda: ("CPU",))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert registry.openvino_reason("GPU") == "OpenVINO lists no GPU device here (it has CPU)"
    assert registry.openvino_reason("CPU") is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert "pip install roadseg[openvino]" in registry.openvino_reason("CPU")  # type: ignore[operator]


def test_ov_cpu_refuses_8_bit_weights_where_its_kernels_saturate(monkeypatch):
    """OpenVINO has no exact mode: a full-range INT8 graph on a CPU whose kernels saturate is refused
    with the fix; 7-bit weights (never saturating) and CPUs that compute exactly pass."""
    from types import SimpleNamespace

    from roadseg.runtime.backends import openvino
    from roadseg.runtime.int8 import Int8Form

    def graph(form):
        return SimpleNamespace(path=Path("m_s8.onnx"), precision="int8", int8_form=form)

    monkeypatch.setattr(openvino, "int8_exact", lambda: False)
    with pytest.raises(RoadsegError, match=r"m_s8.onnx: s8 activations, 8-bit weights, and OpenVINO's CPU kernels saturate.*--backend ort-cpu"):
        openvino._refuse_saturating(graph(Int8Form("s8", 8)), "ov-cpu")  # type: ignore[arg-type]
    with pytest.raises(RoadsegError, match="unrecorded range"):
        openvino._refuse_saturating(graph(None), "ov-cpu")  # type: ignore[arg-type]
    openvino._refuse_saturating(graph(Int8Form("u8", 7)), "ov-cpu")  # type: ignore[arg-type]
    openvino._refuse_saturating(SimpleNamespace(path=Path("m.onnx"), precision="fp32", int8_form=None), "ov-cpu")  # type: ignore[arg-type]
    monkeypatch.setattr(openvino, "int8_exact", lambda: True)
    openvino._refuse_saturating(graph(Int8Form("s8", 8)), "ov-cpu")  # type: ignore[arg-type]


@needs_openvino
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or platform.machine() != "x86_64",
                    reason="qemu-x86_64 not installed (apt-get install qemu-user)")  # fmt: skip
def test_ov_int8_probe_sees_saturation_on_an_x86_cpu_without_vnni():
    """Under `qemu-x86_64 -cpu Haswell` (AVX2, no VNNI) OpenVINO's kernels saturate the probe's 16-bit
    pair sums, and int8_exact says so (natively it may not: that depends on the CPU)."""
    code = "from roadseg.runtime.backends.openvino import int8_exact; print(int8_exact())"
    run = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=240)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "False"
