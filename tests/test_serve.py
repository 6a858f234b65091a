"""The live view's server over real HTTP on 127.0.0.1: the page, /stats.json, MJPEG that follows the
published frames, its refusals (other paths and methods, unknown streams, too many viewers), a
stalled viewer that slows nothing, and close() ending open connections."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from roadseg.core.errors import RoadsegError, UsageError
from roadseg.runtime.serve import BOUNDARY, LiveView, parse_serve

pytestmark = pytest.mark.timeout(60)


def wait_for(condition, timeout: float) -> bool:
    """True once `condition()` holds (checked every 20 ms), False after `timeout` s."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if condition():
            return True
        tick.wait(0.02)
    return condition()


def image(value: int, size=(48, 64)) -> np.ndarray:
    return np.full((*size, 3), value, np.uint8)


@pytest.fixture
def view():
    v = LiveView("127.0.0.1", 0, streams=["front", "rear cam"], max_clients=2)
    v.start()
    yield v
    v.close()


def get(view: LiveView, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=10)
    conn.request(method, path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), body


class MjpegReader:
    """A viewer: reads one multipart part at a time from /stream/NAME.mjpg."""

    def __init__(self, view: LiveView, name: str):
        self.sock = socket.create_connection(("127.0.0.1", view.port), timeout=10)
        self.sock.sendall(f"GET /stream/{name}.mjpg HTTP/1.0\r\n\r\n".encode())
        self.f = self.sock.makefile("rb")
        self.status = int(self.f.readline().split()[1])
        while self.f.readline() not in (b"\r\n", b""):
            pass

    def part(self) -> np.ndarray:
        assert self.f.readline().strip() == f"--{BOUNDARY}".encode()
        headers = {}
        while (line := self.f.readline()) not in (b"\r\n", b""):
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        assert headers["content-type"] == "image/jpeg"
        data = self.f.read(int(headers["content-length"]))
        self.f.readline()
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    def close(self):
        self.f.close()
        self.sock.close()


def test_parse_serve():
    assert parse_serve("8080") == ("127.0.0.1", 8080)  # this machine only, unless a host is given
    assert parse_serve("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_serve("[::1]:0") == ("::1", 0)
    for bad in ("http", "8080:", "70000", "a b:1"):
        with pytest.raises(UsageError, match=r"give \[HOST:\]PORT"):
            parse_serve(bad)


def test_page_and_stats(view):
    view.set_stats(lambda: {"streams": {"front": {"frames": 3, "fps": 29.5}}, "total": {"frames": 3, "fps": 29.5}})
    status, headers, body = get(view, "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert 'src="/stream/front.mjpg"' in page and 'src="/stream/rear%20cam.mjpg"' in page and "/stats.json" in page
    status, headers, body = get(view, "/stats.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["streams"]["front"]["frames"] == 3
    assert view.url == f"http://127.0.0.1:{view.port}/" and view.port > 0


def test_stream_names_are_escaped_in_the_page():
    with LiveView(streams=['<img src=x onerror="alert(1)">']) as v:
        page = get(v, "/")[2].decode()
    assert "<img src=x" not in page and "&lt;img" in page


def test_mjpeg_follows_the_newest_frame(view):
    view.publish("front", image(10))
    viewer = MjpegReader(view, "front")
    try:
        assert viewer.status == 200
        first = viewer.part()
        assert first.shape == (48, 64, 3) and abs(int(first.mean()) - 10) <= 2
        view.publish("front", image(200))
        assert abs(int(viewer.part().mean()) - 200) <= 2  # a new part once a new frame is published
        status, headers, body = get(view, "/frame/front.jpg")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert abs(int(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).mean()) - 200) <= 2
    finally:
        viewer.close()


@pytest.mark.parametrize("path", ["/index.html", "/../../etc/passwd", "/stream/", "/stream/front.jpg",
                                  "/stream/nope.mjpg", "/frame/%2e%2e%2fetc.jpg", "/stats.json/x", "/runtime/serve.py"])  # fmt: skip
def test_anything_else_is_404(view, path):
    status, _, body = get(view, path)
    assert status == 404 and b"root:" not in body


def test_other_methods_are_405(view):
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = get(view, "/", method)
        assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_too_many_viewers_are_refused_and_a_slot_frees(view):
    view.publish("front", image(1))
    a, b = MjpegReader(view, "front"), MjpegReader(view, "front")
    a.part(), b.part()
    status, _, body = get(view, "/stream/front.mjpg")
    assert status == 503 and b"too many viewers (at most 2)" in body
    a.close()
    view.publish("front", image(2))  # the server notices a's socket is gone when it writes to it
    c = None
    for _ in range(200):  # the slot frees once a's thread ends; each try is a fresh connection, not a sleep
        c = MjpegReader(view, "front")
        if c.status == 200:
            break
        c.close()
        view.publish("front", image(3))
    assert c is not None and c.status == 200
    c.close()
    b.close()


def test_a_stalled_viewer_slows_neither_publish_nor_the_others(view):
    big = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)  # hard to compress: fills buffers
    view.publish("front", big)
    stalled = socket.create_connection(("127.0.0.1", view.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream/front.mjpg HTTP/1.0\r\n\r\n")  # and never reads
    healthy = MjpegReader(view, "front")
    try:
        healthy.part()
        done = threading.Event()
        longest = []

        def publisher():
            for i in range(300):
                t0 = time.perf_counter()
                view.publish("front", big if i % 2 else big[::-1])
                longest.append(time.perf_counter() - t0)
            view.publish("front", image(77, (720, 1280)))
            done.set()

        threading.Thread(target=publisher, daemon=True).start()
        assert done.wait(10), "publish blocked behind a stalled viewer"
        assert max(longest) < 0.5  # O(1): a reference and a notify, however stalled the viewer
        for _ in range(400):  # the healthy viewer still gets frames, up to the newest
            if abs(int(healthy.part().mean()) - 77) <= 2:
                break
        else:
            pytest.fail("the healthy viewer never got the newest frame")
    finally:
        stalled.close()
        healthy.close()


def test_close_ends_open_viewers_and_the_port():
    v = LiveView(streams=["front"])
    v.start()
    v.publish("front", image(5))
    viewer = MjpegReader(v, "front")
    viewer.part()
    v.close()
    v.close()  # idempotent
    rest = viewer.f.read()  # returns (EOF) instead of blocking: the connection was ended
    assert BOUNDARY.encode() not in rest or len(rest) < 10_000
    viewer.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", v.port), timeout=2).close()


def test_a_port_in_use_is_one_clear_error():
    with LiveView() as first:
        with pytest.raises(RoadsegError, match=rf"--serve 127.0.0.1:{first.port}: cannot listen there .*choose another port"):
            LiveView("127.0.0.1", first.port).start()


# ---------------------------------------------------------------- ended streams, clients that leave or drip


def test_ended_and_empty_streams_answer_at_once():
    with LiveView(streams=["done", "empty", "waiting"], max_clients=2) as v:
        v.publish("done", image(40))
        v.end("done")
        v.end("empty", "failed: rtsp://admin:hunter2@10.0.0.9/live: cannot open")
        status, _, body = get(v, "/frame/done.jpg")  # http.client's 10 s timeout: a hang fails here
        assert status == 200 and abs(int(cv2.imdecode(np.frombuffer(body, np.uint8), 1).mean()) - 40) <= 2
        viewer = MjpegReader(v, "done")
        assert viewer.status == 200 and abs(int(viewer.part().mean()) - 40) <= 2
        assert viewer.f.read() == b""  # then the response ends: no wait for a frame that never comes
        viewer.close()
        for path in ("/frame/empty.jpg", "/stream/empty.mjpg"):
            status, _, body = get(v, path)
            assert status == 410 and b"failed" in body and b"hunter2" not in body
        status, _, body = get(v, "/frame/waiting.jpg")
        assert status == 503 and b"no frame yet" in body
        assert v._slots._value == 2  # every slot back


def test_viewers_that_leave_a_stream_without_frames_free_their_slots():
    with LiveView(streams=["waiting"], max_clients=2) as v:
        for _ in range(3):  # page reloads: each viewer leaves before any frame came
            viewers = [MjpegReader(v, "waiting") for _ in range(2)]
            assert [x.status for x in viewers] == [200, 200]
            for x in viewers:
                x.close()
            assert wait_for(lambda: v._slots._value == 2, 5), "a viewer that left kept its slot"
            assert wait_for(lambda: v._connections == 0, 5), "a viewer that left kept its thread"
        v.publish("waiting", image(9))
        last = MjpegReader(v, "waiting")
        assert last.status == 200 and abs(int(last.part().mean()) - 9) <= 2
        last.close()


def test_a_client_dripping_its_request_is_dropped_after_the_client_timeout():
    with LiveView(streams=["front"], client_timeout=1.0) as v:
        sock = socket.create_connection(("127.0.0.1", v.port), timeout=5)
        sock.sendall(b"GET / HTTP/1.0\r\n")
        sock.settimeout(0.3)  # a byte every 0.3 s: each resets a per-read timeout, never the request deadline
        closed_after = None
        for drip in range(40):
            try:
                sock.sendall(b"X")
                if sock.recv(1024) == b"":
                    closed_after = drip
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = drip
                break
        sock.close()
        assert closed_after is not None and closed_after <= 12  # 1 s deadline + the reaper's 0.5 s poll


def test_connections_of_every_kind_are_capped_and_idle_ones_reaped():
    with LiveView(streams=["front"], max_clients=1, max_connections=3, client_timeout=1.0) as v:
        idle = [socket.create_connection(("127.0.0.1", v.port), timeout=5) for _ in range(3)]
        refused = socket.create_connection(("127.0.0.1", v.port), timeout=5)
        assert b"503" in refused.recv(1024).split(b"\r\n")[0]
        refused.close()
        for s in idle:  # reaped: none of them sent a request
            assert s.recv(1024) == b""
            s.close()
        status, _, _ = get(v, "/stats.json")
        assert status == 200


def test_a_burst_of_connections_fits_the_listen_backlog(monkeypatch):
    with LiveView(streams=["front"], max_connections=100) as v:
        gate, stopped = threading.Event(), threading.Event()
        monkeypatch.setattr(v, "_reap", lambda: (stopped.set(), gate.wait(10)))
        assert stopped.wait(5)  # the accepting thread waits at the gate: new connections queue in the backlog
        socks = [socket.create_connection(("127.0.0.1", v.port), timeout=2) for _ in range(60)]
        for s in socks:
            s.sendall(b"GET /stats.json HTTP/1.0\r\n\r\n")
        gate.set()
        for s in socks:
            s.settimeout(10)
            assert s.recv(64).startswith(b"HTTP/1.0 200")
            s.close()


def test_clients_that_leave_early_print_no_traceback(capfd, caplog):
    import logging
    import struct

    caplog.set_level(logging.DEBUG, logger="roadseg")
    with LiveView(streams=["front"]) as v:
        v.publish("front", np.random.default_rng(1).integers(0, 255, (720, 1280, 3), dtype=np.uint8))
        for path in ("/", "/stats.json", "/frame/front.jpg", "/stream/front.mjpg") * 5:
            s = socket.create_connection(("127.0.0.1", v.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            s.close()
        assert get(v, "/stats.json")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err
    assert all(r.levelno <= logging.DEBUG for r in caplog.records if "live view" in r.getMessage())


def test_404_lists_every_endpoint(view):
    body = get(view, "/nothing")[2].decode()
    assert all(e in body for e in ("/stats.json", "/stream/NAME.mjpg", "/frame/NAME.jpg"))


def test_a_viewer_that_stops_reading_is_dropped_after_the_client_timeout():
    big = np.random.default_rng(2).integers(0, 255, (720, 1280, 3), dtype=np.uint8)  # fills the socket buffers
    with LiveView(streams=["front"], max_clients=1, client_timeout=1.0) as v:
        stalled = socket.create_connection(("127.0.0.1", v.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /stream/front.mjpg HTTP/1.0\r\n\r\n")  # and never reads again
        assert wait_for(lambda: v._slots._value == 0, 5)
        tick = threading.Event()
        for i in range(500):  # new frames keep coming: each send may block at most the client timeout
            v.publish("front", big if i % 2 else big[::-1])
            if v._slots._value == 1:
                break
            tick.wait(0.02)
        stalled.close()
        assert v._slots._value == 1, "a viewer that stopped reading kept its slot"
