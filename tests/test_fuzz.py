"""Fuzz-style robustness of every loader of untrusted files (SECURITY.md, docs/RELIABILITY.md).

A few hundred seeded random and mutated byte strings (truncations, bit flips, overwritten bytes,
byte splices, chunk duplications and deletions of valid files, plus pure noise behind a plausible
magic number) and structure-level mutations (a field of the model card, checkpoint or engine
sidecar replaced by a value of the wrong type or range) go to:

- checkpoints: roadseg.train.checkpoint.load_model (load_raw, then the model rebuilt and checked)
- ONNX: roadseg.runtime.model.inspect_model
- engine sidecars: roadseg.runtime.engine.verify_engine (read_sidecar inside)
- images: the image source of runtime/sources.py (open_source on an image, drained) and
  roadseg.train.data.base.read_image_rgb / read_mask
- videos: runtime/sources.py open_source on a file, drained

Every case must end in a clean RoadsegError of one line, or a clean success (a harmless mutation),
never another exception, a crash or a hang. Native parsers (OpenCV/FFmpeg, ONNX Runtime, protobuf,
PyTorch's zip reader) can crash on hostile input, so each loader runs in its own worker process
that takes one case at a time with a time limit: a worker that dies (segfault, abort, out of
memory) or does not answer in time is a failure naming the case, and is restarted for the next
one. Failing inputs are kept under the test's tmp_path for reproduction. Image and video workers
run under a 3 GiB address-space limit, as an edge box would, so a header that claims a gigantic
frame must fail cleanly instead of swapping the machine."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import hand_onnx

pytestmark = pytest.mark.timeout(240)  # the whole file takes about 15 s on two shared cores

CASE_TIMEOUT_S = 20.0  # per case, generous: two shared cores; a real hang is unbounded
START_TIMEOUT_S = 120.0  # worker start-up (importing torch on a busy machine)
TRT_VERSION = "10.13.0.35"

WORKER = r"""
import json, os, sys, time
kind = sys.argv[1]
if kind in ("image", "video"):
    import resource
    limit = 3 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
proto = os.fdopen(os.dup(1), "w")  # answers go here; anything a loader prints goes to stderr
os.dup2(2, 1)
from roadseg.core.errors import RoadsegError

if kind == "checkpoint":
    import torch
    torch.set_num_threads(1)
    import numpy as np
    from roadseg.train.checkpoint import load_model
    from roadseg.runtime.overlay import Overlay
    def load(path):
        # a clean success must be usable: the model runs, the card drives an overlay
        model, card, _ = load_model(path)
        with torch.no_grad():
            out = model(torch.zeros(1, 3, 32, 32))
        assert out.shape[1] == card.num_classes, (out.shape, card.num_classes)
        Overlay(card, 0.5)(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8))
        return f"{card.num_classes} classes"
elif kind == "onnx":
    import numpy as np
    from roadseg.runtime.model import inspect_model
    from roadseg.runtime.overlay import Overlay
    def load(path):
        info = inspect_model(path)
        Overlay(info.card, 0.5)(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8))
        return f"{info.card.num_classes} classes, frame size {info.frame_size}"
elif kind == "onnx-export":  # `roadseg export model.onnx --to engine|triton` reads the ONNX with onnx
    from roadseg.export.command import ExportOptions, _load_source
    def load(path):
        _, card, spec, _, _ = _load_source(ExportOptions(model=path, to="triton"))
        return f"{card.num_classes} classes, frame size {spec.frame_size}"
elif kind == "sidecar":
    from roadseg.runtime.engine import verify_engine
    def load(path):
        sc = verify_engine(path, "@TRT@", "8.7")
        sc.model_card()
        return sc.precision
elif kind in ("image", "video"):
    import cv2
    cv2.setNumThreads(1)
    from roadseg.runtime.sources import open_source
    from roadseg.train.data.base import read_image_rgb, read_mask
    from roadseg.export.frames import unlabelled  # calibration and verification frames of `roadseg export`
    def drain(path):
        deadline = time.monotonic() + 15
        n = 0
        with open_source(path) as src:
            for frame in src:
                assert frame.image.dtype.name == "uint8" and frame.image.ndim == 3 and frame.image.shape[2] == 3
                n += 1
                if time.monotonic() > deadline:
                    raise TimeoutError("the source did not end within 15 s")
            c = src.counters()
        assert c["frames_in"] == n + c["skipped"] + c["dropped"], c
        return n, c
    def load(path):
        n, c = drain(os.path.dirname(path) if kind == "image" else path)  # images: the folder source
        out = f"{n} frames, {c['skipped']} skipped"
        if kind == "image":
            results = []
            for reader in (read_image_rgb, read_mask):
                try:
                    reader(__import__("pathlib").Path(path))
                    results.append("ok")
                except RoadsegError as e:
                    if "\n" in str(e):
                        raise AssertionError("multi-line RoadsegError: " + repr(str(e)))
                    results.append("refused")
            out += f"; read_image_rgb {results[0]}, read_mask {results[1]}"
            out += f"; export frames {len(unlabelled(os.path.dirname(path), (32, 32), 4))}"
        return out
proto.write("ready\n")
proto.flush()
for line in sys.stdin:
    path = line.rstrip("\n")
    try:
        out = {"status": "ok", "detail": str(load(path))[:200]}
    except RoadsegError as e:
        out = {"status": "roadseg", "msg": str(e)[:2000]}
    except BaseException as e:
        out = {"status": "error", "type": type(e).__name__, "msg": str(e)[:500]}
    proto.write(json.dumps(out) + "\n")
    proto.flush()
""".replace("@TRT@", TRT_VERSION)


class Worker:
    """One loader in a child process, fed one file path at a time; restarted after a crash or hang."""

    def __init__(self, kind: str, log: Path):
        self.kind, self.log_path = kind, log
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENCV_LOG_LEVEL": "SILENT", "PYTHONUNBUFFERED": "1"}
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, self.kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, env=env, text=True,
        )  # fmt: skip
        line = self._answer(START_TIMEOUT_S)
        assert line == "ready\n", f"{self.kind} worker did not start: {line!r}, see {self.log_path}"

    def _answer(self, timeout: float) -> str | None:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline() if ready else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
            self.log.close()

    def run(self, path: Path) -> dict:
        if self.proc is None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        t0 = time.monotonic()
        try:
            self.proc.stdin.write(f"{path}\n")
            self.proc.stdin.flush()
            line = self._answer(CASE_TIMEOUT_S)
        except BrokenPipeError:
            line = ""
        if line is None:
            self.stop()
            self.restarts += 1
            return {"status": "hang", "msg": f"no answer within {CASE_TIMEOUT_S:g} s"}
        if not line:
            rc = self.proc.wait(10)
            self.proc = None
            self.log.close()
            self.restarts += 1
            return {"status": "crash", "msg": f"worker died with exit code {rc} (signal {-rc if rc < 0 else 'none'})"}
        out = json.loads(line)
        out["seconds"] = round(time.monotonic() - t0, 3)
        return out


# ---------------------------------------------------------------- mutations (seeded)


def mutate(data: bytes, rng: np.random.Generator, donor: bytes = b"") -> tuple[bytes, str]:
    """One random mutation of `data` -> (bytes, what was done)."""
    n = len(data)
    kind = str(rng.choice(["truncate", "bitflip", "header", "overwrite", "insert", "delete", "duplicate", "splice"]))
    b = bytearray(data)
    if kind == "truncate":
        cut = int(rng.integers(0, n))
        return bytes(b[:cut]), f"truncate at {cut}/{n}"
    if kind in ("bitflip", "header"):
        hi = n if kind == "bitflip" else min(n, 512)  # headers hold sizes, counts and offsets
        k = int(rng.integers(1, 9))
        for _ in range(k):
            i = int(rng.integers(0, hi))
            b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b), f"{kind} {k} bits"
    if kind == "overwrite":
        i = int(rng.integers(0, n))
        k = int(rng.integers(1, 64))
        b[i : i + k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        return bytes(b[: max(n, i + k)]), f"overwrite {k} bytes at {i}"
    if kind == "insert":
        i = int(rng.integers(0, n + 1))
        k = int(rng.integers(1, 256))
        return bytes(b[:i]) + rng.integers(0, 256, k, dtype=np.uint8).tobytes() + bytes(b[i:]), f"insert {k} at {i}"
    if kind == "delete":
        i = int(rng.integers(0, n))
        k = int(rng.integers(1, max(2, n // 8)))
        return bytes(b[:i] + b[i + k :]), f"delete {k} at {i}"
    if kind == "duplicate":
        i, j = int(rng.integers(0, n)), int(rng.integers(0, n))
        k = int(rng.integers(1, max(2, n // 8)))
        return bytes(b[:j]) + bytes(b[i : i + k]) + bytes(b[j:]), f"copy {k} from {i} to {j}"
    other = donor or data  # splice: the head of one file and the tail of another
    i, j = int(rng.integers(0, n)), int(rng.integers(0, len(other)))
    return bytes(b[:i]) + other[j:], f"splice {i} + donor[{j}:]"


def noise(rng: np.random.Generator, magic: bytes) -> tuple[bytes, str]:
    k = int(rng.integers(0, 4096))
    body = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
    if rng.random() < 0.6:
        return magic + body, f"magic + {k} random bytes"
    return body, f"{k} random bytes"


# values of the wrong type or range for a JSON field
ODD_VALUES = [
    None, True, False, 0, -1, 1, 2**64, 1e308, float("nan"), float("inf"), "", "ab", "x" * 5000, [], [1], [-5, 0],
    [1e9, 1e9], ["a", "b"], [[1, 2]], [[1, 2, 3, 4]], [[300, 0, 0]], [None] * 3, {}, {"a": 1}, [[[]]],
]  # fmt: skip


def odd_value(rng: np.random.Generator):
    return ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]


def mutate_json(d: dict, rng: np.random.Generator, nested: str | None = None) -> tuple[dict, str]:
    """Replace one field (or, with `nested`, one field of d[nested]) by an odd value, or drop it."""
    d = json.loads(json.dumps(d))
    target = d[nested] if nested and rng.random() < 0.6 else d
    key = sorted(target)[int(rng.integers(len(target)))]
    where = f"{nested}.{key}" if target is not d else key
    if rng.random() < 0.15:
        del target[key]
        return d, f"drop {where}"
    value = odd_value(rng)
    target[key] = value
    return d, f"{where} = {_short(value)}"


def _short(v) -> str:
    s = repr(v)
    return s if len(s) < 40 else s[:37] + "..."


# ---------------------------------------------------------------- running the cases


Case = tuple[str, bytes]  # (description, file content)


def run_cases(kinds: str | tuple[str, ...], cases: Iterator[tuple[str, Callable[[Path], Path]]], tmp_path: Path) -> list[dict]:
    """Write every case and feed it to the loader of each kind; return the results. `cases` yields
    (description, write(folder) -> path)."""
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    workers = [Worker(k, tmp_path / f"{k}-worker.log") for k in kinds]
    results = []
    try:
        for i, (what, write) in enumerate(cases):
            folder = tmp_path / f"case{i:04d}"
            folder.mkdir()
            path = write(folder)
            for worker in workers:
                out = worker.run(path)
                out.update(case=i, what=f"{worker.kind}: {what}" if len(workers) > 1 else what, path=str(path))
                results.append(out)
    finally:
        for worker in workers:
            worker.stop()
    return results


def check(results: list[dict], kind: str, min_cases: int) -> None:
    assert len(results) >= min_cases
    bad = [r for r in results if r["status"] not in ("ok", "roadseg") or (r["status"] == "roadseg" and "\n" in r["msg"])]
    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "roadseg", "error", "crash", "hang")}
    lines = [f"{kind}: {len(bad)} of {len(results)} cases failed ({counts}):"]
    for r in bad[:12]:
        lines.append(f"  case {r['case']} [{r['what']}] {r['path']}: {r['status']} {r.get('type', '')} {r['msg'][:300]!r}")
    assert not bad, "\n".join(lines)
    slowest = max(results, key=lambda r: r.get("seconds", 0))
    print(f"{kind}: {len(results)} cases {counts}; slowest {slowest.get('seconds')} s ({slowest['what']})")


def _file(name: str, data: bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        p = folder / name
        p.write_bytes(data)
        return p

    return write


def byte_cases(bases: dict[str, bytes], n: int, seed: int, magic: bytes, ext: str, noise_share: float = 0.1):
    rng = np.random.default_rng(seed)
    names = sorted(bases)
    for _ in range(n):
        if rng.random() < noise_share:
            data, what = noise(rng, magic)
            yield what, _file("x" + ext, data)
            continue
        base = names[int(rng.integers(len(names)))]
        donor = bases[names[int(rng.integers(len(names)))]]
        data, what = mutate(bases[base], rng, donor)
        yield f"{base}: {what}", _file("x" + ext, data)


# ---------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint_bases(tmp_path_factory) -> dict[str, Path]:
    import torch

    from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard
    from roadseg.train.checkpoint import atomic_save, make_checkpoint, strip
    from roadseg.train.models import build

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fuzz_ckpt")
    card = ModelCard(name="f", arch="fcn", classes=list(CAMVID_CLASSES), palette=CAMVID_PALETTE, ignore_index=11,
                     input_size=(64, 96))  # fmt: skip
    ck = make_checkpoint(build("fcn", 11, width=4), "fcn", {"width": 4}, card, {"val_miou": 0.5})
    full = atomic_save(ck, folder / "full.pt")
    half = atomic_save(strip(ck), folder / "half.pt")
    return {"full": full, "half": half, "ckpt": ck}  # type: ignore[dict-item]


def test_checkpoint_bases_load(checkpoint_bases):
    from roadseg.train.checkpoint import load_model

    for name in ("full", "half"):
        assert load_model(checkpoint_bases[name])[1].num_classes == 11


def test_fuzz_checkpoint_bytes(checkpoint_bases, tmp_path):
    bases = {k: checkpoint_bases[k].read_bytes() for k in ("full", "half")}
    results = run_cases("checkpoint", byte_cases(bases, 160, seed=1, magic=b"PK\x03\x04", ext=".pt"), tmp_path)
    check(results, "checkpoint bytes", 160)


def test_fuzz_checkpoint_structure(checkpoint_bases, tmp_path):
    """Valid weights-only files whose content is wrong: card, model spec, weights of odd types."""
    import torch

    ck = checkpoint_bases["ckpt"]
    rng = np.random.default_rng(2)
    keys = sorted(ck["state_dict"])

    def cases():
        for _ in range(60):
            c = dict(ck)
            r = rng.random()
            if r < 0.35:
                card, what = mutate_json(ck["card"], rng)
                c["card"] = card
            elif r < 0.6:
                spec, what = mutate_json({**ck["model"], "kwargs": {"width": 4}}, rng, nested="kwargs")
                c["model"] = spec
            elif r < 0.85:
                sd = dict(ck["state_dict"])
                k = keys[int(rng.integers(len(keys)))]
                choice = int(rng.integers(5))
                sd[k] = [torch.zeros(0), torch.zeros(3, dtype=torch.int64), torch.tensor(float("inf")),
                         torch.zeros(sd[k].shape, dtype=torch.bool), "weights"][choice]  # fmt: skip
                what = f"state_dict[{k}] = kind {choice}"
                c["state_dict"] = sd
            else:
                key = ["state_dict", "model", "card", "metrics"][int(rng.integers(4))]
                value = odd_value(rng)
                c[key] = value
                what = f"{key} = {_short(value)}"

            def write(folder: Path, c=c) -> Path:
                p = folder / "s.pt"
                torch.save(c, p)
                return p

            yield what, write

    check(run_cases("checkpoint", cases(), tmp_path), "checkpoint structure", 60)


# ---------------------------------------------------------------- ONNX


def _card_dict() -> dict:
    from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard

    return ModelCard(name="fz", arch="none", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11,
                     input_size=(16, 16)).to_dict()  # fmt: skip


def onnx_bytes(card: dict | str | None = None, conv: bool = True, export: dict | None = None) -> bytes:
    """A real little network (conftest.hand_onnx `conv`) or one ReduceMax node (`reduce`)."""
    return hand_onnx(card, "conv" if conv else "reduce", export=export)


def test_onnx_bases_load(tmp_path):
    from roadseg.runtime.model import inspect_model

    for conv in (True, False):
        p = tmp_path / f"{conv}.onnx"
        p.write_bytes(onnx_bytes(_card_dict(), conv))
        assert inspect_model(p).frame_size == (16, 16)


def test_fuzz_onnx_bytes(tmp_path, tiny_onnx):
    bases = {"conv": onnx_bytes(_card_dict()), "reduce": onnx_bytes(_card_dict(), conv=False),
             "tiny": tiny_onnx.read_bytes()}  # fmt: skip
    cases = byte_cases(bases, 160, seed=3, magic=b"\x08\x08\x12", ext=".onnx")
    check(run_cases(("onnx", "onnx-export"), cases, tmp_path), "onnx bytes", 320)


def test_fuzz_onnx_model_card(tmp_path):
    """A well-formed graph whose model card has one field of the wrong type or range."""
    rng = np.random.default_rng(4)
    card = _card_dict()
    spec = {"frame_size": [16, 16], "batch": 1, "dynamic": False, "raw": False, "precision": "fp32"}

    def cases():
        for _ in range(80):
            if rng.random() < 0.75:
                d, what = mutate_json(card, rng)
                yield what, _file("c.onnx", onnx_bytes(d, conv=False))
            else:
                e, what = mutate_json(spec, rng)
                yield f"export spec {what}", _file("c.onnx", onnx_bytes(card, conv=False, export=e))

    check(run_cases(("onnx", "onnx-export"), cases(), tmp_path), "onnx card", 160)


# ---------------------------------------------------------------- engine sidecars


def _engine_bases(folder: Path) -> tuple[Path, bytes]:
    from roadseg.runtime.engine import EngineSidecar, sha256_file, write_sidecar

    plan = folder / "m.engine"
    plan.write_bytes(bytes(range(256)) * 16)
    sc = EngineSidecar(
        card=_card_dict(), plan_sha256=sha256_file(plan), onnx_sha256="0" * 64, tensorrt_version=TRT_VERSION,
        cuda_version="12.6", gpu_name="NVIDIA Jetson AGX Orin", compute_capability="8.7", precision="fp16",
        profiles=[{"input": "frames", "min": [1, 16, 16, 3], "opt": [1, 16, 16, 3], "max": [1, 16, 16, 3]}],
        build_seconds=1.5, roadseg_version="0.1.0", created="2026-01-01T00:00:00+00:00", source="m.onnx",
    )  # fmt: skip
    side = write_sidecar(plan, sc)
    return plan, side.read_bytes()


def test_fuzz_engine_sidecar(tmp_path):
    """Byte mutations of the sidecar and of the plan, and field-level mutations of the sidecar and
    of the model card inside it: verify_engine refuses cleanly (a plan is never read further)."""
    from roadseg.runtime.engine import verify_engine

    base_plan, base_side = _engine_bases(tmp_path)
    assert verify_engine(base_plan, TRT_VERSION, "8.7").precision == "fp16"
    plan_bytes = base_plan.read_bytes()
    side_dict = json.loads(base_side)
    rng = np.random.default_rng(5)

    def pair(plan: bytes, side: bytes) -> Callable[[Path], Path]:
        def write(folder: Path) -> Path:
            (folder / "m.engine").write_bytes(plan)
            (folder / "m.engine.json").write_bytes(side)
            return folder / "m.engine"

        return write

    def cases():
        for _ in range(150):
            r = rng.random()
            if r < 0.4:
                side, what = mutate(base_side, rng)
                yield f"sidecar bytes: {what}", pair(plan_bytes, side)
            elif r < 0.55:
                plan, what = mutate(plan_bytes, rng)
                yield f"plan bytes: {what}", pair(plan, base_side)
            else:
                d, what = mutate_json(side_dict, rng, nested="card")
                yield f"sidecar field: {what}", pair(plan_bytes, json.dumps(d).encode())

    check(run_cases("sidecar", cases(), tmp_path), "engine sidecar", 150)


# ---------------------------------------------------------------- images


def _image_bases() -> dict[str, bytes]:
    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    img[10:30, 20:40] = (30, 200, 90)
    mask = (np.arange(40 * 60).reshape(40, 60) % 11).astype(np.uint8)
    out = {}
    for ext, image in ((".png", img), (".jpg", img), (".bmp", img), (".tiff", img), (".webp", img), (".pgm", mask),
                       (".png", mask), (".png", (img.astype(np.uint16) * 257))):  # fmt: skip
        ok, buf = cv2.imencode(ext, image)
        assert ok, ext
        key = f"{ext[1:]}-{image.ndim}d-{image.dtype}"
        out[key] = buf.tobytes()
    return out


def _huge_headers() -> dict[str, bytes]:
    """Valid-looking headers that claim a gigantic image (PNG with a correct IHDR checksum, BMP,
    JPEG). OpenCV would decode up to 2^30 pixels (a 675-byte JPEG claiming 30000x30000: 8.6 s and
    5 GB here); importing roadseg lowers its limit to 2^25 (roadseg/__init__.py), above which it
    raises instead, and the loaders must turn that into a skipped frame or a RoadsegError."""
    import struct
    import zlib

    small = np.zeros((40, 60, 3), np.uint8)
    png = bytearray(cv2.imencode(".png", small)[1].tobytes())
    bmp = bytearray(cv2.imencode(".bmp", small)[1].tobytes())
    jpg = bytearray(cv2.imencode(".jpg", small)[1].tobytes())
    out = {}
    for w, h in ((40000, 40000), (30000, 30000), (1, 10**9), (2**31 - 1, 1)):
        b = bytearray(png)
        b[16:24] = struct.pack(">II", w, h)
        b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
        out[f"png-{w}x{h}"] = bytes(b)
    for w, h in ((40000, 40000), (30000, -30000), (60, -40), (-60, 40), (0, 40)):
        b = bytearray(bmp)
        b[18:26] = struct.pack("<ii", w, h)
        out[f"bmp-{w}x{h}"] = bytes(b)
    sof = bytes(jpg).index(b"\xff\xc0")
    for w, h in ((65535, 65535), (30000, 30000), (6000, 6000), (0, 0), (8, 0)):
        b = bytearray(jpg)
        b[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
        out[f"jpg-{w}x{h}"] = bytes(b)
    return out


def test_fuzz_images(tmp_path):
    bases = _image_bases()
    rng = np.random.default_rng(7)
    names = sorted(bases)

    def cases():
        for name, data in _huge_headers().items():
            yield f"huge header {name}", _file("img." + name.split("-")[0], data)
        for _ in range(200):
            if rng.random() < 0.08:
                data, what = noise(rng, b"\x89PNG\r\n\x1a\n")
                ext = ".png"
            else:
                base = names[int(rng.integers(len(names)))]
                data, what = mutate(bases[base], rng, bases[names[int(rng.integers(len(names)))]])
                what = f"{base}: {what}"
                ext = "." + base.split("-")[0]
            yield what, _file("img" + ext, data)

    check(run_cases("image", cases(), tmp_path), "images", 214)


# ---------------------------------------------------------------- videos


def _video_bases(folder: Path) -> dict[str, bytes]:
    out = {}
    rng = np.random.default_rng(8)
    for name, fourcc in (("clip.avi", "MJPG"), ("clip.mp4", "mp4v")):
        path = folder / name
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (64, 48))
        assert vw.isOpened(), fourcc
        for i in range(12):
            f = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            f[:, : 5 * i] = 255 - i
            vw.write(f)
        vw.release()
        out[name] = path.read_bytes()
    return out


def test_fuzz_videos(tmp_path):
    bases = _video_bases(tmp_path)
    rng = np.random.default_rng(9)
    names = sorted(bases)

    def cases():
        for _ in range(150):
            if rng.random() < 0.1:
                data, what = noise(rng, b"RIFF\x00\x10\x00\x00AVI LIST")
                ext = ".avi"
            else:
                base = names[int(rng.integers(len(names)))]
                data, what = mutate(bases[base], rng, bases[names[int(rng.integers(len(names)))]])
                what = f"{base}: {what}"
                ext = Path(base).suffix
            yield what, _file("v" + ext, data)

    check(run_cases("video", cases(), tmp_path), "videos", 150)


def test_mutations_are_seeded_and_vary():
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    data = bytes(range(256)) * 4
    a = [mutate(data, rng_a) for _ in range(20)]
    b = [mutate(data, rng_b) for _ in range(20)]
    assert a == b
    assert len({x for x, _ in a}) > 15 and any(x != data for x, _ in a)
