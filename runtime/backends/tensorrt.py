"""Native TensorRT backend ("trt"): a roadseg .engine run with TensorRT's Python API and pycuda.

Loading policy (TensorRT plans are executable artefacts: they carry compiled GPU kernels, and a
version-compatible plan also carries host code, TensorRT's lean runtime, that runs in this process
when the plan is deserialised; NVIDIA's own guidance is never to deserialise a plan from an
untrusted source):

1. `verify_engine` (runtime/engine.py) checks the plan against its sidecar before TensorRT sees it:
   sha256, TensorRT major.minor, GPU compute capability. Any mismatch is one RoadsegError with the
   rebuild command. The bytes handed to TensorRT are hashed again after reading, so the plan that is
   deserialised is the one that was verified.
2. Plans that need host code or plugins are refused unless the caller opts in (allow_plugins=True):
   a sidecar that records a version-compatible build (embedded lean runtime) or plugin libraries /
   plugin layers is refused with the reason; and the TensorRT runtime itself is created with
   `engine_host_code_allowed = allow_plugins` (TensorRT's own default is False), while TensorRT's
   plugin library is initialised and the sidecar's plugin libraries are loaded only when allowed.
   So a plan whose sidecar lies about needing host code is still refused by TensorRT.

Execution (TensorRT 10/11 name-based API): tensors are bound by name (`set_input_shape`,
`set_tensor_address`, `execute_async_v3`) on one CUDA stream; pinned host buffers
(`pycuda.driver.pagelocked_empty`) and device buffers are reused across frames and reallocated only
when a larger shape arrives. pycuda is used with an explicit context, no `pycuda.autoinit`: the
context is created (and the plan deserialised) by the first thread that calls `infer()` (or
`load()`), and is made current only for the duration of each call (push ... pop), so no thread is
left holding it; calls are serialised by a lock. `close()` may run on any thread: it pushes the
context, releases everything, and detaches the context while it is current, which destroys it (a
backend never closed is released the same way when collected or at interpreter exit).
`cuda_graph=True` captures `execute_async_v3` into one CUDA graph per execution context once an
input shape runs twice in a row, and replays it while the shape stays (fixed-shape engines: always;
a change of shape or reallocated buffers drops it and runs plainly until a shape repeats; an engine
that cannot be captured falls back to plain execution with one warning).

Frames follow the ONNX contract (uint8 [N,H,W,3] BGR -> uint8 [N,H,W]); an engine with a fixed frame
size takes any frame size (frames resized with bilinear interpolation, labels back with nearest
neighbour), as the ONNX Runtime backend does; batches larger than the engine's are chunked.

tensorrt and pycuda are imported only when a backend is opened (MissingDependencyError otherwise);
the planning logic (binding plan, run plan, buffer pool) is plain Python in tensorrt_plan.py.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from roadseg.core.card import ModelCard
from roadseg.core.errors import MissingDependencyError, RoadsegError, UsageError

from ..engine import EngineSidecar, rebuild_command, sidecar_path, verify_engine
from .base import BaseBackend
from .tensorrt_plan import (
    BindingPlan,
    BufferPool,
    TensorInfo,
    binding_plan,
    check_plugin_policy,
    specs_from_plan,
    specs_from_sidecar,
)

if TYPE_CHECKING:
    import tensorrt as trt

INSTALL_HINT = "TensorRT is not installed: pip install roadseg[gpu] on a machine with an NVIDIA GPU"
PYCUDA_HINT = (
    "pycuda is not installed: pip install roadseg[gpu] (pycuda builds against the CUDA toolkit on this machine)"
)


# -- CUDA graphs through the driver API (pycuda has no stream capture) ---------------------------

CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1


class CudaGraph:
    """cuStreamBeginCapture_v2 / cuStreamEndCapture / cuGraphInstantiateWithFlags / cuGraphLaunch on
    libcuda (CUDA >= 11.4), in whatever context is current (the backend's, pushed)."""

    def __init__(self) -> None:
        self._cu = ctypes.CDLL("libcuda.so.1")
        self._graph = ctypes.c_void_p()
        self._exec = ctypes.c_void_p()

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            raise RuntimeError(f"{what} failed with CUresult {rc}")

    def capture(self, stream: int, work: Callable[[], None]) -> None:
        h = ctypes.c_void_p(stream)
        self._check(
            self._cu.cuStreamBeginCapture_v2(h, ctypes.c_int(CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)),
            "cuStreamBeginCapture",
        )
        try:
            work()
        finally:
            rc = self._cu.cuStreamEndCapture(h, ctypes.byref(self._graph))
        self._check(rc, "cuStreamEndCapture")
        self._check(
            self._cu.cuGraphInstantiateWithFlags(ctypes.byref(self._exec), self._graph, ctypes.c_ulonglong(0)),
            "cuGraphInstantiate",
        )

    def launch(self, stream: int) -> None:
        self._check(self._cu.cuGraphLaunch(self._exec, ctypes.c_void_p(stream)), "cuGraphLaunch")

    def destroy(self) -> None:
        if self._exec.value:
            self._cu.cuGraphExecDestroy(self._exec)
            self._exec = ctypes.c_void_p()
        if self._graph.value:
            self._cu.cuGraphDestroy(self._graph)
            self._graph = ctypes.c_void_p()


# -- the backend ------------------------------------------------------------------------------------


def _import_gpu() -> tuple[Any, Any]:
    """(tensorrt, pycuda.driver) or MissingDependencyError saying what to install."""
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    except OSError as e:
        raise MissingDependencyError(f"{INSTALL_HINT} (importing tensorrt failed: {e})") from None
    if not hasattr(tensorrt, "Runtime"):  # e.g. only type stubs installed: an empty namespace package
        raise MissingDependencyError(f"{INSTALL_HINT} (the installed 'tensorrt' has no runtime)")
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise MissingDependencyError(PYCUDA_HINT) from None
    except OSError as e:
        raise MissingDependencyError(f"{PYCUDA_HINT} (importing pycuda failed: {e})") from None
    return tensorrt, cuda


# TensorRT I/O types roadseg can describe with numpy (its graphs use uint8, raw exports float); the
# others (BF16, FP8, INT4, FP4, E8M0) have no numpy type, and trt.nptype raises a bare TypeError
IO_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
             "BOOL": "bool", "UINT8": "uint8"}  # fmt: skip


def io_dtype(dtype: Any, tensor: str, source: str) -> str:
    """The numpy dtype name of a TensorRT I/O DataType, or one RoadsegError for a type roadseg does
    not take (the engine was not built from a roadseg ONNX)."""
    import tensorrt as trt

    for name, np_name in IO_DTYPES.items():
        if getattr(trt.DataType, name, None) == dtype:
            return np_name
    kind = str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]
    raise RoadsegError(
        f"{source}: I/O tensor '{tensor}' is {kind}, which roadseg does not take (frames uint8 in, labels uint8 out); "
        "build the engine from a roadseg ONNX with `roadseg export MODEL.onnx --to engine`"
    )


def engine_tensors(engine: trt.ICudaEngine, source: str = "engine") -> list[TensorInfo]:
    """The engine's I/O tensors by name (TensorRT 10/11 API)."""
    import tensorrt as trt

    def dims(d: trt.Dims) -> tuple[int, ...]:
        return tuple(int(d[k]) for k in range(len(d)))

    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = dims(engine.get_tensor_shape(name))
        profile = None
        if is_input and any(d < 0 for d in shape):
            lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
            profile = (dims(lo), dims(opt), dims(hi))
        out.append(TensorInfo(
            name=name, is_input=is_input, dtype=io_dtype(engine.get_tensor_dtype(name), name, source), shape=shape,
            on_device=engine.get_tensor_location(name) == trt.TensorLocation.DEVICE, profile=profile,
        ))  # fmt: skip
    return out


class TensorRTBackend(BaseBackend):
    """Backend "trt": a roadseg TensorRT plan, verified against its sidecar, run with pycuda.

    device_id: the CUDA device. cuda_graph: replay execute_async_v3 as a CUDA graph while the input shape stays.
    allow_plugins: load plans that need host code (version-compatible builds) or plugin libraries;
    only for plans you built or trust (see the module docstring)."""

    name = "trt"

    def __init__(
        self, path: str | os.PathLike, device_id: int = 0, cuda_graph: bool = False, allow_plugins: bool = False
    ) -> None:
        if not isinstance(device_id, int) or isinstance(device_id, bool) or device_id < 0:
            raise UsageError(f"device id {device_id!r}: give a CUDA device index (0, 1, ...)")
        self.path = Path(path)
        self.device_id = device_id
        self.cuda_graph = bool(cuda_graph)
        self.allow_plugins = bool(allow_plugins)
        try:
            self._trt, self._cuda = _import_gpu()
        except MissingDependencyError as e:  # name the file: the user asked for it, not for TensorRT
            raise MissingDependencyError(f"{self.path}: {e}") from None
        cuda = self._cuda
        try:
            cuda.init()
            count = cuda.Device.count()
        except Exception as e:  # noqa: BLE001 - pycuda raises its own types for a missing driver
            raise MissingDependencyError(
                f"backend trt: CUDA is not usable here ({e}); an NVIDIA GPU and driver are needed"
            ) from None
        if device_id >= count:
            raise RoadsegError(f"backend trt: no CUDA device {device_id} (this machine has {count})")
        major, minor = cuda.Device(device_id).compute_capability()
        self.compute_capability = f"{major}.{minor}"
        self.sidecar: EngineSidecar = verify_engine(self.path, str(self._trt.__version__), self.compute_capability)
        check_plugin_policy(self.sidecar, self.path, self.allow_plugins)
        self.card: ModelCard = self.sidecar.model_card(str(sidecar_path(self.path)))
        self._inputs, self._outputs = specs_from_sidecar(self.sidecar, self.card)
        self._lock = threading.Lock()
        self._ctx: Any = None
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._plan: BindingPlan | None = None
        self._stream: Any = None
        self._pool: BufferPool | None = None
        self._bound: tuple[int, int] | None = None  # device addresses set on the context
        self._shape: tuple[int, ...] | None = None  # input shape set on the context
        self._graph: CudaGraph | None = None
        self._graph_key: tuple | None = None
        self._graph_failed = False
        self._last_key: tuple | None = None  # (shape, addresses) of the previous execution
        self._closed = False
        self._at_exit: Callable[[], None] | None = None

    # -- BaseBackend -----------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def load(self) -> None:
        """Create the CUDA context and deserialise the plan now, on the calling thread (infer()
        does it on first use)."""
        with self._lock:
            self._ensure_loaded()

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        """One call at a time, loaded, with the backend's CUDA context current on this thread."""
        with self._lock:
            self._ensure_loaded()
            self._ctx.push()
            try:
                yield
            finally:
                self._ctx.pop()

    def run_size(self, h: int, w: int) -> tuple[int, int]:
        assert self._plan is not None  # loaded by _active
        return self._plan.run_hw(h, w)

    def batch_range(self, n: int) -> tuple[int, int]:
        assert self._plan is not None
        return self._plan.batch_range

    def close(self) -> None:
        """Free the engine, buffers and CUDA context; from any thread. The context is pushed, the
        TensorRT objects and buffers released while it is current, then detached while still
        current: pycuda destroys (and pops) a current context, but detaching it from a thread that
        did not create it while it is not current only marks it invalid and leaks it (and its
        100-400 MB of device memory)."""
        with self._lock:
            self._closed = True
            if self._at_exit is not None:
                atexit.unregister(self._at_exit)
                self._at_exit = None
            if self._ctx is None:
                return
            ctx, self._ctx = self._ctx, None
            ctx.push()
            try:
                self._release()
            finally:
                ctx.detach()

    def __del__(self) -> None:  # a backend dropped without close(): free the GPU state with its context
        if getattr(self, "_ctx", None) is not None:
            self.close()

    def __repr__(self) -> str:
        return f"TensorRTBackend({str(self.path)!r}, device_id={self.device_id}, cuda_graph={self.cuda_graph})"

    # -- internals -----------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._closed:
            raise self.closed_error()
        if self._ctx is not None:
            return
        cuda = self._cuda
        ctx = cuda.Device(self.device_id).make_context()  # current on this thread until popped below
        try:
            self._load()
        except BaseException as e:
            # the failed load's frames (in the traceback) still hold its runtime/engine/context: clear
            # them so TensorRT frees its device memory now, while the CUDA context is still current
            traceback.clear_frames(e.__traceback__)
            try:
                self._release()
            finally:
                ctx.detach()  # current: destroyed and popped
            raise
        ctx.pop()
        self._ctx = ctx
        if self._at_exit is None:  # interpreter exit without close(): release while the libraries are there
            ref = weakref.ref(self)

            def at_exit() -> None:
                backend = ref()
                if backend is not None:
                    backend.close()

            self._at_exit = at_exit
            atexit.register(at_exit)

    def _load(self) -> None:
        import tensorrt as trt

        cuda = self._cuda
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        runtime.engine_host_code_allowed = self.allow_plugins  # TensorRT refuses embedded host code otherwise
        if self.allow_plugins:
            trt.init_libnvinfer_plugins(logger, "")
            registry = runtime.get_plugin_registry()
            for entry in self.sidecar.plugins:
                if entry.startswith("library:"):
                    registry.load_library(entry.split(":", 1)[1])
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise RoadsegError(f"{self.path}: cannot read the engine ({e.strerror})") from None
        if hashlib.sha256(data).hexdigest() != self.sidecar.plan_sha256:  # changed since verify_engine
            raise RoadsegError(
                f"{self.path}: the plan changed on disk after it was verified; not loaded. Rebuild it: {rebuild_command(self.path, self.sidecar)}"
            )
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise RoadsegError(
                f"{self.path}: TensorRT could not deserialise the plan (see its messages above). Rebuild it: {rebuild_command(self.path, self.sidecar)}"
            )
        plan = binding_plan(engine_tensors(engine, str(self.path)), str(self.path))
        context = engine.create_execution_context()
        if context is None:
            raise RoadsegError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
        self._runtime, self._engine, self._context, self._plan = runtime, engine, context, plan
        self._stream = cuda.Stream()
        self._pool = BufferPool(lambda n: cuda.pagelocked_empty(n, np.uint8), cuda.mem_alloc)
        self._inputs, self._outputs = specs_from_plan(plan)

    def _release(self) -> None:
        self._drop_graph()
        self._last_key = None
        if self._stream is not None:
            self._stream.synchronize()
        if self._pool is not None:
            self._pool.clear()
        self._pool = None
        self._context = None  # TensorRT objects are destroyed while the context is current
        self._engine = None
        self._runtime = None
        self._stream = None
        self._bound = None
        self._shape = None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self._execute(batch)

    def _execute(self, chunk: np.ndarray) -> np.ndarray:
        """One batch (already padded to a size the engine takes) through the engine."""
        cuda, context, plan, pool = self._cuda, self._context, self._plan, self._pool
        assert context is not None and plan is not None and pool is not None
        in_shape = tuple(chunk.shape)
        host_in, dev_in, _ = pool.get(plan.input.name, in_shape, plan.input.dtype)
        host_in[:] = chunk
        if self._shape != in_shape:
            if not context.set_input_shape(plan.input.name, in_shape):
                raise RoadsegError(
                    f"{self.path}: the engine does not take input shape {list(in_shape)} (its profile: {self.sidecar.profiles})"
                )
            self._shape = in_shape
        d = context.get_tensor_shape(plan.output.name)
        out_shape = tuple(int(d[j]) for j in range(len(d)))
        if out_shape != in_shape[:3]:
            raise RoadsegError(
                f"{self.path}: the engine gives labels {list(out_shape)} for frames {list(in_shape)}; expected {list(in_shape[:3])}"
            )
        host_out, dev_out, _ = pool.get(plan.output.name, out_shape, plan.output.dtype)
        addresses = (int(dev_in), int(dev_out))
        if self._bound != addresses:
            context.set_tensor_address(plan.input.name, addresses[0])
            context.set_tensor_address(plan.output.name, addresses[1])
            self._bound = addresses
        stream = self._stream
        cuda.memcpy_htod_async(dev_in, host_in, stream)
        key = (in_shape, addresses)
        if self._graph is not None and self._graph_key == key:
            self._graph.launch(stream.handle)
        else:
            if self._graph is not None:  # the context now runs another shape: its graph is stale
                self._drop_graph()
            if not context.execute_async_v3(stream.handle):
                raise RoadsegError(f"{self.path}: TensorRT failed to execute the engine (see its messages above)")
        cuda.memcpy_dtoh_async(host_out, dev_out, stream)
        stream.synchronize()
        result = host_out.copy()
        repeated, self._last_key = self._last_key == key, key
        if self.cuda_graph and not self._graph_failed and self._graph is None and repeated:
            self._capture(key)
        return result

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._graph.destroy()
        self._graph, self._graph_key = None, None

    def _capture(self, key: tuple) -> None:
        """Capture execute_async_v3 for the shape and addresses just run. One graph per execution
        context (a graph replays the context's state at capture), and only for a shape that ran twice
        in a row: batches of 4, 2, 4, 2 (a short last chunk) or alternating frame sizes run plainly
        instead of capturing and instantiating a graph on every call that is never replayed. TensorRT
        has already run with this shape, which flushes its deferred setup out of the capture."""
        context = self._context
        assert context is not None
        self._drop_graph()
        graph = CudaGraph()
        handle = int(self._stream.handle)
        try:
            graph.capture(handle, lambda: self._enqueue_or_fail(context, handle))
        except (RuntimeError, OSError, AttributeError) as e:
            graph.destroy()
            self._graph_failed = True
            print(
                f"roadseg: CUDA graph capture is not possible for {self.path.name} ({e}); running without it",
                file=sys.stderr,
            )
            return
        self._graph, self._graph_key = graph, key

    @staticmethod
    def _enqueue_or_fail(context: trt.IExecutionContext, handle: int) -> None:
        if not context.execute_async_v3(handle):
            raise RuntimeError("execute_async_v3 during capture")


__all__ = ["CudaGraph", "TensorRTBackend", "engine_tensors", "io_dtype"]
