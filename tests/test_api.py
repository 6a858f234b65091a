"""The package-root API: `import roadseg` exposes the public entry points, loaded on first use."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

import roadseg


def test_runtime_names_import_no_torch():
    """A car's install has no PyTorch: reaching the runtime API must not import it (nor ONNX)."""
    code = (
        "import roadseg, sys\n"
        "roadseg.Segmenter, roadseg.open_backend, roadseg.available_backends, roadseg.RoadsegError\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "none"


@pytest.mark.parametrize("name", sorted(roadseg._LAZY))
def test_every_public_name_is_the_object_in_its_module(name):
    module, attr = roadseg._LAZY[name]
    if module.startswith(("roadseg.export", "roadseg.train", "roadseg.benchmarks")):
        pytest.importorskip("torch")
    assert getattr(roadseg, name) is getattr(importlib.import_module(module), attr)
    assert name in dir(roadseg) and name in roadseg.__all__


def test_all_lists_exactly_the_lazy_names():
    assert sorted(roadseg.__all__) == sorted(["__version__", *roadseg._LAZY])


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        roadseg.no_such_thing  # noqa: B018


def test_segmenter_from_the_package_root_labels_a_frame():
    with roadseg.Segmenter("default", backend="ort-cpu") as seg:
        labels = seg(np.zeros((360, 480, 3), np.uint8))
        assert labels.shape == (360, 480) and labels.dtype == np.uint8
        assert int(labels.max()) < len(seg.classes)
