"""The GPU check: every GPU path of roadseg on this NVIDIA machine, in one command.

    bash .ci/gpu-check [--data CAMVID_ROOT] [--video CLIP.mp4] [--out DIR] [--skip STEP,...]

Steps (each in its own process, with a time limit; one failing never stops the others):
  env        the GPU, driver, CUDA, cuDNN, ONNX Runtime providers, and what each backend needs here
  tests      the whole test suite (`python -m pytest -q`)
  gpu-tests  the `gpu`-marked tests, with the reason of each one skipped (TensorRT where installed)
  run        `roadseg run` on ort-cuda (FP32, FP16) against ort-cpu, mask agreement printed
  ort-cuda   ort-cuda latency with and without the CUDA graph and channels-last kernels, per precision
  bench      `roadseg bench default` with every GPU row this machine allows, throughput at batch 1, 8
             and 32 and 1-8 streams, report in benchmarks/results/<gpu>/ (commit it)
  e2e-720p   with --video: end to end on that video at its size (decode, infer, overlay, encode)
  train      `roadseg train` for two epochs on CUDA with AMP, epoch times printed
  ddp        `torchrun` with one process per GPU (NCCL), where there are two or more
Everything is logged under --out; the last lines say what ran, what failed and what could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("env", "tests", "train", "run", "ort-cuda", "bench", "e2e-720p", "gpu-tests", "ddp")
GPU_ROWS = "torch,torch-fp16,torch-compile,ort-cuda-fp32,ort-cuda-fp16,ort-trt-fp16,ort-trt-int8,trt-fp32,trt-fp16,trt-int8"


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Check:
    def __init__(self, out: Path, skip: set[str]):
        self.out, self.skip = out, skip
        self.results: list[tuple[str, str, float, str]] = []  # step, status, seconds, note

    def sh(self, step: str, cmd: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess | None:
        """Run one command of a step, its output teed to the step's log; None if it could not start or timed out."""
        log = self.out / f"{step}.log"
        print(f"\n$ {' '.join(cmd)}", flush=True)
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            try:
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                     env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})  # fmt: skip
            except OSError as e:
                fh.write(f"could not start: {e}\n")
                return None
            deadline = time.time() + timeout
            lines = []
            assert p.stdout is not None
            for line in p.stdout:
                fh.write(line)
                lines.append(line)
                if time.time() > deadline:
                    p.kill()
                    fh.write(f"killed after {timeout:.0f} s\n")
                    print(f"  ... killed after {timeout:.0f} s", flush=True)
                    return None
            p.wait()
        tail = "".join(lines[-15:])
        print(tail, end="" if tail.endswith("\n") else "\n", flush=True)
        return subprocess.CompletedProcess(cmd, p.returncode, "".join(lines), "")

    def step(self, name: str, fn, *args) -> None:
        if name in self.skip:
            self.results.append((name, "skipped", 0.0, "--skip"))
            return
        print(f"\n===== {name} =====", flush=True)
        t0 = time.time()
        try:
            status, note = fn(*args)
        except Exception as e:  # noqa: BLE001 - a broken step is reported, the others still run
            status, note = "failed", f"{type(e).__name__}: {e}"
        self.results.append((name, status, time.time() - t0, note))
        print(f"[{name}] {status} ({time.time() - t0:.0f} s): {note}", flush=True)

    def summary(self) -> int:
        lines = ["", "===== GPU check summary =====", f"{'step':<10} {'status':<12} {'s':>6}  note"]
        for name, status, secs, note in self.results:
            lines.append(f"{name:<10} {status:<12} {secs:>6.0f}  {note}")
        text = "\n".join(lines)
        print(text, flush=True)
        (self.out / "summary.txt").write_text(text + "\n")
        return 1 if any(s == "failed" for _, s, _, _ in self.results) else 0


def roadseg(*args: str) -> list[str]:
    return [sys.executable, "-m", "roadseg", *args]


def env_step(c: Check) -> tuple[str, str]:
    code = (
        "import json, torch, onnxruntime as ort\n"
        "from roadseg.benchmarks import environment\n"
        "from roadseg.runtime.backends import available_backends\n"
        "e = environment.collect()\n"
        "keys = ('gpu', 'driver', 'cuda', 'cudnn', 'torch', 'torch_cuda', 'onnxruntime', 'onnxruntime_providers', 'tensorrt')\n"
        "print(json.dumps({k: e.get(k) for k in keys}, indent=1))\n"
        "print('torch sees', torch.cuda.device_count(), 'CUDA device(s)')\n"
        "print(json.dumps(available_backends(), indent=1))\n"
    )
    r = c.sh("env", [sys.executable, "-c", code], 120)
    return ("ok", gpu_name() or "no GPU found") if r and r.returncode == 0 else ("failed", "see env.log")


def tests_step(c: Check, marker: str | None) -> tuple[str, str]:
    name = "gpu-tests" if marker else "tests"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"] + (["-m", marker] if marker else [])
    r = c.sh(name, cmd, 1500)
    if r is None:
        return "failed", "timed out"
    last = [ln for ln in r.stdout.splitlines() if re.search(r"\b(passed|failed|skipped|error)", ln)]
    return ("ok" if r.returncode == 0 else "failed"), (last[-1].strip("= ") if last else f"exit {r.returncode}")


def _agreement(a: Path, b: Path) -> tuple[float, int]:
    import cv2

    same = total = 0
    names = sorted(p.name for p in a.glob("*.png"))
    for n in names:
        x, y = cv2.imread(str(a / n), cv2.IMREAD_UNCHANGED), cv2.imread(str(b / n), cv2.IMREAD_UNCHANGED)
        if y is None or x.shape != y.shape:
            raise RuntimeError(f"{b / n}: missing or of another size")
        same += int((x == y).sum())
        total += x.size
    return same / max(total, 1), len(names)


def run_step(c: Check, source: str, frames: int) -> tuple[str, str]:
    work = c.out / "run"
    models = {}
    for precision in ("fp32", "fp16"):
        models[precision] = work / f"default-{precision}.onnx"
        r = c.sh("run", roadseg("export", "default", "--frame-size", "360", "480", "--precision", precision,
                                "-o", str(models[precision]), "--quiet"), 600)  # fmt: skip
        if r is None or r.returncode != 0:
            return "failed", f"export {precision} failed (run.log)"
    masks = {}
    for precision, backend in (("fp32", "ort-cpu"), ("fp32", "ort-cuda"), ("fp16", "ort-cuda"), ("fp16", "ort-cpu")):
        folder = work / f"masks-{precision}-{backend}"
        shutil.rmtree(folder, ignore_errors=True)
        r = c.sh("run", roadseg("run", str(models[precision]), "--source", source, "--backend", backend,
                                "--save-masks", str(folder), "--max-frames", str(frames)), 600)  # fmt: skip
        if r is None or r.returncode != 0:
            return "failed", f"run {precision} on {backend} failed (run.log)"
        masks[precision, backend] = folder
    ref = masks["fp32", "ort-cpu"]
    notes = []
    for key in (("fp32", "ort-cuda"), ("fp16", "ort-cuda"), ("fp16", "ort-cpu")):
        agree, n = _agreement(ref, masks[key])
        notes.append(f"{key[0]} {key[1]} vs fp32 ort-cpu {100 * agree:.3f}% ({n} frames)")
    (work / "agreement.txt").write_text("\n".join(notes) + "\n")
    return "ok", "; ".join(notes)


def ort_cuda_step(c: Check, source: str) -> tuple[str, str]:
    """ort-cuda median latency at batch 1 per precision, CUDA graph on/off, channels-last on/off."""
    code = f"""
import glob, json, time, cv2, numpy as np
from roadseg.runtime.backends.ort import OrtBackend
from roadseg.runtime.synthetic import make_scene
files = sorted(glob.glob({source!r} + "/*.*"))[:8]
frames = [cv2.imread(f) for f in files] or [make_scene(seed=i, size=(360, 480))[0] for i in range(8)]
rows = []
for precision in ("fp32", "fp16"):
    path = {str(c.out / "run")!r} + f"/default-{{precision}}.onnx"
    for graph in (False, True):
        for nhwc in (False, True):
            b = OrtBackend(path, provider="cuda", cuda_graph=graph, nhwc=nhwc)
            for i in range(30):
                b.infer(frames[i % len(frames)])
            t = []
            for i in range(200):
                t0 = time.perf_counter(); b.infer(frames[i % len(frames)]); t.append((time.perf_counter() - t0) * 1000)
            rows.append(dict(precision=precision, cuda_graph=graph, nhwc=nhwc, graph=b.graph, median_ms=float(np.median(t)),
                             p90_ms=float(np.percentile(t, 90))))
            b.close()
            print(json.dumps(rows[-1]), flush=True)
json.dump(rows, open({str(c.out / "ort-cuda.json")!r}, "w"), indent=1)
"""
    if not (c.out / "run" / "default-fp16.onnx").is_file():
        return "not run", "needs the run step's exports"
    r = c.sh("ort-cuda", [sys.executable, "-c", code], 600)
    if r is None or r.returncode != 0:
        return "failed", "see ort-cuda.log"
    rows = json.loads((c.out / "ort-cuda.json").read_text())
    return "ok", "; ".join(f"{x['precision']} graph={int(x['cuda_graph'])} nhwc={int(x['nhwc'])}: {x['median_ms']:.2f} ms" for x in rows)


def bench_step(c: Check, data: str | None, frames: int, report: Path) -> tuple[str, str]:
    r = c.sh("bench", roadseg("bench", "default", "--frame-size", "360", "480", "--frames", str(frames), "--warmup", "20",
                              "--backends", GPU_ROWS, "--batch", "1", "8", "32", "--streams", "8", "--report", str(report),
                              "--quiet", *(["--data", data] if data else [])), 1800)  # fmt: skip
    if r is None or r.returncode != 0:
        return "failed", "see bench.log"
    doc = json.loads((report / "results.json").read_text())
    ok = [f"{r['name']} {r['latency_ms']['median']:.2f} ms, {r['throughput_fps'] or 0:.0f} FPS at batch 32"
          for r in doc["rows"] if r["status"] == "ok"]  # fmt: skip
    return "ok", f"{report}: " + "; ".join(ok)


def e2e_step(c: Check, video: str, frames: int, report: Path) -> tuple[str, str]:
    import cv2

    cap = cv2.VideoCapture(video)
    h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    cap.release()
    if not h or not w:
        return "failed", f"{video}: cannot read its size"
    r = c.sh("e2e-720p", roadseg("bench", "default", "--frame-size", str(h), str(w), "--source", video, "--frames",
                                  str(frames), "--warmup", "20", "--backends", "ort-cuda-fp16",
                                  "--quiet", "--report", str(report)), 1200)  # fmt: skip
    if r is None or r.returncode != 0:
        return "failed", "see e2e-720p.log"
    doc = json.loads((report / "results.json").read_text())
    notes = [f"{r['name']}: model {1000 / r['latency_ms']['median']:.0f} FPS, e2e {r['e2e_fps']:.0f} FPS "
             f"({r['e2e']['stage_median_ms']})" for r in doc["rows"] if r["status"] == "ok" and r.get("e2e_fps")]  # fmt: skip
    return "ok", "; ".join(notes)


def train_step(c: Check, data: str, dataset: str) -> tuple[str, str]:
    out = c.out / "train"
    r = c.sh("train", roadseg("train", "--model", "ddrnet23s", "--model-kwargs", '{"detail": true}', "--data", data,
                              "--dataset", dataset, "--epochs", "2", "--batch", "16", "--crop", "384", "512", "--imgsz", "384",
                              "512", "--device", "cuda", "--workers", "8", "--quiet", "--overwrite", "--out", str(out)), 900)  # fmt: skip
    if r is None or r.returncode != 0:
        return "failed", "see train.log"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    amp = "float16 autocast" if "mixed precision: float16" in r.stdout else "no AMP line"
    return "ok", f"{amp}; epoch times " + ", ".join(f"{e['time_s']:.1f} s" for e in log)


def ddp_step(c: Check, data: str, dataset: str) -> tuple[str, str]:
    import torch

    n = torch.cuda.device_count()
    if n < 2:
        return "not run", f"{n} GPU here; DDP on CUDA needs two"
    out = c.out / "ddp"
    r = c.sh("ddp", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "-m", "roadseg", "train",
                     "--model", "ddrnet23s", "--data", data, "--dataset", dataset, "--epochs", "1", "--batch", "8",
                     "--crop", "384", "512", "--device", "cuda", "--quiet", "--overwrite", "--out", str(out)], 900)  # fmt: skip
    return ("ok", f"{n} ranks on {n} GPUs") if r and r.returncode == 0 else ("failed", "see ddp.log")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="labelled CamVid-layout root (bench mIoU, training); default: a synthetic dataset")
    ap.add_argument("--video", help="a real video (e.g. 1280x720 H.264) for the end-to-end step")
    ap.add_argument("--out", default="runs/gpu-check", help="logs and outputs (default runs/gpu-check)")
    ap.add_argument("--frames", type=int, default=200, help="timed runs per bench row (default 200)")
    ap.add_argument("--skip", default="", help=f"comma-separated steps to leave out: {', '.join(STEPS)}")
    a = ap.parse_args()
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    unknown = skip - set(STEPS)
    if unknown:
        ap.error(f"--skip: unknown step {', '.join(sorted(unknown))}; choose from {', '.join(STEPS)}")
    out = (ROOT / a.out).resolve() if not Path(a.out).is_absolute() else Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    c = Check(out, skip)
    name = gpu_name()
    if name is None:
        print("gpu-check: no NVIDIA GPU found (nvidia-smi); nothing to check here", file=sys.stderr)
        return 1
    data, dataset = a.data, "camvid"  # make_dataset writes the CamVid layout too
    if a.data:  # the test steps' tests that need real CamVid find it through ROADSEG_CAMVID
        os.environ.setdefault("ROADSEG_CAMVID", str(Path(a.data).resolve()))
    if data is None:
        from roadseg.runtime.synthetic import make_dataset

        data = str(make_dataset(out / "synthetic-data", 48, 16, size=(360, 480), seed=0))
    source = str(Path(data) / "val") if a.data and (Path(data) / "val").is_dir() else "synthetic:60"
    report = ROOT / "benchmarks" / "results" / slug(name)
    c.step("env", env_step, c)
    c.step("tests", tests_step, c, None)
    c.step("train", train_step, c, data, dataset)
    c.step("run", run_step, c, source, 60)
    c.step("ort-cuda", ort_cuda_step, c, source)
    if a.video:
        c.step("e2e-720p", e2e_step, c, a.video, 300, report / "e2e-720p")
    else:
        c.results.append(("e2e-720p", "not run", 0.0, "no --video given"))
    c.step("bench", bench_step, c, a.data, a.frames, report)
    c.step("gpu-tests", tests_step, c, "gpu")
    c.step("ddp", ddp_step, c, data, dataset)
    return c.summary()


if __name__ == "__main__":
    raise SystemExit(main())
