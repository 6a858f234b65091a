"""INT8 labels that do not depend on the CPU (runtime/int8.py, the export gate, the ort-cpu backend).

On x86 CPUs without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in 16 bits with
saturation. The decisive tests run ONNX Runtime on such a CPU, emulated with QEMU's user mode
(`qemu-x86_64 -cpu Haswell`: AVX2, no VNNI), whatever CPU runs the suite; they skip with one line
where qemu-x86_64 is not installed (`apt-get install qemu-user`; CI installs it). The graph they use
is built to saturate: every pair of its second convolution's products passes 32767 on bright
pixels, and its classifier then flips class.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
from roadseg.export import verify
from roadseg.export.int8_probe import build as build_probe
from roadseg.export.onnx_export import to_onnx
from roadseg.export.ort_cpu import tune
from roadseg.export.precision import int8_form, to_int8
from roadseg.export.spec import GraphSpec, set_metadata, set_props
from roadseg.runtime import int8
from roadseg.runtime.int8 import EXACT_OPTION, INT8_KEY, Int8Form
from roadseg.train.models.blocks import resize

SIZE = (32, 48)
QEMU = shutil.which("qemu-x86_64")
needs_qemu = pytest.mark.skipif(
    QEMU is None or platform.machine() != "x86_64",
    reason="qemu-x86_64 not installed (apt-get install qemu-user): the AVX2-without-VNNI emulation tests need it",
)

VNNI_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse4_1 avx2 avx512f avx512bw avx512_vnni\n"
AVX2_CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse4_1 avx2 fma bmi2\n"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\n"


# -- CPU flags (they name the CPU in messages and reports) -------------------------------------------


def test_cpu_flags_are_read_from_cpuinfo():
    assert "avx512_vnni" in int8.cpu_flags(VNNI_CPUINFO) and "avx2" in int8.cpu_flags(AVX2_CPUINFO)
    assert int8.cpu_flags("no flags here") == frozenset()


@pytest.mark.parametrize("text,machine,want", [
    (VNNI_CPUINFO, "x86_64", "x86 with VNNI"),
    (VNNI_CPUINFO.replace("avx512_vnni", "avx_vnni"), "x86_64", "x86 with VNNI"),  # Alder Lake and later: AVX-VNNI
    (AVX2_CPUINFO, "x86_64", "x86 without VNNI (AVX2)"),
    (VNNI_CPUINFO.replace(" avx512_vnni", ""), "x86_64", "x86 without VNNI (AVX-512)"),  # Skylake-SP: saturates too
    (ARM_CPUINFO, "aarch64", "ARM"),
    ("", "x86_64", "unknown"),
])  # fmt: skip
def test_cpu_class_from_flags_of_both_kinds(text, machine, want):
    assert int8.cpu_class(int8.cpu_flags(text), machine) == want


# -- the probe ------------------------------------------------------------------------------------


def test_the_shipped_probe_is_what_its_builder_makes():
    assert int8.PROBE_FILE.read_bytes() == build_probe().SerializeToString()


def test_exact_mode_computes_the_probe_exactly_here():
    assert int8.probe_outputs(exact=True) == {"u8": int8.probe_expected("u8"), "s8": int8.probe_expected("s8")}


def test_int8_form_round_trips_and_refuses_nonsense():
    form = Int8Form("u8", 7)
    assert Int8Form.from_json(form.to_json()) == form and not form.saturates_without_vnni
    assert Int8Form("s8", 8).saturates_without_vnni
    for bad in (None, "", "{", '{"activations": "u4", "weight_bits": 7}', '{"activations": "u8"}', "[1]"):
        assert Int8Form.from_json(bad) is None


# -- a graph built to saturate --------------------------------------------------------------------


class SatNet(nn.Module):
    """c1 adds two colour channels into 8 equal maps; c2 adds them all (channel 0: every weight at
    the top of its range, so pairs of products pass 32767 on bright pixels) or every second one
    (channel 1: pairs of one product, never saturating); the classifier compares 8a with 1.5 x 4a.
    Exact arithmetic: class 0 everywhere. Saturated channel 0 shrinks to about half: class 1."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 1, bias=False)
        self.c2 = nn.Conv2d(8, 2, 1, bias=False)
        self.cls = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.c1.weight.fill_(1.0)
            self.c1.weight[:, 1] = 0.0  # blue + red: its own pairs never saturate, so c2 sees the full range
            self.c2.weight.zero_()
            self.c2.weight[0] = 1.0
            self.c2.weight[1, ::2] = 1.0
            self.cls.weight.zero_()
            self.cls.weight[0, 0] = 1.0
            self.cls.weight[1, 1] = 1.5

    def forward(self, x, size=None):
        size = x.shape[-2:] if size is None else size
        return resize(self.cls(self.c2(torch.relu(self.c1(x)))), size)


def _frames(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(n)]


def _labels(model: onnx.ModelProto | str, frames: list[np.ndarray], exact: bool) -> np.ndarray:
    so = ort.SessionOptions()
    if exact:
        so.add_session_config_entry(*EXACT_OPTION)
    src = model if isinstance(model, str) else model.SerializeToString()
    s = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    return np.stack([s.run(None, {"frames": f[None]})[0][0] for f in frames])


@pytest.fixture(scope="module")
def saturating(tmp_path_factory) -> Path:
    """A folder with SatNet as FP32 and as the CPU-form INT8 (u8, rewritten) with 7-bit (the default)
    and 8-bit weights, each with its form in its metadata as the export writes it, and frames."""
    d = tmp_path_factory.mktemp("saturating")
    card = ModelCard(name="sat", arch="sat", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11,
                     input_size=SIZE, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])  # fmt: skip
    fp32, _, _ = to_onnx(SatNet().eval(), card, GraphSpec(frame_size=SIZE))
    onnx.save(fp32, str(d / "fp32.onnx"))
    calib = _frames(8, 1) + [np.full((*SIZE, 3), 255, np.uint8)]
    for bits in (7, 8):
        m = to_int8(fp32, calib, "minmax", progress=False, activations="u8", weight_bits=bits)
        tune(m)
        set_metadata(m, card, GraphSpec(frame_size=SIZE, precision="int8"))
        set_props(m, {INT8_KEY: int8_form(m).to_json()})  # type: ignore[union-attr]
        onnx.save(m, str(d / f"int8_{bits}.onnx"))
    np.save(d / "frames.npy", np.stack(_frames(4, 2)))
    return d


def test_the_saturating_graph_means_class_0_and_its_forms_are_read_back(saturating):
    frames = list(np.load(saturating / "frames.npy"))
    assert (_labels(str(saturating / "fp32.onnx"), frames, exact=False) == 0).all()
    for bits in (7, 8):
        m = onnx.load(str(saturating / f"int8_{bits}.onnx"))
        assert int8_form(m) == Int8Form("u8", bits)
        assert (_labels(m, frames, exact=True) == 0).mean() > 0.99  # what the graph means: FP32's labels


def test_the_gate_scores_int8_in_exact_arithmetic(saturating, monkeypatch):
    """Whatever this CPU is: the variant's verdict comes from an exact session, and this CPU's native
    kernels are scored beside it (the emulated test below shows why it matters)."""
    made: list[bool] = []
    real = verify.session

    def spy(model, threads=0, exact=False):
        made.append(exact)
        return real(model, threads, exact)

    monkeypatch.setattr(verify, "session", spy)
    card = ModelCard(name="sat", arch="sat", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11, input_size=SIZE)
    frames = list(np.load(saturating / "frames.npy"))
    rep = verify.gate(card, onnx.load(str(saturating / "fp32.onnx")), onnx.load(str(saturating / "int8_8.onnx")),
                      "int8", frames, None, 1.0, 0.97)  # fmt: skip
    assert made == [False, True, False]  # fp32, the variant exactly, the variant on native kernels
    assert rep.arithmetic == "exact" and rep.native_agreement is not None


def test_a_saturating_cpu_runs_8bit_graphs_exactly_and_says_so(saturating, monkeypatch, caplog):
    """ort-cpu on a CPU whose kernels saturate (faked here; emulated below): an 8-bit graph gets the
    exact mode and one warning, a 7-bit graph runs natively at full speed and nothing is said."""
    from roadseg.runtime.backends.ort import OrtBackend

    monkeypatch.setattr(int8, "native_int8_exact", lambda: False)
    for bits, exact in ((8, "1"), (7, "")):
        caplog.clear()
        b = OrtBackend(saturating / f"int8_{bits}.onnx")
        try:
            assert _config(b.session, EXACT_OPTION[0]) == exact
            assert b.int8 is not None and b.int8.startswith(f"u8 activations, {bits}-bit weights: ")
            warned = [r.getMessage() for r in caplog.records if "exact arithmetic" in r.getMessage()]
            assert len(warned) == (1 if bits == 8 else 0)
        finally:
            b.close()


def _config(session, key: str) -> str:
    """A session's config entry, "" when unset (ONNX Runtime raises for a key never set)."""
    try:
        return session.get_session_options().get_session_config_entry(key)
    except RuntimeError:
        return ""


# -- on an emulated x86 CPU without VNNI ----------------------------------------------------------

EMULATED = """
import json, logging, sys
import numpy as np, onnx
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from roadseg.export.spec import read_metadata
from roadseg.export.verify import gate, run_batches, session
from roadseg.runtime import int8
from roadseg.runtime.backends.ort import OrtBackend
d = sys.argv[1]
frames = list(np.load(d + "/frames.npy"))
out = {"native_exact": int8.native_int8_exact(), "probe": int8.probe_outputs(), "probe_exact": int8.probe_outputs(True)}
for bits in (7, 8):
    m = onnx.load(f"{d}/int8_{bits}.onnx")
    np.save(f"{d}/native_{bits}.npy", run_batches(session(m), frames))
    b = OrtBackend(f"{d}/int8_{bits}.onnx")
    np.save(f"{d}/backend_{bits}.npy", b.infer(np.stack(frames)))
    out[f"backend_{bits}"] = b.int8
    b.close()
fp32 = onnx.load(d + "/fp32.onnx")
card, _ = read_metadata(fp32, "fp32.onnx")
rep = gate(card, fp32, onnx.load(d + "/int8_8.onnx"), "int8", frames, None, 1.0, 0.97)
out["gate"] = [rep.agreement_with_fp32, rep.native_agreement, rep.native_line()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def emulated(saturating) -> tuple[dict, str]:
    """The checks of EMULATED, run by ONNX Runtime on an emulated Haswell (AVX2, no VNNI): (results, stderr)."""
    cmd = [QEMU, "-cpu", "Haswell", sys.executable, "-c", EMULATED, str(saturating)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.slow
@needs_qemu
def test_emulated_avx2_saturates_natively_and_the_probe_sees_it(emulated):
    got, _ = emulated
    assert got["native_exact"] is False
    assert got["probe"]["u8"] < int8.probe_expected("u8") and got["probe"]["s8"] != int8.probe_expected("s8")
    assert got["probe_exact"] == {"u8": int8.probe_expected("u8"), "s8": int8.probe_expected("s8")}


@pytest.mark.slow
@needs_qemu
def test_emulated_avx2_gate_judges_the_graph_not_the_cpu(saturating, emulated):
    """The 8-bit graph saturates there (native labels flip), yet the gate's verdict equals exact
    arithmetic computed on this machine, and one line says how far native kernels are off."""
    got, _ = emulated
    frames = list(np.load(saturating / "frames.npy"))
    fp32 = _labels(str(saturating / "fp32.onnx"), frames, exact=False)
    exact = _labels(str(saturating / "int8_8.onnx"), frames, exact=True)
    agreement, native_agreement, line = got["gate"]
    assert agreement == pytest.approx(float((fp32 == exact).mean()))
    assert native_agreement < 0.9 and "differ from exact arithmetic" in line
    assert (np.load(saturating / "native_8.npy") != exact).mean() > 0.1  # the graph really is decisive


@pytest.mark.slow
@needs_qemu
def test_emulated_avx2_default_7bit_form_is_exact_natively(saturating, emulated):
    exact = _labels(str(saturating / "int8_7.onnx"), list(np.load(saturating / "frames.npy")), exact=True)
    np.testing.assert_array_equal(np.load(saturating / "native_7.npy"), exact)
    np.testing.assert_array_equal(np.load(saturating / "backend_7.npy"), exact)
    assert "exact natively" in emulated[0]["backend_7"]


@pytest.mark.slow
@needs_qemu
def test_emulated_avx2_runtime_runs_an_8bit_graph_exactly_and_warns(saturating, emulated):
    got, stderr = emulated
    exact = _labels(str(saturating / "int8_8.onnx"), list(np.load(saturating / "frames.npy")), exact=True)
    np.testing.assert_array_equal(np.load(saturating / "backend_8.npy"), exact)
    assert got["backend_8"].startswith("u8 activations, 8-bit weights: exact mode")
    assert stderr.count("running it in exact arithmetic") == 1
