"""`roadseg bench`: statistics on known samples, the row registry, and the harness on the tiny model
with two CPU rows (torch and ort-cpu-fp32): every report file written, the results.json schema,
skipped rows with their reasons, speed-up and accuracy consistent with the raw numbers.

No timing assertions: only that timings exist and are consistent with each other."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from roadseg.benchmarks import rows
from roadseg.benchmarks.harness import BenchConfig
from roadseg.benchmarks.stats import speedup, summarize, throughput_fps
from roadseg.core.errors import UsageError

TWO_ROWS = ["torch", "ort-cpu-fp32"]
GPU_ROWS = ["torch-fp16", "ort-cuda-fp32", "ort-trt-fp16", "trt-fp16"]
FRAMES, WARMUP = 5, 1
ENV_KEYS = {
    "cpu",
    "cpu_cores",
    "gpu",
    "driver",
    "cuda",
    "tensorrt",
    "onnxruntime",
    "torch",
    "roadseg",
    "git_sha",
    "date",
}
ROW_KEYS = {
    "name", "status", "reason", "kind", "backend", "precision", "device", "artifact", "latency_ms", "batch",
    "throughput_fps", "e2e_fps", "e2e_vs_model", "e2e", "peak_rss_mb", "gpu_memory_mb", "build_s", "load_s",
    "agreement", "miou", "speedup", "graph", "int8", "notes", "latency_samples_ms", "streams", "throughput_fps_by_batch",
    "clients",
}  # fmt: skip
LATENCY_KEYS = {"n", "median", "p90", "p99", "mean", "std", "min", "max"}


# -- statistics --------------------------------------------------------------------------------


def test_summarize_matches_numpy_on_a_fixed_array():
    rng = np.random.default_rng(7)
    x = rng.gamma(2.0, 3.0, size=257)  # skewed, like latencies
    s = summarize(x.tolist())
    assert s["n"] == 257
    assert s["median"] == pytest.approx(np.median(x))
    assert s["p90"] == pytest.approx(np.percentile(x, 90))
    assert s["p99"] == pytest.approx(np.percentile(x, 99))
    assert s["mean"] == pytest.approx(x.mean())
    assert s["std"] == pytest.approx(x.std())
    assert (s["min"], s["max"]) == (x.min(), x.max())


def test_summarize_hand_computed():
    s = summarize([4.0, 1.0, 3.0, 2.0])  # order does not matter
    assert s["median"] == pytest.approx(2.5)
    assert s["p90"] == pytest.approx(3.7)  # linear interpolation: 1 + 0.9 * 3 = 3.7th of 1..4
    assert s["p99"] == pytest.approx(3.97)
    assert s["mean"] == pytest.approx(2.5)
    assert s["std"] == pytest.approx(math.sqrt(1.25))  # population std (ddof=0)
    one = summarize([5.0])
    assert one["median"] == one["p99"] == 5.0 and one["std"] == 0.0


def test_summarize_empty_and_bad_samples():
    s = summarize([])
    assert s["n"] == 0 and math.isnan(s["median"])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


def test_speedup_and_throughput():
    assert speedup(10.0, 2.5) == pytest.approx(4.0)
    assert speedup(2.0, 4.0) == pytest.approx(0.5)
    assert speedup(None, 1.0) is None and speedup(1.0, None) is None and speedup(1.0, 0.0) is None
    assert throughput_fps(4, [20.0, 20.0]) == pytest.approx(200.0)  # 8 frames in 40 ms
    assert throughput_fps(1, []) is None


# -- environment -------------------------------------------------------------------------------


def test_reference_graph_carries_the_oldest_ir_for_its_opset():
    """The CPU-reference graph is built by hand: it must not take the onnx package's newest IR
    version (onnx 1.23 wrote IR 14, which ONNX Runtime 1.31 refuses, and `roadseg bench` crashed)."""
    import onnx
    import onnxruntime as ort

    from roadseg.benchmarks.environment import reference_model

    m = reference_model()
    assert m.ir_version == onnx.helper.find_min_ir_version_for(m.opset_import) < onnx.IR_VERSION
    onnx.checker.check_model(m)
    ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def test_a_failing_probe_costs_only_its_own_field(monkeypatch):
    from roadseg.benchmarks import environment

    def broken(*args):
        raise RuntimeError("Unsupported model IR version: 14, max supported IR version: 13\nmore")

    monkeypatch.setattr(environment, "cpu_reference_ms", broken)
    monkeypatch.setattr(environment, "gpu", broken)
    env = environment.collect(1)
    assert env["cpu_reference_ms"] is None and env["gpu"] is None and env["cpu_cores"] >= 1
    assert env["probe_errors"] == {
        "cpu_reference_ms": "RuntimeError: Unsupported model IR version: 14, max supported IR version: 13",
        "gpu": "RuntimeError: Unsupported model IR version: 14, max supported IR version: 13",
    }


# -- rows --------------------------------------------------------------------------------------


def test_row_registry_and_selection():
    assert rows.select("all") == list(rows.ROWS)
    assert rows.select("ort-cpu-fp32") == ["torch", "ort-cpu-fp32"]  # the reference is always measured
    assert rows.select(["trt-int8,torch"]) == ["torch", "trt-int8"]  # registry order
    for bad in ("ort-cpu-fp64", ",", "torch,nope"):
        with pytest.raises(UsageError):
            rows.select(bad)
    for name in ("torch", "torch-compile", "ort-cpu-fp32", "ort-cpu-fp16", "ort-cpu-int8", "ort-cuda-fp32",
                 "ort-cuda-fp16", "ort-trt-fp16", "ort-trt-int8", "trt-fp32", "trt-fp16", "trt-int8"):  # fmt: skip
        assert name in rows.ROWS


def test_unavailable_rows_carry_the_backend_reason():
    fake = {"ort-cpu": None, "ort-cuda": "no CUDA EP here", "ort-trt": "no TRT EP here", "trt": "tensorrt missing"}
    got = rows.unavailable(["torch", "ort-cpu-int8", "ort-cuda-fp16", "ort-trt-int8", "trt-fp32"], fake)
    assert got["torch"] is None and got["ort-cpu-int8"] is None
    assert got["ort-cuda-fp16"] == "no CUDA EP here"
    assert got["ort-trt-int8"] == "no TRT EP here"
    assert got["trt-fp32"] == "tensorrt missing"


# -- the harness on the tiny model -------------------------------------------------------------


@pytest.fixture(scope="module")
def bench(tiny_checkpoint, tmp_path_factory):
    """One real run: torch + ort-cpu-fp32, each in its own worker process, timed in 2 interleaved
    rounds, on a labelled synthetic dataset (mIoU), plus the GPU rows this machine lacks (listed as
    skipped). test_cli_bench runs the default: one round, one row after another."""
    from roadseg.benchmarks.harness import BenchConfig, run_bench
    from roadseg.runtime.synthetic import make_dataset

    root = tmp_path_factory.mktemp("bench")
    data = make_dataset(root / "data", 1, 3, size=(72, 96), seed=3)
    missing = [n for n, why in rows.unavailable(GPU_ROWS).items() if why is not None]
    cfg = BenchConfig(
        model=str(tiny_checkpoint), backends=",".join(TWO_ROWS + missing), frame_size=(72, 96), frames=FRAMES,
        warmup=WARMUP, data=str(data), report=str(root / "report"), threads=1, cache=str(root / "cache"),
        progress=False, rounds=2, streams=(1, 2), batch=(1, 3),
    )  # fmt: skip
    doc = run_bench(cfg)
    return doc, root / "report", missing


def test_every_report_file_is_written(bench):
    _, report, _ = bench
    files = ("results.json", "results.csv", "results.md", "results.png", "streams.png")
    for name in files:
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    assert (report / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (report / "streams.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    leftovers = [p.name for p in report.iterdir() if p.name not in files]
    assert leftovers == []  # the scratch folder (frames, labels, videos) is gone


def test_results_json_schema(bench):
    doc, report, missing = bench

    def no_nan(token):
        raise AssertionError(f"results.json holds {token}: not strict JSON")

    on_disk = json.loads((report / "results.json").read_text(), parse_constant=no_nan)
    assert {"schema", "model", "config", "frames", "reference", "environment", "artifacts", "rows"} <= set(on_disk)
    assert ENV_KEYS <= set(on_disk["environment"])
    assert on_disk["environment"]["cpu_cores"] >= 1 and on_disk["environment"]["torch"]
    ref = on_disk["environment"]["cpu_reference_ms"]
    assert isinstance(ref, float) and math.isfinite(ref) and ref > 0  # the fixed workload ran and was timed
    assert on_disk["frames"] == {"source": on_disk["frames"]["source"], "count": 3, "labelled": True, "size": [72, 96]}
    assert [r["name"] for r in on_disk["rows"]] == [n for n in rows.ROWS if n in TWO_ROWS + missing]
    for r in on_disk["rows"]:
        assert set(r) == ROW_KEYS, r["name"]
    assert doc["rows"][0]["name"] == "torch"


def test_measured_rows(bench):
    doc, _, _ = bench
    by = {r["name"]: r for r in doc["rows"]}
    for name in TWO_ROWS:
        r = by[name]
        assert r["status"] == "ok" and r["reason"] is None, (name, r["reason"])
        lat = r["latency_ms"]
        assert set(lat) == LATENCY_KEYS and lat["n"] == FRAMES == len(r["latency_samples_ms"])
        assert lat == pytest.approx(summarize(r["latency_samples_ms"]))
        assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        by_batch = r["throughput_fps_by_batch"]
        assert by_batch["1"] == pytest.approx(1000.0 / lat["mean"])  # batch 1: the latency runs
        assert by_batch["3"] > 0 and r["throughput_fps"] == by_batch["3"] and r["batch"] == 3  # frames/s, not batches
        assert r["speedup"] == pytest.approx(by["torch"]["latency_ms"]["median"] / lat["median"])
        assert r["peak_rss_mb"] > 0 and r["load_s"] > 0
        # torch rows run on CUDA where torch sees a GPU (the bench's GPU behaviour), else on the CPU
        on_gpu = name == "torch" and rows.torch_cuda() is None
        assert r["device"] == ("cuda" if on_gpu else "cpu") and (r["gpu_memory_mb"] is None) != on_gpu
        e2e = r["e2e"]
        assert e2e["frames"] == FRAMES and e2e["fps"] > 0 and e2e["video_written"]
        assert set(e2e["stage_median_ms"]) == {"read", "infer", "overlay", "write"}
        assert r["e2e_vs_model"] == pytest.approx(r["e2e_fps"] * lat["median"] / 1000.0)
        assert 0.0 <= r["miou"] <= 1.0
    assert by["torch"]["agreement"] == 1.0 and by["torch"]["speedup"] == pytest.approx(1.0)
    assert by["torch"]["artifact"] is None and by["torch"]["build_s"] is None
    ort = by["ort-cpu-fp32"]
    assert ort["agreement"] >= 0.99  # the FP32 graph computes what PyTorch computes
    assert ort["artifact"].endswith(".onnx") and ort["build_s"] > 0
    assert doc["artifacts"]["onnx-fp32"]["path"] == ort["artifact"]


def test_skipped_rows_carry_reasons(bench):
    doc, report, missing = bench
    skipped = [r for r in doc["rows"] if r["status"] != "ok"]
    assert [r["name"] for r in skipped] == [n for n in rows.ROWS if n in missing]
    for r in skipped:
        assert r["status"] == "skipped" and isinstance(r["reason"], str) and r["reason"].strip()
        assert r["latency_ms"] == {} and r["speedup"] is None
    md = (report / "results.md").read_text()
    for r in skipped:
        assert f"- `{r['name']}` (skipped): {r['reason']}" in md


def test_csv_and_markdown(bench):
    from roadseg.benchmarks.report import CSV_COLUMNS

    doc, report, _ = bench
    with open(report / "results.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert list(lines[0]) == CSV_COLUMNS
    assert [ln["name"] for ln in lines] == [r["name"] for r in doc["rows"]]
    torch_line = lines[0]
    assert float(torch_line["latency_median_ms"]) == pytest.approx(doc["rows"][0]["latency_ms"]["median"])
    md = (report / "results.md").read_text()
    assert "| Row | Median ms |" in md and "| read | infer | overlay | write |" in md
    assert f"median of {FRAMES} runs after {WARMUP} warm-up runs in 2 rounds interleaved across the rows" in md
    assert f"CPU reference: {doc['environment']['cpu_reference_ms']:.2f} ms" in md
    table = [ln for ln in md.splitlines() if ln.startswith("| torch |") or ln.startswith("| ort-cpu-fp32 |")]
    assert len(table) == 6  # latency, end-to-end and streams tables
    assert "| FPS (batch 1) | FPS (batch 3) |" in md
    assert torch_line["throughput_fps_by_batch"].startswith("1:") and " 3:" in torch_line["throughput_fps_by_batch"]
    assert all(ln.count("|") == table[0].count("|") for ln in table[:2])


# -- failures and the command line --------------------------------------------------------------


def test_a_row_that_cannot_be_made_fails_with_its_reason(tiny_checkpoint, tmp_path, monkeypatch):
    """In-process (isolate=False): the ONNX export is made to fail; the row says why, the run goes on."""
    from roadseg.benchmarks import variants
    from roadseg.benchmarks.harness import BenchConfig, run_bench

    monkeypatch.setattr(
        variants.Variants,
        "onnx",
        lambda self, precision, dynamic=False, tensorrt=False: variants.Artifact(None, error="boom: no graph"),
    )
    cfg = BenchConfig(model=str(tiny_checkpoint), backends="torch,ort-cpu-fp32", frames=2, warmup=0, report=str(tmp_path / "r"),
                      threads=1, cache=str(tmp_path / "c"), isolate=False, progress=False)  # fmt: skip
    doc = run_bench(cfg)
    by = {r["name"]: r for r in doc["rows"]}
    assert by["torch"]["status"] == "ok"
    assert by["torch"]["miou"] is None  # synthetic scenes: no labels of the model's domain
    assert by["ort-cpu-fp32"]["status"] == "failed" and "boom: no graph" in by["ort-cpu-fp32"]["reason"]
    assert "(failed): could not make the fp32 onnx: boom: no graph" in (tmp_path / "r" / "results.md").read_text()


def test_time_calls_rotates_the_inputs_across_rounds():
    from roadseg.benchmarks.worker import time_calls

    seen: list[int] = []
    inputs = [np.array(i) for i in range(3)]
    time_calls(lambda x: seen.append(int(x)), inputs, 2)
    time_calls(lambda x: seen.append(int(x)), inputs, 3, start=2)
    assert seen == [0, 1, 2, 0, 1]  # as one round of 5


def test_rounds_split_the_timed_runs():
    from roadseg.benchmarks.session import rounds

    assert rounds(10, 3) == [4, 3, 3] and rounds(5, 1) == [5] and rounds(4, 4) == [1, 1, 1, 1]
    with pytest.raises(UsageError, match="--rounds 6: give 1 to --frames"):
        BenchConfig(frames=5, rounds=6).check()


def test_rounds_interleave_the_rows(tiny_checkpoint, tmp_path, monkeypatch):
    """In process: with 3 rounds every row is loaded first, then timed round by round (torch,
    ort, torch, ort, ...), each row getting all its runs; with 1 round, row after row."""
    from roadseg.benchmarks import worker
    from roadseg.benchmarks.harness import run_bench

    calls: list[tuple[str, int]] = []
    timed = worker.RowSession.time

    def spy(self, count):
        calls.append((self.job.row, count))
        timed(self, count)

    monkeypatch.setattr(worker.RowSession, "time", spy)
    for n_rounds, expected in ((3, [2, 2, 1]), (1, [5])):
        calls.clear()
        cfg = BenchConfig(model=str(tiny_checkpoint), backends=",".join(TWO_ROWS), frame_size=(72, 96), frames=5,
                          warmup=0, report=str(tmp_path / f"r{n_rounds}"), threads=1, cache=str(tmp_path / "c"),
                          isolate=False, progress=False, rounds=n_rounds)  # fmt: skip
        doc = run_bench(cfg)
        if n_rounds == 3:
            assert calls == [(row, k) for k in expected for row in TWO_ROWS]
        else:
            assert calls == [(row, k) for row in TWO_ROWS for k in expected]
        assert all(r["status"] == "ok" and r["latency_ms"]["n"] == 5 for r in doc["rows"])


def test_a_worker_that_dies_between_rounds_fails_its_row_only(tiny_onnx, tmp_path):
    """The worker process is killed after its first round: its row says how it ended; a worker
    whose model cannot open says why; neither raises."""
    from roadseg.benchmarks.session import Worker
    from roadseg.benchmarks.worker import Job

    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 72, 96, 3), np.uint8))

    def job(model: str, row: str) -> Job:
        return Job(row=row, kind="onnx", precision="fp32", model=model, frames=str(frames),
                   labels_out=str(tmp_path / f"{row}.npy"), frame_size=(72, 96), backend="ort-cpu", warmup=0,
                   iters=2, e2e_source=None, threads=1)  # fmt: skip

    w = Worker(job(str(tiny_onnx), "alive"), tmp_path, timeout_s=120)
    w.time(1)
    assert w.error is None
    w.proc.kill()
    w.proc.wait()  # gone before the next command: writing it fails (EPIPE), which must not raise
    w.time(1)
    got = w.finish()
    assert "worker exited with code -9" in got["error"]
    slow = Worker(job(str(tiny_onnx), "slow"), tmp_path, timeout_s=0.01)  # cannot load in 10 ms
    assert slow.finish() == {"error": "timed out after 0 s"} and slow.proc.poll() is not None
    missing = Worker(job(str(tmp_path / "nothing.onnx"), "missing"), tmp_path, timeout_s=120)
    missing.time(1)
    got = missing.finish()
    assert "nothing.onnx" in got["error"] and "\n" not in got["error"]


def test_cli_bench_exits_1_when_no_row_was_measured(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """A table of failed rows is a failed benchmark: exit 1 (it used to be 0), after the report.
    Every measurement (the worker run) is made to fail, the reference row's included."""
    from roadseg.benchmarks import harness
    from roadseg.cli import main

    class Broken:
        def __init__(self, *args):
            pass

        def time(self, count):
            pass

        def finish(self):
            return {"error": "boom: no frames"}

    monkeypatch.setattr(harness, "Worker", Broken)
    code = main(["bench", str(tiny_checkpoint), "--backends", "torch", "--frames", "2", "--warmup", "0",
                 "--report", str(tmp_path / "r"), "--threads", "1", "--quiet"])  # fmt: skip
    cap = capsys.readouterr()
    assert code == 1 and "no backend was measured" in cap.err
    assert "boom: no frames" in cap.out and (tmp_path / "r" / "results.json").is_file()


def test_cli_bench_refuses_a_missing_source_before_any_work(tiny_checkpoint, tmp_path, capsys):
    """A typo in --source used to surface only as every row's failed end-to-end step, after all
    the exports and timings, with exit 0."""
    from roadseg.cli import main

    code = main(["bench", str(tiny_checkpoint), "--backends", "torch", "--source", str(tmp_path / "typo.mp4"),
                 "--report", str(tmp_path / "r"), "--quiet"])  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "typo.mp4: no such file or folder" in lines[0], lines
    assert not (tmp_path / "r").exists()  # checked before the report folder was made


def test_cli_bench(tiny_checkpoint, tmp_path, capsys):
    from roadseg.cli import build_parser, main

    a = build_parser().parse_args(["bench", "default", "--backends", "torch,ort-cpu-int8", "--imgsz", "64", "96",
                                   "--frame-size", "72", "96", "--batch", "4", "--frames", "3", "--warmup", "0"])  # fmt: skip
    assert (a.backends, a.imgsz, a.frame_size, a.batch, a.frames, a.warmup) == (
        "torch,ort-cpu-int8",
        [64, 96],
        [72, 96],
        [4],
        3,
        0,
    )
    assert main(["bench", str(tiny_checkpoint), "--backends", "nope", "--report", str(tmp_path / "x")]) == 2
    assert "unknown row nope" in capsys.readouterr().err
    report = tmp_path / "cli"
    code = main(["bench", str(tiny_checkpoint), "--backends", "torch", "--frames", "2", "--warmup", "0", "--report",
                 str(report), "--threads", "1", "--quiet"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "| torch |" in out and "results.png" in out
    assert json.loads((report / "results.json").read_text())["rows"][0]["status"] == "ok"


def test_variant_cache_follows_the_export_code(tiny_checkpoint, tmp_path, monkeypatch):
    """Graphs cached by one checkout are not reused by a checkout whose export code differs under
    the same version string (a stale INT8 graph would be measured as the new one)."""
    from roadseg.benchmarks import variants

    def folder() -> Path:
        return variants.Variants(tiny_checkpoint, None, (72, 96), 1, tmp_path, None, None).folder

    first = folder()
    assert folder() == first
    monkeypatch.setattr(variants, "_export_code", lambda: "changed")
    assert folder() != first


# -- GPU rows (run where torch sees CUDA; skipped elsewhere) ----------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(rows.torch_cuda() is not None, reason="needs PyTorch with a CUDA device")
def test_torch_fp16_row_replays_a_cuda_graph_of_each_calls_frames(tiny_checkpoint):
    """torch-fp16 on CUDA: FP16 channels-last weights replayed as a CUDA graph, one per input shape;
    each call returns the labels of its own frames (the graph reads the copied-in frames), within
    FP16 rounding of the FP32 reference."""
    from roadseg.benchmarks.worker import Job, TorchRunner
    from roadseg.runtime.synthetic import make_scene

    def runner(precision: str) -> TorchRunner:
        return TorchRunner(Job(row="r", kind="torch", precision=precision, model=str(tiny_checkpoint), frames="",
                               labels_out="", frame_size=(72, 96), cuda=True))  # fmt: skip

    frames = np.stack([make_scene(seed=s, size=(72, 96))[0] for s in range(4)])
    ref, fp16 = runner("fp32"), runner("fp16")
    want = np.stack([ref.infer(f) for f in frames])
    assert len(np.unique(want)) > 2 and not (want[0] == want[1]).all()
    for _ in range(2):  # the second pass replays the graph captured in the first
        got = np.stack([fp16.infer(f) for f in frames])
        assert fp16.graph == "captured" and (got == want).mean() >= 0.99
    np.testing.assert_array_equal(fp16.infer(frames), got)  # a batch of 4: its own graph, same labels
    assert len(fp16._graphs) == 2 and ref.graph == "off"


def test_stream_scaling_rows(bench):
    """--streams 1 2: each row runs one and two streams through the multi-stream pipeline; two
    streams of in-memory frames are batched (ort-cpu: the dynamic-batch graph), and the report
    has the table."""
    doc, report, _ = bench
    for r in (r for r in doc["rows"] if r["status"] == "ok"):
        got = r["streams"]
        assert set(got) == {"1", "2"}, r["name"]
        assert got["1"]["frames"] == FRAMES and got["2"]["frames"] == 2 * FRAMES
        assert len(got["2"]["per_stream_fps"]) == 2 and all(f > 0 for f in got["2"]["per_stream_fps"])
        assert got["1"]["mean_batch"] == 1.0 and got["2"]["mean_batch"] > 1.0
        assert got["2"]["total_fps"] > 0
    md = (report / "results.md").read_text()
    assert "Several streams through one model" in md and "| 1 stream | 2 streams |" in md


def test_stream_counts_expand_one_count_to_powers_of_two():
    from roadseg.cli import stream_counts

    assert stream_counts([8]) == (1, 2, 4, 8) and stream_counts([6]) == (1, 2, 4, 6) and stream_counts([1]) == (1,)
    assert stream_counts([4, 1, 4]) == (1, 4) and stream_counts(None) == ()


# -- ready model files, no PyTorch ---------------------------------------------------------------


def _file(name: str, precision: str, kind: str = "onnx", cpu_form: bool = False, dynamic: bool = True):
    from roadseg.core.card import CAMVID_CLASSES, CAMVID_PALETTE, ModelCard

    card = ModelCard(name="m", arch="a", classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, ignore_index=11, input_size=[64, 96])
    return rows.ModelFile(Path(name), kind, precision, card, dynamic, cpu_form)


def test_file_rows_pair_each_file_with_the_backends_of_its_format(monkeypatch):
    files = [_file("m_int8.onnx", "int8", cpu_form=True), _file("m_fp16.onnx", "fp16"), _file("m.engine", "fp16", "engine")]
    from roadseg.runtime.backends import BACKENDS

    got = rows.file_rows(files, "all")
    assert [r.name for r in got if r.backend in ("ort-cpu", "ort-cuda", "ort-trt", "trt")] == [
        "ort-cpu-m_int8", "ort-cuda-m_int8", "ort-trt-m_int8", "ort-cpu-m_fp16", "ort-cuda-m_fp16", "ort-trt-m_fp16", "trt-m"]  # fmt: skip
    onnx_backends = [n for n, spec in BACKENDS.items() if spec.takes("x.onnx")]  # every backend of the registry that takes the file
    assert [r.name for r in got if r.model == "m_fp16.onnx"] == [f"{n}-m_fp16" for n in onnx_backends]
    assert {r.model for r in got if r.backend == "trt"} == {"m.engine"} and all(r.dynamic_batch for r in got)
    assert [r.name for r in rows.file_rows(files, "ort-cpu,trt")] == ["ort-cpu-m_int8", "ort-cpu-m_fp16", "trt-m"]
    with pytest.raises(UsageError, match="choose `all` or backends from"):
        rows.file_rows(files, "torch")
    with pytest.raises(UsageError, match="none of them runs"):
        rows.file_rows(files[:1], "trt")
    with pytest.raises(UsageError, match="two model files named m_fp16"):
        rows.file_rows([files[1], _file("other/m_fp16.onnx", "fp32")], "ort-cpu")
    # every backend installed: the CPU-form INT8 is still refused by the GPU providers, with the fix
    import roadseg.runtime.backends as backends

    monkeypatch.setattr(backends, "available_backends", lambda model=None: dict.fromkeys(backends.BACKENDS))
    reasons = rows.file_reasons(got, files)
    refusing = [n for n in onnx_backends if not BACKENDS[n].cpu_form]  # the GPU providers (and ov-gpu/ov-npu)
    assert {"ort-cuda", "ort-trt"} <= set(refusing) and "ort-cpu" not in refusing
    assert [n for n, why in reasons.items() if why] == [f"{n}-m_int8" for n in refusing]
    assert "--int8-activations s8" in reasons["ort-cuda-m_int8"]
    # the reference is the most precise file's first runnable row
    assert rows.file_reference(got, reasons) == "ort-cpu-m_fp16"
    assert rows.file_reference(got, {**reasons, "ort-cpu-m_fp16": "no"}) == "ort-cuda-m_fp16"
    assert rows.file_reference(got, dict.fromkeys(reasons, "no")) is None


def test_files_and_checkpoints_do_not_mix(tiny_checkpoint, tiny_onnx, tmp_path):
    from roadseg.benchmarks.harness import run_bench

    for model, match in (([str(tiny_checkpoint), str(tiny_onnx)], "not both"),
                         ([str(tiny_checkpoint), str(tiny_checkpoint)], "give one checkpoint")):  # fmt: skip
        with pytest.raises(UsageError, match=match):
            run_bench(BenchConfig(model=model, report=str(tmp_path / "r"), progress=False))
    with pytest.raises(UsageError, match="drop --imgsz"):
        run_bench(BenchConfig(model=str(tiny_onnx), imgsz=(64, 96), report=str(tmp_path / "r"), progress=False))
    assert not (tmp_path / "r").exists()  # a usage error makes no report folder


@pytest.mark.slow
def test_bench_runs_the_shipped_files_without_pytorch(tmp_path):
    """A base install (no torch, no matplotlib: both shadowed by packages that fail to import, in the
    CLI's process and in each row's worker): `roadseg bench default` measures the shipped FP16 and
    INT8 files on ONNX Runtime's CPU, FP16 the reference, and writes the tables without charts."""
    import os
    import subprocess
    import sys

    shadow = tmp_path / "shadow"
    for name in ("torch", "matplotlib"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    from roadseg.runtime.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", n_train=1, n_val=3, size=(72, 96), seed=5)  # CamVid layout and classes
    report = tmp_path / "report"
    (report).mkdir()
    (report / "results.png").write_bytes(b"a chart of an earlier run")
    run = subprocess.run([sys.executable, "-m", "roadseg", "bench", "default", "--backends", "ort-cpu", "--frame-size",
                          "72", "96", "--batch", "1", "2", "--frames", "2", "--warmup", "0", "--threads", "1", "--quiet",
                          "--data", str(data), "--report", str(report)], capture_output=True, text=True, env=env,
                         timeout=280)  # fmt: skip
    assert run.returncode == 0, run.stderr
    doc = json.loads((report / "results.json").read_text())
    assert doc["environment"]["torch"] is None and doc["model"]["checkpoint"] is None
    got = {r["name"]: r for r in doc["rows"]}
    assert list(got) == ["ort-cpu-ddrnet23s_camvid_fp16", "ort-cpu-ddrnet23s_camvid_int8"]
    assert doc["reference"] == "ort-cpu-ddrnet23s_camvid_fp16"
    fp16, int8 = got.values()
    assert fp16["status"] == int8["status"] == "ok" and (fp16["precision"], int8["precision"]) == ("fp16", "int8")
    assert fp16["agreement"] == 1.0 and fp16["speedup"] == 1.0 and 0.9 < int8["agreement"] <= 1.0
    assert int8["throughput_fps_by_batch"]["2"] > 0 and int8["e2e_fps"] > 0
    # the INT8 row says what the graph is and that this CPU computes it exactly (7-bit weights: natively)
    assert int8["int8"] == "u8 activations, 7-bit weights: exact natively (7-bit weights never saturate)" and fp16["int8"] is None
    assert doc["environment"]["cpu_class"] and isinstance(doc["environment"]["int8_native_exact"], bool)
    assert doc["frames"]["labelled"] and doc["frames"]["count"] == 3 and 0 <= int8["miou"] <= 1
    assert sorted(p.name for p in report.iterdir()) == ["results.csv", "results.json", "results.md"]
    assert "no charts: they need matplotlib" in run.stdout and "`ort-cpu-ddrnet23s_camvid_fp16`" in run.stdout


def test_a_fixed_batch_file_is_measured_at_batch_1_and_still_runs_streams(tiny_onnx, tmp_path):
    from roadseg.benchmarks.harness import run_bench

    doc = run_bench(BenchConfig(model=str(tiny_onnx), backends="ort-cpu", batch=(1, 2), streams=(1, 2), frames=FRAMES,
                                warmup=WARMUP, threads=1, report=str(tmp_path / "r"), progress=False))  # fmt: skip
    (row,) = doc["rows"]
    assert row["status"] == "ok" and doc["reference"] == row["name"] == f"ort-cpu-{tiny_onnx.stem}"
    assert row["throughput_fps_by_batch"]["1"] > 0 and row["throughput_fps_by_batch"]["2"] is None
    assert row["streams"]["2"]["frames"] == 2 * FRAMES and row["streams"]["2"]["total_fps"] > 0
    assert any("fixed-batch file" in n for n in row["notes"])
