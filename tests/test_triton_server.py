"""A real Triton Inference Server (the tritonserver of the nvidia-pytriton wheel) serves what
`roadseg export --to triton` writes.

The python repository of the shipped INT8 model is loaded by a stock server on 127.0.0.1 and
answers over HTTP and gRPC with the labels of the local Segmenter; concurrent clients are batched by
Triton's dynamic batcher (its statistics say so); a bad request gets its own error and the server
goes on. The onnxruntime and tensorrt repositories, loaded by the same server, fail only because
their backends are not in the wheel (so their configs parse). The server is stopped by the fixture,
also when a test fails, and must exit cleanly. Skipped (one line) without nvidia-pytriton."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from roadseg.benchmarks.triton_server import TritonServer, missing
from roadseg.export.command import ExportOptions, export
from roadseg.runtime.defaults import VARIANT_FILES, variants_dir
from roadseg.runtime.synthetic import make_scene

pytestmark = pytest.mark.slow

INT8 = variants_dir() / VARIANT_FILES["int8"]  # the shipped CPU model: dynamic N, H, W
FP16 = variants_dir() / VARIANT_FILES["fp16"]
NAME = "ddrnet23s_camvid"  # its card's name: the model's name in the repository
SIZE = (120, 160)
MIN_AGREEMENT = 0.999


def _repository(src: Path, out: Path, platform: str) -> Path:
    return Path(
        export(ExportOptions(model=str(src), to="triton", triton_platform=platform, output=str(out), progress=False))
    )


def _alongside(repo: Path, other: Path, name: str) -> None:
    """Copy `other`'s model into `repo` as `name` (Triton needs unique names; the config keeps all else)."""
    shutil.copytree(other / NAME, repo / name)
    config = repo / name / "config.pbtxt"
    config.write_text(config.read_text().replace(f'name: "{NAME}"', f'name: "{name}"', 1))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    why = missing()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("triton_server")
    repo = _repository(INT8, root / "repo", "python")
    _alongside(repo, _repository(FP16, root / "ort", "onnxruntime"), f"{NAME}_onnxruntime")
    from roadseg.export import tensorrt

    with pytest.MonkeyPatch.context() as mp:  # a stand-in plan: the server stops at the missing backend first
        mp.setattr(tensorrt, "require_tensorrt", lambda: "10.0")
        mp.setattr(
            tensorrt, "build_engine", lambda model, card, spec, opts, src: Path(opts.output).write_bytes(b"PLAN")
        )
        _alongside(repo, _repository(FP16, root / "trt", "tensorrt"), f"{NAME}_tensorrt")
    server = TritonServer(repo, root / "server", models=[NAME])
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, f"tritonserver exited with {code}: {server.log()[-2000:]}"


@pytest.fixture(scope="module")
def local():
    from roadseg.runtime.segmenter import Segmenter

    with Segmenter(INT8, "ort-cpu") as seg:
        yield seg


@pytest.fixture
def clients(served):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    made = []

    def make(kind: str = "grpc"):
        c = (
            grpcclient.InferenceServerClient(served.grpc_url)
            if kind == "grpc"
            else httpclient.InferenceServerClient(served.http_url)
        )
        made.append(c)
        return c

    yield make
    for c in made:  # an open connection would hold the server's shutdown
        c.close()


def _frames(n: int, size=SIZE, seed: int = 0) -> np.ndarray:
    return np.stack([make_scene(seed + i, size=size)[0] for i in range(n)])


def _infer(client, frames: np.ndarray) -> np.ndarray:
    mod = __import__(type(client).__module__.rsplit(".", 1)[0], fromlist=["InferInput"])
    x = mod.InferInput("frames", list(frames.shape), "UINT8")
    x.set_data_from_numpy(frames)
    return client.infer(NAME, [x], outputs=[mod.InferRequestedOutput("labels")]).as_numpy("labels")


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return float((a == b).mean())


def test_python_repository_serves_the_runtimes_labels(served, clients, local):
    frames = _frames(3)
    got = _infer(clients("http"), frames)  # one request of 3 frames
    assert _agreement(got, local(frames)) >= MIN_AGREEMENT
    other = _frames(1, size=(96, 128), seed=10)  # any frame size
    assert _agreement(_infer(clients("grpc"), other), local(other)) >= MIN_AGREEMENT
    meta = clients("grpc").get_model_config(NAME).config
    assert meta.backend == "python" and meta.max_batch_size == 8 and meta.instance_group[0].kind == 2  # KIND_CPU


def _at_once(conns: list, frames: np.ndarray) -> list[np.ndarray]:
    """One request per client, frame k from client k, all released at once; their labels."""
    start, got, errors = threading.Barrier(len(conns)), [None] * len(conns), []

    def send(k: int) -> None:
        start.wait()
        try:
            got[k] = _infer(conns[k], frames[k : k + 1])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(conns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and all(g is not None for g in got), errors
    return got  # type: ignore[return-value]


def test_concurrent_clients_are_batched_by_triton(served, clients, local):
    n = 8
    frames = _frames(n, seed=20)
    want = local(frames)
    conns = [clients("grpc") for _ in range(n)]

    def largest_batch() -> int:
        return max(int(b.batch_size) for b in conns[0].get_inference_statistics(NAME).model_stats[0].batch_stats)

    for _ in range(5):  # rounds of n requests sent at once, until Triton has run a batch of several
        got = _at_once(conns, frames)
        assert _agreement(np.concatenate(got), want) >= MIN_AGREEMENT  # each client got its own frame's labels
        if largest_batch() > 1:
            break
    assert largest_batch() > 1, "Triton never batched concurrent requests"


def test_a_bad_request_fails_alone(served, clients, local):
    from tritonclient.utils import InferenceServerException

    client = clients("grpc")
    with pytest.raises(InferenceServerException, match="'frames' must be uint8"):  # model.py's own answer
        _infer(client, np.zeros((1, 0, 4, 3), np.uint8))  # an empty frame
    frames = _frames(1, seed=30)
    assert _agreement(_infer(client, frames), local(frames)) >= MIN_AGREEMENT


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
def test_other_platforms_fail_only_for_their_missing_backend(served, clients, backend):
    from tritonclient.utils import InferenceServerException

    client = clients("grpc")
    with pytest.raises(InferenceServerException) as err:
        client.load_model(f"{NAME}_{backend}")
    assert f"unable to find backend library for backend '{backend}'" in str(err.value)
    assert client.is_model_ready(NAME)  # the served model is unaffected


def test_a_server_that_cannot_start_is_reported_and_gone(tmp_path):
    import os

    from roadseg.core.errors import RoadsegError

    why = missing()
    if why:
        pytest.skip(why)
    bad = tmp_path / "repo" / "broken"
    (bad / "1").mkdir(parents=True)
    (bad / "config.pbtxt").write_text('name: "broken"\nbackend: "no_such_backend"\n')
    with pytest.raises(RoadsegError, match="tritonserver exited .* before it was ready") as err:
        TritonServer(tmp_path / "repo", tmp_path / "server", ready_timeout_s=60)
    msg = str(err.value)
    assert "backend 'no_such_backend'" in msg and "log: " in msg and "\n" not in msg  # Triton's own reason
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    mine = [p for p in pids if f"--model-repository={tmp_path / 'repo'}" in _cmdline(p)]
    assert mine == [], "no process of that server is left"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
