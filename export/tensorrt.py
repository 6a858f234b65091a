"""`roadseg export MODEL --to engine`: a TensorRT plan built from roadseg's ONNX, plus its sidecar.

One code path for TensorRT 10 and 11. TensorRT 11 removed the FP16/INT8 builder flags and the INT8
calibrators, so precision comes from the graph (docs/ARCHITECTURE.md, "Precision lives in the graph"): the FP32,
FP16 (mixed-precision) or INT8 (explicit Q/DQ) ONNX is parsed into a *strongly typed* network, which
TensorRT 10 supports behind NetworkDefinitionCreationFlag.STRONGLY_TYPED and TensorRT 11 always uses
(the flag is kept there for compatibility and ignored). No precision flag is ever set here.

The build: the graph in TensorRT's form (export/trt_graph.py: UINT8 casts only to and from FLOAT/HALF)
-> OnnxParser -> builder config (workspace pool limit; one optimisation profile for dynamic
inputs; optional VERSION_COMPATIBLE flag and AMPERE_PLUS hardware-compatibility level; a persistent
timing cache per TensorRT version and GPU, loaded when present and saved after, combined under a lock
with what the file holds by then) -> build_serialized_network, with progress through
TensorRT's IProgressMonitor (Ctrl-C cancels the build through it) -> the plan written atomically
(temporary file + rename), then its sidecar `<engine>.json` (runtime/engine.py).

The plan is the plain serialized engine, no header of ours: trtexec and Polygraphy load it as is.
tensorrt is imported only inside the build; profiles_for is pure Python. Beside this module: the
GPU description (gpu.py), the timing cache (timing_cache.py), the graph's TensorRT form
(trt_graph.py), output names (options.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from roadseg.core.atomic import atomic_path, check_writable
from roadseg.core.card import ModelCard
from roadseg.core.errors import MissingDependencyError, RoadsegError, UsageError
from roadseg.core.hashing import sha256_file
from roadseg.core.version import __version__
from roadseg.runtime.engine import (
    AMPERE,
    EngineSidecar,
    default_profile,
    now_iso,
    on_jetson,
    parse_compute_capability,
    platform_tag,
    trt_version_tuple,
    write_sidecar,
)

from .gpu import gpu_info
from .options import ExportOptions, engine_path
from .spec import GraphSpec
from .timing_cache import default_timing_cache, load_timing_cache, save_timing_cache
from .trt_graph import tensorrt_form

if TYPE_CHECKING:
    import tensorrt as trt

INSTALL_HINT = "TensorRT is not installed: pip install roadseg[gpu] on a machine with an NVIDIA GPU"
MIN_TENSORRT = 10  # strongly typed networks and IProgressMonitor; TensorRT 8.x builds implicit-batch networks
RAW_INPUT_NAME = "input"  # export/graph.py RAW_INPUT_NAME (not imported: graph.py imports torch)
GIB = 1 << 30


def require_tensorrt() -> str:
    """Import tensorrt (MissingDependencyError with the install command when it is missing or its
    libraries do not load); returns its version. Functions below import it again by name, so the
    type checker sees the real module (checked against tensorrt-stubs)."""
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    except OSError as e:  # the wheel is there but libnvinfer / CUDA libraries are not loadable
        raise MissingDependencyError(f"{INSTALL_HINT} (importing tensorrt failed: {e})") from None
    if not hasattr(tensorrt, "Builder"):  # e.g. only type stubs installed: an empty namespace package
        raise MissingDependencyError(f"{INSTALL_HINT} (the installed 'tensorrt' has no builder)")
    version = str(getattr(tensorrt, "__version__", "0"))
    try:
        major = trt_version_tuple(version)[0]
    except RoadsegError:
        major = 0
    if major < MIN_TENSORRT:
        raise MissingDependencyError(
            f"TensorRT {version} is too old: roadseg builds engines with TensorRT {MIN_TENSORRT} or newer "
            f"(pip install 'tensorrt>={MIN_TENSORRT}'; on a Jetson: JetPack 6.1 or newer, which brings TensorRT 10)"
        )
    return version


# -- pure logic: profiles ---------------------------------------------------------------------------


def _full_shape(nhw: tuple[int, int, int], raw: bool) -> list[int]:
    n, h, w = nhw
    return [n, 3, h, w] if raw else [n, h, w, 3]


def _check_nhw(name: str, v: Any) -> tuple[int, int, int]:
    try:
        t = tuple(int(x) for x in v)
    except (TypeError, ValueError):
        raise UsageError(f"--{name}-shape {v!r}: give three positive integers N H W") from None
    if len(t) != 3 or any(x <= 0 for x in t):
        raise UsageError(f"--{name}-shape {' '.join(map(str, t))}: give three positive integers N H W")
    return t[0], t[1], t[2]


def profiles_for(spec: GraphSpec, card: ModelCard, opts: ExportOptions) -> list[dict[str, Any]]:
    """The optimisation profile(s) of the engine input, as stored in the sidecar:
    [{"input": name, "min": [...], "opt": [...], "max": [...]}] (full tensor shapes).

    Fixed-shape graphs: min = opt = max = the graph's shape. Dynamic graphs (--dynamic): defaults
    min (1, H/2, W/2) and opt (1, H, W) of the model input size, max (8, 1080, 1920); --min-shape,
    --opt-shape, --max-shape (N H W) override each; min <= opt <= max in every dimension."""
    name = RAW_INPUT_NAME if spec.raw else card.input_name
    given = {k: getattr(opts, f"{k}_shape") for k in ("min", "opt", "max")}
    if not spec.dynamic:
        if any(v is not None for v in given.values()):
            raise UsageError(
                "--min-shape/--opt-shape/--max-shape apply to dynamic graphs; export with --dynamic (this graph has a fixed shape)"
            )
        h, w = card.input_size if spec.raw or spec.frame_size is None else spec.frame_size
        shape = _full_shape((int(spec.batch), int(h), int(w)), spec.raw)
        return [{"input": name, "min": list(shape), "opt": list(shape), "max": list(shape)}]
    dmin, opt, dmax = default_profile(
        card.input_size, _check_nhw("opt", given["opt"]) if given["opt"] is not None else None
    )
    mn = _check_nhw("min", given["min"]) if given["min"] is not None else dmin
    mx = _check_nhw("max", given["max"]) if given["max"] is not None else dmax
    for label, lo, hi in (("min", mn, opt), ("opt", opt, mx)):
        if any(a > b for a, b in zip(lo, hi)):
            other = "opt" if label == "min" else "max"
            raise UsageError(
                f"engine profile: --{label}-shape {' '.join(map(str, lo))} exceeds --{other}-shape {' '.join(map(str, hi))}; "
                "need min <= opt <= max in N, H and W"
            )
    return [
        {
            "input": name,
            "min": _full_shape(mn, spec.raw),
            "opt": _full_shape(opt, spec.raw),
            "max": _full_shape(mx, spec.raw),
        }
    ]


# -- TensorRT ------------------------------------------------------------------------------------


def network_flags() -> int:
    """1 << STRONGLY_TYPED where the enum has it (TensorRT 10: required for a strongly typed
    network; TensorRT 11: deprecated and ignored, strong typing is always on); 0 otherwise."""
    import tensorrt as trt

    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


class _Progress:
    """tqdm bars per build phase, fed by TensorRT's IProgressMonitor (TensorRT >= 10), and a
    cancellation flag the monitor returns to TensorRT (step_complete -> False stops the build).

    TensorRT calls the monitor through a trampoline that swallows any Python exception and stops the
    build, which then looks like "could not build". So the monitor's methods go through `guard`: a
    display error (tqdm writing to a closed stderr) turns the bars off and the build goes on; a
    KeyboardInterrupt raised inside a callback (SIGINT without our handler, off the main thread)
    cancels the build, and build_engine raises it once TensorRT has returned."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.cancelled = False
        self.interrupted = False  # a KeyboardInterrupt was raised inside a monitor callback
        self.display_error: BaseException | None = None
        self._bars: dict[str, Any] = {}
        self._depth: dict[str, int] = {}
        self._lock = threading.Lock()

    def guard(self, method: Callable[..., Any], *args: Any) -> Any:
        """Run a monitor callback; never let an exception reach TensorRT's trampoline."""
        try:
            if self.display_error is None:
                result = method(*args)
                return (not self.cancelled) if result is None else result
        except KeyboardInterrupt:
            self.cancelled = self.interrupted = True
        except Exception as e:  # noqa: BLE001 - progress display only: the build must go on without it
            self.display_error = e
            self.enabled = False
        return not self.cancelled

    def start(self, phase: str, parent: str | None, steps: int) -> None:
        from tqdm import tqdm

        with self._lock:
            depth = self._depth.get(parent, -1) + 1 if parent else 0
            self._depth[phase] = depth
            self._bars[phase] = tqdm(total=max(1, int(steps)), desc=phase, position=depth, leave=False,
                                     disable=not self.enabled, file=sys.stderr)  # fmt: skip

    def step(self, phase: str, step: int) -> bool:
        with self._lock:
            bar = self._bars.get(phase)
            if bar is not None:
                bar.n = min(int(step) + 1, bar.total)
                bar.refresh()
        return not self.cancelled

    def finish(self, phase: str) -> None:
        with self._lock:
            bar = self._bars.pop(phase, None)
            self._depth.pop(phase, None)
            if bar is not None:
                bar.close()

    def close(self) -> None:
        for phase in list(self._bars):
            self.finish(phase)


def _monitor(progress: _Progress) -> trt.IProgressMonitor | None:
    """An IProgressMonitor forwarding to `progress`, or None on a TensorRT without one."""
    import tensorrt as trt

    if not hasattr(trt, "IProgressMonitor"):
        return None

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)  # pybind11 trampolines need the base initialised explicitly

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            progress.guard(progress.start, phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return bool(progress.guard(progress.step, phase_name, step))

        def phase_finish(self, phase_name: str) -> None:
            progress.guard(progress.finish, phase_name)

    return Monitor()


def _parse(network: trt.INetworkDefinition, logger: trt.ILogger, data: bytes, what: str) -> trt.OnnxParser:
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = [str(parser.get_error(i)).replace("\n", " ") for i in range(parser.num_errors)]
        first = errors[0] if errors else "no detail"
        raise RoadsegError(
            f"{what}: TensorRT's ONNX parser refused the graph ({len(errors)} error(s); first: {first[:300]})"
        )
    return parser


def _plugins(network: trt.INetworkDefinition, parser: trt.OnnxParser) -> list[str]:
    """Plugin libraries and plugin layers the network needs (roadseg's graphs need none)."""
    import tensorrt as trt

    found: list[str] = []
    kinds = {getattr(trt.LayerType, n) for n in ("PLUGIN", "PLUGIN_V2", "PLUGIN_V3") if hasattr(trt.LayerType, n)}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in kinds:
            found.append(f"layer:{layer.name}")
    try:
        found += [f"library:{lib}" for lib in parser.get_used_vc_plugin_libraries()]
    except (AttributeError, RuntimeError):
        pass
    return found


def _inputs(network: trt.INetworkDefinition) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tensor.shape
        out[tensor.name] = [int(shape[j]) for j in range(len(shape))]
    return out


def _apply_profiles(builder: trt.Builder, config: trt.IBuilderConfig, network: trt.INetworkDefinition,
                    profiles: list[dict[str, Any]], what: str) -> None:  # fmt: skip
    import tensorrt as trt

    inputs = _inputs(network)
    dynamic = {n: s for n, s in inputs.items() if any(d < 0 for d in s)}
    for p in profiles:
        if p["input"] not in inputs:
            raise RoadsegError(
                f"{what}: the graph has no input '{p['input']}' (it has {', '.join(inputs)}); export it again with roadseg"
            )
        if len(p["min"]) != len(inputs[p["input"]]):
            raise RoadsegError(
                f"{what}: input '{p['input']}' has rank {len(inputs[p['input']])}, the profile {p['min']}"
            )
    if not dynamic:
        return
    missing = sorted(set(dynamic) - {p["input"] for p in profiles})
    if missing:
        raise RoadsegError(f"{what}: dynamic input(s) {', '.join(missing)} have no optimisation profile")
    profile = builder.create_optimization_profile()
    for p in profiles:
        profile.set_shape(p["input"], trt.Dims(p["min"]), trt.Dims(p["opt"]), trt.Dims(p["max"]))
    if config.add_optimization_profile(profile) < 0:
        raise RoadsegError(f"{what}: TensorRT refused the optimisation profile {profiles}")


class _Cancel:
    """While building: SIGINT sets the cancel flag (TensorRT stops at its next step) instead of
    raising inside TensorRT's call; the KeyboardInterrupt is raised once the builder returns.

    Python runs this handler only when the main thread runs Python code, here inside a monitor
    callback, where a KeyboardInterrupt would be swallowed by TensorRT's trampoline. So "force" is
    not a second raise: the first SIGINT puts back the default action, and a second one ends the
    process from the kernel at once, even while TensorRT runs a long tactic and calls back nothing.
    Nothing is written before the build returns, so nothing half-written is left."""

    def __init__(self, progress: _Progress, active: bool) -> None:
        self.progress = progress
        self.active = active and threading.current_thread() is threading.main_thread()
        self.interrupted = False
        self._old: Any = None

    def __enter__(self) -> _Cancel:
        if self.active:
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        self.progress.cancelled = True
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the next Ctrl-C: the default action, no Python
        print("\ncancelling the engine build (Ctrl-C again to force)...", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self._old)
        if self.interrupted and exc[0] is None:
            raise KeyboardInterrupt


def build_engine(
    model: onnx.ModelProto, card: ModelCard, spec: GraphSpec, opts: ExportOptions, src: Path | None
) -> Path:
    """Build a TensorRT plan from roadseg's (precision-annotated) ONNX graph; write it and its
    sidecar atomically. Returns the plan's path."""
    out = check_writable(engine_path(opts, card, spec, src))
    check_writable(out.with_name(out.name + ".json"))
    explicit_cache = opts.timing_cache is not None
    if explicit_cache:
        check_writable(Path(str(opts.timing_cache)).expanduser())
    if opts.workspace_gb <= 0:
        raise UsageError(f"--workspace {opts.workspace_gb}: give the builder workspace limit in GiB (> 0)")
    profiles = profiles_for(spec, card, opts)  # usage errors before TensorRT is even imported
    trt_version = require_tensorrt()
    import tensorrt as trt

    gpu = gpu_info()
    cache_path = (
        Path(opts.timing_cache).expanduser()
        if opts.timing_cache
        else default_timing_cache(trt_version, gpu.compute_capability)
    )
    if opts.hardware_compatible:
        if on_jetson():
            raise UsageError(
                "--hardware-compatible is not supported by TensorRT on Jetson (JetPack); build without it on the device"
            )
        cc = parse_compute_capability(gpu.compute_capability) if gpu.compute_capability != "unknown" else None
        if cc is not None and cc < AMPERE:
            raise UsageError(
                f"--hardware-compatible needs an Ampere or newer GPU to build on; this one ({gpu.name}) is {gpu.compute_capability}"
            )

    what = str(src or opts.model)
    # the source file's own bytes, so the sidecar matches `sha256sum model.onnx` (a proto serialised
    # again may order its fields otherwise); a graph that is no file yet: the bytes onnx.save writes
    if src is not None and src.is_file():
        onnx_sha = sha256_file(src)
    else:
        onnx_sha = hashlib.sha256(model.SerializeToString()).hexdigest()
    data = tensorrt_form(model)[0].SerializeToString()  # UINT8 casts only to and from FLOAT/HALF
    t0 = time.perf_counter()
    print(f"building a TensorRT {trt_version} engine ({spec.precision}, strongly typed) from {what} on "
          f"{gpu.name} (compute capability {gpu.compute_capability}): this takes a while")  # fmt: skip

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags())
    parser = _parse(network, logger, data, what)
    plugins = _plugins(network, parser)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_gb * GIB))
    if opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if plugins:
            config.plugins_to_serialize = [p.split(":", 1)[1] for p in plugins if p.startswith("library:")]
    if opts.hardware_compatible:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    _apply_profiles(builder, config, network, profiles, what)
    timing_cache = load_timing_cache(config, cache_path)

    progress = _Progress(opts.progress)
    monitor = _monitor(progress)
    if monitor is not None:
        config.progress_monitor = monitor
    try:
        with _Cancel(progress, active=monitor is not None):
            plan = builder.build_serialized_network(network, config)
    finally:
        progress.guard(progress.close)
    if progress.interrupted:
        raise KeyboardInterrupt
    if progress.display_error is not None:
        with contextlib.suppress(Exception):  # stderr itself may be what failed
            print(f"build progress display stopped ({type(progress.display_error).__name__}: {progress.display_error})",
                  file=sys.stderr)  # fmt: skip
    if plan is None:
        if progress.cancelled:
            raise KeyboardInterrupt
        raise RoadsegError(f"{what}: TensorRT could not build an engine (see its messages above); nothing written")
    build_seconds = time.perf_counter() - t0
    save_timing_cache(config, cache_path, explicit_cache)
    del timing_cache  # kept alive until the build finished, as TensorRT requires

    blob = memoryview(plan).cast("B")
    plan_sha = hashlib.sha256(blob).hexdigest()
    sidecar = EngineSidecar(
        card=card.replace(precision=spec.precision).to_dict(),
        plan_sha256=plan_sha,
        onnx_sha256=onnx_sha,
        tensorrt_version=trt_version,
        cuda_version=gpu.cuda_version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=spec.precision,
        profiles=profiles,
        build_seconds=round(build_seconds, 2),
        version_compatible=bool(opts.version_compatible),
        hardware_compatibility="ampere_plus" if opts.hardware_compatible else "none",
        roadseg_version=__version__,
        created=now_iso(),
        source=str(src) if src is not None else str(opts.model),
        plugins=plugins,
        platform=platform_tag(),
    )
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            f.write(blob)
    try:
        side = write_sidecar(out, sidecar)
    except BaseException:
        out.unlink(missing_ok=True)  # a plan without its sidecar is never loaded: leave neither
        raise
    print(f"wrote {out} ({blob.nbytes / 1e6:.1f} MB, built in {build_seconds:.0f} s) and {side.name}")
    return out


__all__ = ["build_engine", "network_flags", "profiles_for", "require_tensorrt"]
