"""The bench's `triton` row: the shipped INT8 served by a real Triton server (nvidia-pytriton) and
measured from its client by the worker like any row: latency, batched throughput, the labels the
accuracy pass compares, and concurrent clients batched by Triton; the report shows them. Skipped
(one line) without nvidia-pytriton; without it the row is skipped by the bench with the reason."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from roadseg.benchmarks import report, rows
from roadseg.benchmarks.session import InProcess
from roadseg.benchmarks.triton_server import missing
from roadseg.benchmarks.worker import Job
from roadseg.runtime.defaults import VARIANT_FILES, variants_dir
from roadseg.runtime.synthetic import make_scene

INT8 = variants_dir() / VARIANT_FILES["int8"]


def test_triton_row_is_skipped_with_the_reason_without_a_server(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytriton" else real(name, *a))
    reason = rows.unavailable(["triton"], {"ort-cpu": None})["triton"]
    assert reason is not None and "nvidia-pytriton" in reason and "pip install --no-deps nvidia-pytriton" in reason


@pytest.mark.slow
def test_triton_row_measures_what_a_client_sees(tmp_path):
    why = missing()
    if why:
        pytest.skip(why)
    assert rows.unavailable(["triton"], {"ort-cpu": None}) == {"triton": None}
    frames = np.stack([make_scene(i, size=(96, 128))[0] for i in range(6)])
    np.save(tmp_path / "frames.npy", frames)
    job = Job(row="triton", kind="triton", precision="int8", model=str(INT8), frames=str(tmp_path / "frames.npy"),
              labels_out=str(tmp_path / "labels.npy"), frame_size=(96, 128), backend="ort-cpu", warmup=1, iters=12,
              batch=[1, 3], batch_model=str(INT8), e2e_source=None, work=str(tmp_path / "work"), streams=[1, 4])  # fmt: skip
    session = InProcess(job)
    session.time(5)
    got = session.finish()
    assert "error" not in got, got.get("error")
    assert len(got["latency_samples_ms"]) == 5 and all(v > 0 for v in got["latency_samples_ms"])
    assert len(got["batch_samples_ms"]["3"]) >= 3  # batched requests through the same server
    assert "streams" not in got and sorted(got["clients"]) == ["1", "4"]  # its streams are concurrent clients
    four = got["clients"]["4"]
    assert four["requests"] == 12 and four["fps"] > 0 and four["p99_ms"] >= four["p50_ms"] > 0
    assert 1.0 <= four["mean_batch"] <= 4.0 and got["clients"]["1"]["mean_batch"] == 1.0
    from roadseg.runtime.segmenter import Segmenter

    with Segmenter(INT8, "ort-cpu") as local:  # the accuracy pass's labels are the served model's
        assert (np.load(tmp_path / "labels.npy") == local(frames)).mean() >= 0.999
    doc = {"rows": [{"name": "triton", "status": "ok", "clients": got["clients"]}]}
    table = "\n".join(report._clients_table(doc))
    assert "| triton | 4 |" in table and "Concurrent clients through a Triton server" in table
