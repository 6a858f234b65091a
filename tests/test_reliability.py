"""Reliability rows not covered elsewhere (docs/RELIABILITY.md has the whole matrix):

- a model card whose classes and palette disagree (or are malformed) is refused when the model is
  opened, before any frame: by inspect_model, by open_backend, by `roadseg run` (exit 1, one line,
  no output file), and inside an engine sidecar;
- impossible command lines (unknown backend, sizes that are not positive multiples of 32, batch 0,
  an unsupported URL scheme) exit 2 with one line on stderr, before any work, for every command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import decode_count, hand_onnx, run_until_masks

from roadseg.cli import build_parser, main
from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
from roadseg.core.errors import RoadsegError
from roadseg.runtime.model import inspect_model

pytestmark = pytest.mark.timeout(120)


def card_dict(**changes) -> dict:
    d = ModelCard(name="rel", arch="none", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11,
                  input_size=(16, 16)).to_dict()  # fmt: skip
    d.update(changes)
    return d


def graph(path: Path, card: dict, raw_classes: int | None = None) -> Path:
    """frames uint8 [1,16,16,3] -> labels uint8 [1,16,16] (Conv + ArgMax over 11 channels), or with
    `raw_classes` the bare network: float [1,3,16,16] -> logits [1,raw_classes,16,16] (conftest.hand_onnx)."""
    path.write_bytes(hand_onnx(card, "raw", raw_classes) if raw_classes else hand_onnx(card))
    return path


def refused(path: Path) -> str:
    with pytest.raises(RoadsegError) as e:
        inspect_model(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- class count vs palette, at load


def test_well_formed_card_loads(tmp_path):
    from roadseg.runtime.backends import open_backend

    p = graph(tmp_path / "ok.onnx", card_dict())
    assert inspect_model(p).card.num_classes == 11
    with open_backend(p, "ort-cpu", threads=1) as b:
        assert b.infer(np.zeros((16, 16, 3), np.uint8)).shape == (16, 16)


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"palette": CAMVID_PALETTE[:5]}, "11 classes but 5 palette colours"),
        ({"palette": CAMVID_PALETTE + [[1, 2, 3]]}, "11 classes but 12 palette colours"),
        ({"classes": CAMVID_CLASSES[:3]}, "3 classes but 11 palette colours"),
        ({"classes": [], "palette": []}, "0 classes"),
        ({"classes": [f"c{i}" for i in range(300)], "palette": [[0, 0, 0]] * 300}, "300 classes; a model has 1 to 256"),
        ({"palette": [[1, 2]] * 11}, "palette colour [1, 2] is not three integers 0-255"),
        ({"palette": [[300, 0, 0]] * 11}, "is not three integers 0-255"),
        ({"palette": ["red"] * 11}, "is not three integers 0-255"),
        ({"classes": list(range(11))}, "'classes' must be a list of class names"),
    ],
)  # fmt: skip
def test_class_count_and_palette_are_checked_before_any_frame(tmp_path, changes, words, capsys):
    from roadseg.runtime.backends import open_backend

    p = graph(tmp_path / "bad.onnx", card_dict(**changes))
    assert words in refused(p)
    with pytest.raises(RoadsegError, match="palette|classes"):
        open_backend(p, "auto", threads=1)
    out = tmp_path / "out.mp4"
    rc = main(["run", str(p), "--source", "synthetic:3", "--save", str(out), "--threads", "1"])
    cap = capsys.readouterr()
    assert rc == 1 and cap.out == "", cap.out  # no frame streamed, no summary
    assert len(cap.err.strip().splitlines()) == 1 and words in cap.err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.onnx"]  # nothing written


@pytest.mark.parametrize(
    "content,words",
    [(b"", "empty"), (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n", "Git LFS pointer"),
     (b"\xff\xd8\xff\xe0" + bytes(100), "a JPEG image"), (b"\x80\x04\x95" + bytes(100), "a Python pickle")],
)  # fmt: skip
def test_export_checks_an_onnx_file_before_parsing_it(tmp_path, capsys, content, words):
    """`roadseg export model.onnx --to engine|triton` sniffs the file like the runtime does."""
    p = tmp_path / "m.onnx"
    p.write_bytes(content)
    for to in ("engine", "triton"):
        rc = main(["export", str(p), "--to", to, "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 1 and len(err.strip().splitlines()) == 1 and words in err and str(p) in err, err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.onnx"]


def test_raw_graph_whose_classes_differ_from_its_card(tmp_path):
    msg = refused(graph(tmp_path / "raw.onnx", card_dict(), raw_classes=5))
    assert "outputs 5 classes but its model card names 11" in msg


def test_engine_sidecar_card_with_a_palette_mismatch(tmp_path):
    from roadseg.runtime.engine import EngineSidecar, sha256_file, sidecar_path, verify_engine, write_sidecar

    plan = tmp_path / "m.engine"
    plan.write_bytes(b"PLAN" * 100)
    sc = EngineSidecar(card=card_dict(), plan_sha256=sha256_file(plan), onnx_sha256="0" * 64, tensorrt_version="10.13.0.35",
                       cuda_version="12.6", gpu_name="x", compute_capability="8.7", precision="fp16", profiles=[],
                       build_seconds=1.0, source="m.onnx")  # fmt: skip
    write_sidecar(plan, sc)
    assert verify_engine(plan, "10.13.0.35", "8.7")
    data = json.loads(sidecar_path(plan).read_text())
    data["card"]["palette"] = data["card"]["palette"][:4]
    sidecar_path(plan).write_text(json.dumps(data))
    with pytest.raises(RoadsegError, match="11 classes but 4 palette colours.*Rebuild: roadseg export") as e:
        verify_engine(plan, "10.13.0.35", "8.7")
    assert str(sidecar_path(plan)) in str(e.value)


# ---------------------------------------------------------------- impossible command lines: exit 2, one line


def _commands() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


USAGE = [
    # unknown backend
    (["run", "M", "--source", "0", "--backend", "openvino"], "invalid choice: 'openvino'"),
    (["demo", "--backend", "tensorflow"], "invalid choice: 'tensorflow'"),
    (["bench", "M", "--backends", "ort-cpu-fp32,openvino"], "unknown row openvino"),
    (["bench", "M", "--backends", ","], "--backends is empty"),
    # sizes that are not positive multiples of 32
    (["export", "M", "--imgsz", "100", "96"], "100 is not a multiple of 32"),
    (["export", "M", "--imgsz", "0", "96"], "0 must be > 0"),
    (["export", "M", "--imgsz", "-64", "96"], "-64 must be > 0"),
    (["export", "M", "--imgsz", "64.5", "96"], "'64.5' is not an integer"),
    (["export", "M", "--frame-size", "0", "96"], "0 must be > 0"),
    (["export", "M", "--frame-size", "72", "-96"], "-96 must be > 0"),
    (["export", "M", "--dynamic", "--min-shape", "0", "64", "64"], "0 must be > 0"),
    (["train", "--model", "fcn", "--data", "D", "--imgsz", "360", "480"], "360 is not a multiple of 32"),
    (["train", "--model", "fcn", "--data", "D", "--crop", "0", "480"], "0 must be > 0"),
    (["train", "--model", "fcn", "--data", "D", "--crop", "-32", "480"], "-32 must be > 0"),
    (["models", "--imgsz", "0", "480"], "0 must be > 0"),
    (["bench", "M", "--imgsz", "352", "479"], "479 is not a multiple of 32"),
    (["bench", "M", "--imgsz", "-352", "480"], "-352 must be > 0"),
    (["bench", "M", "--frame-size", "0", "0"], "0 must be > 0"),
    # batch 0 (and its relatives)
    (["export", "M", "--batch", "0"], "0 must be > 0"),
    (["export", "M", "--batch", "-1"], "-1 must be > 0"),
    (["train", "--model", "fcn", "--data", "D", "--batch", "0"], "0 must be > 0"),
    (["bench", "M", "--batch", "0"], "0 must be > 0"),
    (["export", "M", "--calib-count", "0"], "0 must be > 0"),
    (["run", "M", "--source", "0", "--max-frames", "0"], "0 must be > 0"),
    # URL schemes that are not supported (a stream source takes rtsp(s):// and http(s):// only;
    # everything else reads local files)
    (["run", "M", "--source", "ftp://host/v.mp4"], "unsupported URL scheme 'ftp'"),
    (["run", "M", "--source", "rtmp://host/live"], "unsupported URL scheme 'rtmp'"),
    (["run", "M", "--source", "file:///tmp/v.mp4"], "unsupported URL scheme 'file'"),
    (["run", "https://host/m.onnx", "--source", "0"], "is a URL; roadseg reads it from a local file"),
    (["bench", "M", "--source", "ftp://host/v.mp4"], "unsupported URL scheme 'ftp'"),
    (["bench", "M", "--data", "s3://bucket/camvid"], "is a URL"),
    (["export", "ftp://host/m.pt"], "is a URL"),
    (["export", "M", "--precision", "int8", "--calib", "ftp://host/frames"], "is a URL"),
    (["train", "--model", "fcn", "--data", "ftp://host/camvid"], "is a URL"),
    (["eval", "M", "--data", "http://host/camvid"], "is a URL"),
]


@pytest.mark.parametrize("args,pattern", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_impossible_command_lines_exit_2_with_one_line(args, pattern, tmp_path, capsys, monkeypatch):
    if args[0] not in _commands():
        pytest.skip(f"no `roadseg {args[0]}` here")
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    # M: a model file that does not exist (usage errors come first); D: a dataset folder that does not
    try:
        rc = main([str(tmp_path / "nope.pt") if a == "M" else str(tmp_path / "nodata") if a == "D" else a for a in args])
    except SystemExit as e:
        rc = e.code
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == "", (rc, cap.out)
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"roadseg {args[0]}: error:") and pattern in lines[0], cap.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a usage error did work"


def test_usage_error_from_the_installed_command_has_no_traceback(tmp_path):
    """The real entry point, with the bundled `default` model: the URL is refused before the
    default model is exported into the cache (which would take a while)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROADSEG_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "roadseg", "run", "default", "--source", "ftp://host/v.mp4"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "unsupported URL scheme 'ftp'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- bad checkpoints through the command line


class _Payload:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def _bad_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    import torch

    from roadseg.train.checkpoint import atomic_save, make_checkpoint
    from roadseg.train.models import build

    card = ModelCard(name="t", arch="fcn", classes=list(CAMVID_CLASSES), palette=CAMVID_PALETTE, ignore_index=11,
                     input_size=(64, 96))  # fmt: skip
    ck = make_checkpoint(build("fcn", 11, width=4), "fcn", {"width": 4}, card)
    good = atomic_save(ck, folder / "good.pt").read_bytes()
    out: dict[str, tuple[Path, str]] = {}

    def put(name: str, data: bytes, words: str) -> None:
        (folder / name).write_bytes(data)
        out[name] = (folder / name, words)

    put("truncated.pt", good[: len(good) // 2], "truncated or corrupt")
    put("zero.pt", b"", "empty")
    put("random.pt", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "truncated or corrupt")
    torch.save({"state_dict": {}, "model": {}, "card": {}, "x": _Payload(str(folder / "pwned"))}, folder / "payload.pt")
    out["payload.pt"] = (folder / "payload.pt", "refused to load: it needs io.open")  # names the global
    torch.save(build("fcn", 11, width=4), folder / "module.pt")
    out["module.pt"] = (folder / "module.pt", "refused to load: it needs roadseg.train.models.fcn.FCN")
    atomic_save({**ck, "model": {"name": "fcn", "kwargs": {"width": 8}}}, folder / "misshaped.pt")
    out["misshaped.pt"] = (folder / "misshaped.pt", "mis-shaped")
    sd = dict(ck["state_dict"])
    sd.pop(next(iter(sd)))
    atomic_save({**ck, "state_dict": sd}, folder / "missing.pt")
    out["missing.pt"] = (folder / "missing.pt", "missing")
    sd = {**ck["state_dict"], "extra.weight": torch.zeros(3)}
    atomic_save({**ck, "state_dict": sd}, folder / "extra.pt")
    out["extra.pt"] = (folder / "extra.pt", "unexpected")
    for name, value in (("nan.pt", float("nan")), ("inf.pt", float("inf"))):
        sd = dict(ck["state_dict"])
        key = next(k for k, v in sd.items() if v.is_floating_point())
        sd[key] = sd[key].clone().fill_(value)
        atomic_save({**ck, "state_dict": sd}, folder / name)
        out[name] = (folder / name, "NaN or Inf")
    (folder / "good.pt").unlink()
    return out


def test_bad_checkpoints_exit_1_with_one_line_and_write_nothing(tmp_path, capsys):
    """`roadseg export` and `roadseg eval` on each bad checkpoint: exit 1, one line naming the file,
    nothing written, and the pickle payload never runs."""
    bad = _bad_checkpoints(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, (path, words) in bad.items():
        for args in (["export", str(path), "-o", str(tmp_path / "out" / "m.onnx")],
                     ["eval", str(path), "--data", str(tmp_path / "nodata")]):  # fmt: skip
            rc = main(args)
            cap = capsys.readouterr()
            lines = cap.err.strip().splitlines()
            assert rc == 1 and len(lines) == 1, (name, args[0], rc, cap.err)
            assert str(path) in lines[0] and words in lines[0] and "Traceback" not in cap.err, (name, lines[0])
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output folder, no temporaries


def test_refused_checkpoint_names_what_it_needs_whatever_torch_says(tmp_path, monkeypatch):
    """The global a refused pickle needs is read from the file, not parsed out of torch.load's
    message, whose wording changes between PyTorch versions."""
    import pickle

    import torch

    from roadseg.core.errors import RoadsegError
    from roadseg.train.checkpoint import load_raw

    torch.save({"state_dict": {}, "model": {}, "card": {}, "x": _Payload(str(tmp_path / "pwned"))}, tmp_path / "p.pt")

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError("Weights only load failed (this PyTorch's own wording)")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(RoadsegError, match="refused to load: it needs io.open"):
        load_raw(tmp_path / "p.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "flag,target,words",
    [("--json", "folder", "is a folder; give a file name"), ("--confusion", "file", "is a file; give a folder")],
)
def test_eval_refuses_a_bad_output_before_evaluating(flag, target, words, tmp_path, capsys):
    """`--json` on a folder and `--confusion` on a file used to end a whole evaluation with a
    traceback; now the output is checked first (the model path does not exist: it is never read)."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    rc = main(["eval", str(tmp_path / "nope.pt"), "--data", str(tmp_path / "nodata"), flag, str(tmp_path / target)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and words in lines[0] and "nope.pt" not in lines[0], lines
    assert (tmp_path / "file").read_text() == "x" and not any((tmp_path / "folder").iterdir())


def test_unwritable_model_cache_names_roadseg_cache(tmp_path, monkeypatch):
    """The user gave no output path, so "choose another output path" was the wrong fix."""
    from roadseg.core.errors import RoadsegError
    from roadseg.runtime import defaults

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("ROADSEG_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(RoadsegError, match=r"cannot create folder .*; set ROADSEG_CACHE to a writable folder$"):
        defaults.default_onnx()


# ---------------------------------------------------------------- videos that end early


class _Labels:
    """A stand-in backend: labels from the blue channel (the pipeline, not a model, is under test)."""

    name = "fake"
    card = ModelCard(name="f", arch="none", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11)
    inputs: list = []
    outputs: list = []

    def infer(self, frames):
        return (frames[..., 0] // 24).astype(np.uint8)

    def close(self):
        pass


def test_video_that_ends_mid_gop_and_truncated_mp4(tmp_path):
    """MPEG-4 part 2 (I- and P-frames) in AVI, cut in the middle of a group of pictures: the
    readable frames are processed and counted, the stream ends cleanly. The same codec in MP4 (index
    at the end) cut short: a clear error at open, before any frame."""
    import cv2

    from roadseg.runtime.pipeline import run_stream
    from roadseg.runtime.sources import open_source

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
    for name in ("clip.avi", "clip.mp4"):
        vw = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (96, 72))
        assert vw.isOpened()
        for i in range(60):
            vw.write(np.roll(base, 2 * i, axis=1))
        vw.release()
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.55)])
    with open_source(str(tmp_path / "cut.avi")) as src:
        n = sum(1 for _ in src)
        c = src.counters()
    assert 10 <= n < 60 and c["frames_in"] == n + c["skipped"]
    summary = run_stream(_Labels(), str(tmp_path / "cut.avi"), save=tmp_path / "o.avi", log=None)
    assert summary.frames_out == n and summary.error is None and not summary.interrupted
    assert decode_count(tmp_path / "o.avi") == n

    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.55)])
    with pytest.raises(RoadsegError, match="cannot open as a video"):
        open_source(str(tmp_path / "cut.mp4"))


# ---------------------------------------------------------------- SIGKILL of a whole `roadseg run`


@pytest.mark.slow
def test_sigkill_of_roadseg_run_leaves_no_corrupt_file(tmp_path, tiny_onnx):
    """kill -9 of `roadseg run --save out.mp4 --save-masks masks`: no video at the target (it is
    still a hidden temporary) and every mask PNG at a target name decodes; a rerun writes both."""
    import signal

    import cv2

    out, masks = tmp_path / "out.mp4", tmp_path / "masks"
    p = run_until_masks(tiny_onnx, tmp_path, 10, timeout=90)
    try:
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        p.kill()
        p.wait()
    assert not out.exists()
    assert all(n.name.startswith(".out.mp4.") for n in tmp_path.iterdir() if n.name not in ("masks",))
    pngs = [m for m in masks.iterdir() if not m.name.startswith(".")]
    assert len(pngs) >= 10
    for m in pngs:
        img = cv2.imread(str(m), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape == (360, 480), m.name
    assert all(m.name.endswith(".tmp") for m in masks.iterdir() if m.name.startswith("."))

    cmd = [sys.executable, "-m", "roadseg", "run", str(tiny_onnx), "--source", "synthetic:5", "--save", str(out),
           "--save-masks", str(masks), "--threads", "1"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


# ---------------------------------------------------------------- a tiny image that claims a gigantic size


def test_importing_roadseg_caps_the_pixels_opencv_will_allocate(tmp_path):
    """A 675-byte JPEG whose header claims 30000x30000: OpenCV's own limit (2^30 pixels) lets it
    take seconds and gigabytes; with roadseg imported first it is refused at once. A limit the user
    set is kept."""
    import struct

    import cv2

    jpg = bytearray(cv2.imencode(".jpg", np.zeros((40, 60, 3), np.uint8))[1].tobytes())
    sof = bytes(jpg).index(b"\xff\xc0")
    jpg[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    (tmp_path / "huge.jpg").write_bytes(jpg)
    code = (
        "import os, sys, roadseg, cv2\n"
        "print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])\n"
        "try:\n"
        "    cv2.imread(sys.argv[1]); print('decoded')\n"
        "except cv2.error:\n"
        "    print('refused')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "huge.jpg")], capture_output=True, text=True,
                       env=env, timeout=60)  # fmt: skip
    assert r.stdout.split() == [str(1 << 25), "refused"], (r.stdout, r.stderr)  # refused by the cap, not decoded
    r = subprocess.run([sys.executable, "-c", "import os, roadseg; print(os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'])"],
                       capture_output=True, text=True, env={**env, "OPENCV_IO_MAX_IMAGE_PIXELS": "1234"}, timeout=60)  # fmt: skip
    assert r.stdout.strip() == "1234"


# ---------------------------------------------------------------- the matrix stays in step with the tests


def test_matrix_names_existing_tests():
    """Every `tests/FILE.py::TEST` named in docs/RELIABILITY.md is a test function in that file."""
    import re

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "RELIABILITY.md").read_text()
    named = set(re.findall(r"tests/(\w+\.py)::(\w+)", doc))
    assert len(named) > 60
    missing = [f"{f}::{t}" for f, t in sorted(named) if not re.search(rf"(?m)^def {t}\(", (root / "tests" / f).read_text())]
    assert not missing, missing


def test_a_ctrl_c_that_python_wrapped_is_still_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C while a lazy import makes a dataclass reaches the CLI as a RuntimeError caused by the
    KeyboardInterrupt ("Error calling __set_name__ ..."): still "interrupted" and 130, no traceback;
    any other RuntimeError is a bug and propagates."""
    import roadseg.cli as cli

    def interrupted_import(a):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance 'depth' in '_Part'") from e

    monkeypatch.setattr(cli, "_cmd_models", interrupted_import)
    assert cli.main(["models"]) == 130
    assert capsys.readouterr().err == "roadseg models: interrupted\n"

    def bug(a):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(cli, "_cmd_models", bug)
    with pytest.raises(RuntimeError, match="a real bug"):
        cli.main(["models"])
