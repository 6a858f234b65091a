"""`roadseg train --recipe NAME`: a named set of train flags from the package, any flag given wins."""

from __future__ import annotations

import pytest

from roadseg.cli import build_parser, main
from roadseg.core.errors import UsageError
from roadseg.train.recipes import CAMVID_WEIGHTS, RECIPES, expand


def parse(argv):
    return build_parser().parse_args(expand(argv))


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_flag_given_wins_over_the_recipe_wherever_it_stands(where):
    given = ["--epochs", "3", "--data", "d"]
    argv = ["train", *given, "--recipe", "ddrnet23s-camvid"] if where == "before" else ["train", "--recipe=ddrnet23s-camvid", *given]
    a = parse(argv)
    assert a.epochs == 3 and a.data == "d"  # given
    assert a.model == "ddrnet23s" and a.lr == 0.02 and a.ohem and a.ema == 0.999  # the recipe's
    assert a.class_weights == CAMVID_WEIGHTS and a.crop == [384, 512] and a.recipe == "ddrnet23s-camvid"


def test_strong_adds_its_levers_to_the_base_recipe():
    base, strong = parse(["train", "--recipe", "ddrnet23s-camvid", "--data", "d"]), parse(
        ["train", "--recipe", "ddrnet23s-camvid-strong", "--data", "d"])  # fmt: skip
    assert (strong.jitter, strong.hue, strong.balance) == (0.5, 0.1, 0.1) != (base.jitter, base.hue, base.balance)
    assert {k: v for k, v in vars(strong).items() if k not in ("jitter", "hue", "balance", "recipe")} == {
        k: v for k, v in vars(base).items() if k not in ("jitter", "hue", "balance", "recipe")}  # fmt: skip


def test_every_recipe_parses():
    for name in RECIPES:
        assert parse(["train", "--recipe", name, "--data", "d"]).model


def test_other_commands_are_untouched_and_bad_names_are_usage_errors(capsys):
    assert expand(["eval", "--recipe", "x"]) == ["eval", "--recipe", "x"]
    with pytest.raises(UsageError, match="--recipe nope: choose one of ddrnet23s-camvid, ddrnet23s-camvid-strong"):
        expand(["train", "--recipe", "nope"])
    with pytest.raises(UsageError, match="given 2 times"):
        expand(["train", "--recipe", "ddrnet23s-camvid", "--recipe", "ddrnet23s-camvid-strong"])
    assert main(["train", "--recipe"]) == 2
    err = capsys.readouterr().err
    assert err == "roadseg train: error: --recipe (none): choose one of ddrnet23s-camvid, ddrnet23s-camvid-strong\n"


@pytest.mark.slow
def test_a_recipe_trains_with_its_settings(tmp_path):
    """One tiny epoch with the recipe, the size and model overridden: the run's saved config holds
    the recipe's settings that were not overridden."""
    import torch

    from roadseg.runtime.synthetic import make_dataset
    from roadseg.train.checkpoint import load_raw

    data = make_dataset(tmp_path / "synth", n_train=4, n_val=2, size=(64, 96), seed=1)
    torch.set_num_threads(1)
    rc = main(["train", "--recipe", "ddrnet23s-camvid", "--data", str(data), "--model", "fcn", "--model-kwargs",
               '{"width": 8}', "--epochs", "1", "--batch", "2", "--crop", "64", "96", "--imgsz", "64", "96",
               "--val-every", "1", "--device", "cpu", "--out", str(tmp_path / "run"), "--quiet"])  # fmt: skip
    assert rc == 0
    config = load_raw(tmp_path / "run" / "last.pt")["train_state"]["config"]
    assert config["model"] == "fcn" and config["epochs"] == 1 and list(config["crop"]) == [64, 96]
    assert config["lr"] == 0.02 and config["ohem"] and config["ema"] == 0.999 and config["paste"] == 0.5
    assert config["class_weights"] == CAMVID_WEIGHTS and config["seed"] == 21
