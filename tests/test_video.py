"""Overlay videos: H.264 in a fragmented MP4 (PyAV), readable after a SIGKILL; mp4v only as a
fallback said in one line. Codecs are read back with PyAV, and with ffprobe where it is installed."""

from __future__ import annotations

import functools
import json
import logging
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from roadseg.runtime import videoenc
from roadseg.runtime.sinks import VideoSink
from roadseg.runtime.synthetic import make_scene

av = pytest.importorskip("av")
pytestmark = pytest.mark.skipif(videoenc.h264_problem() is not None, reason=f"{videoenc.h264_problem()}")


def probe(path) -> tuple[str, int]:
    """(codec name, frames decoded) as PyAV reads the file."""
    with av.open(str(path)) as c:
        codec = c.streams.video[0].codec_context.name
        return codec, sum(1 for _ in c.decode(video=0))


@functools.cache
def ffprobe_works() -> bool:
    if shutil.which("ffprobe") is None:
        return False
    return subprocess.run(["ffprobe", "-version"], capture_output=True, timeout=30).returncode == 0


def ffprobe_codec(path) -> str | None:
    """What ffprobe says the first video stream is, or None where no working ffprobe is installed."""
    if not ffprobe_works():
        return None
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=codec_name",
                          "-of", "json", str(path)], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["streams"][0]["codec_name"]


def scenes(n, size=(120, 160)):
    return [make_scene(i, size)[0] for i in range(n)]


def test_mp4_is_h264_and_decodes_every_frame(tmp_path):
    v = VideoSink(tmp_path / "o.mp4", fps=29.97)
    for f in scenes(20):
        v.write(f)
    assert v.close() == tmp_path / "o.mp4" and v.fourcc == "h264"
    assert probe(tmp_path / "o.mp4") == ("h264", 20)
    assert ffprobe_codec(tmp_path / "o.mp4") in (None, "h264")
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert abs(float(c.streams.video[0].average_rate) - 29.97) < 0.01


def test_colours_survive_the_encoder(tmp_path):
    """BGR in, BGR out: a pure blue frame is not written as red (a swapped channel order)."""
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[..., 0] = 255
    v = VideoSink(tmp_path / "b.mp4")
    v.write(frame)
    v.close()
    with av.open(str(tmp_path / "b.mp4")) as c:
        back = next(c.decode(video=0)).to_ndarray(format="bgr24")
    assert back[..., 0].mean() > 200 and back[..., 2].mean() < 50


def test_without_pyav_mp4v_is_the_fallback_in_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(videoenc, "h264_problem", lambda: "PyAV is not installed")
    with caplog.at_level(logging.WARNING, logger="roadseg"):
        v = VideoSink(tmp_path / "o.mp4")
        for f in scenes(3):
            v.write(f)
        v.close()
    assert v.fourcc == "mp4v" and probe(tmp_path / "o.mp4") == ("mpeg4", 3)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "o.mp4: PyAV is not installed" in lines[0] and "pip install av" in lines[0]
    assert "\n" not in lines[0]


def test_avi_stays_mjpg(tmp_path):
    v = VideoSink(tmp_path / "o.avi")
    for f in scenes(2):
        v.write(f)
    v.close()
    assert probe(tmp_path / "o.avi") == ("mjpeg", 2)


def test_sigkill_mid_write_leaves_a_readable_h264_file(tmp_path):
    """The child says how many frames `write` has returned for; every one of them but the newest
    must decode from the temporary file a SIGKILL leaves (the target path itself stays absent)."""
    code = (
        "import sys\n"
        "from roadseg.runtime.sinks import VideoSink\n"
        "from roadseg.runtime.synthetic import make_scene\n"
        "frames = [make_scene(i, (120, 160))[0] for i in range(8)]\n"
        "v = VideoSink(sys.argv[1])\n"
        "for i in range(10**6):\n"
        "    v.write(frames[i % 8])\n"
        "    if i + 1 == 40: print(i + 1, flush=True)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "o.mp4")], stdout=subprocess.PIPE, text=True)
    try:
        written = int(p.stdout.readline())
        p.send_signal(signal.SIGKILL)
        assert p.wait(30) == -signal.SIGKILL
    finally:
        p.kill()
        p.stdout.close()
    assert not (tmp_path / "o.mp4").exists()
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".o.mp4.") and left.suffix == ".mp4"
    codec, frames = probe(left)
    assert codec == "h264" and frames >= written - 1  # the muxer holds the newest frame until the next one dates it
    assert ffprobe_codec(left) in (None, "h264")


def test_demo_writes_h264(tmp_path, tiny_onnx):
    from roadseg.cli import main

    assert main(["demo", "--model", str(tiny_onnx), "--frames", "6", "--out", str(tmp_path), "--threads", "1"]) == 0
    assert probe(tmp_path / "demo.mp4") == ("h264", 6)
    assert ffprobe_codec(tmp_path / "demo.mp4") in (None, "h264")


PLAY = """
const done = arguments[arguments.length - 1];
const v = document.createElement('video');
v.muted = true;
v.onerror = () => done({error: v.error ? v.error.code : -1});
v.ontimeupdate = () => { if (v.currentTime > 0) done({w: v.videoWidth, h: v.videoHeight, t: v.currentTime}); };
v.onloadeddata = () => v.play().catch(e => done({error: String(e)}));
v.src = arguments[0];
document.body.appendChild(v);
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_chromium_plays_the_h264_videos_and_refuses_mp4v(tmp_path):
    """What a browser does with each file: the finished H.264 video and the temporary file of an
    unfinished one (what a killed run leaves) play; OpenCV's mp4v does not (MEDIA_ERR_SRC_NOT_SUPPORTED)."""
    import http.server
    import threading

    from test_live_view_browser import _driver

    browser = _driver()
    frames = scenes(40)
    done = VideoSink(tmp_path / "done.mp4")
    for f in frames:
        done.write(f)
    done.close()
    unfinished = VideoSink(tmp_path / "unfinished.mp4")
    for f in frames:
        unfinished.write(f)
    shutil.copyfile(unfinished.tmp, tmp_path / "killed.mp4")  # as a SIGKILL leaves it: no trailer, no flush
    unfinished.abort()
    old = VideoSink(tmp_path / "mp4v.mp4", fourcc="mp4v")
    for f in frames:
        old.write(f)
    old.close()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        browser.set_script_timeout(60)
        browser.get(base + "/")
        got = {name: browser.execute_async_script(PLAY, f"{base}/{name}") for name in ("done.mp4", "killed.mp4", "mp4v.mp4")}
    finally:
        browser.quit()
        server.shutdown()
        server.server_close()
    for name in ("done.mp4", "killed.mp4"):
        assert got[name].get("error") is None and (got[name]["w"], got[name]["h"]) == (160, 120) and got[name]["t"] > 0, got
    assert got["mp4v.mp4"] == {"error": 4}, got
