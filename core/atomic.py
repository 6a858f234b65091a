"""Atomic file writes for every stage: write to a temporary name in the target folder, rename into
place on success, delete the temporary on any failure (Ctrl-C included). A kill -9 can leave a
hidden `.name.*.tmp` behind, never a half-written file at the target path.

The process umask is read once, at import (`UMASK`): setting it to read it back is process-wide,
and a file another thread created in that window would get mode 0666. Temporary files and folders
are made private (mkstemp/mkdtemp) and given the usual permissions, 0666/0777 & ~UMASK, when they
are published.

A published file is flushed to the disk (fsync) before the rename, and its folder after it: a power
loss (a car's ignition) must not leave a renamed but empty or partial file, which a journal that
orders metadata before data allows. Callers that write one small file per frame may opt out.

A target that exists and cannot be replaced (an immutable file, another user's file in a sticky
folder such as /tmp) is refused by `check_writable`, before the work; if the rename still fails,
the finished file is kept under a visible name that the error line gives, never deleted."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import RoadsegError


def _read_umask() -> int:
    """The process umask: from /proc (Linux 4.7+) without changing it, else set and restored once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would have given a new file
DIR_MODE = 0o777 & ~UMASK  # what mkdir() would have given a new folder


def _make_folder(folder: Path, what: str, fix: str, create: bool = True) -> None:
    """Creates `folder` (and parents) and checks it can be written, or fails naming `what` and `fix`.
    create=False checks the same without creating anything (a check before work that may still be
    refused must not leave an empty folder behind): the nearest folder that exists must be writable."""
    if not create and not folder.exists():
        ancestor = next((p for p in folder.parents if p.exists()), None)
        if ancestor is not None and not ancestor.is_dir():
            raise RoadsegError(f"{what}: cannot create folder {folder} ({ancestor} is a file); {fix}")
        if ancestor is not None and not os.access(ancestor, os.W_OK | os.X_OK):
            raise RoadsegError(f"{what}: cannot create folder {folder} (Permission denied); {fix}")
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RoadsegError(f"{what}: cannot create folder {folder} ({e.strerror}); {fix}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RoadsegError(f"{what}: folder {folder} is not writable; {fix}")


FS_IOC_GETFLAGS = 0x80086601  # Linux: a file's attribute flags (lsattr)
FS_LOCKED_FLAGS = 0x10 | 0x20  # immutable, append-only: the file cannot be renamed over


def replace_problem(target: Path) -> str | None:
    """Why an existing `target` cannot be replaced by a rename, or None (also when unknown)."""
    try:
        st, folder = target.lstat(), target.parent.stat()
    except OSError:
        return None
    euid = os.geteuid() if hasattr(os, "geteuid") else 0
    if folder.st_mode & stat.S_ISVTX and euid not in (0, st.st_uid, folder.st_uid):
        return "it belongs to another user and its folder is sticky (like /tmp)"
    if sys.platform.startswith("linux") and stat.S_ISREG(st.st_mode):
        import array
        import fcntl

        flags = array.array("l", [0])
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        except OSError:
            return None
        finally:
            os.close(fd)
        if flags[0] & FS_LOCKED_FLAGS:
            return "it is immutable or append-only (chattr -i / -a to allow it)"
    return None


def check_writable(target: str | os.PathLike, fix: str = "choose another output path", create: bool = True) -> Path:
    """Fail early, with `fix`, when the folder of `target` cannot be created or written, or when
    `target` exists and cannot be replaced. Returns the target with `~` expanded (the shell leaves
    `--save=~/x.mp4` alone). create=False: a missing folder is checked, not made."""
    target = Path(target).expanduser()
    _make_folder(target.parent, str(target), fix, create)
    if target.is_dir():
        raise RoadsegError(f"{target}: is a folder; give a file name")
    why = replace_problem(target)
    if why is not None:
        raise RoadsegError(f"{target}: exists and cannot be replaced ({why}); {fix}")
    return target


def check_folder(folder: str | os.PathLike, flag: str, create: bool = True) -> Path:
    """An output folder given with `flag` (created when missing, unless create=False): fails with
    the fix when it is a file or cannot be created or written. Returns it with `~` expanded."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise RoadsegError(f"{flag} {folder}: is a file; give a folder")
    _make_folder(path, f"{flag} {folder}", f"choose another {flag}", create)
    return path


def temp_beside(target: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A new, empty, private (0600) file with a hidden temporary name in the folder of `target`:
    `.NAME.XXXXXXXX<suffix>` (put a file type's extension last when a writer picks its format by it)."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(tmp)


def _fsync(path: str | os.PathLike, folder: bool = False) -> None:
    """Flush a file (or a folder's entries) to the disk. Folders cannot be opened on Windows, and
    some file systems refuse to sync one: the file's own fsync is what matters there."""
    if folder and not hasattr(os, "O_DIRECTORY"):
        return
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if folder:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike, target: str | os.PathLike, sync: bool = True) -> None:
    """Give a finished temporary file the usual permissions, flush it to the disk (sync) and
    rename it to `target` (atomic), then flush the folder so the rename itself is on the disk."""
    os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600
    if sync:
        _fsync(tmp)
    try:
        os.replace(tmp, target)
    except OSError as e:
        raise RoadsegError(f"{target}: cannot be replaced ({e.strerror or e}); {_keep(Path(tmp), Path(target))}") from None
    if sync:
        _fsync(Path(target).parent, folder=True)


def _keep(tmp: Path, target: Path) -> str:
    """The finished file under a visible name beside `target` (NAME.new.EXT, NAME.new-2.EXT ...),
    as the end of an error line that says where."""
    for k in range(1, 100):
        kept = target.with_name(f"{target.stem}.new{'' if k == 1 else f'-{k}'}{target.suffix}")
        if kept.exists():
            continue
        try:
            os.link(tmp, kept)  # never over an existing file
            os.unlink(tmp)
        except OSError:
            try:
                os.rename(tmp, kept)  # a file system without hard links
            except OSError:
                break
        return f"the new file is kept as {kept}"
    return "the new file could not be kept either; choose another output path"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "", sync: bool = True) -> Iterator[Path]:
    """Yields a temporary path beside `target`; flushed to the disk (sync) and renamed to `target`
    when the block succeeds. The block must have closed the file it wrote."""
    target = check_writable(target)
    tmp = temp_beside(target, (suffix or target.suffix) + ".tmp")
    try:
        yield tmp
        publish(tmp, target, sync)
    finally:
        if tmp.exists():
            tmp.unlink()
