"""The `roadseg` command line. Thin on purpose: it parses arguments and imports the one stage a
subcommand needs, lazily, so `roadseg run` on an ONNX model never imports torch.

Wrong usage prints one line on stderr and exits 2; a RoadsegError (missing file, bad format,
incompatible engine) prints one line naming the file and the fix and exits 1, with no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from roadseg.runtime.errors import RoadsegError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line on stderr (exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def _number(cast, ok, must: str):
    """An argparse type: `cast` the text, then require `ok(v)`; errors name the value and the rule."""
    noun = "an integer" if cast is int else "a number"

    def parse(value: str):
        try:
            v = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not {noun}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{value} {must}")
        return v

    return parse


_positive = _number(int, lambda v: v > 0, "must be > 0")
_nonnegative = _number(int, lambda v: v >= 0, "must be >= 0")
_positive_float = _number(float, lambda v: v > 0, "must be > 0")
_nonnegative_float = _number(float, lambda v: v >= 0, "must be >= 0")
_unit = _number(float, lambda v: 0.0 <= v <= 1.0, "is not between 0 and 1")
_decay = _number(float, lambda v: 0.0 < v < 1.0, "is not strictly between 0 and 1")


def _size32(value: str) -> int:
    """A model input side: positive and a multiple of 32 (the network's output stride)."""
    v = _positive(value)
    if v % 32:
        raise argparse.ArgumentTypeError(f"{v} is not a multiple of 32 (try {max(32, round(v / 32) * 32)})")
    return v


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a segmentation model", description="Train a model; writes last.pt every epoch and best.pt by val mIoU.")
    p.add_argument("--recipe", metavar="NAME", help="start from a named recipe's flags; flags given win (ddrnet23s-camvid, ddrnet23s-camvid-strong: docs/TRAIN.md)")  # fmt: skip
    p.add_argument("--model", required=True, help="registry name (see `roadseg models`)")
    p.add_argument("--data", required=True, help="dataset root folder (`roadseg data camvid DIR` makes one)")
    p.add_argument("--dataset", default="camvid", choices=["camvid", "cityscapes", "folder"], help="dataset layout (default camvid)")
    p.add_argument("--epochs", type=_positive, default=100, help="epochs (default 100)")
    p.add_argument("--batch", type=_positive, default=8, help="batch size per process (default 8)")
    p.add_argument("--crop", type=_size32, nargs=2, metavar=("H", "W"), default=[352, 480], help="training crop (default 352 480)")
    p.add_argument("--imgsz", type=_size32, nargs=2, metavar=("H", "W"), help="model input size written to the card (default: val frame size rounded to 32)")
    p.add_argument("--scale", type=float, nargs=2, metavar=("MIN", "MAX"), default=[0.5, 2.0], help="random scale range (default 0.5 2.0)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd", help="optimizer (default sgd)")
    p.add_argument("--lr", type=_positive_float, default=0.01, help="base learning rate (default 0.01)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--schedule", choices=["poly", "onecycle"], default="poly", help="learning-rate schedule (default poly)")
    p.add_argument("--class-weights", default="none", help="none, auto (ENet 1/ln(1.02+p)) or comma-separated weights")
    p.add_argument("--ohem", action="store_true", help="online hard example mining in the loss")
    p.add_argument("--aux-weight", type=float, default=0.4, help="weight of auxiliary heads' loss (default 0.4)")
    p.add_argument("--lovasz", type=_nonnegative_float, default=0.0, metavar="W", help="add W x the Lovász-softmax loss (a surrogate of 1 - mIoU) of the main logits (default 0: off)")  # fmt: skip
    p.add_argument("--model-kwargs", default="{}", help='JSON of extra model options, e.g. \'{"attention": "se"}\'')
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=_nonnegative, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--val-every", type=_positive, default=1, help="validate every N epochs (default 1)")
    p.add_argument("--train-split", default="train", help="training split: a name, names joined with + (train+val), and drives kept or dropped: train+val[^0006R0] (default train)")  # fmt: skip
    p.add_argument("--val-split", default="val", help="validation split (same forms), or none (default val)")
    p.add_argument("--holdout-drive", metavar="SEQ", help="validate on drive SEQ's frames of the train and val splits and train on every other frame (CamVid: 0001TP, 0006R0 or 0016E5)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-amp", action="store_true", help="train in FP32 (default: mixed precision on CUDA, and bfloat16 on CPUs with native bf16)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or invalid samples (counted) instead of failing")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an --out that holds an earlier run, replacing it")
    p.add_argument("--stop-after", type=_positive, metavar="N", help="stop after N epochs of this run (time-boxed machines); continue later with --resume")
    p.add_argument("--time-limit", type=_positive_float, metavar="S", help="stop before an epoch that would end past S seconds of this run (its longest epoch so far is the guess); continue later with --resume")  # fmt: skip
    p.add_argument("--init", metavar="CKPT", help="start from this checkpoint's weights (path or bundled name, same model and classes) with a fresh optimizer and schedule")
    p.add_argument("--ema", type=_decay, metavar="DECAY", help="validate and save an exponential moving average of the weights (per-step decay, e.g. 0.999)")
    p.add_argument("--paste", type=_unit, default=0.0, metavar="P", help="with probability P, paste the pixels of --paste-classes from another training frame at the same place (default 0: off)")
    p.add_argument("--paste-classes", default="rare", metavar="C", help="classes --paste copies: rare (< 2%% of training pixels) or comma-separated indices (default rare)")
    p.add_argument("--balance", type=_nonnegative_float, default=0.0, metavar="T", help="rare-class sampling: draw frames holding rare classes more often, temperature T (0.1 is strong; default 0: every frame once an epoch)")  # fmt: skip
    p.add_argument("--jitter", type=_unit, default=0.3, metavar="S", help="photometric jitter: brightness, contrast and saturation by up to ±S (default 0.3)")
    p.add_argument("--hue", type=_unit, default=0.05, metavar="H", help="hue shift by up to ±H of the hue circle (default 0.05)")
    p.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(a) -> int:
    import json
    from dataclasses import fields

    from roadseg.train.trainer import TrainConfig, train

    try:
        kwargs = json.loads(a.model_kwargs)
    except json.JSONDecodeError:
        raise UsageError(f"--model-kwargs {a.model_kwargs!r} is not valid JSON") from None
    given = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if hasattr(a, f.name)}  # same names as the flags
    cfg = TrainConfig(**{**given, "crop": tuple(a.crop), "imgsz": tuple(a.imgsz) if a.imgsz else None, "scale": tuple(a.scale),
                         "amp": not a.no_amp, "model_kwargs": kwargs, "progress": not a.quiet})  # fmt: skip
    best = train(cfg)
    print(f"done: {best}")
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="mIoU of a checkpoint on a labelled split", description="Evaluate a checkpoint: mIoU, per-class IoU, pixel accuracy.")
    p.add_argument("model", help="checkpoint path or bundled name (default)")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset", default="camvid", choices=["camvid", "cityscapes", "folder"], help="dataset layout (default camvid)")
    p.add_argument("--split", default="val", help="split: a name, names joined with + and drives kept or dropped, "
                   "e.g. train+val[0006R0] (default val)")  # fmt: skip
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or invalid samples (counted)")
    p.add_argument("--confusion", metavar="DIR", help="write confusion.csv and confusion.png to DIR")
    p.add_argument("--by-drive", action="store_true",
                   help="also mIoU, pixel accuracy and per-class IoU of each drive in the split (a frame's drive: its name up to the first _)")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(a) -> int:
    import json

    from roadseg.runtime.atomic import atomic_path, check_folder, check_writable
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
    p.add_argument("model", help="checkpoint, `default`, or (for --to engine|triton) an ONNX file made by roadseg")
    p.add_argument("--to", choices=["onnx", "engine", "triton"], default="onnx", help="target (default onnx)")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default=None, help="precision written into the graph (default fp32; from an ONNX file: its own)")
    p.add_argument("--calib", metavar="DIR", help="INT8 calibration frames: a dataset root (calibrates on its train split and gates on its val split), or a folder of images or a video (a fifth held back for the gate)")
    p.add_argument("--calib-count", type=_positive, default=100, help="calibration frames to use (default 100, at least 8)")
    p.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default="minmax", help="INT8 calibration method (default minmax)")
    p.add_argument("--int8-activations", choices=["auto", "u8", "s8"], default="auto",
                   help="INT8 activations: u8 (asymmetric, ONNX Runtime's fast CPU path), s8 (symmetric, what TensorRT takes); auto: s8 for engines, else u8")
    p.add_argument("--int8-weight-bits", type=int, choices=[7, 8], default=None,
                   help="INT8 weight range: 7 (the default for u8: the same labels and full speed on every CPU) or 8 (the default "
                   "for s8; for u8 only for CPUs with VNNI: elsewhere ONNX Runtime's kernels saturate and roadseg runs it exactly, slower)")  # fmt: skip
    p.add_argument("--int8-reduce-range", dest="int8_weight_bits", action="store_const", const=7, help=argparse.SUPPRESS)
    p.add_argument("--imgsz", type=_size32, nargs=2, metavar=("H", "W"), help="model input size (default: the model card's)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--frame-size", type=_positive, nargs=2, metavar=("H", "W"), help="fixed frame size the graph takes (default: the model input size)")
    size.add_argument("--dynamic", action="store_true", help="dynamic batch and frame size")
    p.add_argument("--batch", type=_positive, default=1, help="fixed batch size (default 1)")
    p.add_argument("--raw", action="store_true", help="export the bare network: normalised float NCHW in, logits out")
    p.add_argument("--verify", metavar="DIR", help="verify variants on this dataset (mIoU) or folder/video of frames (agreement)")
    p.add_argument("--max-drop", type=float, help="largest mIoU drop in points a variant may have vs fp32 on labelled frames (default 0.1 fp16, 1.0 int8)")
    p.add_argument("--min-agreement", type=_unit, help="smallest share of pixels a variant must label as fp32 does on unlabelled frames (default 0.995 fp16, 0.97 int8)")
    p.add_argument("--output", "-o", help="output path (default: next to the input, named by precision and size)")
    p.add_argument("--workspace", type=float, default=4.0, help="engine: builder workspace limit in GiB (default 4)")
    p.add_argument("--timing-cache", help="engine: persistent timing cache file (default: one per TensorRT version and GPU "
                   "architecture in ~/.cache/roadseg, e.g. timing-trt10.13.0.35-sm87.cache)")
    p.add_argument("--version-compatible", action="store_true", help="engine: build a version-compatible plan")
    p.add_argument("--hardware-compatible", action="store_true", help="engine: build for all Ampere+ GPUs (hardware compatibility level)")
    p.add_argument("--min-shape", type=_positive, nargs=3, metavar=("N", "H", "W"), help="engine --dynamic: smallest input (default 1 and half the model size)")
    p.add_argument("--opt-shape", type=_positive, nargs=3, metavar=("N", "H", "W"), help="engine --dynamic: input the kernels are tuned for (default batch 1, model size)")
    p.add_argument("--max-shape", type=_positive, nargs=3, metavar=("N", "H", "W"), help="engine --dynamic: largest input (default batch 8, 1080x1920)")
    p.add_argument("--instances", type=_positive, default=1, help="triton: model instances per GPU (default 1)")
    p.add_argument("--triton-platform", choices=["onnxruntime", "tensorrt"], default="onnxruntime", help="triton: serve the ONNX or a TensorRT plan (default onnxruntime)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_export)


def _cmd_export(a) -> int:
    from roadseg.export.command import ExportOptions, export

    opts = ExportOptions(
        model=a.model, to=a.to, precision=a.precision, calib=a.calib, calib_count=a.calib_count,
        calib_method=a.calib_method, int8_activations=a.int8_activations, int8_weight_bits=a.int8_weight_bits, imgsz=tuple(a.imgsz) if a.imgsz else None,
        frame_size=tuple(a.frame_size) if a.frame_size else None, dynamic=a.dynamic, batch=a.batch, raw=a.raw,
        verify=a.verify, max_drop=a.max_drop, min_agreement=a.min_agreement, output=a.output, progress=not a.quiet, workspace_gb=a.workspace,
        timing_cache=a.timing_cache, version_compatible=a.version_compatible, hardware_compatible=a.hardware_compatible,
        min_shape=tuple(a.min_shape) if a.min_shape else None, opt_shape=tuple(a.opt_shape) if a.opt_shape else None,
        max_shape=tuple(a.max_shape) if a.max_shape else None, instances=a.instances, triton_platform=a.triton_platform,
    )  # fmt: skip
    export(opts)
    return 0


def _backend_choices() -> list[str]:
    """`auto` and every backend in the registry (roadseg.runtime.backends.registry)."""
    from roadseg.runtime.backends import BACKENDS

    return ["auto", *BACKENDS]


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="segment a camera, video, stream or image folder (torch-free)",
                       description="Stream frames from SRC through an exported model and show or save the segmented stream. "
                       "Ctrl-C / SIGTERM stop cleanly: the video is finalised, the summary printed (exit 130 / 143).")  # fmt: skip
    p.add_argument("model", help="an .onnx or .engine made by `roadseg export`, or `default` (the bundled model)")
    p.add_argument("--source", required=True, metavar="SRC", action="append",
                   help="video file, camera index (0), rtsp:// or http(s):// URL, image folder or glob, or synthetic[:N]; "
                   "repeat for several streams, batched through one model")  # fmt: skip
    p.add_argument("--backend", default="auto", choices=_backend_choices(), help="inference backend (default auto)")
    p.add_argument("--show", action="store_true", help="show the overlay in a window (needs a display)")
    p.add_argument("--save", metavar="OUT", help="write the overlay video (.mp4 or .avi); with several sources a folder "
                   "(one <stream>.mp4 each) or a name with {stream}")  # fmt: skip
    p.add_argument("--save-masks", metavar="DIR", help="write one 8-bit PNG of class indices per frame (several sources: "
                   "one subfolder per stream, or a name with {stream})")  # fmt: skip
    p.add_argument("--serve", metavar="[HOST:]PORT", help="live view in a browser: every stream's overlay and its stats "
                   "at http://HOST:PORT/ (HOST defaults to 127.0.0.1, this machine only; PORT 0 picks a free one)")  # fmt: skip
    p.add_argument("--alpha", type=_unit, default=0.5, help="mask opacity in the overlay, 0..1 (default 0.5)")
    p.add_argument("--max-frames", type=_positive, metavar="N", help="stop after N frames (per stream)")
    drop = p.add_mutually_exclusive_group()
    drop.add_argument("--live", dest="live", action="store_true", default=None,
                      help="keep only the newest frame (default for cameras and URLs); files play at their frame rate")  # fmt: skip
    drop.add_argument("--no-drop", dest="live", action="store_false", help="never drop frames, even from a camera or URL")
    p.add_argument("--threads", type=_positive, metavar="N", help="inference threads (ONNX Runtime intra-op; default: its own)")
    p.add_argument("--allow-plugins", action="store_true", help="trt: load engines that need plugin libraries or embed host code (only engines you built; see SECURITY.md)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_const", const=False, default=None,
                   help="ort-cuda: run without replaying a captured CUDA graph (default: on for fixed-shape graphs)")
    p.add_argument("--read-timeout", type=_positive_float, default=10.0, metavar="S", help="watchdog on a read that hangs, seconds (default 10)")
    p.add_argument("--reconnects", type=_nonnegative, default=5, metavar="N", help="reconnect attempts for a lost camera or stream (default 5)")
    p.add_argument("--verbose", action="store_true", help="print the stats table every few seconds")
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


def _stream(a, model: str, sources: list[str], save, save_masks, show, alpha, max_frames, live, verbose, threads,
            serve: str | None = None, **kw):
    """Open the backend (and the live view), run the streams under the signal handlers;
    (summary, exit code): a Summary for one source, a StreamsSummary for several."""
    from roadseg.runtime import readers
    from roadseg.runtime.backends import open_backend
    from roadseg.runtime.naming import check_distinct_outputs, check_stream_count, stream_names, stream_outputs
    from roadseg.runtime.pipeline import run_stream, run_streams
    from roadseg.runtime.sinks import check_outputs

    if not verbose:  # our own messages say what failed; keep OpenCV's and FFmpeg's warnings out of the way
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own log ("moov atom not found")
        import cv2

        logging = getattr(getattr(cv2, "utils", None), "logging", None)
        if logging is not None:
            logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    check_stream_count(len(sources))
    names = stream_names(sources)
    outputs = stream_outputs(names, save, save_masks)
    check_distinct_outputs(sources, outputs)
    for source, (video, masks) in zip(sources, outputs):
        check_outputs(source, video, masks)  # fail on a bad output before opening anything (the model may export first)
    view = None
    if serve is not None:  # bound before the model opens: a port in use fails at once, not after an export
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
    readers.QUIET_DECODERS = not verbose  # libpng's and libjpeg's own lines ("libpng error: IDAT: CRC error")
    try:
        opts = {"threads": threads, "allow_plugins": True if getattr(a, "allow_plugins", False) else None,
                "cuda_graph": getattr(a, "cuda_graph", None)}  # fmt: skip
        backend = open_backend(model, a.backend, **opts)
        if callable(kw.get("source_options")):
            kw["source_options"] = kw["source_options"](backend)
        try:
            with _StopOnSignal() as sig:
                try:
                    args = dict(save=save, save_masks=save_masks, show=show, alpha=alpha, max_frames=max_frames,
                                live=live, verbose=verbose, stop=sig.event, view=view, **kw)  # fmt: skip
                    if len(sources) == 1:
                        summary = run_stream(backend, sources[0], **args)
                    else:
                        summary = run_streams(backend, sources, **args)
                except RoadsegError as e:
                    if getattr(e, "summary", None) is not None:
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
    options = {"read_timeout": a.read_timeout, "reconnects": a.reconnects}
    summary, code = _stream(a, a.model, a.source, a.save, a.save_masks, a.show, a.alpha, a.max_frames, a.live,
                            a.verbose, a.threads, serve=a.serve, source_options=options)  # fmt: skip
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
    p.add_argument("--backend", default="auto", choices=_backend_choices(), help="inference backend (default auto)")
    p.add_argument("--threads", type=_positive, metavar="N", help="inference threads (ONNX Runtime intra-op)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(a) -> int:
    from pathlib import Path

    out = Path(a.out)
    video = out / "demo.mp4"
    picks = {0, a.frames // 2, a.frames - 1}
    pngs: list[Path] = []

    def clip_size(backend) -> dict:
        from roadseg.runtime.pipeline import fixed_frame_size

        return {"size": fixed_frame_size(backend) or (360, 480)}  # the graph's own size: no resizing

    def snapshot(frame, labels, image) -> None:
        if frame.index in picks and image is not None:
            from roadseg.runtime.atomic import atomic_path

            target = out / f"overlay_{frame.name}.png"
            with atomic_path(target) as tmp:
                import cv2

                ok, data = cv2.imencode(".png", image)
                if not ok:
                    raise RoadsegError(f"{target}: could not encode the overlay")
                tmp.write_bytes(data.tobytes())
            pngs.append(target)

    summary, code = _stream(a, a.model, [f"synthetic:{a.frames}"], str(video), None, False, 0.5, None, False, False,
                            a.threads, on_frame=snapshot, source_options=clip_size)  # fmt: skip
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
                       "TensorRT) on the same frames: latency, throughput, end-to-end FPS, memory, agreement with PyTorch "
                       "FP32 and mIoU. Writes results.json/.csv/.md/.png to --report.")  # fmt: skip
    p.add_argument("model", nargs="+", help="a checkpoint or `default` (the bundled model; PyTorch FP32 is the reference, "
                   "and the bench exports every variant), or ready .onnx/.engine files (each on every backend that takes it, "
                   "the most precise file the reference; no PyTorch needed; without PyTorch `default` is its shipped files)")
    p.add_argument("--backends", default="all", metavar="LIST",
                   help="`all` or comma-separated rows, e.g. torch,ort-cpu-fp32; with model files, backends: " + ",".join(_backend_choices()[1:]) + " (default all)")  # fmt: skip
    p.add_argument("--imgsz", type=_size32, nargs=2, metavar=("H", "W"), help="model input size (default: the model card's)")
    p.add_argument("--frame-size", type=_positive, nargs=2, metavar=("H", "W"), help="frame size the graphs take (default: the model input size)")
    p.add_argument("--batch", type=_positive, nargs="+", default=[1], metavar="N",
                   help="batch sizes for the throughput columns, frames per second at each, e.g. --batch 1 8 32 (default 1)")  # fmt: skip
    p.add_argument("--frames", type=_positive, default=100, metavar="N", help="timed runs per row, and end-to-end frames (default 100)")
    p.add_argument("--streams", type=_positive, nargs="+", metavar="N",
                   help="multi-stream scaling: total and per-stream FPS of N streams batched through each row "
                   "(one N: 1, 2, 4 ... N; several: those counts)")  # fmt: skip
    p.add_argument("--warmup", type=_nonnegative, default=10, metavar="N", help="warm-up runs before timing (default 10)")
    p.add_argument("--rounds", type=_positive, default=1, metavar="R",
                   help="time the rows in R interleaved rounds, every row's model loaded meanwhile, so a machine whose "
                   "speed drifts slows all rows alike (default 1: one row after another)")  # fmt: skip
    p.add_argument("--source", metavar="SRC", help="end-to-end source: video, image folder, camera, URL (default: the synthetic clip)")
    p.add_argument("--data", metavar="DIR", help="labelled dataset root (val split: mIoU) or a folder of frames (agreement only)")
    p.add_argument("--calib", metavar="DIR", help="INT8 calibration frames (default: --data, else --source, else synthetic scenes)")
    p.add_argument("--report", default="runs/bench", metavar="DIR", help="report folder (default runs/bench)")
    p.add_argument("--threads", type=_positive, metavar="N", help="inference threads for ONNX Runtime and PyTorch (default: their own)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="GPU rows without CUDA graphs (default: torch-fp16, torch-compile and ort-cuda rows replay them)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


if __name__ == "__main__":
    raise SystemExit(main())
