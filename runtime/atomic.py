"""Atomic file writes for every stage: write to a temporary name in the target folder, rename into
place on success, delete the temporary on any failure (Ctrl-C included). A kill -9 can leave a
hidden `.name.*.tmp` behind, never a half-written file at the target path."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import RoadsegError


def check_writable(target: str | os.PathLike) -> Path:
    """Fail early, with the fix, when the folder of `target` cannot be created or written."""
    target = Path(target)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RoadsegError(f"{target}: cannot create folder {folder} ({e.strerror}); choose another output path") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RoadsegError(f"{target}: folder {folder} is not writable; choose another output path")
    if target.is_dir():
        raise RoadsegError(f"{target}: is a folder; give a file name")
    return target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `target`; renamed to `target` when the block succeeds."""
    target = check_writable(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=(suffix or target.suffix) + ".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
