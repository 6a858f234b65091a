""".ci/train_in_parts.py, recipes trained across size-limited commands, on the CPU: the data pack survives its
split into parts, and a run's state survives FP16 parts and resumes where it stopped."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from roadseg.runtime.synthetic import make_dataset
from roadseg.train.checkpoint import load_raw
from roadseg.train.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("train_in_parts", ROOT / ".ci" / "train_in_parts.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_pack_splits_and_unpacks_the_dataset(tmp_path):
    gt = _tool()
    src = make_dataset(tmp_path / "src", n_train=6, n_val=2, size=(48, 64), seed=1)
    parts = gt.pack(src, tmp_path / "pack", part_bytes=20_000)
    assert len(parts) > 1 and all(p.stat().st_size <= 20_000 for p in parts)
    assert [p.parent.name for p in parts] == [str(i + 1) for i in range(len(parts))]  # one part a carried folder
    joined = tmp_path / "joined"
    joined.mkdir()
    for p in parts:
        (joined / p.name).write_bytes(p.read_bytes())
    root = gt.unpack(joined, tmp_path / "data")
    from roadseg.train.data import load_dataset

    for split in ("train", "val"):
        a, b = load_dataset(src, "camvid", split), load_dataset(root, "camvid", split)
        assert len(a) == len(b) > 0
        for i in range(len(a)):
            (ia, ma), (ib, mb) = a.read(i), b.read(i)
            assert np.array_equal(ma, mb)  # labels exact (PNG)
            assert np.abs(ia.astype(int) - ib.astype(int)).mean() < 8  # JPEG q95 (hard-edged 48x64 scenes: ~4.6)


def test_state_parts_resume_the_run(tmp_path):
    gt = _tool()
    data = make_dataset(tmp_path / "synth", n_train=16, n_val=4, size=(48, 64), seed=2)
    common = dict(model="fcn", data=str(data), batch=8, crop=(48, 64), model_kwargs={"width": 8}, progress=False,
                  seed=3, device="cpu", ema=0.9, epochs=2)  # fmt: skip
    train(TrainConfig(out=str(tmp_path / "a"), stop_after=1, **common))
    gt.half_state(tmp_path / "a" / "last.pt", tmp_path / "half.pt")
    parts = gt.split_file(tmp_path / "half.pt", tmp_path, 50_000)
    assert len(parts) > 1
    full = (tmp_path / "b" / "last.pt")
    full.parent.mkdir()
    gt.full_state(gt._joined(parts), full)
    before, after = load_raw(tmp_path / "a" / "last.pt"), load_raw(full)
    for k, v in before["state_dict"].items():  # the saved (EMA) weights, rebuilt from the EMA's state
        assert after["state_dict"][k].dtype == torch.float16 if v.is_floating_point() else True
        torch.testing.assert_close(after["state_dict"][k].float(), v.float(), rtol=1e-3, atol=1e-3)
    train(TrainConfig(out=str(tmp_path / "b"), resume=True, **common))
    state = load_raw(full)["train_state"]
    assert state["epoch"] == 1 and state["step"] == 4  # 16 frames / batch 8: 2 steps an epoch, both epochs
    log = (tmp_path / "b" / "log.jsonl").read_text()
    assert '"epoch": 2' in log and '"epoch": 1' not in log


@pytest.mark.slow
def test_run_trains_a_package_recipe_and_returns_state_parts(tmp_path):
    tool = _tool()
    data = make_dataset(tmp_path / "synth", n_train=4, n_val=2, size=(64, 96), seed=4)
    extra = '--model fcn --model-kwargs {"width":8} --epochs 1 --batch 2 --crop 64 96 --imgsz 64 96 --val-every 1 --device cpu --workers 0'
    rc = tool.main(["run", "--data", str(data), "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
                    "--runs", "ddrnet23s-camvid/final", "--minutes", "5", "--part-mib", "0.05", "--extra", extra])  # fmt: skip
    assert rc == 0
    parts = sorted((tmp_path / "out").glob("ddrnet23s-camvid-final.pt.part*"))
    assert len(parts) > 1 and all(p.stat().st_size <= 0.05 * (1 << 20) for p in parts)
    assert "| ddrnet23s-camvid/final | 1 |" in (tmp_path / "out" / "summary.md").read_text()
    config = load_raw(tmp_path / "work" / "runs" / "ddrnet23s-camvid-final" / "last.pt")["train_state"]["config"]
    assert config["ohem"] and config["lr"] == 0.02 and config["train_split"] == "train+val"
