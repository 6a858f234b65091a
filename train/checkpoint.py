"""Checkpoint I/O. A checkpoint is a plain dict of tensors and JSON-like values, loadable with
`torch.load(weights_only=True)`; roadseg never falls back to full unpickling, so a checkpoint from
an untrusted source cannot run code here.

Keys: `state_dict`, `model` ({"name": registry name, "kwargs": {...}}), `card` (the model card as a
dict), `metrics`, `git_sha`, `roadseg_version`, and for resumable training `train_state`
(optimizer, scheduler, epoch, RNG). `strip()` drops `train_state` and can store weights as FP16 for
the bundled release checkpoint (as Ultralytics does); loading casts them back to FP32.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import torch
from torch import nn

from roadseg.core.atomic import atomic_path
from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError
from roadseg.core.version import __version__

from .models import build

WEIGHTS_DIR = Path(__file__).parent / "weights"
# bundled checkpoints: name -> file in train/weights/ ("default" is what every command accepts)
BUNDLED = {"default": "ddrnet23s_camvid.pt", "ddrnet23s_camvid": "ddrnet23s_camvid.pt"}


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def resolve(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint path, or the name of a bundled checkpoint (`default`)."""
    s = str(path_or_name)
    if s in BUNDLED:
        p = WEIGHTS_DIR / BUNDLED[s]
        if not p.is_file():
            raise RoadsegError(f"{p}: the bundled '{s}' checkpoint is missing from this install; reinstall roadseg")
        return p
    p = Path(s).expanduser()
    if not p.is_file():
        hint = f" or a bundled name ({', '.join(BUNDLED)})" if not p.suffix else ""
        raise RoadsegError(f"{p}: checkpoint not found; pass a .pt file written by `roadseg train`{hint}")
    return p


def atomic_save(obj: dict, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the target folder, then rename: a kill mid-write never
    leaves a truncated checkpoint at `path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def make_checkpoint(model: nn.Module, name: str, kwargs: dict, card: ModelCard, metrics: dict | None = None,
                    train_state: dict | None = None) -> dict:  # fmt: skip
    m = model.module if hasattr(model, "module") else model
    ckpt = {
        "state_dict": {k: v.detach().cpu() for k, v in m.state_dict().items()},
        "model": {"name": name, "kwargs": dict(kwargs)},
        "card": card.to_dict(),
        "metrics": dict(metrics or {}),
        "git_sha": git_sha(),
        "roadseg_version": __version__,
    }
    if train_state is not None:
        ckpt["train_state"] = train_state
    return ckpt


def strip(ckpt: dict, half: bool = True) -> dict:
    """Release copy: no optimizer state; floating weights stored as FP16 when `half`."""
    out = {k: v for k, v in ckpt.items() if k != "train_state"}
    if half:
        out["state_dict"] = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    return out


def _unsafe_globals(path: Path) -> list[str]:
    """The globals a refused checkpoint would import, read from its pickle opcodes without running
    them (the text of torch.load's refusal differs between PyTorch versions)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - a damaged pickle: say only that it holds objects
        return []


def load_raw(path: str | os.PathLike) -> dict:
    """torch.load with weights_only=True and every failure turned into one clear RoadsegError."""
    p = resolve(path)
    if p.stat().st_size == 0:
        raise RoadsegError(f"{p}: checkpoint is empty (0 bytes); re-run training or copy the file again")
    if not zipfile.is_zipfile(p):
        raise RoadsegError(f"{p}: not a readable PyTorch checkpoint (truncated or corrupt, or another format); re-export or copy it again")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        needs = _unsafe_globals(p)
        named = [g for g in needs if g in str(e)]  # the one torch stopped at, however this version words it
        first = named[:1] or needs[:1]
        more = f" (and {len(needs) - 1} more)" if len(needs) > 1 else ""
        what = f"it needs {first[0]}{more}" if first else "it holds pickled objects"
        raise RoadsegError(
            f"{p}: refused to load: {what}, pickled objects beyond tensors and plain values; roadseg loads only "
            "weights-only checkpoints (a pickle can run code): re-save the weights with `roadseg train` or make_checkpoint"
        ) from None
    except Exception as e:  # noqa: BLE001 - a corrupt pickle raises anything (IndexError, KeyError, struct.error, ...)
        msg = str(e).splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise RoadsegError(f"{p}: not a readable PyTorch checkpoint (truncated or corrupt: {msg}); re-export or copy it again") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt or "card" not in ckpt:
        raise RoadsegError(
            f"{p}: not a roadseg checkpoint (needs state_dict, model and card); train with `roadseg train` "
            "or wrap your weights with roadseg.train.checkpoint.make_checkpoint"
        )
    return ckpt


def check_state_dict(model: nn.Module, state: dict, source: str, allow_missing: bool = False) -> list[str]:
    """Refuse weights that do not fit `model` or hold NaN/Inf. With `allow_missing` (growing a
    model with --init: new blocks keep their fresh initialisation) keys the model has and `state`
    lacks are allowed and returned; unexpected or mis-shaped keys are always refused."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if (missing and not allow_missing) or extra or shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", extra), ("mis-shaped", shape)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise RoadsegError(f"{source}: weights do not fit the model: {', '.join(parts)}; was it trained as another model, with other --model-kwargs or another number of classes?")
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise RoadsegError(f"{source}: weight '{k}' holds NaN or Inf; the training diverged: use an earlier checkpoint")
    return missing


def _build(name: str, num_classes: int, kwargs: dict, src: str) -> nn.Module:
    try:
        return build(name, num_classes=num_classes, **kwargs)
    except RoadsegError as e:
        raise RoadsegError(f"{src}: {e}") from None
    except Exception as e:  # noqa: BLE001 - model constructors reject odd options with any error type
        why = " ".join(str(e).split())[:120] or type(e).__name__
        raise RoadsegError(
            f"{src}: model '{name}' cannot be built with the options in the checkpoint ({why}); re-save it with `roadseg train`"
        ) from None


def load_model(path: str | os.PathLike) -> tuple[nn.Module, ModelCard, dict]:
    """Rebuild the model from a checkpoint, loaded without unpickling arbitrary objects.

    Args:
        path: a checkpoint file, or a bundled name (`default`, `ddrnet23s_camvid`).
    Returns:
        (the model in eval mode with FP32 weights, its model card, the raw checkpoint dict).
    Raises:
        RoadsegError: a missing, truncated or foreign file, or one whose card or model is invalid.
    """
    ckpt = load_raw(path)
    src = str(resolve(path))
    if not isinstance(ckpt["card"], dict):
        raise RoadsegError(f"{src}: the checkpoint's model card is not a mapping; re-save it with `roadseg train`")
    card = ModelCard.from_dict(ckpt["card"], source=src)
    spec = ckpt["model"]
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise RoadsegError(f"{src}: checkpoint has no model name; re-save it with `roadseg train`")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise RoadsegError(f"{src}: the checkpoint's model options are not a mapping; re-save it with `roadseg train`")
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RoadsegError(f"{src}: state_dict is not a mapping of tensors; re-save it with `roadseg train`")
    # options read from a file are first built on the meta device (no memory): a checkpoint whose
    # options ask for a gigantic model is refused by the shape check before anything is allocated
    with torch.device("meta"):
        shell = _build(spec["name"], card.num_classes, kwargs, src)
    check_state_dict(shell, state, src)
    model = _build(spec["name"], card.num_classes, kwargs, src)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval(), card, ckpt
