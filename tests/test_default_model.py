"""The bundled default model: its card, its size, and its CamVid val mIoU against the number its
model card page (docs/MODEL.md) quotes, so a regression (or a page that stops telling the truth)
fails; the README's summary of the model must quote the same numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from roadseg.train.checkpoint import BUNDLED, WEIGHTS_DIR, load_model, resolve

ROOT = Path(__file__).resolve().parents[1]
MODEL_MD = ROOT / "docs" / "MODEL.md"
CAMVID = ROOT.parent / "shared" / "datasets" / "camvid"


def _card_miou() -> float:
    m = re.search(r"val mIoU \(FP32\) \| \*\*([0-9.]+)\*\*", MODEL_MD.read_text())
    assert m, "docs/MODEL.md's model card must quote the val mIoU as '| val mIoU (FP32) | **0.xxxx** |'"
    return float(m.group(1))


def _input_size(text: str, where: str) -> tuple[int, int]:
    size = re.search(r"resized in the graph to\s+(\d+)×(\d+)", text)
    assert size, f"{where} must give the input size as 'resized in the graph to H×W'"
    return int(size[1]), int(size[2])


def test_default_is_bundled_and_small():
    path = resolve("default")
    assert path == WEIGHTS_DIR / BUNDLED["default"] and path == resolve("ddrnet23s_camvid")
    assert path.stat().st_size <= 20 * 1024 * 1024


def test_default_card():
    model, card, ckpt = load_model("default")
    assert ckpt["model"]["name"] == "ddrnet23s" and card.arch == "ddrnet23s"
    assert card.num_classes == 11 and card.classes[3] == "Road" and card.ignore_index == 11
    assert tuple(card.input_size) == _input_size(MODEL_MD.read_text(), "docs/MODEL.md") and card.color_order == "RGB"
    assert card.dataset == "camvid" and "CamVid" in card.license
    assert ckpt["metrics"]["val_miou"] == pytest.approx(_card_miou(), abs=1e-4)
    assert "train_state" not in ckpt  # a release checkpoint: no optimizer state


def test_readme_summary_quotes_the_model_card():
    """The README's few lines on the default model repeat the card's input size and val mIoU."""
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"val mIoU \*\*([0-9.]+)\*\* in FP32", readme)
    assert m, "README's default-model section must quote the val mIoU as 'val mIoU **0.xxxx** in FP32'"
    assert float(m.group(1)) == _card_miou()
    assert _input_size(readme, "README's default-model section") == _input_size(MODEL_MD.read_text(), "docs/MODEL.md")


@pytest.mark.slow
@pytest.mark.skipif(not CAMVID.is_dir(), reason="CamVid not present in ../shared/datasets")
def test_default_miou_on_camvid_val():
    from roadseg.train.data import load_dataset
    from roadseg.train.evaluate import evaluate

    model, card, _ = load_model("default")
    cm = evaluate(model, load_dataset(CAMVID, "camvid", "val"), card, progress=False)
    assert cm.miou() == pytest.approx(_card_miou(), abs=2e-3)
