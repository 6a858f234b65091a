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
