"""The bench's `triton` row: what a client sees through a Triton Inference Server on this machine.

The row's ONNX graph (the dynamic-batch INT8 the ort-cpu-int8 row runs, on the CPU) is exported as
a `--triton-platform python` repository (roadseg's runtime in Triton's Python backend, CPU
instances) into the row's scratch folder, served by the nvidia-pytriton wheel's tritonserver on
127.0.0.1 (triton_server.py), and driven over gRPC with tritonclient. TritonRunner has the Backend
protocol, so the worker measures it like any row: its batch-1 latency (median, p90, p99) is a
client's round trip (serialisation, gRPC, Triton's scheduler, the Python backend, the runtime),
throughput at --batch sends batched requests, end to end and accuracy go through it too.

Concurrent clients (`clients` in results.json, a table in results.md): N clients (one thread and
one gRPC connection each; N from --streams, else 4) send batch-1 requests as fast as they are
answered, so Triton's dynamic batcher batches them. Per N: total frames per second, request latency
p50/p99, and the mean batch Triton ran (its statistics: inferences / executions over the run).
With --streams, these clients are the triton row's streams (the pipeline's batched streams are not
run for it). The server is a child of the worker, so the row's peak RSS is the client's only.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from roadseg.runtime.backends.base import TensorSpec, check_frames

from .stats import summarize

CLIENTS = (4,)  # concurrent clients without --streams


def unavailable() -> str | None:
    """None when the row can run here, else what is missing."""
    from .triton_server import missing

    if importlib.util.find_spec("onnx") is None:  # the repository is exported here (roadseg.export)
        return 'onnx is not installed (the row exports a Triton repository): pip install "roadseg[train]"'
    return missing()


class TritonRunner:
    """A Triton server serving `model` (an .onnx made by roadseg) through roadseg's runtime on CPU
    instances, and a gRPC client to it, as a Backend; close() stops the server."""

    def __init__(self, row: str, model: str, scratch: Path) -> None:
        import onnx
        import tritonclient.grpc as grpcclient

        from roadseg.export.options import ExportOptions
        from roadseg.export.spec import read_metadata
        from roadseg.export.triton import model_name, write_repository

        from .triton_server import TritonServer

        self.name = row
        proto = onnx.load(model)  # what `roadseg export MODEL --to triton` does, without importing the exporter's torch
        self.card, spec = read_metadata(proto, model)
        self.model_name = model_name(self.card)
        repo = scratch / "repo"
        opts = ExportOptions(
            model=model, to="triton", triton_platform="python", triton_instance="cpu", output=str(repo)
        )
        write_repository(proto, self.card, spec, opts, Path(model))
        self.grpc = grpcclient
        self.server: Any = TritonServer(repo, scratch)
        self.client = grpcclient.InferenceServerClient(self.server.grpc_url)

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec("frames", (None, None, None, 3), "uint8")]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("labels", (None, None, None), "uint8")]

    def _request(self, client: Any, frames: np.ndarray) -> np.ndarray:
        x = self.grpc.InferInput("frames", list(frames.shape), "UINT8")
        x.set_data_from_numpy(frames)
        return client.infer(self.model_name, [x], outputs=[self.grpc.InferRequestedOutput("labels")]).as_numpy("labels")

    def infer(self, frames: np.ndarray) -> np.ndarray:
        x = check_frames(frames)
        single = x.ndim == 3
        labels = self._request(self.client, np.ascontiguousarray(x[None] if single else x))
        return labels[0] if single else labels

    def _counts(self) -> tuple[int, int]:
        stats = self.client.get_inference_statistics(self.model_name).model_stats[0]
        return int(stats.inference_count), int(stats.execution_count)

    def clients(self, counts: list[int], frames: np.ndarray, requests: int) -> dict[str, dict]:
        """For each N in `counts`: N concurrent clients sending about `requests` batch-1 requests in all
        (at least 3 each), frames rotating; see the module docstring."""
        out = {}
        for n in counts:
            per = max(3, math.ceil(requests / n))
            conns = [self.grpc.InferenceServerClient(self.server.grpc_url) for _ in range(n)]
            try:
                for c in conns:  # each connection once before timing
                    self._request(c, np.ascontiguousarray(frames[:1]))
                out[str(n)] = self._run_clients(conns, frames, per)
            finally:
                for c in conns:
                    c.close()
        return out

    def _run_clients(self, conns: list[Any], frames: np.ndarray, per: int) -> dict:
        start = threading.Barrier(len(conns) + 1)
        samples: list[list[float]] = [[] for _ in conns]
        errors: list[BaseException] = []

        def client(k: int) -> None:
            start.wait()
            try:
                for i in range(per):
                    f = np.ascontiguousarray(frames[(k + i * len(conns)) % len(frames)][None])
                    t0 = time.perf_counter()
                    self._request(conns[k], f)
                    samples[k].append((time.perf_counter() - t0) * 1000.0)
            except BaseException as e:  # noqa: BLE001 - reported after the others finish
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(len(conns))]
        for t in threads:
            t.start()
        inferences0, executions0 = self._counts()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if errors:
            raise errors[0]
        inferences, executions = self._counts()
        lat = summarize([s for per_client in samples for s in per_client])
        done = len(conns) * per
        return {
            "fps": done / wall if wall > 0 else None, "requests": done, "p50_ms": lat.get("median"),
            "p99_ms": lat.get("p99"), "mean_batch": (inferences - inferences0) / max(1, executions - executions0),
        }  # fmt: skip

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()  # an open connection would hold the server's shutdown
        server, self.server = getattr(self, "server", None), None
        if server is not None:
            server.stop()
