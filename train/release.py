"""Make a release checkpoint from a training checkpoint: no optimizer state, FP16-stored weights
(half the size; loading casts back to FP32), the data licence in the card and, with --data, the
val metrics of the released weights themselves (not of the FP32 training copy).

    python -m roadseg.train.release runs/ddrnet/last.pt train/weights/ddrnet23s_camvid.pt \\
        --license "CamVid: research use; cite Brostow et al. 2009" --data data/camvid
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError, UsageError

from .checkpoint import atomic_save, load_model, load_raw, resolve, strip


def release(src: str, dst: str, license_note: str, data: str | None = None, dataset: str = "camvid",
            split: str = "val") -> dict:  # fmt: skip
    """Write the release of `src` to `dst` once, complete (an earlier file at `dst` stays until
    then); `src` is never overwritten.

    Args:
        src: a training checkpoint; dst: the release's path; license_note: the data licence for the
        card; data, dataset, split: where to score the released weights (optional).
    Returns:
        The released checkpoint's metrics: the training ones, with `data` those of the released weights.
    Raises:
        UsageError: `dst` is `src`.
        RoadsegError: an unreadable checkpoint or dataset.
    """
    if Path(dst).expanduser().resolve() == resolve(src).resolve():
        raise UsageError(f"{dst}: is the training checkpoint; write the release to another path")
    ds = None
    if data:  # before any work: a wrong --data fails first
        from .data import load_dataset

        ds = load_dataset(data, dataset, split)
    ckpt = strip(load_raw(src), half=True)
    card = ModelCard.from_dict(ckpt["card"], src)
    card.license = license_note
    ckpt["card"] = card.to_dict()
    if ds is not None:
        from .evaluate import evaluate

        with tempfile.TemporaryDirectory(prefix="roadseg-release-") as tmp:  # evaluate the FP16-stored weights
            model, card, _ = load_model(atomic_save(ckpt, Path(tmp) / "release.pt"))
        cm = evaluate(model, ds, card)
        summary = cm.summary(card.classes)
        metrics = {f"{split}_miou": summary["miou"], f"{split}_pixel_accuracy": summary["pixel_accuracy"]}
        ckpt["metrics"] = {**ckpt["metrics"], **metrics, f"{split}_iou": summary["iou"]}
        card.metrics = {k: round(v, 5) for k, v in metrics.items()}
        ckpt["card"] = card.to_dict()
    atomic_save(ckpt, Path(dst).expanduser())
    return ckpt["metrics"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--license", required=True, help="licence / citation note of the training data")
    p.add_argument("--data", help="dataset root: evaluate the released weights on --split and store the metrics")
    p.add_argument("--dataset", default="camvid", help="dataset layout (default camvid)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    a = p.parse_args(argv)
    try:
        metrics = release(a.src, a.dst, a.license, a.data, a.dataset, a.split)
    except RoadsegError as e:
        print(f"release: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {a.dst}: {metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
