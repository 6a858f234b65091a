"""Whether ONNX Runtime's CPU kernels compute an INT8 graph exactly here, and what makes a graph
depend on the CPU.

An INT8 (Q/DQ) graph means exact integer arithmetic: that is what TensorRT, x86 CPUs with VNNI and
ARM CPUs compute. On x86 CPUs without VNNI (AVX2 or AVX-512 alone: AMD Zen 2/3, Intel before
Cascade Lake / Ice Lake), ONNX Runtime's u8 x s8 kernels (MLAS, VPMADDUBSW) add each pair of
products in 16 bits with saturation, so a graph whose weights use all 8 bits can give other labels
there than everywhere else. Two ways out, both used by roadseg:

- 7-bit weights ([-64, 64]): a pair sums to at most 2 x 255 x 64 = 32640 < 32767 and never
  saturates, so native kernels are exact on every CPU at full speed. The default CPU form.
- ONNX Runtime's session option `session.x64quantprecision=1`: exact u8 x u8 kernels for every
  weight, on every x86 CPU (with VNNI too), several times slower. The export gate scores every
  INT8 graph this way; the runtime uses it only where native kernels would saturate.

Whether native kernels saturate is asked of ONNX Runtime itself: a tiny graph whose pair sums pass
16 bits (models/int8_probe.onnx, built by roadseg.export.int8_probe) runs once per process. The CPU
flags (cpu_flags, cpu_class) only name the CPU in messages and reports: a flag table cannot know
which kernels a given ONNX Runtime build picks, nor see through an emulator.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

EXACT_OPTION = ("session.x64quantprecision", "1")  # ONNX Runtime: exact u8 x u8 kernels on x86
INT8_KEY = "roadseg_int8"  # metadata_props: {"activations": "u8"|"s8", "weight_bits": 7|8}
PROBE_FILE = Path(__file__).parent / "models" / "int8_probe.onnx"
PROBE_CHANNELS, PROBE_OUT_SCALE = 8, 2000.0  # the probe's 1x1 convolution and its output scale
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # Linux /proc/cpuinfo names
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")


@dataclass(frozen=True)
class Int8Form:
    """What an INT8 graph computes: activation type and weight bits.

    activations: "u8" (asymmetric, ONNX Runtime's fast x86 form) or "s8" (symmetric, TensorRT's).
    weight_bits: 7 (never saturates on any CPU) or 8 (full range: saturates on x86 without VNNI).
    """

    activations: str
    weight_bits: int

    @property
    def saturates_without_vnni(self) -> bool:
        return self.weight_bits > 7

    def describe(self) -> str:
        return f"{self.activations} activations, {self.weight_bits}-bit weights"

    def to_json(self) -> str:
        return json.dumps({"activations": self.activations, "weight_bits": self.weight_bits})

    @classmethod
    def from_json(cls, text: str | None) -> Int8Form | None:
        """The form recorded in a graph's metadata; None when absent or malformed (treated as 8-bit)."""
        try:
            d = json.loads(text or "")
            form = cls(str(d["activations"]), int(d["weight_bits"]))
        except (ValueError, TypeError, KeyError):
            return None
        return form if form.activations in ("u8", "s8") and form.weight_bits in (7, 8) else None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (x86 `flags`, ARM `Features`), or `cpuinfo`'s text;
    empty where there is no such file (macOS, Windows)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_class(flags: frozenset[str] | None = None, machine: str | None = None) -> str:
    """'x86 with VNNI', 'x86 without VNNI (AVX2)' (or AVX-512), 'ARM' or 'unknown', for messages and reports."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if machine.startswith(("arm", "aarch")):
        return "ARM"
    if machine not in X86_MACHINES:
        return "unknown"
    if any(f in flags for f in VNNI_FLAGS):
        return "x86 with VNNI"
    if "avx512bw" in flags:
        return "x86 without VNNI (AVX-512)"
    if "avx2" in flags:
        return "x86 without VNNI (AVX2)"
    return "x86 without VNNI" if flags else "unknown"


def probe_expected(activations: str) -> float:
    """The probe's exact output: qmax x 127 summed over its channels, quantised at PROBE_OUT_SCALE."""
    qmax = 255 if activations == "u8" else 127
    return float(np.round(qmax * 127 * PROBE_CHANNELS / PROBE_OUT_SCALE) * PROBE_OUT_SCALE)


def probe_outputs(exact: bool = False) -> dict[str, float]:
    """Runs the probe graph on ONNX Runtime's CPU kernels: {"u8": value, "s8": value}."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    if exact:
        so.add_session_config_entry(*EXACT_OPTION)
    sess = ort.InferenceSession(str(PROBE_FILE), so, providers=["CPUExecutionProvider"])
    out = sess.run(["y_u8", "y_s8"], probe_feeds())
    return {"u8": float(out[0].flat[0]), "s8": float(out[1].flat[0])}


def probe_feeds() -> dict[str, np.ndarray]:
    """The probe's inputs: the largest activation of each type on every channel."""
    x = np.zeros((1, PROBE_CHANNELS, 2, 2), np.float32)
    return {"x_u8": x + 255, "x_s8": x + 127}


def probe_exact(got: dict[str, float], within: float | None = None) -> bool:
    """Whether a kernel's probe outputs {"u8": v, "s8": v} are the exact ones: equal, or (a kernel
    that dequantises in float) closer than `within`."""
    for activations, value in got.items():
        error = abs(value - probe_expected(activations))
        if (error != 0) if within is None else (error >= within):
            return False
    return True


@cache
def native_int8_exact() -> bool:
    """True when ONNX Runtime's default CPU kernels compute full-range (8-bit weight) INT8 graphs
    exactly on this machine, for both activation types; asked once per process."""
    return probe_exact(probe_outputs())


def _never_saturates(form: Int8Form | None) -> bool:
    return form is not None and not form.saturates_without_vnni


def describe_form(form: Int8Form | None) -> str:
    return form.describe() if form is not None else "INT8 weights of unrecorded range"


def needs_exact_mode(form: Int8Form | None, kernels_exact: Callable[[], bool] | None = None) -> bool:
    """Whether an INT8 graph of this form (None: not recorded, assumed 8-bit) would give labels on
    this CPU's native kernels that differ from what it means. `kernels_exact` asks the kernels that
    would run it (default: ONNX Runtime's, native_int8_exact)."""
    if _never_saturates(form):
        return False
    return not (kernels_exact or native_int8_exact)()


def exactness(form: Int8Form | None) -> str:
    """How this CPU computes a graph of this form, for reports: 'native (...)' or 'exact mode (...)'."""
    if _never_saturates(form):
        return "exact natively (7-bit weights never saturate)"
    if native_int8_exact():
        return f"exact natively ({cpu_class()})"
    return f"exact mode, slower ({saturating_cpu()}: native u8 x s8 kernels saturate)"


def saturating_cpu() -> str:
    """Names a CPU whose native kernels saturate: its class, unless its flags claim VNNI (an emulator
    or a hypervisor that passes the host's flags through), where the flags are not to be believed."""
    name = cpu_class()
    return "this CPU" if "with VNNI" in name else name
