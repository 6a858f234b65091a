"""The native TensorRT backend's plain-Python side: what an engine's tensors must be, how a batch of
frames runs on it, and the buffers it reuses; no tensorrt, pycuda or GPU (runtime/backends/tensorrt.py
feeds it what TensorRT reports; the tests feed it fakes).

- binding_plan: the engine must be roadseg's frames->labels graph (one uint8 [N,H,W,3] input on the
  device, one uint8 [N,H,W] output, a profile for every dynamic dimension);
- BindingPlan.run_hw / batch_range: the frame size a call runs at and the batches the engine takes
  (BaseBackend.infer chunks to the profile's largest and pads to its smallest);
- BufferPool: pinned host and device buffers per tensor, grown only;
- check_plugin_policy, specs_from_sidecar / specs_from_plan: what is refused before deserialising,
  and the tensor specs before and after.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError

from ..engine import EngineSidecar, rebuild_command
from .base import TensorSpec

SYMBOLIC = ("N", "H", "W")


@dataclass(frozen=True)
class TensorInfo:
    """One engine I/O tensor, as TensorRT describes it."""

    name: str
    is_input: bool
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]  # -1 for dynamic dimensions
    on_device: bool = True
    # inputs with dynamic dimensions: (min, opt, max) shapes of optimisation profile 0
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None


@dataclass(frozen=True)
class BindingPlan:
    """The frames input and labels output of a roadseg engine, checked."""

    input: TensorInfo
    output: TensorInfo

    def _range(self, axis: int) -> tuple[int, int, int]:
        d = self.input.shape[axis]
        if d > 0:
            return d, d, d
        assert self.input.profile is not None
        lo, opt, hi = self.input.profile
        return lo[axis], opt[axis], hi[axis]

    @property
    def batch_range(self) -> tuple[int, int]:
        lo, _, hi = self._range(0)
        return lo, hi

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        h, w = self.input.shape[1:3]
        return (h, w) if h > 0 and w > 0 else None

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.input.shape)

    def run_hw(self, h: int, w: int) -> tuple[int, int]:
        """The (H, W) frames of h x w run at: a fixed-size engine's size; a dynamic one's, the frames'
        own when its profile covers them, else the profile's opt size."""
        if self.fixed_size is not None:
            return self.fixed_size
        (hmin, wmin), (hopt, wopt), (hmax, wmax) = self.size_range()
        return (h, w) if hmin <= h <= hmax and wmin <= w <= wmax else (hopt, wopt)

    def size_range(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(min, opt, max) frame (H, W)."""
        (h0, h1, h2), (w0, w1, w2) = self._range(1), self._range(2)
        return (h0, w0), (h1, w1), (h2, w2)


def binding_plan(tensors: Sequence[TensorInfo], source: str) -> BindingPlan:
    """Check that the engine is roadseg's frames->labels graph: one uint8 [N,H,W,3] input on the
    device, one uint8 [N,H,W] output, a profile for every dynamic input dimension."""
    inputs = [t for t in tensors if t.is_input]
    outputs = [t for t in tensors if not t.is_input]
    if len(inputs) != 1 or len(outputs) != 1:
        names = ", ".join(f"{t.name}({'in' if t.is_input else 'out'})" for t in tensors)
        raise RoadsegError(
            f"{source}: expected one input (frames) and one output (labels), the engine has {names}; build it from a roadseg ONNX"
        )
    i, o = inputs[0], outputs[0]
    if i.dtype != "uint8" and len(i.shape) == 4 and i.shape[1] == 3:
        raise RoadsegError(
            f"{source}: is an engine of a raw-network export ({i.dtype} NCHW in, logits out); the runtime streams "
            "frames->labels engines: export the checkpoint again without --raw, then --to engine"
        )
    if i.dtype != "uint8" or len(i.shape) != 4 or i.shape[3] != 3:
        raise RoadsegError(f"{source}: input '{i.name}' is {i.dtype} {list(i.shape)}; expected uint8 [N,H,W,3] frames")
    if o.dtype != "uint8" or len(o.shape) != 3:
        raise RoadsegError(f"{source}: output '{o.name}' is {o.dtype} {list(o.shape)}; expected uint8 [N,H,W] labels")
    if not (i.on_device and o.on_device):
        raise RoadsegError(
            f"{source}: an I/O tensor lives in host memory; roadseg engines keep frames and labels on the device"
        )
    if any(d < 0 for d in i.shape):
        if i.profile is None or any(len(p) != 4 for p in i.profile):
            raise RoadsegError(
                f"{source}: input '{i.name}' is dynamic but has no optimisation profile; rebuild the engine"
            )
    return BindingPlan(i, o)


class BufferPool:
    """Pinned host + device buffers per tensor name, reused across frames and grown (reallocated)
    only when a request is larger than what the tensor already has. The allocators are injected:
    pycuda's pagelocked_empty / mem_alloc in the backend, fakes in tests."""

    def __init__(self, host_alloc: Callable[[int], np.ndarray], device_alloc: Callable[[int], Any]) -> None:
        self._host_alloc = host_alloc
        self._device_alloc = device_alloc
        self._buffers: dict[str, tuple[np.ndarray, Any, int]] = {}
        self.allocations = 0  # (host, device) pairs allocated so far

    def get(self, name: str, shape: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, Any, bool]:
        """(host view of `shape`/`dtype` over the pinned buffer, device allocation, grew)."""
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        have = self._buffers.get(name)
        grew = have is None or have[2] < nbytes
        if grew:
            if have is not None:
                self._free(have[1])
            cap = max(nbytes, 1)
            host = self._host_alloc(cap)
            dev = self._device_alloc(cap)
            self._buffers[name] = (host, dev, cap)
            self.allocations += 1
        host, dev, _ = self._buffers[name]
        view = host[:nbytes].view(dt).reshape(shape)
        return view, dev, grew

    def capacity(self, name: str) -> int:
        have = self._buffers.get(name)
        return 0 if have is None else have[2]

    @staticmethod
    def _free(dev: Any) -> None:
        free = getattr(dev, "free", None)
        if callable(free):
            free()

    def clear(self) -> None:
        for _, dev, _ in self._buffers.values():
            self._free(dev)
        self._buffers.clear()


def check_plugin_policy(sc: EngineSidecar, engine: str | os.PathLike, allow_plugins: bool) -> None:
    """Refuse plans that need host code or plugins unless the caller opted in."""
    if allow_plugins:
        return
    if sc.version_compatible:
        raise RoadsegError(
            f"{engine}: is a version-compatible plan, which embeds TensorRT's lean runtime (host code that runs when the "
            "plan loads); roadseg loads such plans only when allowed (allow_plugins=True, `--allow-plugins`) for a plan you "
            f"built or trust. Or rebuild it without --version-compatible: {rebuild_command(engine, replace(sc, version_compatible=False))}"
        )
    if sc.plugins:
        raise RoadsegError(
            f"{engine}: needs TensorRT plugins ({', '.join(sc.plugins)[:200]}): plugin libraries are native code and are "
            "loaded only when allowed (allow_plugins=True, `--allow-plugins`) for a plan you built or trust"
        )


def specs_from_sidecar(sc: EngineSidecar, card: ModelCard) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input/output specs before the plan is deserialised, from the sidecar's profile."""
    prof = next((p for p in sc.profiles if p.get("input") == card.input_name), sc.profiles[0] if sc.profiles else None)
    if prof is None:
        dims: tuple[int | str | None, ...] = ("N", "H", "W", 3)
        name = card.input_name
    else:
        name = str(prof["input"])
        dims = tuple(lo if lo == hi else sym for lo, hi, sym in zip(prof["min"], prof["max"], (*SYMBOLIC, "C")))
    out = tuple(dims[:3])
    return [TensorSpec(name, dims, "uint8")], [TensorSpec(card.output_name, out, "uint8")]


def specs_from_plan(plan: BindingPlan) -> tuple[list[TensorSpec], list[TensorSpec]]:
    def dims(shape: tuple[int, ...]) -> tuple[int | str | None, ...]:
        return tuple(d if d > 0 else SYMBOLIC[k] for k, d in enumerate(shape))

    i, o = plan.input, plan.output
    return [TensorSpec(i.name, dims(i.shape), i.dtype)], [TensorSpec(o.name, dims(o.shape), o.dtype)]


__all__ = [
    "BindingPlan", "BufferPool", "TensorInfo", "binding_plan", "check_plugin_policy",
    "specs_from_plan", "specs_from_sidecar",
]  # fmt: skip
