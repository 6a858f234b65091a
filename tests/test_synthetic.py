"""The synthetic scene generator: deterministic, exact-label driving frames for tests and the demo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadseg.core.card import CAMVID_CLASSES
from roadseg.core.errors import UsageError
from roadseg.runtime.synthetic import PAVEMENT, ROAD, SKY, SyntheticClip, make_dataset, make_scene

SMALL = (120, 160)


def test_scene_shapes_dtypes_and_values():
    for size in ((360, 480), SMALL):
        frame, mask = make_scene(0, size)
        assert frame.shape == (*size, 3) and frame.dtype == np.uint8
        assert mask.shape == size and mask.dtype == np.uint8
        assert int(mask.max()) < len(CAMVID_CLASSES)


def test_scene_is_deterministic_per_seed():
    a, b, c = make_scene(3), make_scene(3), make_scene(4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


def test_typical_scenes_show_most_classes():
    seen = set()
    for seed in range(4):
        classes = set(np.unique(make_scene(seed)[1]).tolist())
        assert len(classes) >= 8, f"seed {seed}: only {sorted(CAMVID_CLASSES[c] for c in classes)}"
        seen |= classes
    assert len(seen) >= 10


def test_road_below_sky_above():
    for seed in range(8):
        _, mask = make_scene(seed, SMALL)
        h, w = mask.shape
        assert mask[-1, w // 2] == ROAD and mask[0, w // 2] == SKY
        assert np.mean(mask[-h // 6 :, w // 3 : 2 * w // 3] == ROAD) > 0.9
        assert PAVEMENT in mask


def test_clip_moves_and_random_access_matches_iteration():
    clip = SyntheticClip(num_frames=10, size=SMALL, seed=1, fps=10.0)
    assert len(clip) == 10 and clip.size == SMALL and clip.fps == 10.0
    frames = list(clip)
    assert len(frames) == 10
    for i in (0, 4, 9):
        frame, mask = clip[i]
        assert np.array_equal(frame, frames[i][0]) and np.array_equal(mask, frames[i][1])
    assert np.array_equal(clip[-1][1], frames[9][1])
    assert not np.array_equal(frames[0][1], frames[9][1])
    assert not np.array_equal(frames[0][1], frames[1][1])  # the camera moves every frame
    again = SyntheticClip(num_frames=10, size=SMALL, seed=1, fps=10.0)
    assert np.array_equal(again[5][0], frames[5][0])
    with pytest.raises(IndexError):
        clip[10]


def test_bad_arguments_are_usage_errors():
    with pytest.raises(UsageError):
        SyntheticClip(num_frames=0)
    with pytest.raises(UsageError):
        make_scene(0, (4, 4))


def test_make_dataset_writes_camvid_layout(tmp_path: Path):
    root = make_dataset(tmp_path / "camvid", n_train=3, n_val=2, size=(64, 96), seed=5)
    for split, count in (("train", 3), ("val", 2)):
        lines = (root / f"{split}.txt").read_text().splitlines()
        assert len(lines) == count
        for line in lines:
            image_rel, mask_rel = line.split()
            assert image_rel.startswith(f"{split}/") and mask_rel.startswith(f"{split}annot/")
            image = cv2.imread(str(root / image_rel), cv2.IMREAD_UNCHANGED)
            mask = cv2.imread(str(root / mask_rel), cv2.IMREAD_UNCHANGED)
            assert image.shape == (64, 96, 3) and image.dtype == np.uint8
            assert mask.shape == (64, 96) and mask.dtype == np.uint8 and int(mask.max()) <= 10
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(Path(ln.split()[0]).name for ln in lines)
    train = cv2.imread(str(root / "train" / "synth_00000.png"))
    val = cv2.imread(str(root / "val" / "synth_00000.png"))
    assert not np.array_equal(train, val)


def test_synthetic_does_not_import_torch():
    code = "import sys, roadseg.runtime.synthetic; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_synthetic_source_draws_a_small_clip_once_and_reads_copies(monkeypatch):
    """A clip that fits PRERENDER_BYTES is drawn when the source opens, so reading a frame costs a
    copy (not a render); what is read equals a fresh render of the same index, and a consumer that
    writes into a frame does not change the clip. A clip too big for the budget is drawn per frame."""
    from roadseg.runtime import readers
    from roadseg.runtime.sources import open_source

    calls = []
    real = SyntheticClip.__getitem__
    monkeypatch.setattr(SyntheticClip, "__getitem__", lambda self, i: calls.append(i) or real(self, i))
    src = open_source("synthetic:6", size=(48, 64))
    drawn_at_open = len(calls)
    frames = [f.image for f in src]
    assert drawn_at_open == 6 and len(calls) == 6  # reading drew nothing more
    fresh = SyntheticClip(6, (48, 64))
    assert all(np.array_equal(f, real(fresh, i)[0]) for i, f in enumerate(frames))
    reader = readers.SyntheticReader(4, (48, 64), 0, 30.0)
    first = reader.read()[0]
    first[:] = 0  # the consumer's copy
    reader.i = 0
    assert reader.read()[0].any()
    calls.clear()
    monkeypatch.setattr(readers, "PRERENDER_BYTES", 48 * 64 * 3 * 3)  # three frames' worth: a 6-frame loop is too big
    # Asked of the reader, not the source: the source's capture thread starts reading at open.
    readers.SyntheticReader(6, (48, 64), 0, 30.0)
    readers.SyntheticReader(readers.PRERENDER_FRAMES + 1, (48, 64), 0, 30.0)  # small frames, but too many
    assert calls == []  # neither is drawn at open
    big = open_source("synthetic:6", size=(48, 64))
    assert len(list(big)) == 6 and calls == list(range(6))
    calls.clear()
    long = open_source(f"synthetic:{readers.PRERENDER_FRAMES + 1}", size=(48, 64))
    assert long.read(10) is not None  # drawn as read (a few ahead)
    long.close()
    assert calls == list(range(len(calls))) and 1 <= len(calls) < readers.PRERENDER_FRAMES
