"""The exported files rows run: FP32/FP16/INT8 ONNX graphs and TensorRT engines, made with the real
`roadseg export` code (so what is measured is what users deploy) and cached between runs.

Cache folder: <cache>/<key>/ where key hashes the checkpoint file, the roadseg version, the export,
model and runtime code, the onnx/onnxruntime versions, the model input and frame sizes and the
calibration/verification sources. Engines go into a sub-folder named by GPU and TensorRT version,
since a plan runs only where it was built. `builds.json` keeps each
file's build time and export log, so a cached file still reports how long it took to make.

A variant that cannot be made (an INT8 graph that misses its accuracy budget, a converter error, no
TensorRT) is remembered with its error; every row that needs it is reported as skipped with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roadseg.core.errors import RoadsegError

CALIB_SYNTHETIC = 32  # synthetic calibration frames when no --calib / --data / --source is given


@dataclass
class Artifact:
    path: Path | None
    build_s: float | None = None
    cached: bool = False
    error: str | None = None
    log: str = ""
    note: str = ""

    def to_dict(self) -> dict:
        return {"path": str(self.path) if self.path else None, "build_s": self.build_s, "cached": self.cached,
                "error": self.error, "note": self.note, "log": self.log}  # fmt: skip


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _export_code() -> str:
    """A hash of what makes the files: the code (export/, the model definitions, runtime/ which
    reads calibration frames and scores the gate) and the onnx/onnxruntime versions (the quantiser).
    A checkout or install that changes them under the same roadseg version must not be measured on
    stale graphs."""
    from importlib import metadata

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted([*(root / "export").glob("*.py"), *(root / "train" / "models").glob("*.py"), *(root / "runtime").glob("*.py")]):
        h.update(f.name.encode() + f.read_bytes())
    for dist in ("onnx", "onnxruntime", "onnxruntime-gpu"):
        try:
            h.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            pass
    return h.hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


class Variants:
    """Makes (or finds in the cache) the ONNX and engine files of one checkpoint and size."""

    def __init__(self, checkpoint: Path, imgsz: tuple[int, int] | None, frame_size: tuple[int, int], batch: int,
                 cache: Path, calib: str | None, verify: str | None, calib_count: int = 100) -> None:  # fmt: skip
        from roadseg.core.version import __version__

        self.checkpoint = checkpoint
        self.imgsz = imgsz
        self.frame_size = frame_size
        self.batch = batch
        self.verify = verify
        self.calib_count = calib_count
        self._calib = calib
        key = json.dumps([_sha256(checkpoint), __version__, _export_code(), imgsz, frame_size, calib, verify, calib_count])
        self.folder = cache / hashlib.sha256(key.encode()).hexdigest()[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._builds_file = self.folder / "builds.json"
        self._builds: dict = json.loads(self._builds_file.read_text()) if self._builds_file.is_file() else {}
        self._made: dict[tuple, Artifact] = {}

    def made(self) -> dict[tuple, Artifact]:
        """(kind, precision, dynamic) -> Artifact, for every file asked for in this run."""
        return dict(self._made)

    # -- calibration -----------------------------------------------------------------------------
    def calib(self) -> tuple[str, str]:
        """(calibration source for INT8, a note when it is synthetic)."""
        if self._calib:
            return self._calib, ""
        folder = self.folder / "calib-synthetic"
        if not (folder.is_dir() and len(list(folder.glob("*.png"))) >= CALIB_SYNTHETIC):
            import cv2

            from .frames import synthetic

            folder.mkdir(parents=True, exist_ok=True)
            for i, f in enumerate(synthetic(self.frame_size, CALIB_SYNTHETIC)):
                cv2.imwrite(str(folder / f"calib_{i:03d}.png"), np.ascontiguousarray(f))
        return str(folder), "INT8 calibrated on synthetic scenes (pass --calib DIR or --data for real frames)"

    # -- builds ----------------------------------------------------------------------------------
    def _record(self, path: Path, build_s: float, log: str) -> None:
        self._builds[path.name] = {"build_s": round(build_s, 3), "log": log}
        tmp = self._builds_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._builds, indent=2))
        tmp.replace(self._builds_file)

    def _cached(self, path: Path, note: str) -> Artifact | None:
        if path.is_file() and path.stat().st_size > 0 and path.name in self._builds:
            b = self._builds[path.name]
            return Artifact(path, b.get("build_s"), True, log=b.get("log", ""), note=note)
        return None

    def _run_export(self, opts, path: Path, note: str) -> Artifact:
        from roadseg.export.command import export

        buf = io.StringIO()
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(buf):
                out = Path(export(opts))
        except RoadsegError as e:
            return Artifact(None, error=str(e), log=buf.getvalue(), note=note)
        except Exception as e:  # noqa: BLE001 - a converter or builder bug: reported on the row, the run goes on
            return Artifact(None, error=f"{type(e).__name__}: {e}", log=buf.getvalue(), note=note)
        build_s = time.perf_counter() - t0
        self._record(out, build_s, buf.getvalue())
        return Artifact(out, build_s, False, log=buf.getvalue(), note=note)

    def onnx(self, precision: str, dynamic: bool = False, tensorrt: bool = False) -> Artifact:
        """The frames->labels graph of `precision` at the frame size (batch 1), or with dynamic N,H,W.
        INT8 for TensorRT (engines, the ORT TensorRT provider) has symmetric int8 activations; for
        ONNX Runtime's CPU/CUDA kernels, asymmetric uint8 (their fast path)."""
        acts = "s8" if tensorrt else "u8"
        key = ("onnx", precision, dynamic, acts if precision == "int8" else "")
        if key in self._made:
            return self._made[key]
        from roadseg.export.command import ExportOptions

        tag = f"_{acts}" if precision == "int8" else ""
        path = self.folder / f"{precision}{tag}{'_dynamic' if dynamic else ''}.onnx"
        calib, note = self.calib() if precision == "int8" else (None, "")
        art = self._cached(path, note)
        if art is None:
            opts = ExportOptions(
                model=str(self.checkpoint), precision=precision, calib=calib, calib_count=self.calib_count,
                imgsz=self.imgsz, frame_size=None if dynamic else self.frame_size, dynamic=dynamic,
                verify=self.verify, output=str(path), progress=False, int8_activations=acts,
            )  # fmt: skip
            art = self._run_export(opts, path, note)
        self._made[key] = art
        return art

    def engine(self, precision: str, dynamic: bool = False) -> Artifact:
        """A TensorRT plan built from the ONNX of `precision` (dynamic: batch 1..--batch, optimised for --batch)."""
        key = ("engine", precision, dynamic)
        if key in self._made:
            return self._made[key]
        src = self.onnx(precision, dynamic, tensorrt=True)
        if src.path is None:
            art = Artifact(None, error=f"no {precision} ONNX to build from: {src.error}", note=src.note)
        else:
            art = self._engine_from(src, precision, dynamic)
        self._made[key] = art
        return art

    def _engine_from(self, src: Artifact, precision: str, dynamic: bool) -> Artifact:
        from roadseg.export.command import ExportOptions
        from roadseg.export.tensorrt import gpu_info, require_tensorrt

        try:
            trt_version = require_tensorrt()
        except RoadsegError as e:
            return Artifact(None, error=str(e))
        gpu = gpu_info()
        folder = self.folder / f"engines-{_slug(gpu.name)}-trt{_slug(trt_version)}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{precision}{'_dynamic' if dynamic else ''}.engine"
        art = self._cached(path, src.note)
        if art is not None:
            return art
        h, w = self.frame_size
        shapes = {}
        if dynamic:
            shapes = {"min_shape": (1, h, w), "opt_shape": (self.batch, h, w), "max_shape": (self.batch, h, w)}
        opts = ExportOptions(model=str(src.path), to="engine", output=str(path), progress=False, **shapes)  # type: ignore[arg-type]
        return self._run_export(opts, path, src.note)
