"""Frame sources: every kind, bad frames, the live drop policy, reconnect with backoff and the read watchdog.

Network tests serve MJPEG over HTTP on 127.0.0.1 from a thread of the test and stop by themselves;
every test runs under a time limit (SIGALRM) so nothing can hang the suite."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadseg.core.errors import RoadsegError, UsageError
from roadseg.runtime import readers
from roadseg.runtime.sources import FrameBuffer, open_source, to_bgr8

pytestmark = pytest.mark.timeout(60)  # pytest-timeout: a hung stream fails, never blocks CI


def drain(src, limit_s: float = 20.0) -> list:
    out, deadline = [], time.monotonic() + limit_s
    for frame in src:
        out.append(frame)
        assert time.monotonic() < deadline, "source did not end in time"
    return out


def write_video(path: Path, n: int, size=(72, 96), fourcc="MJPG", fps=20.0) -> list[np.ndarray]:
    h, w = size
    frames = [np.full((h, w, 3), (i * 9) % 256, np.uint8) for i in range(n)]
    for i, f in enumerate(frames):
        cv2.putText(f, str(i), (5, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 255), 2)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return frames


# ---------------------------------------------------------------- conversion of bad frames


def test_to_bgr8_converts_or_skips_every_bad_kind():
    bgr = np.zeros((20, 30, 3), np.uint8)
    assert to_bgr8(bgr) == (bgr, None)
    gray, why = to_bgr8(np.full((20, 30), 7, np.uint8))
    assert why == "gray" and gray.shape == (20, 30, 3) and int(gray[0, 0, 2]) == 7
    one, why = to_bgr8(np.zeros((20, 30, 1), np.uint8))
    assert why == "gray" and one.shape == (20, 30, 3)
    bgra, why = to_bgr8(np.dstack([bgr, np.full((20, 30), 255, np.uint8)]))
    assert why == "BGRA" and bgra.shape == (20, 30, 3)
    deep, why = to_bgr8(np.full((20, 30, 3), 0xAB00, np.uint16))
    assert why == "16-bit" and deep.dtype == np.uint8 and int(deep.max()) == 0xAB
    g16, why = to_bgr8(np.full((20, 30), 0x1200, np.uint16))
    assert why == "16-bit gray" and g16.shape == (20, 30, 3) and int(g16.max()) == 0x12
    strided, why = to_bgr8(np.zeros((20, 60, 3), np.uint8)[:, ::2])
    assert why is None and strided.flags.c_contiguous
    for bad, reason in [
        (None, "empty"),
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((1, 1, 3), np.uint8), "tiny"),
        (np.zeros((20, 30, 3), np.float32), "dtype float32"),
        (np.zeros((20, 30, 2), np.uint8), "shape (20, 30, 2)"),
        (np.zeros((2, 20, 30, 3), np.uint8), "shape (2, 20, 30, 3)"),
    ]:
        assert to_bgr8(bad) == (None, reason)


def test_bad_frames_are_converted_or_skipped_and_counted_and_size_changes_pass():
    frames = [
        np.zeros((40, 60, 3), np.uint8),
        np.zeros((40, 60), np.uint8),  # gray
        np.zeros((40, 60, 4), np.uint8),  # BGRA
        np.zeros((40, 60, 3), np.uint16),  # 16-bit
        np.zeros((0, 0, 3), np.uint8),  # empty
        None,  # a failed decode
        np.zeros((1, 1, 3), np.uint8),  # tiny
        np.zeros((40, 60, 3), np.float64),  # unsupported type
        np.zeros((81, 117, 3), np.uint8),  # size change, odd sides
        np.zeros((40, 60, 3), np.uint8),
    ]
    with open_source(frames) as src:
        got = drain(src)
        counts = src.counters()
    assert [f.index for f in got] == [0, 1, 2, 3, 8, 9]
    assert [f.name for f in got] == ["000000", "000001", "000002", "000003", "000008", "000009"]
    assert all(f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3 for f in got)
    assert got[4].image.shape == (81, 117, 3)
    assert counts == {"frames_in": 10, "dropped": 0, "skipped": 4, "converted": 3, "reconnects": 0}
    assert src.bad == {"gray": 1, "BGRA": 1, "16-bit": 1, "empty": 2, "tiny": 1, "dtype float64": 1}


# ---------------------------------------------------------------- files, folders, synthetic


def test_video_file_source_reads_every_frame_in_order(tmp_path):
    ref = write_video(tmp_path / "clip.avi", 25)
    with open_source(str(tmp_path / "clip.avi")) as src:
        assert src.kind == "file" and not src.live and src.fps == pytest.approx(20.0)
        got = drain(src)
        assert src.counters()["dropped"] == 0
    assert [f.index for f in got] == list(range(25))
    assert [f.name for f in got] == [f"{i:06d}" for i in range(25)]
    for f, r in zip(got, ref):
        assert f.image.shape == r.shape
        assert np.abs(f.image.astype(int) - r).mean() < 6  # MJPEG is lossy
    assert all(b.timestamp >= a.timestamp for a, b in zip(got, got[1:]))


def test_slow_consumer_of_a_file_drops_nothing_and_the_buffer_stays_bounded(tmp_path):
    write_video(tmp_path / "clip.avi", 30)
    with open_source(str(tmp_path / "clip.avi"), buffer=4) as src:
        got = []
        for f in src:
            time.sleep(0.01)
            got.append(f.index)
        assert got == list(range(30))
        assert src.buffer.high_water <= 4 and src.counters()["dropped"] == 0


def test_file_played_live_keeps_the_newest_frame_at_its_frame_rate(tmp_path):
    write_video(tmp_path / "clip.avi", 20, fps=40.0)
    t0 = time.perf_counter()
    with open_source(str(tmp_path / "clip.avi"), live=True) as src:
        assert src.live
        got = []
        for f in src:
            time.sleep(0.08)  # 3x slower than the source
            got.append(f.index)
        c = src.counters()
    assert time.perf_counter() - t0 >= 19 / 40.0 * 0.9  # paced, not read as fast as decoding
    assert c["dropped"] > 0 and c["dropped"] + len(got) == 20
    assert src.buffer.high_water == 1
    assert got == sorted(got) and got[-1] == 19  # the newest frame always wins, the last one included


def test_truncated_and_empty_videos(tmp_path):
    write_video(tmp_path / "clip.avi", 30)
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    with open_source(str(tmp_path / "cut.avi")) as src:
        got = drain(src)
    assert 3 <= len(got) < 30  # the readable frames, then a clean end
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(RoadsegError, match="empty"):
        open_source(str(tmp_path / "empty.mp4"))
    (tmp_path / "junk.mp4").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 12\n")
    with pytest.raises(RoadsegError, match="cannot open as a video"):
        open_source(str(tmp_path / "junk.mp4"))
    with pytest.raises(RoadsegError, match="no such file"):
        open_source(str(tmp_path / "missing.mp4"))


def test_image_folder_sorted_named_by_stem_with_bad_images_counted(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    base = np.full((40, 60, 3), 100, np.uint8)
    cv2.imwrite(str(d / "f10.png"), base)
    cv2.imwrite(str(d / "f2.png"), base[..., 0])  # gray
    cv2.imwrite(str(d / "f1.png"), np.dstack([base, base[..., :1]]))  # BGRA
    cv2.imwrite(str(d / "f3.png"), np.full((40, 60, 3), 0x6400, np.uint16))  # 16-bit
    (d / "f4.jpg").write_bytes(b"not a jpeg")  # unreadable: skipped
    (d / "notes.txt").write_text("ignored")
    with open_source(str(d)) as src:
        got = drain(src)
        c = src.counters()
    assert [f.name for f in got] == ["f1", "f2", "f3", "f10"]  # natural order
    assert [f.index for f in got] == [0, 1, 2, 4]
    assert c["converted"] == 3 and c["skipped"] == 1 and c["frames_in"] == 5
    assert int(got[2].image.max()) == 0x64
    with open_source(str(d / "f1*.png")) as src:  # a glob
        assert [f.name for f in drain(src)] == ["f1", "f10"]
    with open_source(str(d / "f2.png")) as src:  # one image
        assert [f.name for f in drain(src)] == ["f2"]
    cv2.imwrite(str(d / "f2.jpg"), base)  # the same stem twice: names stay unique
    with open_source(str(d / "f2.*")) as src:
        assert sorted(f.name for f in drain(src)) == ["f2_jpg", "f2_png"]
    (tmp_path / "none").mkdir()
    with pytest.raises(RoadsegError, match="no images"):
        open_source(str(tmp_path / "none"))
    with pytest.raises(RoadsegError, match="matches no image"):
        open_source(str(d / "*.bmp"))


def test_images_with_the_same_stem_in_subfolders_get_distinct_names(tmp_path):
    """A recursive glob: a/x.png and b/x.png must not both be named x (their masks would overwrite)."""
    d = tmp_path / "imgs"
    base = np.full((40, 60, 3), 100, np.uint8)
    for rel in ("a/x.png", "b/x.png", "b/x.jpg", "b/y.png", "a/c/x.png", "z.png"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / rel), base)
    with open_source(str(d / "**" / "*.*")) as src:
        names = [f.name for f in drain(src)]
    assert sorted(names) == ["a__c__x", "a__x", "b__x_jpg", "b__x_png", "y", "z"]
    # whatever the collisions, the names are unique (case-insensitively: masks on any filesystem)
    paths = [Path(p) for p in ("a/x.png", "b/x.png", "a__x.png", "X.png", "x.PNG", "c/X.png", "x_2.png")]
    got = readers._unique_stems(paths)
    assert len({n.casefold() for n in got}) == len(paths)
    assert readers._unique_stems([Path("q/x.png"), Path("q/y.png")]) == ["x", "y"]  # no collision: the stem


def test_synthetic_source_matches_the_clip():
    from roadseg.runtime.synthetic import SyntheticClip

    with open_source("synthetic:5", size=(48, 64)) as src:
        assert src.kind == "synthetic" and not src.live and src.fps == 30.0
        got = drain(src)
    clip = SyntheticClip(5, (48, 64))
    assert len(got) == 5
    for f, (ref, _) in zip(got, clip):
        assert np.array_equal(f.image, ref)
    with pytest.raises(UsageError):
        open_source("synthetic:0")


def test_unsupported_url_scheme_and_empty_spec_are_usage_errors():
    for spec in ("ftp://example.com/v.mp4", "file:///tmp/x.mp4", "udp://1.2.3.4:5"):
        with pytest.raises(UsageError, match="unsupported URL scheme"):
            open_source(spec)
    with pytest.raises(UsageError):
        open_source("  ")


def test_frame_buffer_overwrite_and_blocking():
    live = FrameBuffer(1, overwrite=True)
    for i in range(5):
        assert live.put(i)
    assert live.get(0) == 4 and live.dropped == 4 and live.high_water == 1
    assert live.get(0.01) is None
    fifo = FrameBuffer(2, overwrite=False)
    fifo.put(1), fifo.put(2)
    t = threading.Thread(target=fifo.put, args=(3,))
    t.start()
    time.sleep(0.1)
    assert t.is_alive() and len(fifo) == 2  # blocked: nothing dropped
    assert fifo.get(0) == 1
    t.join(2)
    assert not t.is_alive() and [fifo.get(0), fifo.get(0)] == [2, 3]
    blocked = FrameBuffer(1, overwrite=False)
    blocked.put(0)
    res = []
    t = threading.Thread(target=lambda: res.append(blocked.put(1)))
    t.start()
    blocked.close()  # a stopping stream unblocks the capture thread
    t.join(2)
    assert res == [False] and blocked.get(0) == 0 and blocked.drained


# ---------------------------------------------------------------- a fake camera behind cv2.VideoCapture


class FakeCapture:
    """A scripted camera: `script` is a list of frames, "lost" (read fails) or "hang" (read blocks)."""

    def __init__(self, script, opened=True, release_event=None):
        self.script = list(script)
        self.opened = opened
        self.released = False
        self.release_event = release_event or threading.Event()

    def isOpened(self):  # noqa: N802 - cv2's name
        return self.opened

    def get(self, prop):
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if not self.script:
            return False, None
        item = self.script.pop(0)
        if isinstance(item, str) and item == "lost":
            return False, None
        if isinstance(item, str) and item == "hang":
            self.release_event.wait(30)  # a driver call that never returns (until the test ends)
            return False, None
        time.sleep(0.005)
        return True, item

    def release(self):
        self.released = True


@pytest.fixture
def fake_cameras(monkeypatch):
    """Install a queue of FakeCaptures; each open takes the next one (closed when the queue is empty)."""
    queue: list[FakeCapture] = []
    opened: list[tuple] = []
    unblock = threading.Event()

    def fake_open(target, api, params):
        opened.append((target, api))
        return queue.pop(0) if queue else FakeCapture([], opened=False)

    monkeypatch.setattr(readers, "_open_capture", fake_open)
    yield queue, opened, unblock
    unblock.set()


def frames(n, value=0, size=(30, 40)):
    return [np.full((*size, 3), value + i, np.uint8) for i in range(n)]


def test_camera_that_never_opens_is_a_clear_error(fake_cameras):
    queue, opened, _ = fake_cameras
    t0 = time.perf_counter()
    with pytest.raises(RoadsegError, match=r"camera 0: cannot open it .*ls /dev/video"):
        open_source("0", reconnects=5)
    assert len(opened) == 1 and time.perf_counter() - t0 < 2  # at once: no reconnect loop before the first frame


def test_real_missing_camera_index_fails_at_open():
    if Path("/dev/video9").exists():
        pytest.skip("this machine has a /dev/video9")
    with pytest.raises(RoadsegError, match="camera 9: cannot open"):
        open_source("9")


def test_camera_disconnects_reconnects_with_backoff_then_gives_up(fake_cameras):
    queue, opened, unblock = fake_cameras
    queue += [
        FakeCapture(frames(5, 0) + ["lost"]),
        FakeCapture([], opened=False),  # the first reconnect fails
        FakeCapture(frames(4, 100) + [np.zeros((30, 40), np.uint8)] + ["lost"]),  # then works, with a gray frame
    ]  # afterwards every open fails: the stream ends with an error
    t0 = time.perf_counter()
    src = open_source("0", live=False, reconnects=3, backoff=(0.05, 0.2))
    assert src.kind == "camera" and not src.live
    got = []
    with pytest.raises(RoadsegError, match="3 reconnect attempts failed"):
        for f in src:
            got.append(f)
    elapsed = time.perf_counter() - t0
    src.close()
    assert len(got) == 10 and [f.index for f in got] == list(range(10))
    assert [int(f.image[0, 0, 0]) for f in got[:9]] == [0, 1, 2, 3, 4, 100, 101, 102, 103]
    c = src.counters()
    assert c["converted"] == 1
    # 5 attempts: fail, ok (resets), fail, fail, fail -> then gave up; delays 0.05 + 0.05 + 0.1 + 0.2
    assert c["reconnects"] == 5 and len(opened) == 6
    assert 0.35 < elapsed < 5
    texts = [t for _, t in src.events]
    assert any("reconnect 1/3 in 0.1 s" in t or "reconnect 1/3 in 0.0 s" in t for t in texts)
    assert sum("reconnected" in t for t in texts) == 1


def test_closing_a_source_releases_its_capture(fake_cameras):
    """Stopped while the grabber thread is running: the capture is released when it ends."""
    queue, _, _ = fake_cameras
    cams = [FakeCapture([np.full((30, 40, 3), i % 256, np.uint8) for i in range(2000)]) for _ in range(2)]
    queue += cams
    for live in (False, True):
        src = open_source("0", live=live)
        next(iter(src))
        src.close()
        assert not src._thread.is_alive()
        assert cams[int(live)].released


def test_watchdog_abandons_a_hung_read_and_reopens(fake_cameras):
    queue, opened, unblock = fake_cameras
    hung = FakeCapture(frames(3, 0) + ["hang"], release_event=unblock)
    queue += [hung, FakeCapture(frames(3, 50))]
    src = open_source("1", read_timeout=0.5, reconnects=1, backoff=(0.05, 0.05))
    got, stamps = [], []
    with pytest.raises(RoadsegError, match="reconnect attempts failed"):
        for f in src:
            got.append(int(f.image[0, 0, 0]))
            stamps.append(time.perf_counter())
    src.close()
    assert got[-1] == 52 and any(v < 50 for v in got)  # frames from both captures; live: the newest wins
    watchdog = [(t, text) for t, text in src.events if text.startswith("watchdog")]
    assert len(watchdog) == 1 and "a read hung for more than 0.5 s" in watchdog[0][1]
    # it fired within its bound: between 0.5 s and 0.5 s + slack after the last frame of the hung capture
    last_before = max(s for s, v in zip(stamps, got) if v < 50)
    assert 0.4 < watchdog[0][0] - last_before < 2.0
    assert not hung.released  # abandoned, not released from under the blocked read...
    unblock.set()
    deadline = time.monotonic() + 3
    while not hung.released and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hung.released  # ...but released by its own thread once the read returned


# ---------------------------------------------------------------- an MJPEG stream over HTTP on 127.0.0.1


class MjpegServer:
    """multipart/x-mixed-replace JPEG frames; each connection sends `per_conn` frames (or, with a
    list, the n-th connection sends per_conn[n], the last entry repeating) and then closes it, or
    (stall=True) keeps it open without sending anything more."""

    def __init__(self, per_conn=15, stall=False, port=0, fps=50.0):
        schedule = per_conn if isinstance(per_conn, list) else [per_conn]
        outer = self
        self.connections = 0
        self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                n = schedule[min(outer.connections, len(schedule) - 1)]
                outer.connections += 1
                if n == 0 and stall:  # accept, then say nothing at all
                    outer.release.wait(30)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(n):
                    img = np.full((48, 64, 3), (i * 10) % 256, np.uint8)
                    jpg = cv2.imencode(".jpg", img)[1].tobytes()
                    head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                    try:
                        self.wfile.write(head + jpg + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    if outer.release.wait(1.0 / fps):
                        return
                if stall:
                    outer.release.wait(30)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def test_http_mjpeg_stream_that_disconnects_and_comes_back(tmp_path):
    server = MjpegServer(per_conn=15)
    src = open_source(server.url, read_timeout=3.0, reconnects=20, backoff=(0.1, 0.4))
    assert src.kind == "url" and src.live
    got, restarted, down_at = [], False, None
    deadline = time.monotonic() + 30
    try:
        while len(got) < 30 or not restarted:
            assert time.monotonic() < deadline, f"only {len(got)} frames, events {list(src.events)}"
            f = src.read(0.1)
            if f is not None:
                got.append(f)
                assert f.image.shape == (48, 64, 3)
            elif src.ended:
                raise AssertionError(f"stream ended: {src.error}")
            if not restarted and src.counters()["reconnects"] >= 1:  # the server closed the connection once
                server.stop()  # now the server is gone: reconnects are refused...
                down_at = time.monotonic()
                time.sleep(0.8)
                server = MjpegServer(per_conn=15, port=server.port)  # ...and it comes back
                restarted = True
    finally:
        src.close()
        server.stop()
    assert down_at is not None
    assert src.error is None and src.counters()["reconnects"] >= 2
    assert any("reconnected" in t for _, t in src.events)
    assert [f.index for f in got] == sorted(f.index for f in got)


def test_http_stream_that_stalls_is_caught_within_the_watchdog_bound():
    server = MjpegServer(per_conn=[5, 5, 0], stall=True)  # two connections with frames, then silence
    src = open_source(server.url, read_timeout=1.0, reconnects=2, backoff=(0.05, 0.05))
    stamps = []
    t0 = time.perf_counter()
    try:
        with pytest.raises(RoadsegError, match="reconnect attempts failed"):
            for _ in src:
                stamps.append(time.perf_counter())
    finally:
        src.close()
        server.stop()
    lost = [t for t, text in src.events if "lost" in text]
    # stall, reconnect, frames, stall, reconnect (open hangs), reconnect (open hangs) -> gave up
    assert len(lost) == 3 and server.connections == 4, list(src.events)
    assert stamps and stamps[-1] > lost[0]  # frames resumed after the first stall
    first_gap = lost[0] - max(s for s in stamps if s < lost[0])
    assert 0.7 < first_gap < 2.5, first_gap  # read_timeout 1 s (FFmpeg's or our watchdog, whichever first)
    assert time.perf_counter() - t0 < 15
