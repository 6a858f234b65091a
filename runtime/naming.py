"""Stream names and per-stream output paths, for `roadseg run`, `Segmenter.stream` and the live view.

A stream's name keys its outputs (video, mask folder), its row in the summary and its tile in the
live view, so two streams must never share one: `stream_names` makes them unique whatever the
sources are called (and unique ignoring case, for case-insensitive file systems), and
`check_distinct_outputs` refuses a run where one stream would write over another's output or over
another stream's source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from roadseg.core.errors import UsageError

from .redact import redact

MAX_STREAMS = 256  # more sources than any machine decodes live; a mistake (a glob gone wrong), refused


def stream_name(spec: Any) -> str:
    """A short, file-name-safe name for a source: a file's or folder's stem, `cam0` for camera 0,
    host + path for a URL (never its credentials or query), `synthetic`, `frames` for frames passed
    from Python."""
    spec = getattr(spec, "spec", spec)  # a Source
    if not isinstance(spec, (str, int, os.PathLike)):
        return "frames"
    text = str(spec).strip()
    if re.fullmatch(r"\d+", text) or re.fullmatch(r"/dev/video\d+", text):
        name = "cam" + re.sub(r"\D", "", text)
    elif re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        rest = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://([^@/]*@)?", "", text)  # no credentials in names
        name = rest.split("?")[0].split("#")[0].strip("/")
    elif text.startswith("synthetic"):
        name = text.split(":")[0]
    else:
        path = Path(text.rstrip("/*"))
        name = path.stem if path.suffix else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "stream"


def stream_names(specs: Sequence[Any]) -> list[str]:
    """`stream_name` of each, made unique in order: a name already taken (by an earlier source's
    name, or one differing only in case) gets the first free -2, -3 ... suffix, so `a.avi a.avi
    a-2.avi` are a, a-2 and a-2-2, never two a-2."""
    taken: set[str] = set()
    names = []
    for spec in specs:
        base = name = stream_name(spec)
        k = 2
        while name.casefold() in taken:
            name, k = f"{base}-{k}", k + 1
        taken.add(name.casefold())
        names.append(name)
    return names


def check_stream_count(n: int, what: str = "sources", limit: int = MAX_STREAMS) -> None:
    """Refuse an absurd number of streams with one line, before anything is opened."""
    if n > limit:
        raise UsageError(f"{n} {what}: roadseg runs at most {limit} streams at once (three threads each); "
                         "split them over several runs")  # fmt: skip


def _output_for(pattern: str | os.PathLike | None, name: str, several: bool, suffix: str) -> str | None:
    """One stream's output path: `pattern` itself for a single stream; with several streams, the
    pattern with {stream} replaced, or, for a folder, folder/<name><suffix>."""
    if pattern is None:
        return None
    text = str(pattern)
    if "{stream}" in text:
        return text.replace("{stream}", name)
    if not several:
        return text
    return str(Path(text) / f"{name}{suffix}")


def stream_outputs(
    names: Sequence[str], save: str | os.PathLike | None, save_masks: str | os.PathLike | None
) -> list[tuple[str | None, str | None]]:
    """(video path, mask folder) of each stream. With several streams, --save is a folder (one
    <stream>.mp4 each) or a name with {stream}; --save-masks is a folder (one subfolder each) or
    a name with {stream}."""
    several = len(names) > 1
    if several and save is not None and "{stream}" not in str(save) and Path(str(save)).suffix.lower() in (".mp4", ".avi"):
        raise UsageError(
            f"--save {save}: {len(names)} streams need a folder (one video per stream) or a name with "
            "{stream}, e.g. --save out/ or --save 'out/{stream}.mp4'"
        )
    return [(_output_for(save, n, several, ".mp4"), _output_for(save_masks, n, several, "")) for n in names]


def _key(path: str | os.PathLike) -> str:
    return os.path.normcase(str(Path(path).expanduser().resolve()))


def check_distinct_outputs(specs: Sequence[Any], outputs: Sequence[tuple[str | None, str | None]]) -> None:
    """Refuse, before any work, outputs that two streams share (one would overwrite the other's
    frames) or that are another stream's source file (a stream's own source: sinks.check_outputs)."""
    sources = {
        _key(s): (i, s) for i, s in enumerate(specs) if isinstance(s, (str, os.PathLike)) and Path(str(s)).expanduser().is_file()
    }
    seen: set[str] = set()
    for i, (video, masks) in enumerate(outputs):
        for flag, path in (("--save", video), ("--save-masks", masks)):
            if path is None:
                continue
            key = _key(path)
            if key in seen:
                raise UsageError(f"{flag} {path}: two streams would write there; use {{stream}} in the name or a folder")
            seen.add(key)
            if flag == "--save" and key in sources and sources[key][0] != i:
                raise UsageError(
                    f"--save {path}: is the source {redact(sources[key][1])} of another stream; choose another output path"
                )
