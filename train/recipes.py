"""Training recipes: named sets of `roadseg train` flags, so a recipe reads like the command it is.

    roadseg train --recipe ddrnet23s-camvid --data data/camvid --out runs/base
    roadseg train --recipe ddrnet23s-camvid --data data/camvid --holdout-drive 0006R0 --epochs 200

`expand` puts a recipe's flags right after `train`, before every flag given, so a flag given on
the command line wins (argparse keeps the last value); an on/off flag a recipe turns on (--ohem)
stays on. Importing this module imports no PyTorch: the CLI expands recipes before it parses.

- ddrnet23s-camvid: the default model's ingredients (docs/MODEL.md), trained from scratch in one
  run: DDRNet-23-slim with the stride-4 detail branch at 384x512, SGD lr 0.02 with OHEM, ENet-style
  class weights softened to the 1/4 power, EMA of the weights, rare-class pasting.
- ddrnet23s-camvid-strong: the same with the levers for drives it never saw: stronger photometric
  jitter and hue shifts, and rare-class frame sampling.

Two ways to run either (docs/TRAIN.md, "Drive splits"): add `--holdout-drive 0006R0` to score the
recipe on a drive it never trained on, or `--train-split train+val` for the release run on every
drive (its val is then trained on, so its val number is not an estimate).
"""

from __future__ import annotations

from roadseg.core.errors import UsageError

# CamVid's 11 classes weighted (median share / share)^0.25 (docs/MODEL.md)
CAMVID_WEIGHTS = "0.718,0.663,1.456,0.614,1.0,0.825,1.392,1.422,0.935,1.655,1.968"

_DDRNET_CAMVID = [
    "--model", "ddrnet23s", "--model-kwargs", '{"detail": true}', "--dataset", "camvid", "--epochs", "400",
    "--batch", "16", "--crop", "384", "512", "--imgsz", "384", "512", "--scale", "0.55", "2.15", "--lr", "0.02",
    "--ohem", "--class-weights", CAMVID_WEIGHTS, "--ema", "0.999", "--paste", "0.5", "--val-every", "5", "--seed", "21",
]  # fmt: skip

RECIPES: dict[str, list[str]] = {
    "ddrnet23s-camvid": _DDRNET_CAMVID,
    "ddrnet23s-camvid-strong": [*_DDRNET_CAMVID, "--jitter", "0.5", "--hue", "0.1", "--balance", "0.1"],
}


def expand(argv: list[str]) -> list[str]:
    """`argv` (a `roadseg ...` command line without the program name) with the flags of a `train`
    command's `--recipe NAME` (or `--recipe=NAME`) put right after `train`, before every flag given.

    Args:
        argv: the command line; only a `train` command is changed.
    Returns:
        The command line to parse: every flag the user gave follows the recipe's, so it wins.
    Raises:
        UsageError: an unknown recipe name, or --recipe without one.
    """
    if not argv or argv[0] != "train":
        return argv
    rest, names = [], []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--recipe" or arg.startswith("--recipe="):
            name = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if name not in RECIPES:
                raise UsageError(f"--recipe {name or '(none)'}: choose one of {', '.join(RECIPES)}")
            names.append(name)
            i += 1 if "=" in arg else 2
            continue
        rest.append(arg)
        i += 1
    if len(names) > 1:
        raise UsageError(f"--recipe given {len(names)} times ({', '.join(names)}); give one")
    return ["train", *(["--recipe", names[0], *RECIPES[names[0]]] if names else []), *rest]
