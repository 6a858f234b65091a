"""TensorRT's persistent timing cache for engine builds: which file, loaded into the builder config
before a build, saved after it.

The default file is one per TensorRT version and GPU architecture (TensorRT refuses another's
timings). Saving combines the builder's cache with what the file holds by then (another build may
have saved since this one loaded it), under a lock, as Polygraphy does; then writes it atomically."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from roadseg.core.atomic import atomic_path, check_writable
from roadseg.core.errors import RoadsegError

if TYPE_CHECKING:
    import tensorrt as trt


def default_timing_cache(trt_version: str, compute_capability: str) -> Path:
    """~/.cache/roadseg/timing-trt<version>-sm<cc>.cache, e.g. timing-trt10.13.0.35-sm87.cache (the
    roadseg cache folder: $ROADSEG_CACHE, $XDG_CACHE_HOME/roadseg). One file per TensorRT version and
    GPU architecture: TensorRT refuses another's timings, and a shared file would be overwritten by
    each in turn."""
    from roadseg.runtime.defaults import cache_dir

    cc = compute_capability.replace(".", "") if compute_capability != "unknown" else "unknown"
    return cache_dir() / f"timing-trt{trt_version}-sm{cc}.cache"


def load_timing_cache(config: trt.IBuilderConfig, path: Path) -> trt.ITimingCache:
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as e:
            print(f"timing cache {path}: cannot read it ({e.strerror}); starting a new one", file=sys.stderr)
    cache = None
    if data:
        try:
            cache = config.create_timing_cache(data)
        except Exception:  # noqa: BLE001 - a corrupt cache file is not worth failing the build for
            cache = None
    if cache is None:
        if data:
            print(f"timing cache {path}: not a TensorRT timing cache; starting a new one", file=sys.stderr)
        cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, False):  # ignore_mismatch=False: never reuse another GPU's timings
        print(f"timing cache {path}: made on another GPU or TensorRT version; starting a new one", file=sys.stderr)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `<path>.lock` (flock, where the OS has it) while a timing cache is read,
    combined and saved, so concurrent builds do not lose each other's entries."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the atomic rename still leaves a whole file
        yield
        return
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def save_timing_cache(config: trt.IBuilderConfig, path: Path, explicit: bool) -> None:
    """Save the builder's timing cache combined with what the file holds now (another build may have
    saved since this one loaded it), under a lock, as Polygraphy does."""
    try:
        cache = config.get_timing_cache()
        if cache is None:
            return
        check_writable(path)
        with _file_lock(path):
            current = b""
            if path.is_file():
                try:
                    current = path.read_bytes()
                except OSError:
                    current = b""
            if current:
                try:
                    theirs = config.create_timing_cache(current)
                    combined = theirs is not None and cache.combine(theirs, False)
                except Exception:  # noqa: BLE001 - a corrupt or foreign file is replaced, not merged
                    combined = False
                if not combined:
                    print(f"timing cache {path}: its content (another GPU or TensorRT version, or corrupt) is replaced",
                          file=sys.stderr)  # fmt: skip
            data = cache.serialize()
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    f.write(data)
    except (OSError, RoadsegError) as e:
        if explicit:
            raise RoadsegError(f"{path}: cannot save the timing cache ({e}); choose another --timing-cache") from None
        print(f"timing cache {path}: not saved ({e})", file=sys.stderr)


__all__ = ["default_timing_cache", "load_timing_cache", "save_timing_cache"]
