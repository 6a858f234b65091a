"""The TensorRT engine sidecar, and the checks an engine passes before TensorRT ever sees it.

`roadseg export MODEL --to engine` writes two files: the plan itself (`model.engine`, the plain
serialized engine with no header of ours, so trtexec and Polygraphy load it too) and its sidecar
`model.engine.json` (schema below). The runtime loads a plan only after `verify_engine` has
checked, without deserialising anything:

- the sidecar exists and is well formed;
- the sha256 of the plan equals the sidecar's (a truncated, bit-flipped or swapped file is refused);
- the TensorRT version here is the very one that built it, major.minor.patch.build (TensorRT itself
  refuses a plan from another build: "expecting library version 8.6.1.2 got 8.6.0.12"); a
  version-compatible plan also runs on newer releases of the same major version or the next one
  (10 -> 11, never 8 -> 11), never on older ones;
- the platform (OS, CPU architecture, Jetson or not) is the one it was built on: plans do not move
  between platforms, and hardware compatibility is not supported on Jetson (JetPack);
- the GPU's compute capability equals the one it was built for (a plan built with the Ampere+
  hardware-compatibility level runs on any GPU of compute capability 8.0 or newer, Jetson aside).

Each refusal is one line naming the file, what does not match and the command that rebuilds it.
A TensorRT plan is an executable artefact (it carries GPU kernels, and a version-compatible plan
carries host code too): the hash check is what ties a plan to the build that made it; plans from
untrusted sources must not be loaded at all (see SECURITY.md).

Pure Python: no tensorrt, no CUDA, no torch.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform as _platform
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from roadseg.core.atomic import atomic_path
from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError
from roadseg.core.hashing import sha256_file

SIDECAR_FORMAT = 1
SIDECAR_MAX_BYTES = 4 << 20  # a sidecar is a few KB; anything this large is not one
HARDWARE_LEVELS = ("none", "ampere_plus", "same_compute_capability")
AMPERE = (8, 0)  # the first compute capability of the Ampere generation
DEFAULT_MAX_SHAPE = (8, 1080, 1920)  # (N, H, W) the largest input a dynamic engine takes by default

NHW = tuple[int, int, int]


def default_profile(input_size: Any, opt: NHW | None = None) -> tuple[NHW, NHW, NHW]:
    """The (min, opt, max) (N, H, W) range a dynamic graph is built for by default, for the engine
    export and ONNX Runtime's TensorRT provider alike: opt (1, H, W) of the model input size, min
    (1, H/2, W/2), max (8, 1080, 1920); both stretched to hold a given opt."""
    mh, mw = (int(x) for x in input_size)
    o = opt if opt is not None else (1, mh, mw)
    mn = tuple(min(a, b) for a, b in zip((1, max(1, (mh + 1) // 2), max(1, (mw + 1) // 2)), o))
    mx = tuple(max(a, b) for a, b in zip(DEFAULT_MAX_SHAPE, o))
    return (mn[0], mn[1], mn[2]), o, (mx[0], mx[1], mx[2])


@dataclass
class EngineSidecar:
    """`<engine>.json`: what a plan was built from, with what, and for which GPU."""

    card: dict[str, Any]  # the model card (ModelCard.to_dict())
    plan_sha256: str
    onnx_sha256: str
    tensorrt_version: str  # tensorrt.__version__ at build time, e.g. "10.13.0.35"
    cuda_version: str  # e.g. "12.8", or "unknown"
    gpu_name: str  # e.g. "NVIDIA Jetson AGX Orin", or "unknown"
    compute_capability: str  # "8.7", or "unknown"
    precision: str  # fp32 | fp16 | int8 (of the ONNX graph it was built from)
    profiles: list[dict[str, Any]]  # [{"input": name, "min": [...], "opt": [...], "max": [...]}]
    build_seconds: float
    version_compatible: bool = False
    hardware_compatibility: str = "none"  # none | ampere_plus | same_compute_capability
    roadseg_version: str = ""
    created: str = ""  # ISO 8601 date and time (UTC)
    source: str = ""  # what `roadseg export` was given (ONNX or checkpoint): used in the rebuild command
    plugins: list[str] = field(default_factory=list)  # plugin libraries / plugin layers the plan needs
    platform: str = ""  # platform_tag() of the build machine, e.g. "linux-aarch64-jetson"; "" if not recorded
    format: int = SIDECAR_FORMAT

    def model_card(self, source: str = "engine sidecar") -> ModelCard:
        return _card(self.card, source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, source: str = "engine sidecar") -> EngineSidecar:
        """Validate every field (a sidecar may come from anywhere): one RoadsegError otherwise."""
        if not isinstance(d, dict):
            raise RoadsegError(f"{source}: is not a JSON object; rebuild the engine")
        fmt = d.get("format", SIDECAR_FORMAT)
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt > SIDECAR_FORMAT:
            raise RoadsegError(
                f"{source}: sidecar format {fmt!r} is newer than this roadseg understands; upgrade roadseg or rebuild the engine"
            )
        missing = [f.name for f in fields(cls) if f.name in _REQUIRED and f.name not in d]
        if missing:
            raise RoadsegError(f"{source}: incomplete sidecar (missing {', '.join(missing)}); rebuild the engine")
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            kw[f.name] = _check_field(f.name, d[f.name], source)
        out = cls(**kw)
        _card(out.card, source)  # the card must be a valid model card
        return out


_REQUIRED = {
    "card", "plan_sha256", "onnx_sha256", "tensorrt_version", "cuda_version", "gpu_name",
    "compute_capability", "precision", "profiles", "build_seconds",
}  # fmt: skip
_STR_FIELDS = {
    "plan_sha256", "onnx_sha256", "tensorrt_version", "cuda_version", "gpu_name", "compute_capability",
    "precision", "hardware_compatibility", "roadseg_version", "created", "source", "platform",
}  # fmt: skip
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _bad(source: str, name: str, why: str) -> RoadsegError:
    return RoadsegError(f"{source}: field '{name}' {why}; the sidecar is corrupt: rebuild the engine")


def _check_field(name: str, v: Any, source: str) -> Any:
    if name in _STR_FIELDS:
        if not isinstance(v, str) or len(v) > 4096:
            raise _bad(source, name, "is not a string")
        if name == "plan_sha256" and not _HEX64.fullmatch(v):
            raise _bad(source, name, "is not a sha256 hex digest")
        if name == "hardware_compatibility" and v not in HARDWARE_LEVELS:
            raise _bad(source, name, f"must be one of {', '.join(HARDWARE_LEVELS)}")
        return v
    if name == "card":
        if not isinstance(v, dict):
            raise _bad(source, name, "is not an object")
        return v
    if name in ("version_compatible",):
        if not isinstance(v, bool):
            raise _bad(source, name, "is not true/false")
        return v
    if name == "build_seconds":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise _bad(source, name, "is not a non-negative number")
        return float(v)
    if name == "format":
        return v
    if name == "plugins":
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise _bad(source, name, "is not a list of strings")
        return list(v)
    if name == "profiles":
        if not isinstance(v, list):
            raise _bad(source, name, "is not a list")
        for p in v:
            if not isinstance(p, dict) or not isinstance(p.get("input"), str):
                raise _bad(source, name, "has an entry without an input name")
            for k in ("min", "opt", "max"):
                dims = p.get(k)
                if (
                    not isinstance(dims, list)
                    or not dims
                    or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in dims)
                ):
                    raise _bad(source, name, f"has an entry whose '{k}' is not a list of positive integers")
        return [dict(p) for p in v]
    raise _bad(source, name, "is unknown")  # pragma: no cover - every field is handled above


def _card(d: dict[str, Any], source: str) -> ModelCard:
    try:
        return ModelCard.from_dict(d, source)
    except RoadsegError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        raise RoadsegError(
            f"{source}: the model card in the sidecar is invalid ({type(e).__name__}); rebuild the engine"
        ) from None


# -- files -------------------------------------------------------------------------------------


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """`model.engine` -> `model.engine.json`."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_sidecar(engine_path: str | os.PathLike, sidecar: EngineSidecar) -> Path:
    """Write `<engine>.json` atomically (temporary file + rename)."""
    target = sidecar_path(engine_path)
    text = sidecar.to_json()
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def rebuild_output(engine_path: str | os.PathLike, source: str) -> Path:
    """Where the rebuild command writes: the engine's own path, unless that is the source itself
    (a sidecar naming the plan as its source, a plan named like its ONNX), which a rebuild must never
    overwrite; then a sibling .engine name."""
    out = Path(engine_path)
    if not _same_path(source, out):
        return out
    if out.suffix.lower() != ".engine":
        return out.with_suffix(".engine")
    return out.with_name(f"{out.stem}.rebuilt.engine")


def rebuild_command(engine_path: str | os.PathLike, sidecar: EngineSidecar | None = None) -> str:
    """The command that makes this engine again (same source, shapes and build flags), for messages.
    Its --output is never the source (see `rebuild_output`)."""
    src = sidecar.source if sidecar is not None and sidecar.source else ""
    if not src:
        guess = Path(engine_path).with_suffix(".onnx")
        src = str(guess) if guess.is_file() else "MODEL.onnx"
    parts = ["roadseg", "export", src, "--to", "engine"]
    if sidecar is not None:
        if not src.endswith(".onnx"):  # from a checkpoint: the graph's precision and shape are options
            if sidecar.precision in ("fp16", "int8"):
                parts += ["--precision", sidecar.precision]
            prof = sidecar.profiles[0] if sidecar.profiles else None
            if prof is not None and prof["min"] != prof["max"]:
                parts.append("--dynamic")
            elif prof is not None and len(prof["min"]) == 4 and prof["min"][3] == 3:
                n, h, w, _ = prof["min"]
                parts += ["--frame-size", str(h), str(w)] + (["--batch", str(n)] if n != 1 else [])
        prof = sidecar.profiles[0] if sidecar.profiles else None
        if prof is not None and prof["min"] != prof["max"] and len(prof["min"]) == 4:
            for key in ("min", "opt", "max"):
                n, h, w = prof[key][0], prof[key][1], prof[key][2]
                if prof[key][3] != 3:  # raw NCHW
                    h, w = prof[key][2], prof[key][3]
                parts += [f"--{key}-shape", str(n), str(h), str(w)]
        if sidecar.version_compatible:
            parts.append("--version-compatible")
        if sidecar.hardware_compatibility == "ampere_plus":
            parts.append("--hardware-compatible")
    parts += ["--output", str(rebuild_output(engine_path, src))]
    return " ".join(parts)


def read_sidecar(engine_path: str | os.PathLike) -> EngineSidecar:
    """The sidecar of `engine_path`, validated; RoadsegError when it is missing or corrupt."""
    engine = Path(engine_path)
    path = sidecar_path(engine)
    if not path.is_file():
        raise RoadsegError(
            f"{engine}: its sidecar {path.name} is missing, so the plan cannot be checked and is not loaded "
            f"(roadseg writes both files when it builds an engine). Rebuild it: {rebuild_command(engine)}"
        )
    try:
        size = path.stat().st_size
        if size > SIDECAR_MAX_BYTES:
            raise RoadsegError(
                f"{path}: {size} bytes is too large for an engine sidecar; rebuild: {rebuild_command(engine)}"
            )
        text = path.read_bytes().decode("utf-8")
        data = json.loads(text)
    except RoadsegError:
        raise
    except OSError as e:
        raise RoadsegError(f"{path}: cannot read the engine sidecar ({e.strerror}); check its permissions") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RoadsegError(
            f"{path}: the engine sidecar is not valid JSON; rebuild: {rebuild_command(engine)}"
        ) from None
    try:
        return EngineSidecar.from_dict(data, str(path))
    except RoadsegError as e:
        raise RoadsegError(f"{e}. Rebuild: {rebuild_command(engine)}") from None


# -- verification ------------------------------------------------------------------------------


def _numbers(v: str, what: str, source: str) -> tuple[int, ...]:
    m = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?", v or "")
    if not m:
        raise RoadsegError(f"{source}: cannot read the {what} '{v}'")
    return tuple(int(x) for x in m.groups() if x is not None)


def trt_version_tuple(version: str, source: str = "TensorRT version") -> tuple[int, int, int, int]:
    """"10.13.0.35" -> (10, 13, 0, 35); missing parts are 0."""
    n = _numbers(version, "TensorRT version", source)
    return (*n, 0, 0, 0)[:4]  # type: ignore[return-value]


def major_minor(version: str, source: str = "TensorRT version") -> tuple[int, int]:
    n = trt_version_tuple(version, source)
    return n[0], n[1]


def parse_compute_capability(cc: str | tuple[int, int], source: str = "compute capability") -> tuple[int, int]:
    if isinstance(cc, tuple):
        return int(cc[0]), int(cc[1])
    n = _numbers(cc, "compute capability", source)
    return n[0], (n[1] if len(n) > 1 else 0)


def _fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def on_jetson() -> bool:
    """A Jetson (JetPack, L4T): the Tegra release file that L4T installs."""
    return Path("/etc/nv_tegra_release").exists()


def platform_tag() -> str:
    """This machine's platform as the sidecar records it: OS, CPU architecture, and "-jetson" on a
    Jetson (same OS and architecture as an aarch64 server, but TensorRT's plans differ)."""
    machine = _platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return f"{_platform.system().lower()}-{machine}" + ("-jetson" if on_jetson() else "")


def check_compatibility(
    engine_path: str | os.PathLike,
    sc: EngineSidecar,
    trt_version: str,
    compute_capability: str,
    platform: str | None = None,
) -> None:
    """TensorRT version, platform and GPU checks of `verify_engine` (the plan's hash aside).
    `platform`: this machine's platform_tag() (None: found here)."""
    engine = Path(engine_path)
    rebuild = rebuild_command(engine, sc)
    built = trt_version_tuple(sc.tensorrt_version, f"{sidecar_path(engine)}: tensorrt_version")
    here = trt_version_tuple(trt_version, "this TensorRT")
    if sc.version_compatible:
        if here < built or here[0] > built[0] + 1:
            raise RoadsegError(
                f"{engine}: a version-compatible plan built with TensorRT {sc.tensorrt_version} runs on that release or a "
                f"newer one of TensorRT {built[0]} or {built[0] + 1}, and this machine has TensorRT {trt_version}. "
                f"Rebuild it here: {rebuild}"
            )
    elif here != built:
        raise RoadsegError(
            f"{engine}: built with TensorRT {sc.tensorrt_version}, but this machine has TensorRT {trt_version}; a plan runs "
            f"only on the exact TensorRT release that built it (major.minor.patch.build; unless built with "
            f"--version-compatible). Rebuild it here: {rebuild}"
        )
    platform = platform_tag() if platform is None else platform
    if sc.platform and sc.platform != platform:
        raise RoadsegError(
            f"{engine}: built on {sc.platform}, and this machine is {platform}; a plan runs only on the platform "
            f"(OS, CPU architecture, Jetson or not) it was built on. Rebuild it here: {rebuild}"
        )
    if sc.hardware_compatibility != "none" and platform.endswith("-jetson"):
        raise RoadsegError(
            f"{engine}: built hardware-compatible ({sc.hardware_compatibility}), which TensorRT does not support on "
            f"Jetson (JetPack). Rebuild it here without --hardware-compatible: "
            f"{rebuild_command(engine, replace(sc, hardware_compatibility='none'))}"
        )
    if sc.compute_capability == "unknown" or compute_capability == "unknown":
        return  # nothing recorded to compare with: TensorRT checks the plan's kernels itself
    cc_built = parse_compute_capability(sc.compute_capability, f"{sidecar_path(engine)}: compute_capability")
    cc_here = parse_compute_capability(compute_capability, "this GPU's compute capability")
    if sc.hardware_compatibility == "ampere_plus":
        if cc_here < AMPERE:
            raise RoadsegError(
                f"{engine}: built hardware-compatible for Ampere and newer GPUs (compute capability 8.0+), but this GPU has "
                f"compute capability {_fmt(cc_here)}. Rebuild it on this GPU: {rebuild}"
            )
        return
    if cc_here != cc_built:
        gpu = f" ({sc.gpu_name})" if sc.gpu_name and sc.gpu_name != "unknown" else ""
        raise RoadsegError(
            f"{engine}: built for compute capability {_fmt(cc_built)}{gpu}, but this GPU has compute capability "
            f"{_fmt(cc_here)}; a plan runs only on the GPU architecture it was built for (unless built with "
            f"--hardware-compatible, Ampere and newer). Rebuild it on this GPU: {rebuild}"
        )


def verify_engine(
    engine_path: str | os.PathLike, trt_version: str, compute_capability: str, platform: str | None = None
) -> EngineSidecar:
    """Check a plan against its sidecar, this TensorRT, this platform and this GPU before anything
    deserialises it.

    Returns the sidecar; raises one RoadsegError (file, what differs, the rebuild command) when the
    sidecar is missing or corrupt, the plan's sha256 differs (truncated, bit-flipped, replaced), the
    TensorRT version differs in any of major.minor.patch.build (unless built version-compatible:
    then a newer release of the same or the next major is fine), the platform differs (or the plan
    is hardware-compatible and this is a Jetson), or the compute capability differs (unless built
    with the Ampere+ hardware-compatibility level and this GPU is Ampere or newer)."""
    engine = Path(engine_path)
    if not engine.is_file():
        raise RoadsegError(f"{engine}: engine file not found; build one with `roadseg export MODEL.onnx --to engine`")
    sc = read_sidecar(engine)
    try:
        size = engine.stat().st_size
        actual = sha256_file(engine)
    except OSError as e:
        raise RoadsegError(f"{engine}: cannot read the engine ({e.strerror}); check its permissions") from None
    if actual != sc.plan_sha256:
        raise RoadsegError(
            f"{engine}: sha256 of the plan ({actual[:16]}..., {size} bytes) differs from its sidecar ({sc.plan_sha256[:16]}...): "
            f"the file is truncated, corrupted or was replaced, and is not loaded. Rebuild it: {rebuild_command(engine, sc)}"
        )
    check_compatibility(engine, sc, trt_version, compute_capability, platform)
    return sc
