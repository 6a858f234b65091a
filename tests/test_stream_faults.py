"""Many streams and the live view under faults: unique stream names whatever the sources are called,
outputs that never overwrite one another, secrets kept out of every output channel, absurd stream
counts refused, and finalisation that does not recurse."""

from __future__ import annotations

import cv2
import pytest
from conftest import decode_count
from test_multistream import BatchBackend
from test_stream_cli import run_cli
from test_stream_pipeline import ramp_frames

from roadseg.runtime.errors import UsageError
from roadseg.runtime.naming import check_distinct_outputs, stream_names, stream_outputs
from roadseg.runtime.pipeline import iterate, run_streams

pytestmark = pytest.mark.timeout(120)


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
