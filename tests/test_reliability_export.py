"""Reliability of `roadseg export` under interruption (docs/RELIABILITY.md, rows "Export").

A real `python -m roadseg export` subprocess is interrupted (SIGINT) and killed (SIGKILL) while it
traces the ONNX graph and while it calibrates INT8 (the signal is sent once its output shows it is
in that phase). Afterwards there must be nothing at the target path: after SIGINT no temporary
file either, beside the target or in TMPDIR; after SIGKILL at most a hidden `.name.*.tmp` beside the
target (a kill cannot be cleaned up). Then the same command, run again on the same folder,
succeeds and writes a model that loads.

The engine build is covered with TensorRT fakes in test_tensorrt.py (a cancelled build and a
failed build write nothing); a real engine build needs an NVIDIA GPU."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roadseg.runtime.model import inspect_model
from roadseg.runtime.synthetic import make_dataset

pytestmark = pytest.mark.slow

FRAME = ("144", "192")  # frames 4x the tiny model's input: tracing and calibration take long enough to hit


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    """CamVid-layout synthetic frames: 120 to calibrate on (train), 12 to verify on (val)."""
    return make_dataset(tmp_path_factory.mktemp("calib"), n_train=120, n_val=12, size=(72, 96), seed=11)


def _env(tmpdir: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmpdir)}


def _signal_when(args: list[str], pattern: str, sig: int, tmpdir: Path, cwd: Path, timeout: float = 180.0) -> tuple[int, str, str]:
    """Start `roadseg ARGS`, send `sig` as soon as its output (stdout and stderr, progress bars
    included) matches `pattern`; (exit code, output before the signal, output after)."""
    p = subprocess.Popen([sys.executable, "-m", "roadseg", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=_env(tmpdir), cwd=cwd)  # fmt: skip
    before = b""
    try:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, before.decode(errors="replace")):
            assert time.monotonic() < deadline, f"{pattern!r} did not appear in time: {before[-2000:]!r}"
            ready, _, _ = select.select([p.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(p.stdout.fileno(), 65536)  # type: ignore[union-attr]
                if not chunk:
                    raise AssertionError(f"export ended before {pattern!r}: {before.decode(errors='replace')[-2000:]}")
                before += chunk
        p.send_signal(sig)
        after, _ = p.communicate(timeout=120)
    finally:
        p.kill()
        p.wait()
    return p.returncode, before.decode(errors="replace"), after.decode(errors="replace")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _interrupt_then_kill_then_rerun(args: list[str], pattern: str, out: Path, tmp_path: Path, done_marker: str) -> dict:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    # what importing the libraries leaves in TMPDIR is not ours to judge (onnxruntime writes `.ses`)
    subprocess.run([sys.executable, "-c", "import roadseg.cli, onnxruntime, onnx, torch"], env=_env(tmpdir), timeout=120,
                   check=True)  # fmt: skip
    ambient = set(_leftovers(tmpdir))
    phases = {}

    # SIGINT: a clean stop, exit 130, one line, nothing left anywhere
    rc, before, after = _signal_when(args, pattern, signal.SIGINT, tmpdir, tmp_path)
    assert rc == 130, (rc, before[-1000:], after[-1000:])
    assert "roadseg export: interrupted" in after and "Traceback" not in after, after[-2000:]
    phases["SIGINT"] = done_marker not in after  # still in the phase when the signal landed
    assert _leftovers(out.parent) == [], "SIGINT left files beside the target"
    assert set(_leftovers(tmpdir)) == ambient, "SIGINT left temporary files in TMPDIR"

    # SIGKILL: nothing at the target; only a hidden temporary may remain beside it
    rc, before, after = _signal_when(args, pattern, signal.SIGKILL, tmpdir, tmp_path)
    assert rc == -signal.SIGKILL
    phases["SIGKILL"] = done_marker not in after
    assert not out.exists() and not Path(f"{out}.json").exists()
    assert all(n.startswith(f".{out.name}") and n.endswith(".tmp") for n in _leftovers(out.parent)), _leftovers(out.parent)

    # the same command again, over whatever the kill left, succeeds
    r = subprocess.run([sys.executable, "-m", "roadseg", *args], capture_output=True, text=True, env=_env(tmpdir),
                       cwd=tmp_path, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    info = inspect_model(out)
    assert Path(f"{out}.json").is_file()
    phases["info"] = info  # type: ignore[assignment]
    return phases


def test_sigint_and_sigkill_during_onnx_export(tiny_checkpoint, tmp_path):
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    args = ["export", str(tiny_checkpoint), "--frame-size", *FRAME, "-o", str(out), "--quiet"]
    phases = _interrupt_then_kill_then_rerun(args, r"exporting tiny", out, tmp_path, "fp32 vs PyTorch")
    print("signal landed while tracing:", {k: v for k, v in phases.items() if k != "info"})
    assert phases["info"].frame_size == (144, 192) and phases["info"].precision == "fp32"


def test_sigint_and_sigkill_during_int8_calibration(tiny_checkpoint, calib, tmp_path):
    out = tmp_path / "out" / "m_int8.onnx"
    out.parent.mkdir()
    args = ["export", str(tiny_checkpoint), "--frame-size", *FRAME, "--precision", "int8", "--calib", str(calib),
            "--calib-count", "120", "--verify", str(calib), "-o", str(out)]  # fmt: skip
    # the calibration progress bar has moved past its first frame and is not finished
    pattern = r"calibrate:\s+\d+%\S*\s*\|[^\r\n]*\|\s*(?:[1-9]|[1-9]\d|10\d|11[0-8])/120"
    phases = _interrupt_then_kill_then_rerun(args, pattern, out, tmp_path, "accuracy gate")
    assert phases["SIGINT"] and phases["SIGKILL"], "the signal landed after calibration"
    assert phases["info"].precision == "int8"


@pytest.mark.parametrize("kind", ["missing", "empty", "unreadable", "too-few"])
def test_bad_calibration_sets_are_refused_before_any_tracing(tiny_checkpoint, tmp_path, monkeypatch, kind):
    """An empty or too small calibration set is an error before the network is traced."""
    import cv2
    import numpy as np

    import roadseg.export.command as command
    from roadseg.core.errors import RoadsegError
    from roadseg.export.command import ExportOptions, export

    def traced(*a, **k):
        raise AssertionError("the network was traced before the calibration set was checked")

    monkeypatch.setattr(command, "to_onnx", traced)
    calib = tmp_path / "calib"
    if kind != "missing":
        calib.mkdir()
    if kind == "unreadable":
        for i in range(10):
            (calib / f"{i}.png").write_bytes(b"not a png")
    if kind == "too-few":
        for i in range(5):
            cv2.imwrite(str(calib / f"{i}.png"), np.full((72, 96, 3), 40 * i, np.uint8))
    words = {"missing": "not found", "empty": "no images", "unreadable": "only 0 usable", "too-few": "only 5 usable"}[kind]
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(RoadsegError, match=words):
        export(ExportOptions(model=str(tiny_checkpoint), precision="int8", calib=str(calib), output=str(out), progress=False))
    assert not out.exists()
