"""Readers for the three dataset layouts. Each only finds the file pairs and the class metadata;
`SegDataset` does the reading and validation.

- camvid: `<root>/{split}.txt` lists "image label" pairs relative to root (the SegNet split).
- cityscapes: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` + `gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`.
- folder: `<root>/<split>/images/*` + `<root>/<split>/masks/<stem>.png` + `<root>/classes.txt`
  (one class per line: `name` or `name R G B`), optional `ignore: N` line (default 255).

A split may join several (`train+val`) and keep or drop drives: `train+val[0006R0]` is the frames
of drive 0006R0 in train and val, `train+val[^0006R0]` all the others. A frame's drive is its
file name up to the first `_` (CamVid's sequence, 0001TP_006690.png; a Cityscapes city). CamVid's
val frames all come from a drive that is also in train, so selecting models on val flatters them;
a drive held out of training is the honest check (`roadseg train --holdout-drive`).
"""

from __future__ import annotations

import colorsys
import re
from pathlib import Path

from roadseg.core.card import CAMVID_CLASSES, CAMVID_IGNORE, CAMVID_PALETTE
from roadseg.core.errors import RoadsegError
from roadseg.core.images import IMAGE_EXTS

from .base import DatasetInfo, Sample, SegDataset

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip
CITYSCAPES_PALETTE = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
    [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
]  # fmt: skip


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise RoadsegError(f"{path}: {what} not found; check --data and --dataset")


def camvid_samples(root: Path, split: str) -> tuple[DatasetInfo, list[Sample]]:
    lst = root / f"{split}.txt"
    if not lst.is_file():
        raise RoadsegError(f"{lst}: CamVid list file not found; --data must be the CamVid folder holding {split}.txt")
    samples = []
    for n, line in enumerate(lst.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise RoadsegError(f"{lst}:{n}: expected 'image label', got {line!r}")
        samples.append(Sample(root / parts[0], root / parts[1]))
    return DatasetInfo("camvid", list(CAMVID_CLASSES), [list(c) for c in CAMVID_PALETTE], CAMVID_IGNORE), samples


def cityscapes_samples(root: Path, split: str) -> tuple[DatasetInfo, list[Sample]]:
    img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    _require_dir(img_dir, "Cityscapes image folder")
    _require_dir(gt_dir, "Cityscapes gtFine folder")
    samples = []
    for img in sorted(img_dir.glob("*/*_leftImg8bit.png")):
        stem = img.name[: -len("_leftImg8bit.png")]
        samples.append(Sample(img, gt_dir / img.parent.name / f"{stem}_gtFine_labelTrainIds.png"))
    info = DatasetInfo("cityscapes", list(CITYSCAPES_CLASSES), [list(c) for c in CITYSCAPES_PALETTE], 255)
    return info, samples


def _read_classes(path: Path) -> tuple[list[str], list[list[int]], int]:
    if not path.is_file():
        raise RoadsegError(f"{path}: class file not found; write one class name per line (optionally 'name R G B')")
    names, palette, ignore = [], [], 255
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("ignore:"):
            value = line.split(":", 1)[1].strip()
            if not value.isdigit() or int(value) > 255:
                raise RoadsegError(f"{path}: line '{line}': the ignore label must be an integer 0-255, e.g. 'ignore: 255'")
            ignore = int(value)
            continue
        parts = line.rsplit(maxsplit=3)
        if len(parts) == 4 and all(p.isdigit() for p in parts[1:]):
            names.append(parts[0])
            palette.append([int(p) for p in parts[1:]])
        else:
            names.append(line)
            # a deterministic distinct colour per class when none is given
            h = (len(names) * 47) % 180
            r, g, b = colorsys.hsv_to_rgb(h / 180.0, 0.8, 0.9)
            palette.append([int(r * 255), int(g * 255), int(b * 255)])
    if not names:
        raise RoadsegError(f"{path}: no classes listed; write one class name per line")
    return names, palette, ignore


def folder_samples(root: Path, split: str) -> tuple[DatasetInfo, list[Sample]]:
    names, palette, ignore = _read_classes(root / "classes.txt")
    img_dir, mask_dir = root / split / "images", root / split / "masks"
    _require_dir(img_dir, f"'{split}/images' folder")
    _require_dir(mask_dir, f"'{split}/masks' folder")
    samples = [
        Sample(p, mask_dir / f"{p.stem}.png") for p in sorted(img_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTS
    ]
    return DatasetInfo(root.name, names, palette, ignore), samples


LAYOUTS = {"camvid": camvid_samples, "cityscapes": cityscapes_samples, "folder": folder_samples}


def drive_of(sample: Sample) -> str:
    """The drive (sequence) a frame comes from: its file name up to the first `_`."""
    return sample.image.stem.split("_")[0]


def _split_samples(root: Path, layout: str, split: str) -> tuple[DatasetInfo, list[Sample]]:
    """`a+b[DRIVES]` / `a+b[^DRIVES]` -> the samples of the joined splits, kept or dropped by drive."""
    m = re.fullmatch(r"([^\[\]]+?)(?:\[(\^?)([^\[\]]+)\])?", split.strip())
    if m is None:
        raise RoadsegError(f"split '{split}': write NAME, NAME+NAME, or NAME[DRIVE,...] / NAME[^DRIVE,...]")
    info, samples, seen = None, [], set()
    for name in m.group(1).split("+"):
        info, got = LAYOUTS[layout](root, name.strip())
        samples += [x for x in got if x.image not in seen and not seen.add(x.image)]  # type: ignore[func-returns-value]
    assert info is not None
    if m.group(3):
        drives = {d.strip() for d in m.group(3).split(",") if d.strip()}
        found = sorted({drive_of(x) for x in samples})
        unknown = sorted(drives - set(found))
        if unknown:
            raise RoadsegError(f"split '{split}': no frames of drive {', '.join(unknown)} in {m.group(1)}; "
                               f"its drives are {', '.join(found)}")  # fmt: skip
        keep = m.group(2) != "^"
        samples = [x for x in samples if (drive_of(x) in drives) == keep]
        if not samples:
            raise RoadsegError(f"split '{split}': leaves no frames (its drives are {', '.join(found)})")
    return info, samples


def load_dataset(root: str | Path, layout: str, split: str, **kwargs) -> SegDataset:
    """Open `split` of the dataset at `root` in the given layout (camvid, cityscapes, folder); the
    split may join several and select drives (see the module's docstring)."""
    root = Path(root).expanduser()
    if layout not in LAYOUTS:
        raise RoadsegError(f"unknown dataset layout '{layout}'; choose one of {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise RoadsegError(f"{root}: dataset folder not found; pass the dataset root with --data")
    info, samples = _split_samples(root, layout, split)
    return SegDataset(info, samples, split, root, **kwargs)
