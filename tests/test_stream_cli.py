"""`roadseg run` and `roadseg demo` end to end: clean stops on SIGINT/SIGTERM with a video that decodes
to the reported frame count, one-line errors with the right exit codes, and no torch import."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import decode_count, run_until_masks

from roadseg.cli import main

pytestmark = pytest.mark.timeout(120)  # pytest-timeout: a hung stream fails, never blocks CI
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}





def frames_out(stdout: str) -> int:
    m = re.search(r"frames in (\d+)\s+out (\d+)", stdout)
    assert m, stdout
    return int(m.group(2))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_stream_finalises_video_and_masks(tmp_path, tiny_onnx, sig, code):
    out, masks = tmp_path / "out.mp4", tmp_path / "masks"
    p = run_until_masks(tiny_onnx, tmp_path, 8, timeout=60)
    try:
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == code, stderr
    n = frames_out(stdout)
    assert n >= 8 and "stopped by request" in stdout
    assert decode_count(out) == n
    pngs = sorted(masks.iterdir())
    assert [x.name for x in pngs] == [f"{i:06d}.png" for i in range(n)]  # complete files, no temporaries
    assert all(cv2.imread(str(x), cv2.IMREAD_UNCHANGED).shape == (360, 480) for x in pngs[-2:])
    assert sorted(x.name for x in tmp_path.iterdir()) == ["masks", "out.mp4"]
    assert "Traceback" not in stderr


def test_demo_end_to_end_without_torch(tmp_path, tiny_onnx):
    code = (
        "import sys\n"
        "from roadseg.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-c",
        code,
        "demo",
        "--model",
        str(tiny_onnx),
        "--frames",
        "12",
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=90)
    assert done.returncode == 0, done.stderr
    assert decode_count(out / "demo.mp4") == 12
    assert sorted(p.name for p in out.iterdir()) == [
        "demo.mp4",
        "overlay_000000.png",
        "overlay_000006.png",
        "overlay_000011.png",
    ]
    assert cv2.imread(str(out / "overlay_000006.png")).shape == (72, 96, 3)  # the graph's size: no resizing
    assert re.search(r"demo: 12 frames at [\d.]+ FPS end to end \(model alone [\d.]+ FPS\)", done.stdout)
    assert f"demo: overlay video {out / 'demo.mp4'}" in done.stdout


def run_cli(args, capsys) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = int(e.code)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_run_in_process_writes_the_summary(tmp_path, tiny_onnx, capsys):
    rc, out, err = run_cli(
        ["run", tiny_onnx, "--source", "synthetic:5", "--save-masks", tmp_path / "m", "--threads", "1"], capsys
    )
    assert rc == 0 and frames_out(out) == 5 and "p99" in out
    assert len(list((tmp_path / "m").iterdir())) == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["run", "M"], "the following arguments are required: --source"),
        (["run", "M", "--source", "0", "--alpha", "2"], "--alpha: 2 is not between 0 and 1"),
        (["run", "M", "--source", "0", "--live", "--no-drop"], "not allowed with argument"),
        (["run", "M", "--source", "0", "--backend", "cuda"], "invalid choice: 'cuda'"),
        (["run", "TINY", "--source", "ftp://host/v.mp4"], "unsupported URL scheme 'ftp'"),
        (["demo", "--frames", "-3"], "-3 must be > 0"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, pattern, tiny_onnx, capsys):
    rc, out, err = run_cli([str(tiny_onnx) if a == "TINY" else a for a in args], capsys)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and re.search(re.escape(pattern), err), err


def test_auto_with_unusable_gpu_providers_is_quiet_but_for_one_line(tiny_onnx, noisy_onnxruntime, monkeypatch, capfd):
    """onnxruntime-gpu on a machine without a driver: `run --backend auto` streams on ort-cpu with
    one line on stderr that says so, and no ONNX Runtime banner or error line anywhere; a named GPU
    backend is one error line, exit 1."""
    from roadseg.runtime.backends import probe

    monkeypatch.setattr(probe, "cuda_devices", lambda: None)
    rc = main(["run", str(tiny_onnx), "--source", "synthetic:2"])
    out, err = capfd.readouterr()
    assert rc == 0 and "EP Error" not in out and re.search(r"-> ort-cpu \(tiny_\d+\.onnx, FP32\)$", out.splitlines()[0]), out  # tiny_N: N by fixture order
    assert err.splitlines() == ["roadseg run: backend auto chose ort-cpu (skipped ort-trt: no NVIDIA driver (libcuda) on "
                                "this machine; ort-cuda: no NVIDIA driver (libcuda) on this machine)"]  # fmt: skip
    rc = main(["run", str(tiny_onnx), "--source", "synthetic:2", "--backend", "ort-cuda"])
    out, err = capfd.readouterr()
    assert rc == 1 and out == "" and err.splitlines() == [
        "roadseg run: error: backend ort-cuda: no NVIDIA driver (libcuda) on this machine; here use --backend ort-cpu (or auto)"]  # fmt: skip


@pytest.mark.parametrize(
    "kind,pattern,code",
    [
        ("camera", "camera 9: cannot open it", 1),
        ("unwritable", "cannot create folder", 1),
        ("bad-container", "unsupported video type .xyz", 2),
        ("no-display", "--show needs a display", 1),
        ("missing-model", "nope.onnx", 1),
        ("missing-source", "no such file or folder", 1),
    ],
)
def test_errors_exit_with_one_line_before_any_frame(kind, pattern, code, tmp_path, tiny_onnx, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    model, source, extra = tiny_onnx, "synthetic:3", []
    if kind == "camera":
        if Path("/dev/video9").exists():
            pytest.skip("this machine has /dev/video9")
        source = "9"
    elif kind == "unwritable":
        extra = ["--save", tmp_path / "file" / "o.mp4"]
    elif kind == "bad-container":
        extra = ["--save", tmp_path / "o.xyz"]
    elif kind == "no-display":
        extra = ["--show"]
    elif kind == "missing-model":
        model = tmp_path / "nope.onnx"
    elif kind == "missing-source":
        source = str(tmp_path / "nope.mp4")
    # pinned to ort-cpu: on a GPU machine auto may add its one line about the providers it skipped
    rc, out, err = run_cli(["run", model, "--source", source, "--backend", "ort-cpu", *extra], capsys)
    assert rc == code and out == "", out  # nothing streamed, no summary
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("roadseg run: error:") and pattern in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written


def _write_video(path: Path, n: int = 3) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(n):
        w.write(np.full((64, 96, 3), 40 * i, np.uint8))
    w.release()


@pytest.mark.parametrize(
    "kind,pattern",
    [
        ("video", "--save {d}/in.mp4: is the source video"),
        ("mask-folder", "--save-masks {d}/imgs: holds the source images"),
        ("mask-folder-one-image", "--save-masks {d}/imgs: holds the source images"),
        ("mask-file", "--save-masks {d}/in.mp4: is a file; give a folder"),
    ],
)
def test_outputs_that_would_overwrite_the_source_are_refused(kind, pattern, tmp_path, tiny_onnx, capsys):
    """`--save in.mp4 --source in.mp4` used to replace the input with the overlay, and masks saved
    into the image folder replaced its PNGs; now both stop before the model is opened."""
    _write_video(tmp_path / "in.mp4")
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "imgs" / f"a{i}.png"), np.full((64, 96, 3), 90, np.uint8))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    source, extra = {
        "video": (tmp_path / "in.mp4", ["--save", tmp_path / "in.mp4"]),
        "mask-folder": (tmp_path / "imgs", ["--save-masks", tmp_path / "imgs"]),
        "mask-folder-one-image": (tmp_path / "imgs" / "a1.png", ["--save-masks", tmp_path / "imgs"]),
        "mask-file": (tmp_path / "imgs", ["--save-masks", tmp_path / "in.mp4"]),
    }[kind]
    rc, out, err = run_cli(["run", tiny_onnx, "--source", source, *extra], capsys)
    assert rc != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and pattern.format(d=tmp_path) in lines[0], err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # inputs untouched


def test_bracketed_file_names_and_home_relative_outputs(tmp_path, tiny_onnx, capsys, monkeypatch):
    """`drive[1].mp4` is a file, not a glob pattern; `--save=~/o.mp4` (which the shell leaves alone)
    lands in the home folder, not in a folder named `~`."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    _write_video(tmp_path / "drive[1].mp4", 3)
    rc, out, err = run_cli(["run", tiny_onnx, "--source", "drive[1].mp4", "--save=~/o.mp4",
                            "--save-masks=~/m"], capsys)  # fmt: skip
    assert rc == 0, err
    assert frames_out(out) == 3
    assert decode_count(tmp_path / "home" / "o.mp4") == 3
    assert len(list((tmp_path / "home" / "m").glob("*.png"))) == 3
    assert not (tmp_path / "~").exists()


def test_lost_stream_exits_1_after_the_summary(tmp_path, tiny_onnx, capsys, monkeypatch):
    from roadseg.runtime import readers

    class Dead:
        def isOpened(self):  # noqa: N802
            return False

        def release(self):
            pass

    class Lost(Dead):
        n = 4

        def isOpened(self):  # noqa: N802
            return True

        def get(self, prop):
            return 0.0

        def read(self):
            import numpy as np

            self.n -= 1
            return (True, np.zeros((72, 96, 3), np.uint8)) if self.n >= 0 else (False, None)

    caps = [Lost()]
    monkeypatch.setattr(readers, "_open_capture", lambda *a: caps.pop(0) if caps else Dead())
    rc, out, err = run_cli(
        ["run", tiny_onnx, "--source", "0", "--no-drop", "--reconnects", "1", "--save", tmp_path / "o.avi"], capsys
    )
    assert rc == 1 and frames_out(out) == 4 and "stopped by error" in out
    assert "1 reconnect attempts failed" in err.strip().splitlines()[-1]
    assert decode_count(tmp_path / "o.avi") == 4
