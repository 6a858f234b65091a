"""Many streams and the live view under faults: unique stream names whatever the sources are called,
outputs that never overwrite one another, secrets kept out of every output channel, absurd stream
counts refused, and finalisation that does not recurse."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import cv2
import pytest
from conftest import decode_count
from test_multistream import BatchBackend
from test_stream_cli import run_cli
from test_stream_pipeline import ramp_frames

from roadseg.core.errors import RoadsegError, UsageError
from roadseg.runtime.iterate import iterate
from roadseg.runtime.naming import check_distinct_outputs, stream_names, stream_outputs
from roadseg.runtime.pipeline import run_streams
from roadseg.runtime.serve import LiveView

pytestmark = pytest.mark.timeout(120)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def write_video(path, n, size=(48, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size[1], size[0]))
    for f in ramp_frames(n, size):
        w.write(f)
    w.release()
    return path


# ---------------------------------------------------------------- 1. unique stream names


def test_stream_names_are_unique_whatever_the_sources_are_called():
    assert stream_names(["x/a.avi", "y/a.avi", "a-2.avi"]) == ["a", "a-2", "a-2-2"]
    assert stream_names(["a-2.avi", "a.avi", "a.avi"]) == ["a-2", "a", "a-3"]
    names = stream_names(["A.avi", "a.avi", "x/A.avi"])  # case-insensitive file systems: one file for A and a
    assert len({n.casefold() for n in names}) == 3
    several = stream_names([f"d{i}/cam.avi" for i in range(30)] + ["cam-2.avi", "cam-10.avi"])
    assert len(set(several)) == 32


def test_run_with_sources_whose_names_collide_keeps_every_stream(tmp_path, tiny_onnx_dynamic, capsys):
    a1, a2 = write_video(tmp_path / "x" / "a.avi", 3), write_video(tmp_path / "y" / "a.avi", 4)
    b = write_video(tmp_path / "a-2.avi", 5)
    rc, out, err = run_cli(["run", tiny_onnx_dynamic, "--source", a1, "--source", a2, "--source", b, "--save",
                            tmp_path / "v", "--save-masks", tmp_path / "m", "--backend", "ort-cpu",
                            "--threads", "1"], capsys)  # fmt: skip
    assert rc == 0, err
    assert "3 streams" in out and "12 frames" in out
    counts = {p.name: len(list(p.iterdir())) for p in (tmp_path / "m").iterdir()}
    assert counts == {"a": 3, "a-2": 4, "a-2-2": 5}
    assert {p.name: decode_count(p) for p in (tmp_path / "v").iterdir()} == {"a.mp4": 3, "a-2.mp4": 4, "a-2-2.mp4": 5}


def test_segmenter_streams_and_the_live_view_get_unique_names():
    specs = [ramp_frames(2), ramp_frames(3), ramp_frames(4)]
    got = list(iterate(BatchBackend(), specs))
    by_name: dict[str, int] = {}
    for name, *_ in got:
        by_name[name] = by_name.get(name, 0) + 1
    assert by_name == {"frames": 2, "frames-2": 3, "frames-3": 4}

    class View:
        published: set = set()

        def publish(self, name, image):
            self.published.add(name)

        def set_stats(self, fn):
            pass

        def end(self, name, status):
            pass

    view = View()
    run_streams(BatchBackend(), specs, view=view, log=None)
    assert view.published == {"frames", "frames-2", "frames-3"}


def test_outputs_two_streams_share_or_another_streams_source_are_refused(tmp_path):
    specs = [str(write_video(tmp_path / "out" / "bx.avi", 2)), "b.avi"]  # stream "b" would write out/bx.avi
    with pytest.raises(UsageError, match="is the source"):
        check_distinct_outputs(specs, stream_outputs(stream_names(specs), tmp_path / "out" / "{stream}x.avi", None))
    with pytest.raises(UsageError, match="two streams would write there"):
        check_distinct_outputs(["a", "b"], [(str(tmp_path / "v.mp4"), None), (str(tmp_path / "v.mp4"), None)])
    rc_out = run_streams(BatchBackend(), [ramp_frames(2), ramp_frames(2)], save=tmp_path / "{stream}.avi", log=None)
    assert sorted(rc_out.streams) == ["frames", "frames-2"]


def test_the_summary_never_truncates_two_names_into_one():
    long = ["a-very-long-camera-name-front", "a-very-long-camera-name-rear"]
    result = run_streams(BatchBackend(), [ramp_frames(1), ramp_frames(1)], log=None)
    result.streams = dict(zip(long, result.streams.values()))
    rows = [line.split()[0] for line in result.table().splitlines()[2:4]]
    assert rows == long


# ---------------------------------------------------------------- --serve from the command line


def test_serve_beyond_this_machine_warns_and_a_bad_model_fails_before_binding(tmp_path, tiny_onnx, capsys, monkeypatch):
    from roadseg.runtime import serve

    assert serve.exposure_warning("127.0.0.1") is None and serve.exposure_warning("::1") is None
    assert "no authentication" in serve.exposure_warning("0.0.0.0") and "ssh -L" in serve.exposure_warning("::")
    started = []
    monkeypatch.setattr(serve.LiveView, "start", lambda self: started.append(self))
    rc, _, err = run_cli(["run", tmp_path / "missing.onnx", "--source", "synthetic:2", "--serve", "0"], capsys)
    assert rc == 1 and "model file not found" in err and started == []
    monkeypatch.setattr(serve, "exposure_warning", lambda host: "warning: shown to the network")
    monkeypatch.setattr(serve.LiveView, "close", lambda self: None)
    rc, _, err = run_cli(["run", tiny_onnx, "--source", "synthetic:2", "--serve", "0", "--threads", "1"], capsys)
    assert rc == 0 and err.count("warning: shown to the network") == 1 and len(started) == 1


# ---------------------------------------------------------------- 4. credentials never shown; 11. a source that cannot open


SECRETS = ("hunter2", "s3cr3t")


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: connections are refused at once
    return port


def secret_url(port: int) -> str:
    return f"http://admin:hunter2@127.0.0.1:{port}/live?channel=1&token=s3cr3t"


def test_credentials_stay_out_of_every_output_channel(tmp_path, tiny_onnx_dynamic, capfd):
    """stderr (errors, events, FFmpeg's own lines), the summary, /stats.json, the live page, the
    stream endpoints, the Python exception and the log: the URL's user, password and token never."""
    from roadseg.cli import main

    url = secret_url(closed_port())
    rc = main([str(a) for a in ["run", tiny_onnx_dynamic, "--source", "synthetic:3", "--source", url, "--reconnects",
                                "1", "--read-timeout", "1", "--verbose", "--backend", "ort-cpu", "--threads", "1"]])  # fmt: skip
    cli = capfd.readouterr()
    assert rc == 1 and "1 of 2 streams failed" in cli.err and "127.0.0.1" in cli.out + cli.err
    seen = [cli.out, cli.err]

    lines: list[str] = []
    with LiveView(streams=stream_names(["synthetic", url])) as view:
        with pytest.raises(RoadsegError) as failed:
            run_streams(BatchBackend(), [ramp_frames(3), url], view=view, log=lines.append,
                        source_options={"reconnects": 0, "read_timeout": 1.0})  # fmt: skip
        name = stream_names(["synthetic", url])[1]
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{view.port}/stats.json", timeout=10).read())
        assert stats["streams"][name]["state"].startswith("failed: ")
        seen += [json.dumps(stats), str(failed.value), failed.value.summary.table(), json.dumps(failed.value.summary.to_dict())]
        for path in ("/", f"/frame/{name}.jpg", f"/stream/{name}.mjpg"):
            try:
                seen.append(urllib.request.urlopen(f"http://127.0.0.1:{view.port}{path}", timeout=10).read().decode())
            except urllib.error.HTTPError as e:  # 410: it ended without a frame, and says why
                seen.append(e.read().decode())
    seen += lines + [capfd.readouterr().err]
    assert any("***" in text for text in seen)
    for text in seen:
        assert not any(secret in text for secret in SECRETS), text


def test_a_source_that_cannot_open_fails_alone_among_several(tmp_path):
    lines: list[str] = []
    url = f"http://127.0.0.1:{closed_port()}/x"
    cam = stream_names([url])[0]
    with pytest.raises(RoadsegError, match="2 of 3 streams failed") as failed:
        run_streams(BatchBackend(), [tmp_path / "missing.avi", ramp_frames(4), url],
                    save_masks=tmp_path / "m", log=lines.append,
                    source_options={"reconnects": 1, "backoff": (0.05, 0.05), "read_timeout": 1.0})  # fmt: skip
    summary = failed.value.summary
    assert summary.streams["frames"].frames_out == 4 and len(list((tmp_path / "m" / "frames").iterdir())) == 4
    assert "no such file" in summary.streams["missing"].error
    assert "1 reconnect attempts failed" in summary.streams[cam].error
    assert summary.streams[cam].reconnects == sum("reconnect 1/1" in line for line in lines) == 1
    assert sum("go on" in line for line in lines) == 2


def test_a_network_source_among_several_retries_at_start_until_it_answers(tmp_path):
    from test_stream_sources import MjpegServer

    port = closed_port()
    servers: list = []

    def log(line: str) -> None:  # the first attempt was refused: now the camera comes up
        if "reconnect 1/" in line and not servers:
            servers.append(MjpegServer(per_conn=[6], stall=True, port=port))

    try:
        result = run_streams(BatchBackend(), [ramp_frames(2), f"http://127.0.0.1:{port}/stream.mjpg"], log=log,
                             live=False, max_frames=5,
                             source_options={"reconnects": 3, "backoff": (0.05, 0.05), "read_timeout": 2.0})  # fmt: skip
    finally:
        for s in servers:
            s.stop()
    cam = result.streams[stream_names([f"http://127.0.0.1:{port}/stream.mjpg"])[0]]
    assert servers and cam.frames_out == 5 and cam.reconnects == 1 and result.streams["frames"].frames_out == 2


# ---------------------------------------------------------------- 5. a network camera that accepts and never answers


class SilentServer:
    """Accepts every connection on 127.0.0.1 and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def roadseg_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "roadseg", *map(str, args)]


def test_a_camera_that_accepts_and_never_answers_is_one_line_and_exit_1_every_time(tiny_onnx):
    server = SilentServer()
    try:
        for scheme in ("http", "rtsp") * 3:  # the abort came in most runs: six in a row must all be clean
            p = subprocess.run(roadseg_cmd("run", tiny_onnx, "--source", f"{scheme}://127.0.0.1:{server.port}/live",
                                           "--read-timeout", "1"), capture_output=True, text=True, timeout=60, env=ENV)  # fmt: skip
            assert p.returncode == 1, (scheme, p.returncode, p.stderr)
            assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "cannot open the stream" in p.stderr
    finally:
        server.close()


def test_ctrl_c_while_a_network_camera_opens_stops_the_run(tiny_onnx):
    server = SilentServer()
    try:
        p = subprocess.Popen(roadseg_cmd("run", tiny_onnx, "--source", f"http://127.0.0.1:{server.port}/live",
                                         "--read-timeout", "4"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip
        try:
            assert server.accepted.wait(30), "roadseg never connected"
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
        assert p.returncode == 130, (p.returncode, err)
        assert "stopped by request" in out and "Traceback" not in err and "terminate" not in err
    finally:
        server.close()


# ---------------------------------------------------------------- 6. many streams: iterative finalisation, a cap


def test_two_hundred_streams_finalise_without_recursion(tmp_path):
    result = run_streams(BatchBackend(), [ramp_frames(1)] * 200, save=tmp_path / "v", log=None)
    assert len(result.streams) == 200 and result.frames_out == 200
    written = sorted(p.name for p in (tmp_path / "v").iterdir())
    assert len(written) == 200 and not any(name.startswith(".") for name in written)  # no hidden temporary left


def test_finalisation_runs_every_step_whatever_one_raises():
    from roadseg.runtime.finalize import run_all

    ran = []

    def boom():
        ran.append("boom")
        raise KeyboardInterrupt

    steps = [lambda i=i: ran.append(i) for i in range(5000)]
    steps.insert(10, boom)
    with pytest.raises(KeyboardInterrupt):
        run_all(steps)
    assert len(ran) == 5001 and ran[-1] == 4999


def test_absurd_stream_counts_are_one_line(tmp_path, capsys):
    with pytest.raises(UsageError, match="at most 256 streams"):
        run_streams(BatchBackend(), [ramp_frames(1)] * 257, log=None)
    rc, _, err = run_cli(["bench", "default", "--streams", "1000", "--report", tmp_path / "r"], capsys)
    assert rc == 2 and "1000 streams (--streams): roadseg runs at most 256" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- 8. a source with no readable frame


def broken_images(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        png = cv2.imencode(".png", ramp_frames(1, (64, 64))[0])[1].tobytes()
        (folder / f"f{i}.png").write_bytes(png[: len(png) // 2] if i % 2 else png[:60] + bytes(40) + png[100:])
    jpg = cv2.imencode(".jpg", ramp_frames(1, (64, 64))[0])[1].tobytes()
    (folder / "g.jpg").write_bytes(jpg[:300])


def test_a_source_with_no_readable_frame_is_exit_1_with_one_line_naming_a_file(tmp_path, tiny_onnx, capfd):
    from roadseg.cli import main

    broken_images(tmp_path / "shots")
    rc = main(["run", str(tiny_onnx), "--source", str(tmp_path / "shots"), "--save", str(tmp_path / "o.mp4")])
    err = capfd.readouterr().err
    assert rc == 1 and "no frame could be read from" in err and "4 files skipped, the first: f0.png cannot be decoded" in err
    assert "libpng" not in err and "JPEG" not in err  # the decoders' own lines stay quiet without --verbose
    assert [line for line in err.splitlines() if "error" in line] == [err.strip().splitlines()[-1]]
    assert not (tmp_path / "o.mp4").exists()
    empty = write_video(tmp_path / "v.avi", 0)  # a container that opens and holds no frame
    rc = main(["run", str(tiny_onnx), "--source", str(empty)])
    assert rc == 1 and "no frame could be read from" in capfd.readouterr().err


# ---------------------------------------------------------------- 7. a target that cannot be replaced


@pytest.fixture
def immutable(tmp_path):
    """A file `chattr +i` made immutable (needs root and a file system with attributes)."""
    made = []

    def make(path):
        path.write_bytes(b"old")
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not possible here (needs root and ext4/xfs/btrfs)")
        made.append(path)
        return path

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_a_target_that_cannot_be_replaced_is_refused_before_the_work(tmp_path, tiny_onnx, immutable, capsys):
    target = immutable(tmp_path / "o.mp4")
    rc, out, err = run_cli(["run", tiny_onnx, "--source", "synthetic:3", "--save", target], capsys)
    assert rc == 1 and out == "" and err.strip().count("\n") == 0
    assert "exists and cannot be replaced (it is immutable" in err and target.read_bytes() == b"old"


def test_a_rename_that_fails_after_the_work_keeps_the_file_and_says_where(tmp_path, immutable):
    from roadseg.core.atomic import publish, temp_beside

    target = immutable(tmp_path / "o.mp4")
    tmp = temp_beside(target, ".tmp.mp4")
    tmp.write_bytes(b"new video")
    with pytest.raises(RoadsegError, match=r"cannot be replaced \(Operation not permitted\); the new file is kept as .*o\.new\.mp4"):
        publish(tmp, target)
    assert (tmp_path / "o.new.mp4").read_bytes() == b"new video" and target.read_bytes() == b"old" and not tmp.exists()


def test_another_users_file_in_a_sticky_folder_is_refused(tmp_path, monkeypatch):
    from roadseg.core.atomic import check_writable

    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)
    (folder / "o.mp4").write_bytes(b"theirs")
    owner = (folder / "o.mp4").stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)  # we are someone else now
    with pytest.raises(RoadsegError, match="belongs to another user and its folder is sticky"):
        check_writable(folder / "o.mp4")
    check_writable(folder / "new.mp4")  # a new file there is fine


# ---------------------------------------------------------------- 9. frames of different sizes in one call


def test_a_segmenter_called_with_frames_of_different_sizes_is_one_clear_error(tiny_onnx_dynamic):
    from roadseg.runtime.segmenter import Segmenter

    small, large = ramp_frames(1, (48, 64))[0], ramp_frames(1, (72, 96))[0]
    with Segmenter(tiny_onnx_dynamic, backend="ort-cpu", threads=1) as seg:
        with pytest.raises(RoadsegError, match=r"frames of different sizes \(\[48, 64, 3\], \[72, 96, 3\]\).*Segmenter.stream"):
            seg([small, large])
        with pytest.raises(RoadsegError, match="frames must be uint8"):
            seg(([small, large],))  # a ragged nest
        assert seg([small, small]).shape == (2, 48, 64)
        got = [labels for _, _, labels, _ in seg.stream([[small], [large]])]  # what the error points to
        assert sorted(g.shape for g in got) == [(48, 64), (72, 96)]


# ---------------------------------------------------------------- 10. a refused model leaves no empty output folder


def test_a_refused_model_or_checkpoint_leaves_no_empty_output_folder(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(os.urandom(1000))
    (tmp_path / "bad.onnx").write_bytes(os.urandom(1000))
    runs = [
        ["bench", bad, "--report", tmp_path / "r1", "--frames", "2", "--backends", "ort-cpu-fp32"],
        ["bench", tmp_path / "bad.onnx", "--report", tmp_path / "r2", "--frames", "2"],
        ["run", tmp_path / "bad.onnx", "--source", "synthetic:2", "--save", tmp_path / "r3" / "o.mp4",
         "--save-masks", tmp_path / "r4" / "m"],
        ["eval", bad, "--data", tmp_path, "--json", tmp_path / "r5" / "x.json", "--confusion", tmp_path / "r6"],
    ]  # fmt: skip
    for args in runs:
        rc, _, err = run_cli(args, capsys)
        assert rc == 1 and len(err.strip().splitlines()) == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "bad.pt"]


def test_the_reconnect_count_is_the_lines_printed_even_when_stopped_during_the_backoff():
    from roadseg.runtime.sources import open_source

    lines: list[str] = []
    printed = threading.Event()

    def log(line):
        lines.append(line)
        printed.set()

    src = open_source(f"http://127.0.0.1:{closed_port()}/x", reconnects=3, backoff=(30.0, 30.0), read_timeout=1.0,
                      retry_open=True, log=log)  # fmt: skip
    assert printed.wait(20)  # "... reconnect 1/3 in 30.0 s", then a stop during that wait
    src.close()
    assert sum("reconnect " in line for line in lines) == src.counters()["reconnects"] == 1


def test_a_bench_report_never_holds_a_camera_password(tmp_path, tiny_onnx, capsys):
    from test_stream_sources import MjpegServer

    server = MjpegServer(per_conn=[40], fps=200.0)
    url = f"http://admin:hunter2@127.0.0.1:{server.port}/stream.mjpg?token=s3cr3t"
    try:
        rc, out, err = run_cli(["bench", tiny_onnx, "--source", url, "--backends", "ort-cpu", "--frames", "3",
                                "--warmup", "0", "--report", tmp_path / "r", "--threads", "1", "--quiet"], capsys)  # fmt: skip
    finally:
        server.stop()
    texts = [out, err] + [p.read_text(errors="replace") for p in (tmp_path / "r").iterdir() if p.suffix != ".png"]
    assert rc == 0, err
    assert any("127.0.0.1" in t for t in texts) and not any(s in t for t in texts for s in SECRETS)


def test_a_camera_opened_late_among_several_saves_at_its_own_frame_rate(tmp_path):
    from test_stream_sources import MjpegServer

    port = closed_port()
    servers: list = []

    def log(line: str) -> None:
        if "reconnect 1/" in line and not servers:
            servers.append(MjpegServer(per_conn=[6], stall=True, port=port))

    video = write_video(tmp_path / "clip.avi", 3)  # 10 FPS
    try:
        run_streams(BatchBackend(), [video, f"http://127.0.0.1:{port}/stream.mjpg"], save=tmp_path / "v", log=log,
                    live=False, max_frames=3, source_options={"reconnects": 3, "backoff": (0.05, 0.05)})  # fmt: skip
    finally:
        for s in servers:
            s.stop()
    rates = {p.stem.split("-")[0]: cv2.VideoCapture(str(p)).get(cv2.CAP_PROP_FPS) for p in (tmp_path / "v").iterdir()}
    assert rates["clip"] == pytest.approx(10) and len(rates) == 2
    assert rates["127.0.0.1"] == pytest.approx(25)  # FFmpeg's rate for an MJPEG stream, not the sink's fallback 30
