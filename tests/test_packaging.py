"""The wheel ships code, the default weights (their model card inside) and the shipped ONNX
variants, and nothing else; it builds without a warning."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_code_weights_and_variants_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # pip warns when it may not compile
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    warnings = [line for line in (done.stdout + done.stderr).splitlines() if "warn" in line.lower()]
    assert warnings == []
    (wheel,) = tmp_path.glob("roadseg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = sorted(n for n in names if not n.endswith(".py") and ".dist-info/" not in n)
    assert data == ["roadseg/runtime/models/ddrnet23s_camvid_fp16.onnx", "roadseg/runtime/models/ddrnet23s_camvid_int8.onnx",
                    "roadseg/runtime/models/int8_probe.onnx",  # the runtime asks ONNX Runtime with it whether INT8 saturates
                    "roadseg/train/weights/ddrnet23s_camvid.pt"]  # fmt: skip
    assert "roadseg/data.py" in names and "roadseg/train/recipes.py" in names and "roadseg/runtime/videoenc.py" in names
    assert not any("results" in n for n in names)
