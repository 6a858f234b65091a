"""Train recipes side by side on a machine reached only through size-limited, time-boxed commands.

A GPU machine without network that takes and returns files of at most a few tens of MiB per
command, for a few minutes each, can still train a several-hundred-epoch run: every command resumes
each run from its state, trains the runs side by side until --minutes, and hands each run's state
back in parts of at most --part-mib (floats as FP16, which a resume casts back: a rounding of
~1e-3 relative per command, nothing else lost). Runs are RECIPE/MODE: a recipe of
`roadseg train --recipe` (train/recipes.py) and a mode, `select` (train on CamVid drives 0001TP and
0016E5, score on 0006R0, a drive the run never sees) or `final` (every drive, fixed epochs).

On a machine with the data, once: pack CamVid train+val (JPEG q95 frames, PNG labels) into parts:
    python .ci/train_in_parts.py pack --camvid data/camvid --to parts/train --part-mib 28
On the training machine, with every pack part copied into one folder (PACK) and the state parts of
an earlier command in another (STATE), and the project installed:
    python .ci/train_in_parts.py run --pack PACK --state STATE --out OUT --minutes 7 [--runs RECIPE/MODE ...]
OUT gets each run's state parts (<run>.pt.partNN), summary.md (epochs done, held-out mIoU now and
at its best, seconds an epoch) and logs.tgz. Feed the parts to the next command's --state; when a
run ends, its last state is the release candidate: `python -m roadseg.train.release` on the joined
parts. docs/CONTRIBUTING.md has the whole procedure.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from roadseg.train.recipes import RECIPES

MODES = {
    "select": ["--holdout-drive", "0006R0"],  # train 0001TP + 0016E5 (train+val), score 0006R0's 101 frames
    "final": ["--train-split", "train+val", "--val-split", "val"],  # every drive, fixed end (val is trained on)
}
DEFAULT_RUNS = ("ddrnet23s-camvid/select", "ddrnet23s-camvid-strong/select")


def pack(camvid: Path, to: Path, part_bytes: int) -> list[Path]:
    """CamVid train+val as JPEG frames (q95: 69 KB a frame, mean absolute error 1.5 of 255 on
    CamVid) and PNG labels in one tar (34 MiB), split into folders of one part each."""
    import cv2

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"camvid/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for split in ("train", "val"):
            lines = []
            for line in (camvid / f"{split}.txt").read_text().split("\n"):
                if not line.strip():
                    continue
                img, mask = (camvid / p.lstrip("/") for p in line.split()[:2])
                ok, jpg = cv2.imencode(".jpg", cv2.imread(str(img)), [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise SystemExit(f"pack: {img}: cannot encode")
                add(f"{split}/{img.stem}.jpg", jpg.tobytes())
                add(f"{split}annot/{mask.name}", mask.read_bytes())
                lines.append(f"{split}/{img.stem}.jpg {split}annot/{mask.name}")
            add(f"{split}.txt", ("\n".join(lines) + "\n").encode())
    data = buf.getvalue()
    shutil.rmtree(to, ignore_errors=True)
    parts = []
    for i in range(0, len(data), part_bytes):
        folder = to / str(len(parts) + 1)
        folder.mkdir(parents=True)
        parts.append(folder / f"camvid.tar.{len(parts):02d}")
        parts[-1].write_bytes(data[i : i + part_bytes])
    return parts


def _joined(files: list[Path]) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(files))


def unpack(pack_dir: Path, into: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(_joined(list(pack_dir.glob("camvid.tar.*"))))) as tar:
        tar.extractall(into, filter="data")
    return into / "camvid"


def half_state(src: Path, dst: Path) -> None:
    """last.pt with every floating tensor in FP16 (weights, EMA, optimizer momentum): half the bytes.
    With an EMA, the saved weights are the EMA's own, so they are left out and rebuilt from it by
    `full_state` (35 MB instead of 46 for ddrnet23s: three returned parts, not four)."""
    import torch

    def half(v):
        if isinstance(v, torch.Tensor):
            return v.half() if v.is_floating_point() else v
        if isinstance(v, dict):
            return {k: half(x) for k, x in v.items()}
        if isinstance(v, list):
            return [half(x) for x in v]
        return v

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    if "ema" in ckpt.get("train_state", {}):
        ckpt["state_dict"] = None
    torch.save(half(ckpt), dst)


def full_state(data: bytes, dst: Path) -> None:
    """The joined parts of `half_state` -> a last.pt `roadseg train --resume` takes."""
    import torch

    ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    if ckpt.get("state_dict") is None:
        ema = ckpt["train_state"]["ema"]
        ckpt["state_dict"] = {k.removeprefix("module."): v for k, v in ema.items() if k.startswith("module.")}
    torch.save(ckpt, dst)


def split_file(path: Path, out: Path, part_bytes: int) -> list[Path]:
    data, parts = path.read_bytes(), []
    for i in range(0, len(data), part_bytes):
        parts.append(out / f"{path.name}.part{len(parts):02d}")
        parts[-1].write_bytes(data[i : i + part_bytes])
    return parts


def summary(runs: dict[str, Path], seconds: float) -> str:
    lines = [f"{len(runs)} runs side by side for {seconds / 60:.1f} min (val: drive 0006R0 for select runs, CamVid val "
             "for final runs, which train on it)", "", "| run | epochs | val mIoU now | best (epoch) | s/epoch |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, folder in runs.items():
        log = folder / "log.jsonl"
        recs = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
        vals = [r for r in recs if "val_miou" in r]
        best = max(vals, key=lambda r: r["val_miou"]) if vals else None
        times = sorted(r["time_s"] for r in recs[-10:])
        cells = [name, str(recs[-1]["epoch"] if recs else 0), f"{vals[-1]['val_miou']:.4f}" if vals else "-",
                 f"{best['val_miou']:.4f} ({best['epoch']})" if best else "-", f"{times[len(times) // 2]:.1f}" if times else "-"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(a: argparse.Namespace) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work)
    data = unpack(Path(a.pack), work / "data") if a.pack else Path(a.data)
    runs: dict[str, Path] = {}
    procs = []
    t0 = time.time()
    for spec in a.runs:
        recipe, _, mode = spec.partition("/")
        if recipe not in RECIPES or mode not in MODES:
            raise SystemExit(f"train_in_parts: run {spec!r}: give RECIPE/MODE with RECIPE in {list(RECIPES)}, MODE in {list(MODES)}")
        name = spec.replace("/", "-")
        folder = runs[spec] = work / "runs" / name
        folder.mkdir(parents=True, exist_ok=True)
        parts = sorted(Path(a.state).glob(f"{name}.pt.part*")) if a.state else []
        if parts:
            full_state(_joined(parts), folder / "last.pt")
        cmd = [sys.executable, "-m", "roadseg", "train", "--recipe", recipe, *MODES[mode], "--data", str(data),
               "--out", str(folder), "--workers", str(a.workers), "--time-limit", str(a.minutes * 60), "--quiet",
               *a.extra.split()]  # fmt: skip
        if parts:
            cmd.append("--resume")
        print(f"train_in_parts: {spec}{' (resumed)' if parts else ''}: {' '.join(cmd[3:])}", flush=True)
        log = open(folder / "console.log", "a")
        procs.append((spec, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    failed = []
    for spec, proc, log in procs:
        if proc.wait() != 0:
            failed.append(spec)
        log.close()
    for spec, folder in runs.items():
        if (folder / "last.pt").is_file():
            half_state(folder / "last.pt", work / f"{spec.replace('/', '-')}.pt")
            split_file(work / f"{spec.replace('/', '-')}.pt", out, int(a.part_mib * (1 << 20)))
    text = summary(runs, time.time() - t0)
    (out / "summary.md").write_text(text)
    with tarfile.open(out / "logs.tgz", "w:gz") as tar:
        for spec, folder in runs.items():
            for f in ("log.jsonl", "console.log"):
                if (folder / f).is_file():
                    tar.add(folder / f, f"{spec.replace('/', '-')}/{f}")
    print(text + (f"failed: {', '.join(failed)} (their console.log is in logs.tgz)\n" if failed else ""), flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("pack", help="CamVid train+val into parts of at most --part-mib")
    k.add_argument("--camvid", required=True)
    k.add_argument("--to", required=True, help="folder for the parts (one subfolder each)")
    k.add_argument("--part-mib", type=float, default=28.0, help="MiB a part may hold (default 28)")
    r = sub.add_parser("run", help="train the runs side by side until --minutes, state parts to --out")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--pack", help="folder holding every camvid.tar.NN part")
    src.add_argument("--data", help="an unpacked CamVid root")
    r.add_argument("--state", help="folder of <run>.pt.partNN from an earlier command (each run resumes)")
    r.add_argument("--out", required=True)
    r.add_argument("--work", default="/tmp/gpu-train")
    r.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), metavar="RECIPE/MODE")
    r.add_argument("--minutes", type=float, default=7.0, help="training time per run in this command (default 7)")
    r.add_argument("--part-mib", type=float, default=15.0, help="MiB a returned state part may hold (default 15)")
    r.add_argument("--workers", type=int, default=4, help="loader workers per run (default 4)")
    r.add_argument("--extra", default="", metavar="ARGS", help="train flags added to every run, which win over the "
                   "recipe's (a smoke test: \"--epochs 2 --crop 96 128 --imgsz 96 128 --batch 4 --device cpu\")")  # fmt: skip
    a = p.parse_args(argv)
    if a.command == "pack":
        parts = pack(Path(a.camvid), Path(a.to), int(a.part_mib * (1 << 20)))
        print(f"pack: {len(parts)} parts in {a.to}: " + ", ".join(f"{q.parent.name}/{q.name} ({q.stat().st_size >> 20} MiB)" for q in parts))
        return 0
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
