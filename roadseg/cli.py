"""The `roadseg` command line. Thin on purpose: it parses arguments and imports the one stage a
subcommand needs, lazily, so `roadseg run` on an ONNX model never imports torch.

Wrong usage prints one line on stderr and exits 2; a RoadsegError (missing file, bad format,
incompatible engine) prints one line naming the file and the fix and exits 1, with no traceback.
"""

from __future__ import annotations

import argparse
import sys

from roadseg.runtime.errors import RoadsegError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line on stderr (exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def _positive(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return v


def _size32(value: str) -> int:
    """A model input side: positive and a multiple of 32 (the network's output stride)."""
    v = _positive(value)
    if v % 32:
        raise argparse.ArgumentTypeError(f"{v} is not a multiple of 32 (try {max(32, round(v / 32) * 32)})")
    return v


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a segmentation model", description="Train a model; writes last.pt every epoch and best.pt by val mIoU.")
    p.add_argument("--model", required=True, help="registry name (see `roadseg models`)")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset", default="camvid", choices=["camvid", "cityscapes", "folder"], help="dataset layout (default camvid)")
    p.add_argument("--epochs", type=_positive, default=100, help="epochs (default 100)")
    p.add_argument("--batch", type=_positive, default=8, help="batch size per process (default 8)")
    p.add_argument("--crop", type=_size32, nargs=2, metavar=("H", "W"), default=[352, 480], help="training crop (default 352 480)")
    p.add_argument("--imgsz", type=_size32, nargs=2, metavar=("H", "W"), help="model input size written to the card (default: val frame size rounded to 32)")
    p.add_argument("--scale", type=float, nargs=2, metavar=("MIN", "MAX"), default=[0.5, 2.0], help="random scale range (default 0.5 2.0)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd", help="optimizer (default sgd)")
    p.add_argument("--lr", type=float, default=0.01, help="base learning rate (default 0.01)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--schedule", choices=["poly", "onecycle"], default="poly", help="learning-rate schedule (default poly)")
    p.add_argument("--class-weights", default="none", help="none, auto (ENet 1/ln(1.02+p)) or comma-separated weights")
    p.add_argument("--ohem", action="store_true", help="online hard example mining in the loss")
    p.add_argument("--aux-weight", type=float, default=0.4, help="weight of auxiliary heads' loss (default 0.4)")
    p.add_argument("--model-kwargs", default="{}", help='JSON of extra model options, e.g. \'{"attention": "se"}\'')
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--val-every", type=_positive, default=1, help="validate every N epochs (default 1)")
    p.add_argument("--train-split", default="train", help="training split name (default train)")
    p.add_argument("--val-split", default="val", help="validation split name, or none (default val)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or invalid samples (counted) instead of failing")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(a) -> int:
    import json

    from roadseg.train.trainer import TrainConfig, train

    try:
        kwargs = json.loads(a.model_kwargs)
    except json.JSONDecodeError:
        raise UsageError(f"--model-kwargs {a.model_kwargs!r} is not valid JSON") from None
    cfg = TrainConfig(
        model=a.model, data=a.data, dataset=a.dataset, out=a.out, epochs=a.epochs, batch=a.batch,
        crop=tuple(a.crop), imgsz=tuple(a.imgsz) if a.imgsz else None, scale=tuple(a.scale),
        optimizer=a.optimizer, lr=a.lr, weight_decay=a.weight_decay, schedule=a.schedule,
        class_weights=a.class_weights, ohem=a.ohem, aux_weight=a.aux_weight, seed=a.seed,
        workers=a.workers, val_every=a.val_every, train_split=a.train_split, val_split=a.val_split,
        device=a.device, amp=not a.no_amp, skip_bad=a.skip_bad, resume=a.resume, model_kwargs=kwargs,
        progress=not a.quiet,
    )  # fmt: skip
    best = train(cfg)
    print(f"done: {best}")
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="mIoU of a checkpoint on a labelled split", description="Evaluate a checkpoint: mIoU, per-class IoU, pixel accuracy.")
    p.add_argument("model", help="checkpoint path or bundled name (default)")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset", default="camvid", choices=["camvid", "cityscapes", "folder"], help="dataset layout (default camvid)")
    p.add_argument("--split", default="val", help="split (default val)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or invalid samples (counted)")
    p.add_argument("--confusion", metavar="DIR", help="write confusion.csv and confusion.png to DIR")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(a) -> int:
    import json

    from roadseg.train.checkpoint import load_model
    from roadseg.train.data import load_dataset
    from roadseg.train.evaluate import evaluate, format_report, write_confusion

    model, card, _ = load_model(a.model)
    ds = load_dataset(a.data, a.dataset, a.split, skip_bad=a.skip_bad)
    if ds.info.classes != card.classes:
        raise RoadsegError(f"{a.data}: dataset classes differ from the model's ({len(ds.info.classes)} vs {card.num_classes}); evaluate on the dataset it was trained for")
    cm = evaluate(model.to(a.device), ds, card, a.device)
    print(format_report(cm, card.classes))
    if ds.skipped:
        print(f"skipped {len(ds.skipped)} bad samples")
    if a.confusion:
        csv_path, png_path = write_confusion(cm, card.classes, a.confusion)
        print(f"confusion matrix: {csv_path} {png_path}")
    if a.json:
        from pathlib import Path

        Path(a.json).write_text(json.dumps(cm.summary(card.classes), indent=2))
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list models and bundled checkpoints", description="List every registered model with parameters and GFLOPs, and the bundled checkpoints.")
    p.add_argument("--imgsz", type=_size32, nargs=2, metavar=("H", "W"), default=[352, 480], help="size for GFLOPs (default 352 480)")
    p.add_argument("--num-classes", type=_positive, default=11, help="classes (default 11)")
    p.set_defaults(func=_cmd_models)


def _cmd_models(a) -> int:
    from roadseg.train.zoo import describe

    print(describe(tuple(a.imgsz), a.num_classes))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from roadseg import __version__

    parser = _Parser(prog="roadseg", description="Real-time driving-scene segmentation: train, export, run, bench.")
    parser.add_argument("--version", action="version", version=f"roadseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add in (_add_train, _add_eval, _add_models):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RoadsegError as e:
        sys.stderr.write(f"roadseg {args.command}: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"roadseg {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
