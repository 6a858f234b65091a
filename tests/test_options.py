"""Options defined once: the CLI's flags come from the options dataclasses' field metadata, parse
back into the same dataclass, validate as before, and the options objects are frozen."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from roadseg.cli import build_parser
from roadseg.core.errors import UsageError
from roadseg.data import FetchOptions
from roadseg.export.options import ExportOptions
from roadseg.runtime.options import add_options, cli_fields, from_args, option, positive
from roadseg.runtime.stream_options import StreamOptions
from roadseg.train.config import TrainConfig


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_every_option_field_is_a_flag_of_its_command():
    for command, cls, extra in (("run", StreamOptions, ["m.onnx", "--source", "x.mp4"]),
                                ("export", ExportOptions, ["ck.pt"]),
                                ("train", TrainConfig, ["--model", "fcn", "--data", "d"]),
                                ("data", FetchOptions, ["camvid"])):  # fmt: skip
        ns = _parse([command, *extra])
        missing = [f.name for f in cli_fields(cls) if not hasattr(ns, f.name)]
        assert missing == [], (command, missing)


def test_defaults_round_trip_to_the_dataclass_defaults():
    assert from_args(ExportOptions, _parse(["export", "ck.pt"])) == ExportOptions(model="ck.pt")
    assert from_args(TrainConfig, _parse(["train", "--model", "fcn", "--data", "d"])) == TrainConfig(model="fcn", data="d")
    assert from_args(FetchOptions, _parse(["data", "camvid"])) == FetchOptions()  # an optional positional keeps its default
    run = _parse(["run", "m.onnx", "--source", "x.mp4"])
    assert from_args(StreamOptions, run, live=run.live) == StreamOptions()


def test_flags_parse_into_typed_fields():
    e = from_args(ExportOptions, _parse(["export", "ck.pt", "--frame-size", "360", "480", "--workspace", "2", "--quiet",
                                          "--int8-reduce-range", "-o", "x.onnx", "--max-shape", "8", "720", "1280"]))  # fmt: skip
    assert (e.frame_size, e.workspace_gb, e.progress, e.int8_weight_bits, e.output) == ((360, 480), 2.0, False, 7, "x.onnx")
    assert e.max_shape == (8, 720, 1280)
    t = from_args(TrainConfig, _parse(["train", "--model", "fcn", "--data", "d", "--crop", "96", "128", "--no-amp",
                                       "--quiet", "--model-kwargs", '{"width": 8}']))  # fmt: skip
    assert (t.crop, t.amp, t.progress, t.model_kwargs) == ((96, 128), False, False, {"width": 8})
    r = _parse(["run", "m.onnx", "--source", "a", "--save", "o.mp4", "--alpha", "0.3", "--max-frames", "5", "--no-drop"])
    s = from_args(StreamOptions, r, live=r.live)
    assert (s.save, s.alpha, s.max_frames, s.live, s.show) == ("o.mp4", 0.3, 5, False, False)


def test_validators_and_groups_still_refuse_bad_values(capsys):
    for argv, words in ((["export", "ck.pt", "--frame-size", "360", "480", "--dynamic"], "not allowed with argument"),
                        (["export", "ck.pt", "--imgsz", "100", "480"], "100 is not a multiple of 32 (try 96)"),
                        (["run", "m", "--source", "a", "--alpha", "2"], "2 is not between 0 and 1"),
                        (["train", "--model", "fcn", "--data", "d", "--ema", "1"], "1 is not strictly between 0 and 1")):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            _parse(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(UsageError, match=r"--model-kwargs '\{nope' is not valid JSON"):
        from_args(TrainConfig, _parse(["train", "--model", "fcn", "--data", "d", "--model-kwargs", "{nope"]))


def test_options_are_frozen_and_varied_with_replace():
    opts = ExportOptions(model="ck.pt")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.precision = "fp16"  # type: ignore[misc]
    assert dataclasses.replace(opts, precision="fp16").precision == "fp16" and opts.precision is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        StreamOptions().writer_timeout = 1.0  # type: ignore[misc]


def test_a_field_without_option_is_not_a_flag_and_a_given_value_wins():
    @dataclasses.dataclass(frozen=True)
    class Opts:
        count: int = option(3, type=positive, metavar="N", help="how many")
        hidden: float = 0.5

    p = argparse.ArgumentParser()
    add_options(p, Opts)
    assert [a.dest for a in p._actions if a.dest != "help"] == ["count"]
    assert from_args(Opts, p.parse_args(["--count", "7"])) == Opts(count=7)
    assert from_args(Opts, p.parse_args([]), count=9, hidden=0.1) == Opts(count=9, hidden=0.1)
