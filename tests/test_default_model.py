"""The bundled default model: its card, its size, and its CamVid val mIoU against the number the
README quotes, so a regression (or a README that stops telling the truth) fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from roadseg.train.checkpoint import BUNDLED, WEIGHTS_DIR, load_model, resolve

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "datasets" / "camvid"


def _readme_miou() -> float:
    m = re.search(r"val mIoU \(FP32\) \| \*\*([0-9.]+)\*\*", (ROOT / "README.md").read_text())
    assert m, "README's model card must quote the val mIoU as '| val mIoU (FP32) | **0.xxxx** |'"
    return float(m.group(1))


def test_default_is_bundled_and_small():
    path = resolve("default")
    assert path == WEIGHTS_DIR / BUNDLED["default"] and path == resolve("ddrnet23s_camvid")
    assert path.stat().st_size <= 20 * 1024 * 1024


def test_default_card():
    model, card, ckpt = load_model("default")
    assert ckpt["model"]["name"] == "ddrnet23s" and card.arch == "ddrnet23s"
    assert card.num_classes == 11 and card.classes[3] == "Road" and card.ignore_index == 11
    size = re.search(r"resized in the graph to (\d+)×(\d+)", (ROOT / "README.md").read_text())
    assert size, "README's model card must give the input size as 'resized in the graph to H×W'"
    assert tuple(card.input_size) == (int(size[1]), int(size[2])) and card.color_order == "RGB"
    assert card.dataset == "camvid" and "CamVid" in card.license
    assert ckpt["metrics"]["val_miou"] == pytest.approx(_readme_miou(), abs=1e-4)
    assert "train_state" not in ckpt  # a release checkpoint: no optimizer state


@pytest.mark.slow
@pytest.mark.skipif(not CAMVID.is_dir(), reason="CamVid not present in ../shared/datasets")
def test_default_miou_on_camvid_val():
    from roadseg.train.data import load_dataset
    from roadseg.train.evaluate import evaluate

    model, card, _ = load_model("default")
    cm = evaluate(model, load_dataset(CAMVID, "camvid", "val"), card, progress=False)
    assert cm.miou() == pytest.approx(_readme_miou(), abs=2e-3)
