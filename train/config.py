"""What `roadseg train` is asked for: TrainConfig, whose fields made with `option` are also the
command's flags (runtime.options builds the parser from them), so each training option is written
once. Light on purpose (no torch): the CLI builds every command's parser before it imports a stage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from roadseg.core.errors import UsageError
from roadseg.runtime.options import (
    decay,
    nonnegative,
    nonnegative_float,
    option,
    positive,
    positive_float,
    size32,
    unit,
)


def _json_kwargs(text: str | dict) -> dict:
    """--model-kwargs: a JSON object of extra model options."""
    if isinstance(text, dict):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise UsageError(f"--model-kwargs {text!r} is not valid JSON") from None


@dataclass(frozen=True)
class TrainConfig:
    model: str = option(required=True, help="registry name (see `roadseg models`)")
    data: str = option(required=True, help="dataset root folder (`roadseg data camvid DIR` makes one)")
    dataset: str = option("camvid", choices=["camvid", "cityscapes", "folder"], help="dataset layout (default camvid)")
    out: str = option("runs/train", help="output folder (default runs/train)")
    epochs: int = option(100, type=positive, help="epochs (default 100)")
    batch: int = option(8, type=positive, help="batch size per process (default 8)")
    crop: tuple[int, int] = option((352, 480), type=size32, nargs=2, metavar=("H", "W"), help="training crop (default 352 480)")
    imgsz: tuple[int, int] | None = option(None, type=size32, nargs=2, metavar=("H", "W"),
                                           help="model input size written to the card (default: val frame size rounded to 32)")  # fmt: skip
    scale: tuple[float, float] = option((0.5, 2.0), type=float, nargs=2, metavar=("MIN", "MAX"), help="random scale range (default 0.5 2.0)")
    optimizer: str = option("sgd", choices=["sgd", "adamw"], help="optimizer (default sgd)")
    lr: float = option(0.01, type=positive_float, help="base learning rate (default 0.01)")
    momentum: float = 0.9
    weight_decay: float = option(5e-4, type=float, help="weight decay (default 5e-4)")
    schedule: str = option("poly", choices=["poly", "onecycle"], help="learning-rate schedule (default poly)")
    warmup_iters: int = 200
    class_weights: str = option("none", help="none, auto (ENet 1/ln(1.02+p)) or comma-separated weights")
    ohem: bool = option(False, action="store_true", help="online hard example mining in the loss")
    aux_weight: float = option(0.4, type=float, help="weight of auxiliary heads' loss (default 0.4)")
    lovasz: float = option(0.0, type=nonnegative_float, metavar="W", help="add W x the Lovász-softmax loss (a surrogate of "
                           "1 - mIoU) of the main logits (default 0: off)")  # fmt: skip
    seed: int = option(0, type=int, help="random seed (default 0)")
    workers: int = option(0, type=nonnegative, help="data loader worker processes (default 0)")
    val_every: int = option(1, type=positive, help="validate every N epochs (default 1)")
    train_split: str = option("train", help="training split: a name, names joined with + (train+val), and drives kept or "
                              "dropped: train+val[^0006R0] (default train)")  # fmt: skip
    val_split: str = option("val", help="validation split (same forms), or none (default val)")
    holdout_drive: str | None = option(None, metavar="SEQ", help="validate on drive SEQ's frames of the train and val splits and "
                                       "train on every other frame (CamVid: 0001TP, 0006R0 or 0016E5)")  # fmt: skip
    device: str = option("auto", help="auto, cpu, cuda or cuda:N (default auto)")
    amp: bool = option(True, flag="--no-amp", action="store_false", help="train in FP32 (default: mixed precision on CUDA, "
                       "and bfloat16 on CPUs with native bf16)")  # fmt: skip
    skip_bad: bool = option(False, action="store_true", help="skip unreadable or invalid samples (counted) instead of failing")
    resume: bool = option(False, action="store_true", help="continue from OUT/last.pt")
    stop_after: int | None = option(None, type=positive, metavar="N", help="stop after N epochs of this run (time-boxed "
                                    "machines); continue later with --resume")  # fmt: skip
    time_limit: float | None = option(None, type=positive_float, metavar="S", help="stop before an epoch that would end past S "
                                      "seconds of this run (its longest epoch so far is the guess); continue later with --resume")  # fmt: skip
    overwrite: bool = option(False, action="store_true", help="start afresh in an --out that holds an earlier run, replacing it")
    init: str | None = option(None, metavar="CKPT", help="start from this checkpoint's weights (path or bundled name, same model "
                              "and classes) with a fresh optimizer and schedule")  # fmt: skip
    ema: float | None = option(None, type=decay, metavar="DECAY", help="validate and save an exponential moving average of the "
                               "weights (per-step decay, e.g. 0.999)")  # fmt: skip
    paste: float = option(0.0, type=unit, metavar="P", help="with probability P, paste the pixels of --paste-classes from "
                          "another training frame at the same place (default 0: off)")  # fmt: skip
    paste_classes: str = option("rare", metavar="C", help="classes --paste copies: rare (< 2%% of training pixels) or "
                                "comma-separated indices (default rare)")  # fmt: skip
    balance: float = option(0.0, type=nonnegative_float, metavar="T", help="rare-class sampling: draw frames holding rare "
                            "classes more often, temperature T (0.1 is strong; default 0: every frame once an epoch)")  # fmt: skip
    jitter: float = option(0.3, type=unit, metavar="S", help="photometric jitter: brightness, contrast and saturation by up "
                           "to ±S (default 0.3)")  # fmt: skip
    hue: float = option(0.05, type=unit, metavar="H", help="hue shift by up to ±H of the hue circle (default 0.05)")
    model_kwargs: dict = option(default_factory=dict, argparse_default="{}", convert=_json_kwargs,
                                help='JSON of extra model options, e.g. \'{"attention": "se"}\'')  # fmt: skip
    progress: bool = option(True, flag="--quiet", action="store_false", help="no progress bar")
