"""Shared test fixtures.

Tiny roadseg models (runtime/backends tests): a Fast-SCNN at input 64x96, trained for a few steps
on synthetic scenes so its labels vary across the frame (an untrained net predicts one class
everywhere, which would hide resize and batching mistakes), then exported with the real export API.
- `tiny_checkpoint`: the .pt (session scope).
- `tiny_export(**ExportOptions fields)`: a factory that exports it (cached per options) -> .onnx path.
- `tiny_onnx`: fixed frame size 72x96, batch 1.  `tiny_onnx_dynamic`: dynamic N, H, W.
Building all of it takes a few seconds on one CPU thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

TINY_INPUT_SIZE = (64, 96)  # (H, W) the tiny network sees
TINY_FRAME_SIZE = (72, 96)  # (H, W) of the fixed-size tiny graph


def _train_tiny(steps: int = 30):
    import torch

    from roadseg.runtime.synthetic import make_scene
    from roadseg.train.models import build

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build("fastscnn", 11)
        scenes = [make_scene(seed=s, size=TINY_INPUT_SIZE) for s in range(8)]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        x = torch.stack(
            [(torch.from_numpy(f[..., ::-1].copy()).permute(2, 0, 1).float() / 255 - mean) / std for f, _ in scenes]
        )
        y = torch.stack([torch.from_numpy(m.astype(np.int64)) for _, m in scenes])
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        model.train()
        for _ in range(steps):
            out = model(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = torch.nn.functional.cross_entropy(out, y, ignore_index=11)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from roadseg.runtime.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
    from roadseg.train.checkpoint import atomic_save, make_checkpoint

    model = _train_tiny()
    card = ModelCard(name="tiny", arch="fastscnn", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11,
                     input_size=TINY_INPUT_SIZE)  # fmt: skip
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.pt"
    atomic_save(make_checkpoint(model, "fastscnn", {}, card), path)
    return path


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory) -> Callable[..., Path]:
    """tiny_export(frame_size=(72, 96)) / (dynamic=True) / (batch=2, frame_size=...) / (raw=True) /
    (precision="int8", calib=DIR) ... -> the exported .onnx (one export per distinct options)."""
    from roadseg.export.command import ExportOptions, export

    cache: dict[tuple, Path] = {}
    folder = tmp_path_factory.mktemp("tiny_onnx")

    def make(**options) -> Path:
        key = tuple(sorted((k, repr(v)) for k, v in options.items()))
        if key not in cache:
            out = folder / f"tiny_{len(cache)}.onnx"
            cache[key] = Path(
                export(ExportOptions(model=str(tiny_checkpoint), output=str(out), progress=False, **options))
            )
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_onnx(tiny_export) -> Path:
    """frames uint8 [1,72,96,3] -> labels uint8 [1,72,96]."""
    return tiny_export(frame_size=TINY_FRAME_SIZE)


@pytest.fixture(scope="session")
def tiny_onnx_dynamic(tiny_export) -> Path:
    """frames uint8 [N,H,W,3] -> labels uint8 [N,H,W], any N, H, W."""
    return tiny_export(dynamic=True)


def decode_count(path) -> int:
    """Frames OpenCV decodes from a written video: what a player would see (shared by the stream tests)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n
