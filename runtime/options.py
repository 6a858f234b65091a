"""Options defined once: a dataclass field carries its command-line flag, help and validator in
its metadata, and the CLI is built from the dataclass (`add_options`) and read back into it
(`from_args`), so an option is written in one place, not in argparse, the dataclass and a
field-by-field copy.

`option(default, help=..., ...)` makes such a field; the keywords are argparse's (`type` is the
validator, e.g. `positive`), plus: `flag` (a spelling other than `--field-name`, or a tuple of
them), `positional=True`, `group` (a named mutually exclusive group), `convert` (parsed value ->
field value) and `argparse_default` (the text the command line starts from, where it differs from
the field's default). A field made without `option` is not on the command line. Stdlib only
(argparse), so the torch-free runtime and the CLI share it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

_MISSING: Any = dataclasses.MISSING


def option(default: Any = _MISSING, *, help: str, default_factory: Any = _MISSING, **cli: Any) -> Any:  # noqa: A002
    """A dataclass field that is also a command-line option (see the module docstring)."""
    metadata = {"cli": {"help": help, **cli}}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of `cls` that are command-line options, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "cli" in f.metadata]


def add_options(parser: Any, cls: type) -> None:
    """One argparse argument per option field of `cls`, with the field's default unless the
    metadata gives argparse its own (`argparse_default`)."""
    groups: dict[str, Any] = {}
    for f in cli_fields(cls):
        kw = dict(f.metadata["cli"])
        flag, positional, group = kw.pop("flag", None), kw.pop("positional", False), kw.pop("group", None)
        kw.pop("convert", None)
        if "argparse_default" in kw:  # the text the command line starts from (parsed by `convert`)
            kw["default"] = kw.pop("argparse_default")
        target = parser
        if group is not None:
            if group not in groups:
                groups[group] = parser.add_mutually_exclusive_group()
            target = groups[group]
        if "default" not in kw and f.default is not _MISSING:
            kw["default"] = f.default
        if positional:
            target.add_argument(f.name, **kw)
            continue
        flags = (flag,) if isinstance(flag, str) else tuple(flag or ("--" + f.name.replace("_", "-"),))
        target.add_argument(*flags, dest=f.name, **kw)


def from_args(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """`cls` from a parsed namespace: each option field's value (a list from `nargs` as a tuple, or
    through the field's `convert`), then `given` (values the command sets itself)."""
    values: dict[str, Any] = {}
    for f in cli_fields(cls):
        if f.name in given or not hasattr(args, f.name):
            continue
        v = getattr(args, f.name)
        convert: Callable | None = f.metadata["cli"].get("convert")
        if convert is not None:
            v = convert(v)
        elif isinstance(v, list):
            v = tuple(v)
        values[f.name] = v
    return cls(**values, **given)


# -- validators: argparse types whose errors name the value and the rule


def number(cast: Callable, ok: Callable[[Any], bool], must: str) -> Callable[[str], Any]:
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


def size32(value: str) -> int:
    """A model input side: positive and a multiple of 32 (the network's output stride)."""
    v = positive(value)
    if v % 32:
        raise argparse.ArgumentTypeError(f"{v} is not a multiple of 32 (try {max(32, round(v / 32) * 32)})")
    return v
