"""The live view: `roadseg run ... --serve [HOST:]PORT`, a small HTTP server beside the pipeline for
a device without a screen.

    /                    one page: every stream's overlay, live, and a stats panel
    /stream/NAME.mjpg    a stream's overlays as MJPEG (multipart/x-mixed-replace), newest frame only
    /frame/NAME.jpg      a stream's newest overlay, one JPEG
    /stats.json          per-stream and total FPS, latency p50/p99, drops, reconnects, state

Standard library only (http.server), because the runtime goes on the car and MJPEG needs nothing
more. Safe by default: it binds 127.0.0.1 unless a host is given (reach it from a laptop with
`ssh -L 8080:127.0.0.1:8080 device`), serves those endpoints and nothing else (no files, no
listing; other methods 405), takes at most `max_clients` MJPEG viewers and `max_connections`
connections of any kind at once (503 beyond), and drops a connection that has not sent its request
within CLIENT_TIMEOUT seconds (however slowly it drips bytes) or stalls a send that long. A stream
that has ended answers at once: its last frame, or a status when it never had one; a viewer that
closes its page frees its slot and thread within WAIT_STEP. A client going away is normal: it is
logged at debug level, never as a traceback.

Inference never waits for a viewer: `publish` (called on each stream's writer thread) stores a
reference to the newest overlay and wakes the viewers, nothing more. Each viewer's own thread
encodes the newest frame when it is ready for one (a frame is encoded at most once however many
viewers there are) and skips the frames it was too slow for, so a slow or stalled viewer costs
only its own thread.
"""

from __future__ import annotations

import html
import json
import logging
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import numpy as np

from roadseg.core.errors import RoadsegError, UsageError

from .redact import redact

CLIENT_TIMEOUT = 10.0  # seconds a viewer may stall (or a connection idle) before it is dropped
WAIT_STEP = 0.5  # seconds a viewer thread waits for a frame before it checks for shutdown
BOUNDARY = "roadsegframe"
BACKLOG = 128  # connections the kernel queues before accept: a page reload opens several at once
ENDPOINTS = "/, /stats.json, /stream/NAME.mjpg and /frame/NAME.jpg"

log = logging.getLogger("roadseg")


def parse_serve(text: str) -> tuple[str, int]:
    """`--serve` -> (host, port): "8080" and ":8080" listen on 127.0.0.1; "0.0.0.0:8080" on every
    interface; "[::1]:8080" on an IPv6 address; port 0 picks a free one."""
    m = re.fullmatch(r"(?:(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):)?(\d+)", text.strip())
    port = int(m.group(3)) if m else -1
    if m is None or not 0 <= port <= 65535:
        raise UsageError(f"--serve {text}: give [HOST:]PORT, e.g. 8080, 0.0.0.0:8080 or [::1]:8080 (port 0 picks a free one)")
    return (m.group(1) or m.group(2) or "127.0.0.1"), port


class _Feed:
    """One stream's newest overlay, its sequence number and (once a viewer asked) its JPEG."""

    __slots__ = ("seq", "image", "jpeg", "jpeg_seq", "ended")

    def __init__(self) -> None:
        self.seq = 0
        self.image: np.ndarray | None = None
        self.jpeg: bytes | None = None
        self.jpeg_seq = -1
        self.ended: str | None = None  # "ended", "stopped" or "failed: ..." once no frame will come


def exposure_warning(host: str) -> str | None:
    """One line for a view that other machines can reach: it has no authentication."""
    if host in ("127.0.0.1", "::1", "localhost") or host.startswith("127."):
        return None
    return (f"warning: the live view on {host} has no authentication: anyone who can reach this port sees every "
            "stream; bind 127.0.0.1 and use `ssh -L` to watch from another machine")  # fmt: skip


class LiveView:
    """The server; `start()` binds and serves on daemon threads, `close()` stops it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, streams: list[str] | None = None,
                 max_clients: int = 8, quality: int = 80, log: Callable[[str], None] | None = None,
                 max_connections: int | None = None, client_timeout: float = CLIENT_TIMEOUT) -> None:  # fmt: skip
        self.host, self.port = host, port
        self.max_clients, self.quality = max_clients, quality
        self.max_connections = max_connections or 2 * max_clients + 8  # viewers, pages, stats and /frame polls
        self.client_timeout = client_timeout
        self._log = log
        self._feeds: dict[str, _Feed] = {name: _Feed() for name in streams or []}
        self._cond = threading.Condition()
        self._encode = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_clients)
        self._stats: Callable[[], dict] = dict
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._clients: set[socket.socket] = set()
        self._unparsed: dict[socket.socket, float] = {}  # connections still sending their request -> deadline
        self._connections = 0

    # -- the pipeline's side

    def publish(self, stream: str, image: np.ndarray) -> None:
        """The newest overlay of `stream` (BGR uint8); O(1), never blocks on a viewer."""
        with self._cond:
            feed = self._feeds.get(stream)
            if feed is None:
                feed = self._feeds[stream] = _Feed()
            feed.seq += 1
            feed.image = image
            self._cond.notify_all()

    def end(self, stream: str, status: str = "ended") -> None:
        """No more frames will come for `stream`: its viewers get its last frame (or `status`) at
        once instead of waiting."""
        with self._cond:
            feed = self._feeds.get(stream)
            if feed is None:
                feed = self._feeds[stream] = _Feed()
            feed.ended = redact(status)
            self._cond.notify_all()

    def set_stats(self, fn: Callable[[], dict]) -> None:
        """/stats.json serves json.dumps(fn())."""
        self._stats = fn

    # -- life cycle

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("Server", (_Server,), {"address_family": family, "view": self})
        handler = type("Handler", (_Handler,), {"view": self, "timeout": self.client_timeout})
        try:
            self._server = server_class((self.host, self.port), handler)
        except (OSError, OverflowError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise RoadsegError(f"--serve {self.host}:{self.port}: cannot listen there ({why}); choose another port, "
                               "or 0 for a free one") from None  # fmt: skip
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": WAIT_STEP},
                                        name="roadseg-serve", daemon=True)  # fmt: skip
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        """Stop serving and end every viewer's connection; idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            clients = list(self._clients)
        for sock in clients:  # a viewer blocked in a send returns at once
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> LiveView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the viewers' side

    @property
    def streams(self) -> list[str]:
        with self._cond:
            return list(self._feeds)

    def _next(self, stream: str, after: int, alive: Callable[[], bool] = lambda: True) -> tuple[int, bytes] | str:
        """The newest frame of `stream` newer than `after`, as (seq, JPEG); waits for one while the
        stream runs and `alive()` (the client is still there). Else, at once, why not: the stream's
        end status, "gone" (the client left) or "closing" (the view closes)."""
        with self._cond:
            while True:
                feed = self._feeds[stream]
                if self._closing:
                    return "closing"
                if feed.seq > after and feed.image is not None:
                    seq, image = feed.seq, feed.image
                    break
                if feed.ended is not None:
                    return feed.ended
                self._cond.wait(WAIT_STEP)
                if not alive():
                    return "gone"
        return seq, self._jpeg(feed, seq, image)

    def _newest(self, stream: str) -> tuple[int, bytes] | str:
        """The newest frame of `stream` at once, or why there is none (its end status, or "no
        frame yet")."""
        with self._cond:
            feed = self._feeds[stream]
            if feed.image is None:
                return feed.ended or "no frame yet"
            seq, image = feed.seq, feed.image
        return seq, self._jpeg(feed, seq, image)

    def _jpeg(self, feed: _Feed, seq: int, image: np.ndarray) -> bytes:
        """Encoded once per frame, whoever asks first; viewers that come later reuse it."""
        import cv2

        with self._encode:
            if feed.jpeg_seq != seq:
                ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if not ok:
                    raise RoadsegError("the live view could not encode a frame as JPEG")
                feed.jpeg, feed.jpeg_seq = data.tobytes(), seq
            assert feed.jpeg is not None
            return feed.jpeg

    def _track(self, sock: socket.socket, on: bool) -> None:
        with self._cond:
            (self._clients.add if on else self._clients.discard)(sock)

    def _admit(self, sock: socket.socket) -> bool:
        """A new connection: counted, and given CLIENT_TIMEOUT to send its request; False (refuse it)
        beyond `max_connections`."""
        with self._cond:
            if self._connections >= self.max_connections:
                return False
            self._connections += 1
            self._unparsed[sock] = time.monotonic() + self.client_timeout
            return True

    def _parsed(self, sock: socket.socket) -> None:
        with self._cond:
            self._unparsed.pop(sock, None)

    def _leave(self, sock: socket.socket) -> None:
        with self._cond:
            self._unparsed.pop(sock, None)
            self._connections -= 1

    def _reap(self) -> None:
        """Shut the connections that have not sent a whole request in time (a client dripping a
        byte every few seconds resets every read timeout, never this deadline)."""
        now = time.monotonic()
        with self._cond:
            late = [sock for sock, deadline in self._unparsed.items() if now > deadline]
            for sock in late:
                del self._unparsed[sock]
        for sock in late:
            log.debug("live view: dropping a client that sent no request within %g s", self.client_timeout)
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _client_alive(sock: socket.socket) -> bool:
    """False once the client closed its end (or the socket failed); bytes it sent are discarded."""
    try:
        if not select.select([sock], [], [], 0)[0]:
            return True
        return bool(sock.recv(4096, socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True
    except (OSError, ValueError):
        return False


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most `view.max_connections` at once (a short 503 beyond,
    written without blocking from the accepting thread); late requests reaped; a client that goes
    away logged at debug level, never as a traceback."""

    view: LiveView  # set on the subclass LiveView.start makes
    daemon_threads = True
    request_queue_size = BACKLOG

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.view._admit(request):
            try:
                request.setblocking(False)
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 45\r\n\r\n"
                             b"too many connections; close a page and retry\n")  # fmt: skip
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.view._leave(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.view._leave(request)

    def service_actions(self) -> None:
        self.view._reap()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        e = sys.exc_info()[1]
        if isinstance(e, OSError):  # a reset, a broken pipe, a timeout: the client went away
            log.debug("live view: %s went away (%s)", client_address[0], e)
        else:
            log.warning("live view: a request from %s failed (%s)", client_address[0], redact(repr(e)))


class _Handler(BaseHTTPRequestHandler):
    view: LiveView  # set on the subclass LiveView.start makes
    server_version = "roadseg"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request a connection: nothing lingers between polls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        log.debug("live view: %s %s", self.address_string(), format % args)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.view._parsed(self.connection)  # the whole request is in: the reaper's deadline no longer applies
        return ok

    def _send(self, status: int, body: bytes, ctype: str, head_only: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._safe_headers()
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _safe_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")

    def _refuse(self, status: HTTPStatus, why: str, head_only: bool = False) -> None:
        self._send(status, (why + "\n").encode(), "text/plain; charset=utf-8", head_only)

    def do_GET(self, head_only: bool = False) -> None:  # noqa: N802 - http.server's name
        path = urlsplit(self.path).path
        if path == "/":
            self._send(HTTPStatus.OK, _page(self.view.streams).encode(), "text/html; charset=utf-8", head_only)
        elif path == "/stats.json":
            try:
                body = json.dumps(self.view._stats(), allow_nan=False).encode()
            except (TypeError, ValueError) as e:  # a bad number must not take the page down
                body = json.dumps({"error": f"stats unavailable: {e}"}).encode()
            self._send(HTTPStatus.OK, body, "application/json", head_only)
        elif (m := re.fullmatch(r"/(stream|frame)/([^/]+)\.(mjpg|jpg)", path)) and (
            (m.group(1), m.group(3)) in (("stream", "mjpg"), ("frame", "jpg"))
        ):
            name = unquote(m.group(2))
            if name not in self.view.streams:
                self._refuse(HTTPStatus.NOT_FOUND, f"no stream {name!r} here", head_only)
            elif m.group(1) == "frame":
                self._frame(name, head_only)
            else:
                self._mjpeg(name, head_only)
        else:
            self._refuse(HTTPStatus.NOT_FOUND, f"not found: this server has {ENDPOINTS}", head_only)

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET(head_only=True)

    def _not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815

    def _frame(self, name: str, head_only: bool) -> None:
        got = self.view._newest(name)
        if isinstance(got, str):
            status = HTTPStatus.SERVICE_UNAVAILABLE if got == "no frame yet" else HTTPStatus.GONE
            self._refuse(status, f"stream {name}: {got}", head_only)
            return
        self._send(HTTPStatus.OK, got[1], "image/jpeg", head_only)

    def _mjpeg(self, name: str, head_only: bool) -> None:
        if not self.view._slots.acquire(blocking=False):
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, f"too many viewers (at most {self.view.max_clients}); "
                         "close another page and reload", head_only)  # fmt: skip
            return
        self.view._track(self.connection, True)
        try:
            got = self.view._newest(name)
            if isinstance(got, str) and got != "no frame yet":  # ended without a frame: say so at once
                self._refuse(HTTPStatus.GONE, f"stream {name}: {got}", head_only)
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self._safe_headers()
            self.end_headers()
            if head_only:
                return
            seq = 0
            alive = lambda: _client_alive(self.connection)  # noqa: E731
            while not isinstance(got := self.view._next(name, seq, alive), str):
                seq, jpeg = got
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                                 + jpeg + b"\r\n")  # fmt: skip
                self.wfile.flush()
        except OSError as e:  # the viewer went away, or stalled past CLIENT_TIMEOUT: only this thread ends
            log.debug("live view: viewer of %s went away (%s)", name, e)
        finally:
            self.view._track(self.connection, False)
            self.view._slots.release()


def _page(streams: list[str]) -> str:
    tiles = "".join(
        f'<figure><img id="s-{html.escape(quote(n, safe=""))}" src="/stream/{html.escape(quote(n, safe=""))}.mjpg" '
        f'alt="{html.escape(n)}"><figcaption>{html.escape(n)}</figcaption></figure>'
        for n in streams
    )
    return _PAGE.replace("{{tiles}}", tiles)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>roadseg live view</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:12px;background:#111;color:#ddd}
h1{font-size:16px;margin:0 0 8px}
#grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}figure img{display:block;max-width:640px;width:100%;background:#222}
figcaption{padding:2px 0;color:#aaa}
table{border-collapse:collapse;margin-top:10px}td,th{padding:2px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}
</style></head><body>
<h1>roadseg live view <span id="backend"></span></h1>
<div id="grid">{{tiles}}</div>
<table id="stats"><thead><tr><th>stream</th><th>frames</th><th>FPS</th><th>p50 ms</th><th>p99 ms</th>
<th>drops</th><th>reconnects</th><th>state</th></tr></thead><tbody></tbody>
<tfoot><tr><td>total</td><td id="total-frames">0</td><td id="total-fps">-</td><td colspan="5"></td></tr></tfoot></table>
<script>
const fmt = v => (v === null || v === undefined) ? "-" : (typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(1)) : v);
function cell(row, v) { const td = document.createElement("td"); td.textContent = fmt(v); row.appendChild(td); }
async function refresh() {
  try {
    const s = await (await fetch("/stats.json", {cache: "no-store"})).json();
    document.getElementById("backend").textContent = s.backend ? "(" + s.backend + ")" : "";
    const body = document.querySelector("#stats tbody");
    body.replaceChildren();
    for (const [name, v] of Object.entries(s.streams || {})) {
      const id = "s-" + encodeURIComponent(name);
      if (!document.getElementById(id)) {  // a stream the page did not know yet
        const fig = document.createElement("figure"), img = document.createElement("img"), cap = document.createElement("figcaption");
        img.id = id; img.alt = name; img.src = "/stream/" + encodeURIComponent(name) + ".mjpg"; cap.textContent = name;
        fig.append(img, cap); document.getElementById("grid").appendChild(fig);
      }
      const row = document.createElement("tr");
      row.dataset.stream = name;
      for (const k of [name, v.frames, v.fps, v.latency_p50_ms, v.latency_p99_ms, v.drops, v.reconnects, v.state]) cell(row, k);
      body.appendChild(row);
    }
    document.getElementById("total-frames").textContent = fmt((s.total || {}).frames);
    document.getElementById("total-fps").textContent = fmt((s.total || {}).fps);
  } catch (e) { /* the run ended or the network blinked: try again at the next tick */ }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""
