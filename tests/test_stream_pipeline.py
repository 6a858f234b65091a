"""The streaming pipeline, sinks, overlay and stats: masks equal the backend's, the live drop policy
under a slow backend, clean stops, output files that are never corrupt, and early output errors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import decode_count

from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
from roadseg.core.errors import RoadsegError, UsageError
from roadseg.runtime import sinks
from roadseg.runtime.backends.base import TensorSpec, fit_frames
from roadseg.runtime.batcher import infer_frames
from roadseg.runtime.iterate import iterate
from roadseg.runtime.overlay import Overlay, blend, colorize, palette_lut
from roadseg.runtime.pipeline import run_stream
from roadseg.runtime.sinks import MaskSink, VideoSink, WindowSink
from roadseg.runtime.sources import open_source
from roadseg.runtime.stats import Histogram, Stats
from roadseg.runtime.writer import WRITE_QUEUE

pytestmark = pytest.mark.timeout(90)  # pytest-timeout: a hung stream fails, never blocks CI


CARD = ModelCard(
    name="fake", arch="none", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11, input_size=(64, 96)
)


class FakeBackend:
    """labels = (blue channel // 24) % 11, after `delay` seconds; optionally a fixed frame size, which
    it fits frames to (and labels back) as every backend does."""

    name = "fake"
    card = CARD

    def __init__(self, delay: float = 0.0, size: tuple[int, int] | None = None):
        self.delay, self.size = delay, size
        self.calls = 0
        self.shapes: list[tuple] = []

    @property
    def inputs(self):
        h, w = self.size if self.size else ("H", "W")
        return [TensorSpec("frames", (1 if self.size else "N", h, w, 3), "uint8")]

    @property
    def outputs(self):
        return [TensorSpec("labels", ("N", "H", "W"), "uint8")]

    def infer(self, frames):
        self.calls += 1
        frames, restore = fit_frames(frames, self.size)
        self.shapes.append(frames.shape)
        if self.size:
            assert frames.shape[1:3] == self.size
        if self.delay:
            time.sleep(self.delay)
        return restore(((frames[..., 0] // 24) % 11).astype(np.uint8))

    def close(self):
        pass


def ramp_frames(n, size=(48, 64)):
    h, w = size
    base = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    return [
        np.dstack([np.roll(base, i * 3, axis=1), base.T[:h, :1].repeat(w, 1), np.full((h, w), i % 256, np.uint8)])
        for i in range(n)
    ]




# ---------------------------------------------------------------- stats and overlay


def test_histogram_percentiles_are_close_to_exact():
    rng = np.random.default_rng(0)
    data = rng.lognormal(1.0, 0.8, 5000)
    h = Histogram()
    for v in data:
        h.add(v)
    for q in (50, 90, 99):
        assert h.percentile(q) == pytest.approx(np.percentile(data, q), rel=0.03)
    assert h.n == 5000 and h.mean == pytest.approx(data.mean()) and h.hi == data.max()
    one = Histogram()
    one.add(4.0)
    assert one.percentile(50) == one.percentile(99) == 4.0
    assert np.isnan(Histogram().percentile(50))


def test_stats_summary_table():
    s = Stats()
    for ms in (1.0, 2.0, 3.0):
        s.record("infer", ms)
        s.frame_out(10.0)
    s.stop()
    summ = s.summary(interrupted=True, backend="fake", source="x.mp4")
    assert summ.frames_out == 3 and summ.stages["infer"].count == 3 and summ.model_fps == pytest.approx(500.0)
    table = summ.table()
    for word in (
        "x.mp4 -> fake",
        "frames in",
        "FPS end to end",
        "p50",
        "p99",
        "infer",
        "latency",
        "stopped by request",
    ):
        assert word in table
    assert summ.to_dict()["stages"]["infer"]["count"] == 3


def test_overlay_colours_blend_legend_and_hud():
    lut = palette_lut(CAMVID_PALETTE)
    labels = np.array([[0, 3], [8, 11]], np.uint8)
    color = colorize(labels, lut)
    assert color[0, 1].tolist() == CAMVID_PALETTE[3][::-1]  # RGB palette -> BGR
    assert color[1, 1].tolist() == [0, 0, 0]  # the ignore index: black
    many = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)
    assert np.array_equal(colorize(many, lut), lut[many])  # every label value, an odd-sized frame
    assert np.array_equal(colorize(many[:, ::2], lut), lut[many[:, ::2]])  # and a strided view
    frame = np.full((2, 2, 3), 200, np.uint8)
    assert np.array_equal(blend(frame, color, 0.0), frame) and np.array_equal(blend(frame, color, 1.0), color)
    assert blend(frame, color, 0.5)[0, 0].tolist() == [164, 164, 164]
    ov = Overlay(CARD, alpha=0.5)
    big = np.zeros((360, 480, 3), np.uint8)
    lab = np.full((360, 480), 3, np.uint8)
    out = ov(big, lab, fps=12.3, latency_ms=45)
    plain = Overlay(CARD, alpha=0.5, legend=False, hud=False)(big, lab)
    assert out.shape == big.shape and not np.array_equal(out, plain)
    assert not np.array_equal(out[:, -60:], plain[:, -60:])  # the legend on the right
    assert not np.array_equal(out[:20, :60], plain[:20, :60])  # the HUD top left
    small = ov(
        np.zeros((48, 64, 3), np.uint8), np.zeros((24, 32), np.uint8)
    )  # labels of another size; no room for a legend
    assert small.shape == (48, 64, 3)
    with pytest.raises(UsageError):
        Overlay(CARD, alpha=1.5)


# ---------------------------------------------------------------- masks and videos


def test_iterate_yields_frames_labels_and_timings():
    backend = FakeBackend()
    frames = ramp_frames(6)
    got = list(iterate(backend, frames))
    assert len(got) == 6
    for (frame, labels, t), ref in zip(got, frames):
        assert np.array_equal(frame, ref) and np.array_equal(labels, backend.infer(ref[None])[0])
        assert set(t) >= {"index", "name", "timestamp", "read_ms", "infer_ms", "latency_ms"}
        assert t["latency_ms"] >= t["infer_ms"] >= 0
    assert [t["index"] for _, _, t in got] == list(range(6))
    assert len(list(iterate(backend, frames, max_frames=2))) == 2
    it = iterate(backend, "synthetic:50", size=(32, 32))
    next(it)
    it.close()  # stops and closes the source it opened


def test_fixed_size_graph_frames_are_resized_and_labels_resized_back():
    backend = FakeBackend(size=(24, 32))
    frame = ramp_frames(1, (48, 64))[0]
    labels = infer_frames(backend, [frame], (24, 32))[0]
    assert labels.shape == (48, 64) and backend.shapes[-1] == (1, 24, 32, 3)
    small = cv2.resize(frame, (32, 24), interpolation=cv2.INTER_LINEAR)
    ref = cv2.resize(backend.infer(small[None])[0], (64, 48), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(labels, ref)
    summary = run_stream(FakeBackend(size=(24, 32)), [frame, small], log=None)
    assert summary.frames_out == 2 and summary.resized == 1  # the frame already at the graph's size is not counted


def test_fit_frames_bilinear_in_nearest_back():
    frames = np.stack(ramp_frames(3, (48, 64)))
    same, restore = fit_frames(frames, (48, 64))
    labels = (frames[..., 0] // 24).astype(np.uint8)
    assert same is frames and restore(labels) is labels
    assert fit_frames(frames, None)[0] is frames
    small, restore = fit_frames(frames, (24, 32))
    assert small.shape == (3, 24, 32, 3)
    for f, s in zip(frames, small):
        assert np.array_equal(s, cv2.resize(f, (32, 24), interpolation=cv2.INTER_LINEAR))
    labels = (small[..., 0] // 24).astype(np.uint8)
    back = restore(labels)
    assert back.shape == (3, 48, 64)
    for m, b in zip(labels, back):
        assert np.array_equal(b, cv2.resize(m, (64, 48), interpolation=cv2.INTER_NEAREST))


def test_run_stream_writes_video_and_masks_identical_to_the_backend(tmp_path):
    backend = FakeBackend()
    frames = ramp_frames(12) + [np.zeros((48, 64), np.uint8), ramp_frames(1, (60, 80))[0]]  # gray, then a size change
    summary = run_stream(backend, frames, save=tmp_path / "out" / "o.avi", save_masks=tmp_path / "masks", log=None)
    assert summary.frames_out == 14 and summary.converted == 1 and summary.error is None and not summary.interrupted
    assert decode_count(tmp_path / "out" / "o.avi") == 14
    names = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert names == [f"{i:06d}.png" for i in range(14)]  # no temporary files left
    for i, f in enumerate(frames):
        mask = cv2.imread(str(tmp_path / "masks" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        bgr = cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f
        assert mask.dtype == np.uint8 and np.array_equal(mask, backend.infer(bgr[None])[0])
    for stage in ("read", "infer", "overlay", "write", "latency"):
        assert summary.stages[stage].count == 14
    assert summary.outputs["video"].endswith("o.avi") and "14 PNG" in summary.outputs["masks"]
    assert oct(os.stat(tmp_path / "out" / "o.avi").st_mode & 0o777) != oct(0o600)


def test_masks_from_the_real_onnx_graph_equal_calling_it_directly(tmp_path, tiny_onnx):
    from roadseg.runtime.backends import open_backend
    from roadseg.runtime.synthetic import SyntheticClip

    backend = open_backend(tiny_onnx, "ort-cpu", threads=1)
    try:
        for size in ((72, 96), (90, 120)):  # the graph's size, and another one (resized both ways)
            out = tmp_path / f"m{size[0]}"
            summary = run_stream(backend, "synthetic:4", save_masks=out, log=None, source_options={"size": size})
            assert summary.frames_out == 4
            for i, (frame, _) in enumerate(SyntheticClip(4, size)):
                mask = cv2.imread(str(out / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
                direct = backend.infer(frame)
                assert mask.shape == size and np.array_equal(mask, direct)
            assert len(np.unique(mask)) > 1  # a trained model: the masks are not one class
    finally:
        backend.close()


def test_image_folder_masks_are_named_by_stem(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for name, f in zip(("b_2", "a_10", "a_9"), ramp_frames(3)):
        cv2.imwrite(str(d / f"{name}.png"), f)
    run_stream(FakeBackend(), str(d), save_masks=tmp_path / "m", log=None)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["a_10.png", "a_9.png", "b_2.png"]


def test_video_file_through_the_pipeline(tmp_path):
    vw = cv2.VideoWriter(str(tmp_path / "in.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for f in ramp_frames(20):
        vw.write(f)
    vw.release()
    summary = run_stream(FakeBackend(delay=0.01), str(tmp_path / "in.avi"), save=tmp_path / "o.mp4", log=None)
    assert summary.frames_in == summary.frames_out == 20 and summary.dropped == 0
    assert decode_count(tmp_path / "o.mp4") == 20
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)  # the source's rate


# ---------------------------------------------------------------- the live drop policy


def test_slow_backend_on_a_live_source_drops_frames_and_latency_stays_bounded():
    infer_s = 0.05
    backend = FakeBackend(delay=infer_s)
    frames = ramp_frames(400, (32, 32))
    src = open_source(frames, live=True, fps=100.0)  # 5x faster than inference
    try:
        summary = run_stream(backend, src, max_frames=12, save_masks=None, overlay=True, log=None)
    finally:
        src.close()
    assert summary.frames_out == 12
    assert summary.dropped >= 12  # most frames were skipped for newer ones...
    assert src.buffer.high_water == 1  # ...held one at a time: memory cannot grow
    lat = summary.stages["latency"]
    # each frame waits at most one inference for the slot, then its own inference, then the writer
    assert lat.p99_ms < 4 * infer_s * 1000 + 150, summary.table()
    assert summary.stages["infer"].p50_ms >= infer_s * 1000 * 0.9


def test_writer_queue_is_bounded_when_the_writer_is_slow(tmp_path):
    seen = []

    def slow_sink(frame, labels, image):
        time.sleep(0.03)
        seen.append(frame.index)

    src = open_source(ramp_frames(30, (32, 32)), buffer=3)
    try:
        summary = run_stream(FakeBackend(), src, on_frame=slow_sink, log=None)
    finally:
        src.close()
    assert seen == list(range(30)) and summary.dropped == 0  # a file: nothing dropped, the reader waits
    assert src.buffer.high_water <= 3
    assert summary.stages["latency"].max_ms < (3 + WRITE_QUEUE + 3) * 30 + 300  # bounded by the queue sizes


# ---------------------------------------------------------------- stopping, errors, files left behind


def test_stop_event_finalises_a_playable_video(tmp_path):
    stop = threading.Event()
    backend = FakeBackend(delay=0.01)

    def stop_after_five(frame, labels, image):  # the stop comes mid-stream, after the 5th frame is written
        if frame.index == 4:
            stop.set()

    summary = run_stream(backend, "synthetic:100000", save=tmp_path / "o.mp4", save_masks=tmp_path / "m", stop=stop,
                         log=None, on_frame=stop_after_five, source_options={"size": (48, 64)})  # fmt: skip
    assert summary.interrupted and 5 <= summary.frames_out < 100000
    assert decode_count(tmp_path / "o.mp4") == summary.frames_out
    assert len(list((tmp_path / "m").iterdir())) == summary.frames_out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_keyboard_interrupt_inside_still_finalises(tmp_path):
    class Interrupting(FakeBackend):
        def infer(self, frames):
            if self.calls == 5:
                raise KeyboardInterrupt
            return super().infer(frames)

    with pytest.raises(KeyboardInterrupt):
        run_stream(Interrupting(), ramp_frames(20), save=tmp_path / "o.avi", log=None)
    assert decode_count(tmp_path / "o.avi") == 5


def test_a_second_interrupt_during_finalisation_still_closes_every_sink(tmp_path, monkeypatch):
    """Ctrl-C again while the pipeline finalises (here: as the stats stop, a step before the sinks
    are closed): the video and masks are still finalised, then the KeyboardInterrupt is raised."""
    real_stop = Stats.stop
    calls = {"n": 0}

    def interrupted_stop(self):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real_stop(self)

    monkeypatch.setattr(Stats, "stop", interrupted_stop)
    with pytest.raises(KeyboardInterrupt):
        run_stream(FakeBackend(), ramp_frames(6), save=tmp_path / "o.avi", save_masks=tmp_path / "m", log=None)
    assert decode_count(tmp_path / "o.avi") == 6
    assert len(list((tmp_path / "m").iterdir())) == 6
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    class InterruptedClose(VideoSink):  # Ctrl-C inside one sink's close: the others are still closed
        def close(self):
            super().close()
            raise KeyboardInterrupt

    closed = []
    monkeypatch.setattr(Stats, "stop", real_stop)
    monkeypatch.setattr(sinks, "VideoSink", InterruptedClose)
    monkeypatch.setattr(sinks.MaskSink, "close", lambda self: closed.append(self.folder))
    with pytest.raises(KeyboardInterrupt):
        run_stream(FakeBackend(), ramp_frames(3), save=tmp_path / "p.avi", save_masks=tmp_path / "n", log=None)
    assert decode_count(tmp_path / "p.avi") == 3 and closed == [tmp_path / "n"]


def test_a_blocked_writer_is_abandoned_not_closed_under(tmp_path, monkeypatch):
    """A sink that blocks past WRITER_TIMEOUT: an error, and no sink is closed while the writer runs;
    when it ends it drops its unfinished video, so nothing is left at or beside the target."""
    release = threading.Event()
    writer_threads = []

    def blocked(frame, labels, image):
        writer_threads.append(threading.current_thread())
        if frame.index == 2:
            release.wait(20)

    t0 = time.perf_counter()
    with pytest.raises(RoadsegError, match="did not finish within 0.5 s") as e:
        run_stream(FakeBackend(), ramp_frames(5), save=tmp_path / "o.avi", on_frame=blocked, log=None, writer_timeout=0.5)
    assert time.perf_counter() - t0 < 10
    assert e.value.summary.outputs == {} and not (tmp_path / "o.avi").exists()
    writer = writer_threads[0]
    assert writer.is_alive()  # still blocked: its video was neither closed nor removed under it
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".o.avi.")]) == 1
    release.set()
    writer.join(10)
    assert not writer.is_alive() and list(tmp_path.iterdir()) == []


def test_window_calls_all_happen_on_the_writer_thread(monkeypatch):
    """OpenCV's GUI calls belong to one thread: the window is made, shown and destroyed by the writer."""
    calls = []

    def record(name, result=None):
        def call(*a, **k):
            calls.append((name, threading.current_thread().name))
            return result

        return call

    monkeypatch.setattr(sinks, "display_problem", lambda: None)
    monkeypatch.setattr(sinks.cv2, "namedWindow", record("namedWindow"))
    monkeypatch.setattr(sinks.cv2, "imshow", record("imshow"))
    monkeypatch.setattr(sinks.cv2, "waitKey", record("waitKey", -1))
    monkeypatch.setattr(sinks.cv2, "getWindowProperty", record("getWindowProperty", 1.0))
    monkeypatch.setattr(sinks.cv2, "destroyWindow", record("destroyWindow"))
    summary = run_stream(FakeBackend(), ramp_frames(4), show=True, log=None)
    assert summary.frames_out == 4
    names = [n for n, _ in calls]
    assert names[0] == "namedWindow" and names.count("namedWindow") == 1 and names.count("imshow") == 4
    assert "destroyWindow" in names
    assert len({t for _, t in calls}) == 1 and calls[0][1].startswith("roadseg-writer")


def test_unwritable_outputs_fail_before_the_first_frame(tmp_path):
    (tmp_path / "file").write_text("x")
    backend = FakeBackend()
    for kwargs in (
        {"save": tmp_path / "file" / "o.mp4"},  # its folder is a file
        {"save": tmp_path / "o.xyz"},  # a container we cannot write
        {"save": tmp_path},  # a folder
        {"save_masks": tmp_path / "file"},  # a file, not a folder
        {"save_masks": tmp_path / "file" / "m"},
    ):
        with pytest.raises(RoadsegError):
            run_stream(backend, ramp_frames(3), log=None, **kwargs)
    assert backend.calls == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_source_errors_finalise_and_raise_with_the_summary(tmp_path, monkeypatch):
    from roadseg.runtime import readers

    class LostCamera:
        def __init__(self, n):
            self.n = n

        def isOpened(self):  # noqa: N802
            return self.n > 0

        def get(self, prop):
            return 25.0

        def read(self):
            self.n -= 1
            return (True, np.zeros((32, 32, 3), np.uint8)) if self.n >= 0 else (False, None)

        def release(self):
            pass

    caps = [LostCamera(6)]
    monkeypatch.setattr(readers, "_open_capture", lambda *a: caps.pop(0) if caps else LostCamera(0))
    with pytest.raises(RoadsegError, match="2 reconnect attempts failed") as e:
        run_stream(FakeBackend(), "0", save=tmp_path / "o.avi", live=False, log=None,
                   source_options={"reconnects": 2, "backoff": (0.01, 0.02)})  # fmt: skip
    summary = e.value.summary
    assert summary.frames_out == 6 and summary.reconnects == 2 and "reconnect attempts failed" in summary.error
    assert decode_count(tmp_path / "o.avi") == 6


def test_disk_full_stops_with_a_clear_error_and_a_playable_file(tmp_path, monkeypatch):
    free = {"bytes": 50 << 20}

    def fake_usage(path):
        free["bytes"] -= 200 << 10  # every check: 200 KiB less
        return shutil._ntuple_diskusage(100 << 20, 0, max(free["bytes"], 0))

    monkeypatch.setattr(sinks.shutil, "disk_usage", fake_usage)
    with pytest.raises(RoadsegError, match="disk full") as e:
        run_stream(FakeBackend(), ramp_frames(1000), save=tmp_path / "o.mp4", log=None)
    n = e.value.summary.frames_out
    assert 100 < n < 1000
    assert decode_count(tmp_path / "o.mp4") == n


def test_a_failure_while_streaming_is_a_stream_error_with_the_cause_and_the_summary(tmp_path):
    """A backend that fails at its third batch: the run finalises what it wrote, then raises a
    StreamError with the cause's message and exit code, the cause itself, and the summary; a
    failure before any frame (a usage error) is raised as it is."""
    from roadseg.runtime.pipeline import StreamError, StreamOptions, run_streams

    class Breaks(FakeBackend):
        def infer(self, frames):
            if self.calls == 2:
                raise UsageError("the backend broke")
            return super().infer(frames)

    with pytest.raises(StreamError) as e:
        run_stream(Breaks(), ramp_frames(10), StreamOptions(save=tmp_path / "o.avi", log=None))
    assert str(e.value) == "the backend broke" and e.value.exit_code == 2 and isinstance(e.value.error, UsageError)
    assert e.value.__cause__ is e.value.error
    assert e.value.summary.frames_out == 2 and e.value.summary.error == "the backend broke"
    assert decode_count(tmp_path / "o.avi") == 2
    with pytest.raises(UsageError, match="--show opens one window") as before:
        run_streams(FakeBackend(), [ramp_frames(2), ramp_frames(2)], StreamOptions(show=True, log=None))
    assert not isinstance(before.value, StreamError)


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot run mount")
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=10)


def test_a_really_full_disk_leaves_a_playable_video(small_tmpfs):
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(8)]
    frames = (noise[i % 8] for i in range(2000))  # incompressible: fills 4 MB in a few dozen frames
    with pytest.raises(RoadsegError, match="disk full") as e:
        run_stream(FakeBackend(), frames, save=small_tmpfs / "o.mp4", alpha=0.0, log=None)
    n = e.value.summary.frames_out
    assert n > 5
    assert decode_count(small_tmpfs / "o.mp4") == n
    assert [p.name for p in small_tmpfs.iterdir()] == ["o.mp4"]


def test_mask_write_error_mid_stream_is_clear(tmp_path, monkeypatch):
    real = Path.write_bytes  # how MaskSink writes a mask's temporary file (core/atomic.py atomic_path)
    count = {"n": 0}

    def failing_write_bytes(path, data):
        count["n"] += 1
        if count["n"] > 4:
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write_bytes)
    with pytest.raises(RoadsegError, match="No space left on device"):
        run_stream(FakeBackend(), ramp_frames(10), save_masks=tmp_path / "m", log=None)
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == [f"{i:06d}.png" for i in range(4)]  # complete files only, no temporaries
    for f in files:
        assert cv2.imread(str(tmp_path / "m" / f), cv2.IMREAD_UNCHANGED) is not None


def test_video_sink_temporary_name_and_no_file_without_frames(tmp_path):
    v = VideoSink(tmp_path / "o.mp4")
    assert v.tmp.parent == tmp_path and v.tmp.name.startswith(".o.mp4.") and v.tmp.suffix == ".mp4"
    assert not (tmp_path / "o.mp4").exists()
    assert v.close() is None and list(tmp_path.iterdir()) == []
    v = VideoSink(tmp_path / "o.avi", fps=10)
    v.write(np.zeros((31, 45, 3), np.uint8))  # odd sides: written at even ones
    v.write(np.zeros((60, 90, 3), np.uint8))  # another size: resized
    assert not (tmp_path / "o.avi").exists()  # nothing at the target until close
    assert v.close() == tmp_path / "o.avi" and decode_count(tmp_path / "o.avi") == 2
    m = MaskSink(tmp_path / "masks")
    m.write("a", np.zeros((4, 4), np.uint8))
    assert [p.name for p in (tmp_path / "masks").iterdir()] == ["a.png"]


def test_atomic_writes_never_touch_the_process_umask(tmp_path, monkeypatch):
    """Setting the umask to read it is process-wide (a file another thread creates meanwhile gets
    0666): it is read once at import, and published files get 0666 & ~umask."""
    from roadseg.core import atomic

    def no_umask(*a):
        raise AssertionError("os.umask called while writing")

    monkeypatch.setattr(os, "umask", no_umask)
    with atomic.atomic_path(tmp_path / "a.json") as t:
        t.write_text("{}")
    m = MaskSink(tmp_path / "masks")
    m.write("a", np.zeros((4, 4), np.uint8))
    v = VideoSink(tmp_path / "o.avi")
    v.write(np.zeros((32, 32, 3), np.uint8))
    v.close()
    for f in (tmp_path / "a.json", tmp_path / "masks" / "a.png", tmp_path / "o.avi"):
        assert f.stat().st_mode & 0o777 == atomic.FILE_MODE == 0o666 & ~atomic.UMASK
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "a.png", "masks", "o.avi"]


def test_window_without_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RoadsegError, match="display"):
        WindowSink()
    monkeypatch.setenv("DISPLAY", ":99")
    if sinks.display_problem():  # headless OpenCV: says what to install
        with pytest.raises(RoadsegError, match="opencv-python"):
            WindowSink()
    backend = FakeBackend()
    monkeypatch.delenv("DISPLAY")
    with pytest.raises(RoadsegError, match="display"):
        run_stream(backend, ramp_frames(2), show=True, log=None)
    assert backend.calls == 0


def test_sigkill_never_leaves_a_corrupt_file_at_the_target(tmp_path):
    code = (
        "import numpy as np, sys, time\n"
        "from roadseg.runtime.sinks import VideoSink\n"
        "v = VideoSink(sys.argv[1])\n"
        "for i in range(10**6):\n"
        "    v.write(np.full((48, 64, 3), i % 256, np.uint8))\n"
        "    if i == 20: print('writing', flush=True)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "o.mp4")], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing"
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        p.kill()
    assert not (tmp_path / "o.mp4").exists()
    assert [f.name.startswith(".o.mp4.") for f in tmp_path.iterdir()] == [True]  # only the hidden temporary


def test_summary_counts_add_up(tmp_path):
    frames = ramp_frames(8) + [None, np.zeros((2, 2, 3), np.uint8)]
    s = run_stream(FakeBackend(), frames, log=None)
    assert s.frames_in == 10 and s.frames_out == 8 and s.skipped == 2 and s.dropped == 0
