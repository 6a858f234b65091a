"""`default`: the bundled model, exported to ONNX on first use and reused.

The bundled checkpoint (train/weights/, see roadseg.train.checkpoint.BUNDLED) is exported once into
the cache folder as a dynamic-size frames->labels graph, so any camera resolution works. The cache
key is the sha256 of the checkpoint file plus the roadseg version: a new checkpoint or a new
release exports again; everything else reuses the file.

Only the export step imports torch (through roadseg.export, imported lazily inside
`default_onnx`); a cache hit finds, hashes and returns the file without importing torch.
Cache folder: $ROADSEG_CACHE, else $XDG_CACHE_HOME/roadseg, else ~/.cache/roadseg.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from .errors import RoadsegError
from .hashing import sha256_file

# the names and the file of roadseg.train.checkpoint.BUNDLED (a test keeps the two in step); found
# here without importing roadseg.train, which imports torch
BUNDLED_NAMES = ("default", "ddrnet23s_camvid")
DEFAULT_CHECKPOINT = "ddrnet23s_camvid.pt"


def cache_dir() -> Path:
    env = os.environ.get("ROADSEG_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "roadseg"


def bundled_checkpoint() -> Path:
    """The bundled default checkpoint's path, found without importing roadseg.train (or torch)."""
    spec = importlib.util.find_spec("roadseg.train")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        p = Path(loc) / "weights" / DEFAULT_CHECKPOINT
        if p.is_file():
            return p
    where = (
        Path(locations[0]) / "weights" / DEFAULT_CHECKPOINT
        if locations
        else Path("roadseg/train/weights") / DEFAULT_CHECKPOINT
    )
    raise RoadsegError(
        f"{where}: the bundled default checkpoint is missing from this install; reinstall roadseg, "
        "or pass your own model (an .onnx made by `roadseg export`)"
    )


def _version() -> str:
    from roadseg import __version__

    return __version__


def cache_key(checkpoint: Path) -> str:
    """sha256 of the checkpoint file and the roadseg version."""
    return hashlib.sha256(f"{sha256_file(checkpoint)}:{_version()}".encode()).hexdigest()


def cached_path(checkpoint: Path) -> Path:
    return cache_dir() / "models" / f"default-{cache_key(checkpoint)[:16]}.onnx"


def default_onnx(checkpoint: str | os.PathLike | None = None) -> Path:
    """The bundled model (or `checkpoint`) as a dynamic-size ONNX in the cache: exported on first
    use (this step imports torch), reused afterwards (this one does not)."""
    ckpt = Path(checkpoint) if checkpoint is not None else bundled_checkpoint()
    if not ckpt.is_file():
        raise RoadsegError(f"{ckpt}: checkpoint not found; cannot export the default model")
    target = cached_path(ckpt)
    if target.is_file() and target.stat().st_size > 0:
        return target
    from roadseg.runtime.atomic import check_writable

    check_writable(target, fix="set ROADSEG_CACHE to a writable folder")  # the user named no output path
    print(f"roadseg: exporting the default model to ONNX once (cached at {target})", file=sys.stderr)
    from roadseg.export.command import ExportOptions, export  # imports torch: only on a cache miss

    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the caller's own output
        out = export(ExportOptions(model=str(ckpt), dynamic=True, output=str(target), progress=False))
    return Path(out)


def resolve_model(model: str | os.PathLike) -> Path:
    """`default` (or its own name) -> the cached default ONNX (exported on first use); anything
    else -> its path. A file of that name in the current folder wins."""
    if str(model) in BUNDLED_NAMES and not Path(model).exists():
        return default_onnx()
    return Path(model)
