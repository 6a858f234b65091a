"""Train stage: dataset layouts and bad data, augmentations, checkpoint safety, the metric against an
independent implementation, a learning test on synthetic scenes, the CLI's error contract, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import CAMVID, needs_camvid

from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
from roadseg.core.errors import RoadsegError, UsageError
from roadseg.core.metrics import ConfusionMatrix
from roadseg.runtime.synthetic import make_dataset, make_scene
from roadseg.train import trainer
from roadseg.train.checkpoint import atomic_save, load_model, load_raw, make_checkpoint, strip
from roadseg.train.data import AugmentConfig, TrainTransform, load_dataset
from roadseg.train.data.transforms import paste_classes
from roadseg.train.losses import LOVASZ_TOL, SegLoss, lovasz_softmax
from roadseg.train.models import build
from roadseg.train.trainer import RARE_SHARE, TrainConfig, _amp_dtype, _paste_classes, train

SIZE = (96, 128)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synth"), n_train=48, n_val=8, size=SIZE, seed=3)


def _card(size=SIZE) -> ModelCard:
    return ModelCard(name="t", arch="fcn", classes=list(CAMVID_CLASSES), palette=CAMVID_PALETTE, ignore_index=11, input_size=size)


# ---------------------------------------------------------------- datasets


def test_camvid_layout_on_synthetic(synth):
    ds = load_dataset(synth, "camvid", "train")
    assert len(ds) == 48 and ds.num_classes == 11 and ds.info.ignore_index == 11
    img, mask = ds.read(0)
    assert img.shape == (*SIZE, 3) and img.dtype == np.uint8 and mask.shape == SIZE
    # images are returned RGB: the PNG on disk is BGR
    bgr = cv2.imread(str(ds.samples[0].image))
    assert np.array_equal(img, bgr[..., ::-1])


@needs_camvid
def test_camvid_real_layout():
    ds = load_dataset(CAMVID, "camvid", "val")
    assert len(ds) == 101
    img, mask = ds.read(0)
    assert img.shape == (360, 480, 3) and mask.shape == (360, 480) and mask.max() <= 11


def test_cityscapes_and_folder_layouts(tmp_path):
    frame, mask = make_scene(1, SIZE)
    city = tmp_path / "cs"
    (city / "leftImg8bit/val/aachen").mkdir(parents=True)
    (city / "gtFine/val/aachen").mkdir(parents=True)
    cv2.imwrite(str(city / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png"), frame)
    cv2.imwrite(str(city / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"), np.minimum(mask, 18))
    ds = load_dataset(city, "cityscapes", "val")
    assert len(ds) == 1 and ds.num_classes == 19 and ds.info.ignore_index == 255

    fold = tmp_path / "mine"
    (fold / "train/images").mkdir(parents=True)
    (fold / "train/masks").mkdir(parents=True)
    (fold / "classes.txt").write_text("# my classes\nroad 128 64 128\nnot_road\nignore: 254\n")
    cv2.imwrite(str(fold / "train/images/a.jpg"), frame)
    cv2.imwrite(str(fold / "train/masks/a.png"), (mask != 3).astype(np.uint8))
    ds = load_dataset(fold, "folder", "train")
    assert ds.info.classes == ["road", "not_road"] and ds.info.palette[0] == [128, 64, 128] and ds.info.ignore_index == 254
    assert ds.read(0)[1].max() == 1
    (fold / "classes.txt").write_text("road\nignore: x\n")  # used to be a ValueError traceback
    with pytest.raises(RoadsegError, match=r"classes.txt: line 'ignore: x': the ignore label must be an integer 0-255"):
        load_dataset(fold, "folder", "train")


def _camvid_copy(src: Path, dst: Path, n: int) -> Path:
    dst.mkdir()
    lines = (src / "train.txt").read_text().splitlines()[:n]
    for sub in ("train", "trainannot"):
        (dst / sub).mkdir()
    for line in lines:
        for rel in line.split():
            (dst / rel).write_bytes((src / rel).read_bytes())
    (dst / "train.txt").write_text("\n".join(lines) + "\n")
    return dst


@pytest.mark.parametrize("fault", ["unreadable", "size", "labels"])
def test_bad_samples_error_or_skip(synth, tmp_path, fault):
    root = _camvid_copy(synth, tmp_path / "d", 4)
    img_rel, mask_rel = (root / "train.txt").read_text().split("\n")[1].split()
    if fault == "unreadable":
        (root / img_rel).write_bytes(b"not a png")
        bad = img_rel
    elif fault == "size":
        cv2.imwrite(str(root / mask_rel), np.zeros((10, 10), np.uint8))
        bad = mask_rel
    else:
        cv2.imwrite(str(root / mask_rel), np.full(SIZE, 40, np.uint8))
        bad = mask_rel
    with pytest.raises(RoadsegError, match=Path(bad).name):
        load_dataset(root, "camvid", "train", cache=True)
    ds = load_dataset(root, "camvid", "train", skip_bad=True)
    assert len(ds) == 3 and len(ds.skipped) == 1


def test_empty_split_and_missing_root(tmp_path):
    (tmp_path / "train.txt").write_text("")
    with pytest.raises(RoadsegError, match="no samples"):
        load_dataset(tmp_path, "camvid", "train")
    with pytest.raises(RoadsegError, match="not found"):
        load_dataset(tmp_path / "nope", "camvid", "train")


# ---------------------------------------------------------------- augmentations


def test_augmentation_reproducible_and_padded():
    img, mask = make_scene(2, SIZE)
    tf = TrainTransform(AugmentConfig(crop=(128, 160), scale=(0.5, 0.6)), (0.5,) * 3, (0.25,) * 3, ignore_index=11, seed=7)
    a, b = tf(img, mask, 5), tf(img, mask, 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == (3, 128, 160) and a[1].shape == (128, 160)
    # scale 0.5-0.6 of 96x128 is smaller than the crop: the padding is the ignore index
    assert (a[1] == 11).mean() > 0.4
    tf.set_epoch(1)
    assert not np.array_equal(tf(img, mask, 5)[0], a[0])


def test_class_paste_copies_only_the_chosen_classes():
    img, mask = make_scene(1, SIZE)
    src_img, src_mask = make_scene(2, SIZE)
    classes = [c for c in np.unique(src_mask) if c < 11][:2]
    for flip in (False, True):
        out_img, out_mask = paste_classes(img, mask, src_img, src_mask, classes, flip)
        s_img, s_mask = (src_img[:, ::-1], src_mask[:, ::-1]) if flip else (src_img, src_mask)
        sel = np.isin(s_mask, classes)
        assert sel.any() and not sel.all()
        assert np.array_equal(out_mask[sel], s_mask[sel]) and np.array_equal(out_img[sel], s_img[sel])
        assert np.array_equal(out_mask[~sel], mask[~sel]) and np.array_equal(out_img[~sel], img[~sel])
    assert np.array_equal(mask, make_scene(1, SIZE)[1]), "the input arrays were modified"
    # a source of another size is resized to the target first (nearest for labels)
    big_img, big_mask = cv2.resize(src_img, (256, 192)), cv2.resize(src_mask, (256, 192), interpolation=cv2.INTER_NEAREST)
    out_img, out_mask = paste_classes(img, mask, big_img, big_mask, classes, False)
    assert out_mask.shape == mask.shape and np.isin(out_mask, classes).mean() > 0.5 * np.isin(src_mask, classes).mean()


class _Pool:
    def __init__(self, pairs):
        self.pairs = pairs

    def read(self, i):
        return self.pairs[i]

    def __len__(self):
        return len(self.pairs)


def test_train_transform_pastes_from_another_frame():
    """paste=1: the other frame's class pixels land in the sample; paste=0 leaves it alone."""
    pairs = [make_scene(1, SIZE), make_scene(2, SIZE)]
    classes = tuple(int(c) for c in np.unique(pairs[1][1]) if c < 11)[:2]
    ident = dict(crop=SIZE, scale=(1.0, 1.0), flip=False, jitter=0.0)  # geometry and colour untouched
    on = TrainTransform(AugmentConfig(**ident, paste=1.0, paste_classes=classes), (0.5,) * 3, (0.25,) * 3, 11, seed=0, pool=_Pool(pairs))
    off = TrainTransform(AugmentConfig(**ident), (0.5,) * 3, (0.25,) * 3, 11, seed=0)
    img, mask = pairs[0]
    assert np.array_equal(off(img, mask, 0)[1], mask)
    got = on(img, mask, 0)[1]
    expected = [paste_classes(img, mask, *pairs[1], classes, flip)[1] for flip in (False, True)]
    assert any(np.array_equal(got, e) for e in expected) and not np.array_equal(got, mask)
    with pytest.raises(ValueError, match="pool"):
        TrainTransform(AugmentConfig(paste=0.5, paste_classes=classes), (0.5,) * 3, (0.25,) * 3, 11)


def test_rare_classes_for_paste(synth):
    ds = load_dataset(synth, "camvid", "train")
    counts = sum(np.bincount(ds.read(i)[1].ravel(), minlength=12)[:11] for i in range(len(ds)))
    share = counts / counts.sum()
    rare = _paste_classes("rare", ds)
    assert rare == tuple(c for c in range(11) if 0 < share[c] < RARE_SHARE)
    assert all(share[c] >= RARE_SHARE or share[c] == 0 for c in range(11) if c not in rare)
    assert _paste_classes("2,9", ds) == (2, 9)
    with pytest.raises(RoadsegError, match="not class indices"):
        _paste_classes("2,40", ds)


# ---------------------------------------------------------------- metric


def _iou_reference(pred, gt, n, ignore):
    """Independent IoU: sets of pixel positions per class."""
    keep = gt != ignore
    out = []
    for c in range(n):
        p = set(np.flatnonzero((pred == c) & keep))
        g = set(np.flatnonzero((gt == c) & keep))
        union = p | g
        out.append(len(p & g) / len(union) if union else np.nan)
    return np.array(out)


def test_metric_matches_independent_implementation():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, (40, 50))
    pred = np.where(rng.random((40, 50)) < 0.7, gt, rng.integers(0, 6, (40, 50)))
    gt[:3] = 5  # ignore index
    pred[pred == 4] = 3  # class 4 is never predicted
    cm = ConfusionMatrix(5, ignore_index=5)
    cm.update(pred[:20], gt[:20])
    cm.update(pred[20:], gt[20:])  # accumulation over a split
    ref = _iou_reference(pred, gt, 5, 5)
    assert np.allclose(cm.iou(), ref, equal_nan=True)
    assert cm.miou() == pytest.approx(np.nanmean(ref))
    keep = gt != 5
    assert cm.pixel_accuracy() == pytest.approx((pred[keep] == gt[keep]).mean())


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_strip(tmp_path):
    model = build("fcn", 11, width=8)
    path = atomic_save(make_checkpoint(model, "fcn", {"width": 8}, _card(), {"val_miou": 0.5}), tmp_path / "a.pt")
    torch.load(path, weights_only=True)  # the contract: plain weights-only file
    loaded, card, ck = load_model(path)
    assert card.classes == list(CAMVID_CLASSES) and ck["metrics"]["val_miou"] == 0.5
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    half = atomic_save(strip(ck), tmp_path / "h.pt")
    assert half.stat().st_size < 0.6 * path.stat().st_size
    with torch.no_grad():
        assert torch.allclose(load_model(half)[0](x), loaded(x), atol=5e-2)


class _Payload:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_checkpoint_refuses_unsafe_and_broken_files(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "model": {}, "card": {}, "x": _Payload(str(sentinel))}, evil)
    with pytest.raises(RoadsegError, match="pickled objects"):
        load_raw(evil)
    assert not sentinel.exists()

    module = tmp_path / "module.pt"
    torch.save(build("fcn", 11, width=8), module)
    with pytest.raises(RoadsegError, match="refused"):
        load_raw(module)

    good = atomic_save(make_checkpoint(build("fcn", 11, width=8), "fcn", {"width": 8}, _card()), tmp_path / "g.pt")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    for bad, msg in ((trunc, "truncated or corrupt"), (empty, "empty"), (junk, "truncated or corrupt")):
        with pytest.raises(RoadsegError, match=msg):
            load_raw(bad)
    with pytest.raises(RoadsegError, match="not found"):
        load_raw(tmp_path / "missing.pt")


def test_checkpoint_key_and_value_errors(tmp_path):
    ck = make_checkpoint(build("fcn", 11, width=8), "fcn", {"width": 8}, _card())
    wrong = dict(ck, model={"name": "fcn", "kwargs": {"width": 16}})
    atomic_save(wrong, tmp_path / "w.pt")
    with pytest.raises(RoadsegError, match="mis-shaped"):
        load_model(tmp_path / "w.pt")
    sd = dict(ck["state_dict"])
    sd.pop(next(iter(sd)))
    atomic_save(dict(ck, state_dict=sd), tmp_path / "m.pt")
    with pytest.raises(RoadsegError, match="missing"):
        load_model(tmp_path / "m.pt")
    sd = dict(ck["state_dict"])
    key = next(k for k, v in sd.items() if v.is_floating_point())
    sd[key] = sd[key].clone().fill_(float("nan"))
    atomic_save(dict(ck, state_dict=sd), tmp_path / "n.pt")
    with pytest.raises(RoadsegError, match="NaN or Inf"):
        load_model(tmp_path / "n.pt")


# ---------------------------------------------------------------- losses


def _labels(rng, shape, num_classes=11, ignore=11):
    return torch.from_numpy(rng.integers(0, num_classes + 1, size=shape)).long()  # ignore included


def test_lovasz_equals_one_minus_miou_on_one_hot_predictions():
    """On one-hot probabilities the Lovász extension is the Jaccard loss itself: the term must be
    1 - mIoU over the classes present in the target, as ConfusionMatrix counts it."""
    rng = np.random.default_rng(0)
    target = _labels(rng, (2, 24, 32))
    target[target == 4] = 3  # class 4 absent from the target: left out of the mean
    pred = target.clone()
    flip = torch.from_numpy(rng.random(target.shape) < 0.3)
    pred[flip] = _labels(rng, target.shape, ignore=10)[flip]  # 30% wrong, in classes 0-10
    pred[pred == 11] = 0
    logits = 100.0 * torch.nn.functional.one_hot(pred, 11).permute(0, 3, 1, 2).float()
    cm = ConfusionMatrix(11, ignore_index=11)
    cm.update(pred.numpy(), target.numpy())
    present = [c for c in range(11) if (target == c).any()]
    expected = 1 - float(np.mean(cm.iou()[present]))
    assert 4 not in present and expected > 0.3
    assert lovasz_softmax(logits, target, 11).item() == pytest.approx(expected, abs=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as in training: still computed in FP32
        in_autocast = lovasz_softmax(logits.bfloat16(), target, 11)
    assert in_autocast.dtype == torch.float32 and in_autocast.item() == pytest.approx(expected, abs=1e-5)


def test_lovasz_ignores_ignored_pixels_and_descends_to_better_iou():
    rng = np.random.default_rng(1)
    target = _labels(rng, (1, 16, 16))
    logits = torch.randn(1, 11, 16, 16, generator=torch.Generator().manual_seed(0))
    before = lovasz_softmax(logits, target, 11)
    changed = logits.clone()
    changed[:, :, target[0] == 11] = 50.0 * torch.randn(11, int((target == 11).sum()))
    assert lovasz_softmax(changed, target, 11).item() == pytest.approx(before.item(), abs=1e-6)
    # gradient descent on the term alone: the hard predictions' mIoU must rise from chance
    x = logits.clone().requires_grad_()
    opt = torch.optim.SGD([x], lr=300.0)  # each pixel's weight is about 1/|union|: small gradients
    for _ in range(60):
        opt.zero_grad()
        loss = lovasz_softmax(x, target, 11)
        loss.backward()
        opt.step()
    cm0, cm1 = ConfusionMatrix(11, ignore_index=11), ConfusionMatrix(11, ignore_index=11)
    cm0.update(logits.argmax(1).numpy(), target.numpy())
    cm1.update(x.argmax(1).detach().numpy(), target.numpy())
    assert loss.item() < before.item() - 0.5 and cm1.miou() > 0.9 > 0.2 > cm0.miou()


def test_seg_loss_adds_the_weighted_lovasz_term_on_a_subgrid():
    rng = np.random.default_rng(2)
    target = _labels(rng, (2, 32, 32))
    main, aux = torch.randn(2, 2, 11, 32, 32, generator=torch.Generator().manual_seed(1)).unbind(0)
    plain = SegLoss(11, None, ohem=True, aux_weight=0.4)((main, aux), target)
    torch.manual_seed(7)
    with_term = SegLoss(11, None, ohem=True, aux_weight=0.4, lovasz=0.5)((main, aux), target)
    torch.manual_seed(7)
    oy, ox = torch.randint(0, 4, (2,)).tolist()
    term = lovasz_softmax(main[:, :, oy::4, ox::4], target[:, oy::4, ox::4], 11)
    assert term.item() > LOVASZ_TOL
    assert with_term.item() == pytest.approx(plain.item() + 0.5 * term.item(), rel=1e-6)


# ---------------------------------------------------------------- learning


def test_tiny_model_learns_synthetic_scenes(synth, tmp_path):
    """A learning test that can fail: 150 steps of a small FCN on 96x128 synthetic scenes must
    reach 0.30 val mIoU and 0.80 pixel accuracy (untrained: about 0.03 and 0.2; this recipe gave
    0.37 and 0.88 here: poles, signs and pedestrians are a few pixels wide at this size)."""
    cfg = TrainConfig(model="fcn", data=str(synth), out=str(tmp_path / "run"), epochs=25, batch=8, crop=(96, 128),
                      scale=(0.75, 1.25), lr=0.1, warmup_iters=20, model_kwargs={"width": 16}, progress=False,
                      val_every=25, seed=1)  # fmt: skip
    best = train(cfg)
    ck = load_raw(best)
    assert ck["metrics"]["val_miou"] >= 0.30, ck["metrics"]
    assert ck["metrics"]["val_pixel_accuracy"] >= 0.80, ck["metrics"]
    assert ck["card"]["input_size"] == [96, 128]
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") == 25


def test_seeded_training_is_reproducible_and_resumes(synth, tmp_path, capsys):
    # pinned to the CPU: bit-for-bit reproducibility is what is tested (CUDA kernels may not be deterministic)
    common = dict(model="fcn", data=str(synth), batch=8, crop=(96, 128), model_kwargs={"width": 8}, progress=False, seed=5,
                  device="cpu")  # fmt: skip
    a = train(TrainConfig(out=str(tmp_path / "a"), epochs=2, **common))
    b = train(TrainConfig(out=str(tmp_path / "b"), epochs=2, stop_after=1, **common))
    capsys.readouterr()
    b = train(TrainConfig(out=str(tmp_path / "b"), epochs=2, resume=True, workers=1, **common))
    assert "changes the run's settings" not in capsys.readouterr().out  # the same run (workers change nothing)
    sa = load_raw(tmp_path / "a" / "last.pt")["state_dict"]
    sb = load_raw(tmp_path / "b" / "last.pt")["state_dict"]
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-5) for k in sa)
    assert a.exists() and b.exists()
    # a loader worker augments each epoch anew, exactly as the main process does: the same weights
    train(TrainConfig(out=str(tmp_path / "w"), epochs=2, workers=1, **common))
    sw = load_raw(tmp_path / "w" / "last.pt")["state_dict"]
    assert all(torch.allclose(sa[k].float(), sw[k].float(), atol=1e-5) for k in sa)
    # every setting comes from the command line: a resume that changes one says so, and --init is unused
    train(TrainConfig(out=str(tmp_path / "b"), epochs=3, resume=True, lr=0.02, init=str(a), **common))
    out = capsys.readouterr().out
    assert "--resume: this command changes the run's settings (epochs 2 -> 3; lr 0.01 -> 0.02)" in out
    assert f"--init {a} is not used" in out


def test_ema_is_what_is_saved_and_resumes_exactly(synth, tmp_path):
    """--ema: the saved weights are the moving average (not the raw weights, which resume from
    train_state), and a stopped-and-resumed EMA run ends bit-identical to an uninterrupted one."""
    common = dict(model="fcn", data=str(synth), batch=8, crop=(96, 128), model_kwargs={"width": 8}, progress=False, seed=5, ema=0.9,
                  device="cpu")  # fmt: skip
    train(TrainConfig(out=str(tmp_path / "a"), epochs=2, **common))
    train(TrainConfig(out=str(tmp_path / "b"), epochs=2, stop_after=1, **common))
    train(TrainConfig(out=str(tmp_path / "b"), epochs=2, resume=True, **common))
    ca, cb = load_raw(tmp_path / "a" / "last.pt"), load_raw(tmp_path / "b" / "last.pt")
    for k, v in ca["state_dict"].items():
        assert torch.allclose(v.float(), cb["state_dict"][k].float(), atol=1e-5), k
    raw, avg = ca["train_state"]["model"], ca["state_dict"]
    w = "head.weight" if "head.weight" in raw else next(k for k in raw if raw[k].is_floating_point() and raw[k].ndim == 4)
    assert not torch.allclose(raw[w], avg[w]), "EMA weights equal the raw weights"
    train(TrainConfig(out=str(tmp_path / "c"), epochs=2, **{**common, "ema": None}))
    plain = load_raw(tmp_path / "c" / "last.pt")
    assert torch.allclose(plain["state_dict"][w], raw[w], atol=1e-5), "--ema changed the training trajectory"


def _fake_gpus(monkeypatch, count: int) -> None:
    """Stand-ins for a CUDA machine with `count` GPUs (current device 0)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_cuda_device_specs_resolve_to_one_gpu_index(monkeypatch):
    """--device auto, cuda and cuda:N all name one GPU by index, as torch.cuda.set_device and NCCL
    need (a bare 'cuda' made set_device raise, so --device cuda never trained); under torchrun each
    rank takes cuda:LOCAL_RANK."""
    from torch.cuda._utils import _get_device_index  # what torch.cuda.set_device does with its argument

    _fake_gpus(monkeypatch, 2)
    got = {spec: trainer.resolve_device(spec) for spec in ("auto", "cuda", "cuda:0", "cuda:1", "cpu")}
    assert got == {"auto": "cuda:0", "cuda": "cuda:0", "cuda:0": "cuda:0", "cuda:1": "cuda:1", "cpu": "cpu"}
    for dev in got.values():
        if dev != "cpu":
            assert _get_device_index(dev, optional=False) == int(dev[-1])
    assert [trainer.resolve_device(s, local_rank=r, world=2) for s in ("auto", "cuda") for r in (0, 1)] == [
        "cuda:0", "cuda:1", "cuda:0", "cuda:1"]  # fmt: skip
    with pytest.raises(RoadsegError, match=r"there are 2 CUDA device\(s\) here"):
        trainer.resolve_device("cuda:2")
    with pytest.raises(RoadsegError, match="LOCAL_RANK; use --device cuda"):
        trainer.resolve_device("cuda:0", local_rank=1, world=2)  # every rank on one GPU: NCCL refuses
    with pytest.raises(RoadsegError, match=r"--nproc_per_node 2"):
        trainer.resolve_device("auto", local_rank=2, world=3)
    _fake_gpus(monkeypatch, 0)
    assert trainer.resolve_device("auto") == "cpu"
    with pytest.raises(RoadsegError, match="no CUDA device"):
        trainer.resolve_device("cuda")


def test_training_binds_the_resolved_gpu(synth, tmp_path, monkeypatch):
    """train() hands torch.cuda.set_device an indexed device (checked as the real one checks it),
    before anything else touches the GPU; the fake stops the run there."""
    from torch.cuda._utils import _get_device_index

    _fake_gpus(monkeypatch, 1)
    bound = []

    def set_device(dev):
        bound.append(_get_device_index(dev, optional=False))  # raises on a bare "cuda", as set_device did
        raise RuntimeError("stop: no real GPU here")

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    for spec in ("cuda", "auto", "cuda:0"):
        with pytest.raises(RuntimeError, match="no real GPU"):
            train(TrainConfig(model="fcn", data=str(synth), out=str(tmp_path / "g"), epochs=1, device=spec, progress=False))
    assert bound == [0, 0, 0]


def _native_bf16(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


@pytest.mark.parametrize("native", [True, False])
def test_amp_dtype_per_device(monkeypatch, native):
    """bf16 autocast on CPU only where the CPU has native bf16 (emulated bf16 is slower than FP32);
    float16 on CUDA; --no-amp always FP32."""
    _native_bf16(monkeypatch, native)
    assert _amp_dtype("cpu", True) == (torch.bfloat16 if native else None)
    assert _amp_dtype("cpu", False) is None
    assert _amp_dtype("cuda:0", True) is torch.float16
    assert _amp_dtype("cuda", False) is None


def test_cpu_bf16_training_runs_convs_in_bf16_and_learns_like_fp32(synth, tmp_path, monkeypatch, capsys):
    """With mixed precision on a bf16 CPU the convolutions really run in bfloat16 (seen by a hook),
    the loss stays FP32 and the run learns as FP32 does; --no-amp keeps every conv in FP32."""
    _native_bf16(monkeypatch, True)
    seen: dict[bool, set] = {True: set(), False: set()}
    amp = [True]

    def spying_build(*args, **kwargs):
        model = build(*args, **kwargs)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda m, i, o: seen[amp[0]].add(o.dtype) if m.training else None)
        return model

    monkeypatch.setattr(trainer, "build", spying_build)
    common = dict(model="fcn", data=str(synth), batch=8, crop=(96, 128), model_kwargs={"width": 8}, progress=False,
                  seed=5, epochs=3, val_every=3, device="cpu")  # fmt: skip
    losses = {}
    for on in (True, False):
        amp[0] = on
        best = train(TrainConfig(out=str(tmp_path / str(on)), amp=on, **common))
        log = (tmp_path / str(on) / "log.jsonl").read_text().splitlines()
        losses[on] = [json.loads(line)["loss"] for line in log]
        assert load_raw(best)["metrics"]["val_miou"] > 0.05
    assert seen == {True: {torch.bfloat16}, False: {torch.float32}}
    assert "mixed precision: bfloat16 autocast on cpu" in capsys.readouterr().out
    assert losses[True][-1] < losses[True][0]  # it learns
    assert losses[True][-1] == pytest.approx(losses[False][-1], rel=0.1), losses


def test_init_fine_tunes_from_a_checkpoint(synth, tmp_path):
    """--init loads another run's weights (fresh optimizer, step 0); wrong model or classes: one clear error."""
    common = dict(data=str(synth), batch=8, crop=(96, 128), model_kwargs={"width": 8}, progress=False, seed=5)
    first = train(TrainConfig(model="fcn", out=str(tmp_path / "a"), epochs=1, val_split="none", **common))
    # zero epochs of change: a fine-tune at lr ~0 must start from (and keep) the first run's weights
    tuned = train(TrainConfig(model="fcn", out=str(tmp_path / "b"), epochs=1, lr=1e-12, val_split="none", init=str(first), **common))
    a, b = load_raw(first), load_raw(tuned)
    conv = next(k for k, v in a["state_dict"].items() if v.ndim == 4)
    assert torch.allclose(a["state_dict"][conv], b["state_dict"][conv], atol=1e-6)
    assert b["train_state"]["step"] == a["train_state"]["step"]  # one epoch each, counted from 0
    with pytest.raises(RoadsegError, match="--init checkpoint is a 'fcn'"):
        train(TrainConfig(model="unet", out=str(tmp_path / "c"), epochs=1, val_split="none", init=str(first), **{**common, "model_kwargs": {}}))
    with pytest.raises(RoadsegError, match="do not fit"):
        train(TrainConfig(model="fcn", out=str(tmp_path / "d"), epochs=1, val_split="none", init=str(first),
                          **{**common, "model_kwargs": {"width": 16}}))  # fmt: skip
    other = a | {"card": a["card"] | {"classes": ["Road", *a["card"]["classes"][1:]]}}  # same count, other names
    atomic_save(other, tmp_path / "other.pt")
    with pytest.raises(RoadsegError, match="other.pt: --init checkpoint predicts .* classes \\(Road, .*the same classes in the same order"):
        train(TrainConfig(model="fcn", out=str(tmp_path / "e"), epochs=1, val_split="none", init=str(tmp_path / "other.pt"), **common))


def test_a_run_keeps_earlier_runs_and_its_init(synth, tmp_path):
    """A fresh run into a folder that holds a run used to delete its log at once and overwrite its
    checkpoints; `--init OUT/best.pt --out OUT` overwrote the checkpoint it started from."""
    common = dict(model="fcn", data=str(synth), batch=8, crop=(96, 128), model_kwargs={"width": 4}, progress=False,
                  seed=5, epochs=1, val_split="none")  # fmt: skip
    first = train(TrainConfig(out=str(tmp_path / "a"), **common))
    saved = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    with pytest.raises(RoadsegError, match=r"--out .*a: holds an earlier run \(last.pt\); add --resume .* --overwrite"):
        train(TrainConfig(out=str(tmp_path / "a"), **common))
    with pytest.raises(UsageError, match=r"--init .*last.pt: is in --out .*which this run overwrites"):
        train(TrainConfig(out=str(tmp_path / "a"), init=str(first), overwrite=True, **common))
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == saved  # untouched, log included
    again = train(TrainConfig(out=str(tmp_path / "a"), overwrite=True, **{**common, "seed": 6}))
    assert again.read_bytes() != saved[again.name]  # --overwrite: the new run replaced it
    (tmp_path / "file").write_text("x")
    with pytest.raises(RoadsegError, match="--out .*file: is a file; give a folder"):
        train(TrainConfig(out=str(tmp_path / "file"), **common))


def test_init_grows_a_model_with_new_blocks(synth, tmp_path, capsys):
    """--init into a ddrnet23s with `detail`: the shared weights load, the new block starts fresh
    (and is named); weights the target has no place for are still refused."""
    tiny = {"planes": 8, "highres": 16, "spp": 16, "head": 16}
    common = dict(data=str(synth), batch=8, crop=(96, 128), progress=False, seed=5, val_split="none", epochs=1)
    plain = train(TrainConfig(model="ddrnet23s", out=str(tmp_path / "a"), model_kwargs=tiny, **common))
    grown = train(TrainConfig(model="ddrnet23s", out=str(tmp_path / "b"), lr=1e-12, init=str(plain),
                              model_kwargs={**tiny, "detail": True}, **common))  # fmt: skip
    assert "start fresh (detail)" in capsys.readouterr().out
    a, b = load_raw(plain)["state_dict"], load_raw(grown)["state_dict"]
    assert torch.allclose(a["stem.0.0.weight"], b["stem.0.0.weight"], atol=1e-6)
    assert "detail.out.weight" in b and "detail.out.weight" not in a
    with pytest.raises(RoadsegError, match="unexpected"):
        train(TrainConfig(model="ddrnet23s", out=str(tmp_path / "c"), init=str(grown), model_kwargs=tiny, **common))


def test_release_never_overwrites_its_source_and_checks_data_first(synth, tmp_path, capsys):
    """The recipe's last step: `release a.pt a.pt` used to replace the training checkpoint, and a
    wrong --data failed (with a traceback) after the release had already replaced `dst`."""
    from roadseg.train import release
    from roadseg.train.evaluate import evaluate

    ck = train(TrainConfig(model="fcn", data=str(synth), out=str(tmp_path / "r"), epochs=1, batch=8, crop=(96, 128),
                           model_kwargs={"width": 4}, progress=False, seed=5))  # fmt: skip
    before = ck.read_bytes()
    dst = tmp_path / "rel.pt"
    dst.write_bytes(b"an earlier release")
    assert release.main([str(ck), str(ck), "--license", "x"]) == 1
    assert "is the training checkpoint" in capsys.readouterr().err and ck.read_bytes() == before
    assert release.main([str(ck), str(dst), "--license", "x", "--data", str(tmp_path / "nodata")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nodata: dataset folder not found" in err[0]
    assert dst.read_bytes() == b"an earlier release"
    assert release.main([str(ck), str(dst), "--license", "CamVid: cite", "--data", str(synth)]) == 0
    rel = load_raw(dst)
    assert rel["card"]["license"] == "CamVid: cite" and "train_state" not in rel
    model, card, _ = load_model(dst)  # the stored metrics are those of the released (FP16-stored) weights
    assert rel["card"]["metrics"]["val_miou"] == pytest.approx(evaluate(model, load_dataset(synth, "camvid", "val"), card).miou(), abs=1e-5)
    assert len(rel["metrics"]["val_iou"]) == len(rel["card"]["classes"])


# ---------------------------------------------------------------- CLI contract


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "roadseg", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_usage_and_user_errors(tmp_path):
    r = _cli("train", "--model", "fcn", "--data", "x", "--crop", "100", "128")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "multiple of 32" in r.stderr
    r = _cli("eval", str(tmp_path / "nope.pt"), "--data", str(tmp_path))
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "nope.pt" in r.stderr and "Traceback" not in r.stderr
    r = _cli("train", "--model", "nope", "--data", str(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = _cli("train", "--model", "fcn", "--data", "x", "--ema", "1.5")
    assert r.returncode == 2 and "between 0 and 1" in r.stderr
    r = _cli("train", "--model", "fcn", "--data", "x", "--paste", "1.5")
    assert r.returncode == 2 and "between 0 and 1" in r.stderr
    for flag, value, words in (("--workers", "-1", "must be >= 0"), ("--lr", "-1", "must be > 0"), ("--lovasz", "-1", "must be >= 0")):
        r = _cli("train", "--model", "fcn", "--data", "x", flag, value)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _cli("eval", str(tmp_path / "nope.pt"), "--data", str(tmp_path), "--device", "gpu")
    assert r.returncode == 1 and "--device 'gpu': use auto, cpu, cuda or cuda:N" in r.stderr and "Traceback" not in r.stderr


def test_cli_models_lists_zoo():
    r = _cli("models", "--imgsz", "64", "96")
    assert r.returncode == 0
    for name in ("ddrnet23s", "fastscnn", "fcn", "unet", "danet-lite"):
        assert name in r.stdout


@pytest.mark.slow
def test_ddp_two_processes_gloo(synth, tmp_path):
    """torchrun with two CPU processes (gloo); pinned to the CPU, so it runs the same on a GPU machine."""
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531", "-m", "roadseg",
         "train", "--model", "fcn", "--model-kwargs", '{"width": 8}', "--data", str(synth), "--epochs", "1", "--batch", "4",
         "--crop", "96", "128", "--quiet", "--device", "cpu", "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    # 48 samples / 2 ranks / batch 4 = 6 steps per rank per epoch
    ck = load_raw(tmp_path / "ddp" / "last.pt")
    assert ck["train_state"]["step"] == 6
    assert r.stdout.count("epoch 1 ") == 1  # only rank 0 logs



def _drives_dataset(root: Path) -> Path:
    """A CamVid-layout folder whose frames are named after three drives, as CamVid's are."""
    for split, names in {"train": ["0001TP_000010", "0001TP_000040", "0006R0_f00930", "0016E5_00390"],
                         "val": ["0016E5_07959", "0016E5_07961"]}.items():  # fmt: skip
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for i, name in enumerate(names):
            frame, mask = make_scene(i, SIZE)
            cv2.imwrite(str(root / split / f"{name}.png"), frame)
            cv2.imwrite(str(root / f"{split}annot" / f"{name}.png"), mask)
            lines.append(f"{split}/{name}.png {split}annot/{name}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_splits_join_and_select_drives(tmp_path):
    root = _drives_dataset(tmp_path / "camvid")

    def stems(split):
        return [s.image.stem for s in load_dataset(root, "camvid", split).samples]

    assert stems("train+val") == stems("train") + stems("val") and len(stems("train+val+train")) == 6  # no repeats
    assert stems("train+val[0016E5]") == ["0016E5_00390", "0016E5_07959", "0016E5_07961"]
    assert stems("train+val[^0016E5]") == ["0001TP_000010", "0001TP_000040", "0006R0_f00930"]
    assert stems("train[0001TP,0006R0]") == stems("train+val[^0016E5]")
    with pytest.raises(RoadsegError, match=r"no frames of drive Seq05VD in train\+val; its drives are 0001TP, 0006R0, 0016E5"):
        load_dataset(root, "camvid", "train+val[Seq05VD]")
    with pytest.raises(RoadsegError, match="leaves no frames"):
        load_dataset(root, "camvid", "val[^0016E5]")


def test_holdout_drive_trains_on_the_other_drives_and_records_the_split(tmp_path):
    root = _drives_dataset(tmp_path / "camvid")
    best = train(TrainConfig(model="fcn", data=str(root), out=str(tmp_path / "run"), epochs=1, batch=2, crop=(96, 128),
                             holdout_drive="0006R0", progress=False, seed=1))  # fmt: skip
    config = load_raw(Path(best).parent / "last.pt")["train_state"]["config"]  # what --resume compares
    assert config["train_split"] == "train+val[^0006R0]" and config["val_split"] == "train+val[0006R0]"
    with pytest.raises(UsageError, match="--holdout-drive validates on the held-out drive"):
        train(TrainConfig(model="fcn", data=str(root), out=str(tmp_path / "x"), epochs=1, batch=2, crop=(96, 128),
                          holdout_drive="0006R0", val_split="none", progress=False))  # fmt: skip


# ---------------------------------------------------------------- rare-class sampling


def test_frame_weights_favour_the_frames_rich_in_rare_classes():
    from roadseg.train.sampling import frame_weights

    # 3 classes over 4 frames: class 2 is rare (6% of pixels), most of it in frame 3
    pixels = np.array([[500, 500, 0], [500, 480, 20], [600, 400, 0], [400, 520, 80]])
    w = frame_weights(pixels, 0.1)
    assert w.sum() == pytest.approx(1.0) and w.argmax() == 3 and w[3] > w[1] > max(w[0], w[2])
    hot, cool = frame_weights(pixels, 0.02), frame_weights(pixels, 100.0)
    assert hot[3] > w[3] > cool[3]  # a lower temperature draws the rare class's frames more
    np.testing.assert_allclose(cool, (pixels / pixels.sum(0)).mean(1), rtol=0.02)  # high T: every class alike
    np.testing.assert_allclose(frame_weights(np.zeros((3, 2), np.int64), 0.1), 1 / 3)  # nothing labelled: uniform
    # the expected pixel share of the rare class rises under sampling
    share = pixels[:, 2].sum() / pixels.sum()
    assert (w @ pixels)[2] / (w @ pixels).sum() > 1.5 * share


def test_balanced_sampler_is_seeded_per_epoch_and_splits_one_draw_across_ranks():
    from roadseg.train.sampling import BalancedSampler

    w = np.array([0.1, 0.1, 0.1, 0.7])
    s = BalancedSampler(w, seed=3)
    first = list(s)
    assert len(first) == len(s) == 4 and list(s) == first
    s.set_epoch(1)
    many = [i for e in range(200) for i in (s.set_epoch(e), list(s))[1]]
    assert abs(many.count(3) / len(many) - 0.7) < 0.05  # drawn by weight, with replacement
    ranks = [BalancedSampler(w, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    assert [len(r) for r in ranks] == [2, 2]
    assert sorted(list(ranks[0]) + list(ranks[1])) == sorted(first)  # one draw, shared out


def test_train_with_rare_class_sampling_and_stronger_jitter(synth, tmp_path, capsys):
    cfg = TrainConfig(model="fcn", data=str(synth), out=str(tmp_path / "run"), epochs=1, batch=8, crop=(96, 128),
                      model_kwargs={"width": 8}, progress=False, seed=2, balance=0.1, jitter=0.5, hue=0.1)  # fmt: skip
    train(cfg)
    assert "rare-class sampling (T=0.1)" in capsys.readouterr().out
    config = load_raw(tmp_path / "run" / "last.pt")["train_state"]["config"]
    assert (config["balance"], config["jitter"], config["hue"]) == (0.1, 0.5, 0.1)
    assert load_raw(tmp_path / "run" / "last.pt")["train_state"]["step"] == 48 // 8


def test_time_limit_stops_between_epochs_and_resumes(synth, tmp_path, capsys):
    """--time-limit never cuts an epoch: the first always runs, and a limit any epoch passes stops
    the run after it, resumable; one no epoch can pass changes nothing."""
    common = dict(model="fcn", data=str(synth), out=str(tmp_path / "run"), epochs=3, batch=8, crop=(96, 128),
                  model_kwargs={"width": 8}, progress=False, seed=4)  # fmt: skip
    train(TrainConfig(time_limit=1e-9, **common))
    assert "--time-limit 1e-09 s: stopping after epoch 1/3" in capsys.readouterr().out
    assert load_raw(tmp_path / "run" / "last.pt")["train_state"]["epoch"] == 0
    train(TrainConfig(time_limit=1e9, resume=True, **common))
    out = capsys.readouterr().out
    assert "changes the run's settings" not in out and "stopping" not in out
    assert load_raw(tmp_path / "run" / "last.pt")["train_state"]["epoch"] == 2


def test_eval_by_drive_splits_the_split_into_its_drives(tiny_checkpoint, tmp_path, capsys):
    import json

    from roadseg.cli import main
    from roadseg.train.evaluate import evaluate_groups

    root = _drives_dataset(tmp_path / "camvid")
    model, card, _ = load_model(str(tiny_checkpoint))
    ds = load_dataset(root, "camvid", "train+val")
    total, drives = evaluate_groups(model, ds, card, lambda i: ds.samples[i].image.stem.split("_")[0], progress=False)
    assert sorted(drives) == ["0001TP", "0006R0", "0016E5"]
    assert np.array_equal(sum(g.mat for g in drives.values()), total.mat)  # one pass, the drives add up to the split
    assert main(["eval", str(tiny_checkpoint), "--data", str(root), "--split", "train+val", "--by-drive",
                 "--json", str(tmp_path / "m.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("0001TP", "0006R0", "0016E5"))}
    assert {d: int(r[1]) for d, r in rows.items()} == {"0001TP": 2, "0006R0": 1, "0016E5": 3}
    assert float(rows["0016E5"][2]) == pytest.approx(drives["0016E5"].miou(), abs=1e-4)
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["miou"] == pytest.approx(total.miou()) and doc["by_drive"]["0006R0"]["frames"] == 1
