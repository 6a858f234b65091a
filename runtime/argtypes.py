"""argparse types for counts and fractions, shared by the `roadseg` command and the scripts beside
it (benchmarks/soak.py), so a bad value gets one message everywhere. In the lowest layer because the
scripts may not import the command (.importlinter)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def number(cast: Callable[[str], Any], ok: Callable[[Any], bool], must: str) -> Callable[[str], Any]:
    """An argparse type: `cast` the text, then require `ok(v)`; errors name the value and the rule."""
    noun = "an integer" if cast is int else "a number"

    def parse(value: str):
        try:
            v = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {noun}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{value} {must}")
        return v

    return parse


positive = number(int, lambda v: v > 0, "must be > 0")
nonnegative = number(int, lambda v: v >= 0, "must be >= 0")
positive_float = number(float, lambda v: v > 0, "must be > 0")
nonnegative_float = number(float, lambda v: v >= 0, "must be >= 0")
unit = number(float, lambda v: 0.0 <= v <= 1.0, "is not between 0 and 1")
decay = number(float, lambda v: 0.0 < v < 1.0, "is not strictly between 0 and 1")
