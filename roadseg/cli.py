"""The `roadseg` command line. Thin on purpose: it parses arguments and imports the one stage a
subcommand needs, lazily, so `roadseg run` on an ONNX model never imports torch.

Wrong usage prints one line on stderr and exits 2; a RoadsegError (missing file, bad format,
incompatible engine) prints one line naming the file and the fix and exits 1, with no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from roadseg.core.errors import RoadsegError, UsageError
from roadseg.runtime.options import add_options, from_args
from roadseg.runtime.options import nonnegative as _nonnegative
from roadseg.runtime.options import positive as _positive
from roadseg.runtime.options import positive_float as _positive_float
from roadseg.runtime.options import size32 as _size32


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line on stderr (exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


# -- argument groups shared by the commands: one definition each, the help worded per command


def _add_backend(p) -> None:
    p.add_argument("--backend", default="auto", choices=_backend_choices(), help="inference backend (default auto)")


def _add_threads(p, help: str = "inference threads (ONNX Runtime intra-op; default: its own)") -> None:  # noqa: A002
    p.add_argument("--threads", type=_positive, metavar="N", help=help)


def _add_frame_size(p, help: str) -> None:  # noqa: A002
    p.add_argument("--frame-size", type=_positive, nargs=2, metavar=("H", "W"), help=help)


def _add_data(p, help: str, required: bool = False) -> None:  # noqa: A002
    p.add_argument("--data", required=required, metavar=None if required else "DIR", help=help)


def _add_device(p, default: str) -> None:
    choices = "auto, cpu, cuda or cuda:N" if default == "auto" else "cpu, cuda or cuda:N"
    p.add_argument("--device", default=default, help=f"{choices} (default {default})")


def _add_quiet(p) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a segmentation model", description="Train a model; writes last.pt every epoch and best.pt by val mIoU.")
    p.add_argument("--recipe", metavar="NAME", help="start from a named recipe's flags; flags given win (ddrnet23s-camvid, ddrnet23s-camvid-strong: docs/TRAIN.md)")  # fmt: skip
    from roadseg.train.config import TrainConfig

    add_options(p, TrainConfig)
    p.set_defaults(func=_cmd_train)


def _cmd_train(a) -> int:
    from roadseg.train.trainer import TrainConfig, train

    best = train(from_args(TrainConfig, a))
    print(f"done: {best}")
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="mIoU of a checkpoint on a labelled split", description="Evaluate a checkpoint: mIoU, per-class IoU, pixel accuracy.")
    p.add_argument("model", help="checkpoint path or bundled name (default)")
    _add_data(p, "dataset root folder", required=True)
    p.add_argument("--dataset", default="camvid", choices=["camvid", "cityscapes", "folder"], help="dataset layout (default camvid)")
    p.add_argument("--split", default="val", help="split: a name, names joined with + and drives kept or dropped, "
                   "e.g. train+val[0006R0] (default val)")  # fmt: skip
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or invalid samples (counted)")
    p.add_argument("--confusion", metavar="DIR", help="write confusion.csv and confusion.png to DIR")
    p.add_argument("--by-drive", action="store_true",
                   help="also mIoU, pixel accuracy and per-class IoU of each drive in the split (a frame's drive: its name up to the first _)")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    _add_device(p, "cpu")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(a) -> int:
    import json

    from roadseg.core.atomic import atomic_path, check_folder, check_writable
    from roadseg.train.checkpoint import load_model
    from roadseg.train.data import load_dataset
    from roadseg.train.data.layouts import drive_of
    from roadseg.train.evaluate import evaluate_groups, format_groups, format_report, write_confusion
    from roadseg.train.trainer import resolve_device

    a.device = resolve_device(a.device)  # `cuda` on a CPU-only torch: one line, not an AssertionError
    if a.confusion:  # fail on a bad output before the evaluation, not after it
        check_folder(a.confusion, "--confusion", create=False)  # checked, not made: the model may still be refused
    if a.json:
        check_writable(a.json, create=False)
    model, card, _ = load_model(a.model)
    ds = load_dataset(a.data, a.dataset, a.split, skip_bad=a.skip_bad)
    if ds.info.classes != card.classes:
        raise RoadsegError(f"{a.data}: dataset classes differ from the model's ({len(ds.info.classes)} vs {card.num_classes}); evaluate on the dataset it was trained for")
    key = (lambda i: drive_of(ds.samples[i])) if a.by_drive else None
    cm, drives = evaluate_groups(model.to(a.device), ds, card, key, a.device)
    print(format_report(cm, card.classes))
    if drives:
        counts: dict[str, int] = {}
        for sample in ds.samples:
            counts[drive_of(sample)] = counts.get(drive_of(sample), 0) + 1
        print(format_groups(drives, counts, card.classes, "drive"))
    if ds.skipped:
        print(f"skipped {len(ds.skipped)} bad samples")
    if a.confusion:
        csv_path, png_path = write_confusion(cm, card.classes, a.confusion)
        print(f"confusion matrix: {csv_path} {png_path}")
    if a.json:
        with atomic_path(a.json) as tmp:
            doc = cm.summary(card.classes)
            if drives:
                doc["by_drive"] = {d: {**g.summary(card.classes), "frames": counts[d]} for d, g in sorted(drives.items())}
            tmp.write_text(json.dumps(doc, indent=2))
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list models and bundled checkpoints", description="List every registered model with parameters and GFLOPs, and the bundled checkpoints.")
    p.add_argument("--imgsz", type=_positive, nargs=2, metavar=("H", "W"), default=[360, 480], help="frame size for GFLOPs (default 360 480, CamVid)")
    p.add_argument("--num-classes", type=_positive, default=11, help="classes (default 11)")
    p.set_defaults(func=_cmd_models)


def _cmd_models(a) -> int:
    from roadseg.train.zoo import describe

    print(describe(tuple(a.imgsz), a.num_classes))
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="checkpoint -> verified ONNX (fp32/fp16/int8), TensorRT engine or Triton repository",
                       description="Export a checkpoint (or `default`) to a verified ONNX graph with pre/post-processing inside, "
                       "an FP16 or INT8 (Q/DQ) variant gated on accuracy, a TensorRT engine with a sidecar, or a Triton model repository.")  # fmt: skip
    from roadseg.export.options import ExportOptions

    add_options(p, ExportOptions)
    p.add_argument("--int8-reduce-range", dest="int8_weight_bits", action="store_const", const=7, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_export)


def _cmd_export(a) -> int:
    from roadseg.export.command import ExportOptions, export

    opts = from_args(ExportOptions, a)
    export(opts)
    return 0


def _backend_choices() -> list[str]:
    """`auto` and every backend in the registry (roadseg.runtime.backends.registry)."""
    from roadseg.runtime.backends import BACKENDS

    return ["auto", *BACKENDS]


def _add_run(sub) -> None:
    from roadseg.runtime.stream_options import StreamOptions

    p = sub.add_parser("run", help="segment a camera, video, stream or image folder (torch-free)",
                       description="Stream frames from SRC through an exported model and show or save the segmented stream. "
                       "Ctrl-C / SIGTERM stop cleanly: the video is finalised, the summary printed (exit 130 / 143).")  # fmt: skip
    p.add_argument("model", help="an .onnx or .engine made by `roadseg export`, or `default` (the bundled model)")
    p.add_argument("--source", required=True, metavar="SRC", action="append",
                   help="video file, camera index (0), rtsp:// or http(s):// URL, image folder or glob, or synthetic[:N]; "
                   "repeat for several streams, batched through one model")  # fmt: skip
    _add_backend(p)
    add_options(p, StreamOptions)
    p.add_argument("--serve", metavar="[HOST:]PORT", help="live view in a browser: every stream's overlay and its stats "
                   "at http://HOST:PORT/ (HOST defaults to 127.0.0.1, this machine only; PORT 0 picks a free one)")  # fmt: skip
    drop = p.add_mutually_exclusive_group()
    drop.add_argument("--live", dest="live", action="store_true", default=None,
                      help="keep only the newest frame (default for cameras and URLs); files play at their frame rate")  # fmt: skip
    drop.add_argument("--no-drop", dest="live", action="store_false", help="never drop frames, even from a camera or URL")
    _add_threads(p)
    p.add_argument("--allow-plugins", action="store_true", help="trt: load engines that need plugin libraries or embed host code (only engines you built; see SECURITY.md)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_const", const=False, default=None,
                   help="ort-cuda: run without replaying a captured CUDA graph (default: on for fixed-shape graphs)")
    p.add_argument("--read-timeout", type=_positive_float, default=10.0, metavar="S", help="watchdog on a read that hangs, seconds (default 10)")
    p.add_argument("--reconnects", type=_nonnegative, default=5, metavar="N", help="reconnect attempts for a lost camera or stream (default 5)")
    p.set_defaults(func=_cmd_run)


class _StopOnSignal:
    """SIGINT / SIGTERM set `event` (the stream then finalises its outputs). A second one only
    warns, since finalising the video is what it would cut short (people press Ctrl-C twice); a
    third raises KeyboardInterrupt for a stream that truly hangs, and the half-written video then
    stays a hidden temporary file, never a corrupt file at the target path. Main thread only."""

    def __init__(self):
        import threading

        self.event = threading.Event()
        self.signum: int | None = None
        self.count = 0
        self._old: dict = {}

    def _handle(self, signum, _frame) -> None:
        self.count += 1
        if self.count == 2:
            sys.stderr.write("roadseg: finishing the outputs; interrupt once more to abandon them\n")
        if self.count >= 3:
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 2)


def _check_stream_outputs(sources: list[str], options) -> list[str]:
    """The streams' names, every output path checked before the model opens (it may export first)."""
    from roadseg.runtime.naming import check_distinct_outputs, check_stream_count, stream_names, stream_outputs
    from roadseg.runtime.sinks import check_outputs

    check_stream_count(len(sources))
    names = stream_names(sources)
    outputs = stream_outputs(names, options.save, options.save_masks)
    check_distinct_outputs(sources, outputs)
    for source, (video, masks) in zip(sources, outputs):
        check_outputs(source, video, masks)
    return names


def _open_view(serve: str, model: str, names: list[str]):
    """The live view, bound before the model opens: a port in use fails at once, not after an export."""
    from roadseg.runtime.backends import is_engine
    from roadseg.runtime.model import check_model_file, check_onnx_file
    from roadseg.runtime.serve import LiveView, exposure_warning, parse_serve

    host, port = parse_serve(serve)
    if model != "default":  # a missing or broken model fails before anything listens
        (check_model_file if is_engine(model) else check_onnx_file)(model)
    view = LiveView(host, port, streams=names)
    view.start()
    if (warning := exposure_warning(host)) is not None:
        sys.stderr.write(f"roadseg run: {warning}\n")
    sys.stderr.write(f"roadseg run: live view at {view.url}\n")
    sys.stderr.flush()
    return view


def _quiet_video_libraries() -> None:
    """Our own messages say what failed; keep OpenCV's and FFmpeg's warnings out of the way."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own log ("moov atom not found")
    import cv2

    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)


def _stream(a, sources: list[str], options, serve: str | None = None, source_options=None):
    """Open the backend (and the live view), run the streams under the signal handlers;
    (summary, exit code): a Summary for one source, a StreamsSummary for several. `source_options`
    may be a function of the open backend (the demo sizes its clip to the graph)."""
    from dataclasses import replace

    from roadseg.runtime import readers
    from roadseg.runtime.backends import open_backend
    from roadseg.runtime.pipeline import StreamError, run_stream, run_streams

    if not options.verbose:
        _quiet_video_libraries()
    names = _check_stream_outputs(sources, options)
    view = _open_view(serve, a.model, names) if serve is not None else None
    readers.QUIET_DECODERS = not options.verbose  # libpng's and libjpeg's own lines ("libpng error: IDAT: CRC error")
    try:
        opts = {"threads": a.threads, "allow_plugins": True if getattr(a, "allow_plugins", False) else None,
                "cuda_graph": getattr(a, "cuda_graph", None)}  # fmt: skip
        backend = open_backend(a.model, a.backend, **opts)
        if callable(source_options):
            source_options = source_options(backend)
        options = replace(options, view=view, source_options=source_options)
        try:
            with _StopOnSignal() as sig:
                try:
                    if len(sources) == 1:
                        summary = run_stream(backend, sources[0], options, stop=sig.event)
                    else:
                        summary = run_streams(backend, sources, options, stop=sig.event)
                except StreamError as e:
                    print(e.summary.table())
                    raise
        finally:
            backend.close()
    finally:
        readers.QUIET_DECODERS = False  # for the rest of this process (tests, a Python caller of main)
        if view is not None:
            view.close()
    return summary, (sig.exit_code if summary.interrupted else 0)


def _cmd_run(a) -> int:
    from roadseg.runtime.stream_options import StreamOptions

    options = from_args(StreamOptions, a, live=a.live)
    summary, code = _stream(a, a.source, options, serve=a.serve,
                            source_options={"read_timeout": a.read_timeout, "reconnects": a.reconnects})  # fmt: skip
    print(summary.table())
    return code


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="play the synthetic driving clip through the default model",
                       description="Segment the generated driving clip with the default model (or --model) through the "
                       "streaming runtime; writes an overlay video and a few overlay PNGs, prints where and the FPS. "
                       "Needs no network, camera or GPU.")  # fmt: skip
    p.add_argument("--out", default="roadseg-demo", metavar="DIR", help="output folder (default ./roadseg-demo)")
    p.add_argument("--frames", type=_positive, default=90, metavar="N", help="frames of the clip (default 90)")
    p.add_argument("--model", default="default", help="an .onnx or .engine, or `default` (the bundled model)")
    _add_backend(p)
    _add_threads(p, "inference threads (ONNX Runtime intra-op)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(a) -> int:
    from pathlib import Path

    from roadseg.runtime.stream_options import StreamOptions

    out = Path(a.out)
    video = out / "demo.mp4"
    picks = {0, a.frames // 2, a.frames - 1}
    pngs: list[Path] = []

    def clip_size(backend) -> dict:
        from roadseg.runtime.batcher import fixed_frame_size

        return {"size": fixed_frame_size(backend) or (360, 480)}  # the graph's own size: no resizing

    def snapshot(frame, labels, image) -> None:
        if frame.index in picks and image is not None:
            from roadseg.core.atomic import atomic_path

            target = out / f"overlay_{frame.name}.png"
            with atomic_path(target) as tmp:
                import cv2

                ok, data = cv2.imencode(".png", image)
                if not ok:
                    raise RoadsegError(f"{target}: could not encode the overlay")
                tmp.write_bytes(data.tobytes())
            pngs.append(target)

    options = StreamOptions(save=str(video), live=False, on_frame=snapshot)
    summary, code = _stream(a, [f"synthetic:{a.frames}"], options, source_options=clip_size)
    print(summary.table())
    print(f"demo: {summary.frames_out} frames at {summary.fps:.1f} FPS end to end "
          f"(model alone {summary.model_fps:.1f} FPS) on {summary.backend}")  # fmt: skip
    if "video" in summary.outputs:
        print(f"demo: overlay video {summary.outputs['video']}")
    for p in sorted(pngs):
        print(f"demo: overlay frame {p}")
    return code


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmark every backend and precision on the same frames",
                       description="Export the model to every variant this machine can run (ONNX FP32/FP16/INT8, TensorRT "
                       "engines), measure each row (PyTorch eager, torch.compile, ONNX Runtime CPU/CUDA/TensorRT, native "
                       "TensorRT, the INT8 through a Triton server as its client sees it) on the same frames: latency, throughput, end-to-end FPS, memory, agreement with PyTorch "
                       "FP32 and mIoU. Writes results.json/.csv/.md/.png to --report.")  # fmt: skip
    p.add_argument("model", nargs="+", help="a checkpoint or `default` (the bundled model; PyTorch FP32 is the reference, "
                   "and the bench exports every variant), or ready .onnx/.engine files (each on every backend that takes it, "
                   "the most precise file the reference; no PyTorch needed; without PyTorch `default` is its shipped files)")
    p.add_argument("--backends", default="all", metavar="LIST",
                   help="`all` or comma-separated rows, e.g. torch,ort-cpu-fp32; with model files, backends: " + ",".join(_backend_choices()[1:]) + " (default all)")  # fmt: skip
    p.add_argument("--imgsz", type=_size32, nargs=2, metavar=("H", "W"), help="model input size (default: the model card's)")
    _add_frame_size(p, "frame size the graphs take (default: the model input size)")
    p.add_argument("--batch", type=_positive, nargs="+", default=[1], metavar="N",
                   help="batch sizes for the throughput columns, frames per second at each, e.g. --batch 1 8 32 (default 1)")  # fmt: skip
    p.add_argument("--frames", type=_positive, default=100, metavar="N", help="timed runs per row, and end-to-end frames (default 100)")
    p.add_argument("--streams", type=_positive, nargs="+", metavar="N",
                   help="multi-stream scaling: total and per-stream FPS of N streams batched through each row; "
                   "the triton row: N concurrent clients of its server (default 4) (one N: 1, 2, 4 ... N; several: those counts)")  # fmt: skip
    p.add_argument("--warmup", type=_nonnegative, default=10, metavar="N", help="warm-up runs before timing (default 10)")
    p.add_argument("--rounds", type=_positive, default=1, metavar="R",
                   help="time the rows in R interleaved rounds, every row's model loaded meanwhile, so a machine whose "
                   "speed drifts slows all rows alike (default 1: one row after another)")  # fmt: skip
    p.add_argument("--source", metavar="SRC", help="end-to-end source: video, image folder, camera, URL (default: the synthetic clip)")
    _add_data(p, "labelled dataset root (val split: mIoU) or a folder of frames (agreement only)")
    p.add_argument("--calib", metavar="DIR", help="INT8 calibration frames (default: --data, else --source, else synthetic scenes)")
    p.add_argument("--report", default="runs/bench", metavar="DIR", help="report folder (default runs/bench)")
    _add_threads(p, "inference threads for ONNX Runtime and PyTorch (default: their own)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="GPU rows without CUDA graphs (default: torch-fp16, torch-compile and ort-cuda rows replay them)")
    _add_quiet(p)
    p.set_defaults(func=_cmd_bench)


def stream_counts(given: list[int] | None) -> tuple[int, ...]:
    """`--streams 8` -> (1, 2, 4, 8); `--streams 1 3` -> (1, 3); none -> ()."""
    if not given:
        return ()
    if len(given) > 1:
        return tuple(sorted(set(given)))
    counts, n = [], 1
    while n < given[0]:
        counts.append(n)
        n *= 2
    return (*counts, given[0])


def _cmd_bench(a) -> int:
    from roadseg.benchmarks.harness import BenchConfig, run_bench

    cfg = BenchConfig(
        model=a.model if len(a.model) > 1 else a.model[0], backends=a.backends, imgsz=tuple(a.imgsz) if a.imgsz else None,
        frame_size=tuple(a.frame_size) if a.frame_size else None, batch=tuple(a.batch), frames=a.frames, warmup=a.warmup, rounds=a.rounds,
        source=a.source, data=a.data, calib=a.calib, report=a.report, threads=a.threads, progress=not a.quiet,
        cuda_graph=a.cuda_graph, streams=stream_counts(a.streams),
    )  # fmt: skip
    doc = run_bench(cfg)
    from pathlib import Path

    md = Path(a.report) / "results.md"
    print(md.read_text())
    names = ("results.json", "results.csv", "results.md", "results.png") + (("streams.png",) if cfg.streams else ())
    print(f"bench: wrote {', '.join(str(Path(a.report) / n) for n in names if (Path(a.report) / n).is_file())}")
    if not (Path(a.report) / "results.png").is_file():
        print('bench: no charts: they need matplotlib (pip install "roadseg[train]")')
    if not any(r["status"] == "ok" for r in doc["rows"]):
        print("roadseg bench: error: no backend was measured; the table gives each row's reason", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    from roadseg import __version__

    parser = _Parser(prog="roadseg", description="Real-time driving-scene segmentation: train, export, run, bench.")
    parser.add_argument("--version", action="version", version=f"roadseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    from roadseg.data import add_parser as _add_data

    for add in (_add_data, _add_train, _add_eval, _add_models, _add_export, _add_run, _add_demo, _add_bench):
        add(sub)
    return parser


_STREAM_ARGS = {"source"}  # the only arguments that may name a network stream (rtsp://, http(s)://)
_DOWNLOAD_ARGS = {"url"}  # `roadseg data --url`: checked by roadseg/data.py


def _check_urls(args: argparse.Namespace) -> None:
    """A URL is a usage error (exit 2) before any work where roadseg cannot read it: an unsupported
    scheme for a stream source, any URL where a local file or folder is expected."""
    import re

    pairs = [(k, x) for k, v in sorted(vars(args).items()) for x in (v if isinstance(v, list) else [v])]  # --source A --source B
    for name, value in pairs:
        m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", value) if isinstance(value, str) else None
        if m is None or name in _DOWNLOAD_ARGS:
            continue
        label = f"--{name.replace('_', '-')}" if name != "model" else "MODEL"
        if name in _STREAM_ARGS:
            from roadseg.runtime.sources import URL_SCHEMES

            if m.group(1).lower() not in URL_SCHEMES:
                raise UsageError(f"{label} {value}: unsupported URL scheme {m.group(1)!r}; use one of "
                                 + ", ".join(f"{s}://" for s in URL_SCHEMES))  # fmt: skip
        else:
            raise UsageError(f"{label} {value}: is a URL; roadseg reads it from a local file or folder only: download it first")


def _log_to_stderr(command: str, verbose: bool):
    """The "roadseg" logger's lines (backend auto's choice; with --verbose, what third-party
    libraries said) on stderr as `roadseg COMMAND: ...`, for the length of one command."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"roadseg {command}: %(message)s"))
    logger = logging.getLogger("roadseg")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    return logger, handler, old


TORCH_COMMANDS = ("train", "eval", "export", "models")  # run, demo and bench on model files are the torch-free runtime


def _need_torch(command: str) -> None:
    """One line, not an ImportError's traceback, where PyTorch (the `train` extra) is missing."""
    try:
        import torch  # noqa: F401
    except (ImportError, OSError) as e:
        why = "" if isinstance(e, ModuleNotFoundError) else f" (it failed to import: {str(e).splitlines()[0]})"
        raise RoadsegError(f"roadseg {command} needs PyTorch{why}: pip install \"roadseg[train]\" "
                           "(the base install is the runtime: run, demo, bench on .onnx/.engine files)") from None  # fmt: skip


def _interrupted(e: BaseException) -> bool:
    """A Ctrl-C that Python wrapped on its way out: a KeyboardInterrupt raised while a class was being
    made (a lazy import's dataclass: "Error calling __set_name__ ...") comes back as a RuntimeError
    whose cause it is."""
    while e is not None:
        if isinstance(e, KeyboardInterrupt):
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def main(argv: list[str] | None = None) -> int:
    from roadseg.train.recipes import expand

    try:
        argv = expand(list(sys.argv[1:] if argv is None else argv))
    except UsageError as e:
        sys.stderr.write(f"roadseg train: error: {e}\n")
        return e.exit_code
    args = build_parser().parse_args(argv)
    logger, handler, level = _log_to_stderr(args.command, bool(getattr(args, "verbose", False)))
    try:
        _check_urls(args)
        if args.command in TORCH_COMMANDS:
            _need_torch(args.command)
        return int(args.func(args) or 0)
    except RoadsegError as e:
        from roadseg.runtime.redact import redact

        sys.stderr.write(f"roadseg {args.command}: error: {redact(e)}\n")  # no camera password in any error line
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"roadseg {args.command}: interrupted\n")
        return 130
    except RuntimeError as e:
        if not _interrupted(e):
            raise
        sys.stderr.write(f"roadseg {args.command}: interrupted\n")
        return 130
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


if __name__ == "__main__":
    raise SystemExit(main())
