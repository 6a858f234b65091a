"""The training loop: cross-entropy with the ignore index (optional class weights, OHEM and a
Lovász-softmax term; see losses.py), SGD or AdamW, poly or one-cycle schedule stepped per
iteration, mixed precision (float16 on CUDA, bfloat16 on CPUs with native bf16), `last.pt` every
epoch and `best.pt` by validation mIoU, `--resume` from `last.pt`, a JSONL log, a progress bar.

`--init CKPT` starts from another checkpoint's weights with a fresh optimizer and schedule
(fine-tuning, or a second schedule at another input size). `--ema DECAY` keeps an exponential
moving average of the weights (torch.optim.swa_utils.AveragedModel, BatchNorm statistics included):
the average is what is validated and saved, because on small datasets the raw weights' val mIoU
swings by several points from one epoch to the next and the average is both steadier and better.

Several GPUs or nodes: launch the same command under `torchrun`; the loop sees WORLD_SIZE and uses
DistributedDataParallel with a DistributedSampler (gloo on CPU, nccl on CUDA). Rank 0 alone
validates, logs and writes checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler
from tqdm import tqdm

from roadseg.core.atomic import check_folder
from roadseg.core.card import ModelCard
from roadseg.core.errors import RoadsegError, UsageError

from .checkpoint import BUNDLED, atomic_save, check_state_dict, load_raw, make_checkpoint, resolve
from .config import TrainConfig
from .data import AugmentConfig, SegDataset, TrainTransform, load_dataset
from .evaluate import evaluate
from .losses import SegLoss
from .models import build
from .sampling import BalancedSampler, EpochIndexed, class_pixels, frame_weights


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


RARE_SHARE = 0.02  # --paste-classes rare: classes under 2% of the labelled training pixels


def _pixel_shares(ds: SegDataset) -> np.ndarray:
    """Each class's share of the labelled (not ignored) pixels of the split."""
    counts = class_pixels((ds.read(i)[1] for i in range(len(ds))), ds.num_classes).sum(0)
    return counts / max(counts.sum(), 1)


def _paste_classes(spec: str, ds: SegDataset) -> tuple[int, ...]:
    if spec == "rare":
        shares = _pixel_shares(ds)
        return tuple(int(c) for c in np.flatnonzero((shares > 0) & (shares < RARE_SHARE)))
    try:
        classes = tuple(int(v) for v in spec.split(","))
    except ValueError:
        raise RoadsegError(f"--paste-classes {spec!r}: give 'rare' or comma-separated class indices") from None
    bad = [c for c in classes if not 0 <= c < ds.num_classes]
    if bad:
        raise RoadsegError(f"--paste-classes: {bad} are not class indices 0..{ds.num_classes - 1}")
    return classes


def _class_weights(spec: str, ds: SegDataset) -> torch.Tensor | None:
    if spec == "none":
        return None
    if spec == "auto":
        # ENet weighting 1/ln(1.02 + p): rare classes (pedestrians, bicyclists) count more
        return torch.tensor(1.0 / np.log(1.02 + _pixel_shares(ds)), dtype=torch.float32)
    try:
        w = [float(v) for v in spec.split(",")]
    except ValueError:
        raise RoadsegError(f"--class-weights {spec!r}: give 'none', 'auto' or {ds.num_classes} comma-separated numbers") from None
    if len(w) != ds.num_classes:
        raise RoadsegError(f"--class-weights has {len(w)} values but the dataset has {ds.num_classes} classes")
    return torch.tensor(w, dtype=torch.float32)


def _amp_dtype(device: str, enabled: bool) -> torch.dtype | None:
    """The autocast dtype, or None for FP32. CUDA: float16 with a GradScaler. CPU: bfloat16, but
    only where the CPU computes it natively (AVX512-BF16 or AMX, e.g. AMD Zen 4, Intel Sapphire
    Rapids): there oneDNN's bf16 convolutions about halve a training step (docs/TRAIN.md), while
    on older CPUs bf16 is emulated and slower than FP32. bf16 has FP32's range, so it needs no loss scaling."""
    if not enabled:
        return None
    if device.startswith("cuda"):
        return torch.float16
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return torch.bfloat16
    return None


def _lr_factor(cfg: TrainConfig, it: int, total: int) -> float:
    warm = min(cfg.warmup_iters, max(total // 10, 1))
    if cfg.schedule == "poly":
        f = (1 - min(it, total - 1) / total) ** 0.9
        return f * min(1.0, (it + 1) / warm)
    if cfg.schedule == "onecycle":
        if it < warm * 3:
            return 0.04 + 0.96 * it / (warm * 3)
        t = (it - warm * 3) / max(total - warm * 3, 1)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0))) + 1e-4
    raise RoadsegError(f"unknown schedule '{cfg.schedule}'; use poly or onecycle")


def _make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # no weight decay on BatchNorm and biases
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=False)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise RoadsegError(f"unknown optimizer '{cfg.optimizer}'; use sgd or adamw")


def resolve_device(spec: str, local_rank: int = 0, world: int = 1) -> str:
    """auto | cpu | cuda | cuda:N -> "cpu" or "cuda:N", or one clear error.

    CUDA devices always come back with an index: torch.cuda.set_device and NCCL need one, and a
    bare "cuda" made set_device raise. Under torchrun (world > 1) each process takes the GPU of
    its LOCAL_RANK, so `auto` and `cuda` mean cuda:LOCAL_RANK there and a fixed cuda:N (every rank
    on one GPU, which NCCL refuses) is an error."""
    if spec == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        spec = "cuda"
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise RoadsegError(f"--device {spec!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise RoadsegError(f"--device {spec!r}: roadseg trains on cpu or cuda")
    if dev.type == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise RoadsegError(f"--device {spec}: this PyTorch has no CUDA device; use --device cpu or install a CUDA build of torch")
    count = torch.cuda.device_count()
    if world > 1 and dev.index is not None:
        raise RoadsegError(f"--device {spec}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                           "use --device cuda (choose the GPUs with CUDA_VISIBLE_DEVICES)")  # fmt: skip
    index = dev.index if dev.index is not None else (local_rank if world > 1 else torch.cuda.current_device())
    if index >= count:
        if world > 1:
            raise RoadsegError(f"torchrun started a process with LOCAL_RANK {index} but {count} GPU(s) are visible; "
                               f"start at most {count} per machine (--nproc_per_node {count})")  # fmt: skip
        raise RoadsegError(f"--device {spec}: there are {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})")
    return f"cuda:{index}"


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_out(out: Path, cfg: TrainConfig) -> None:
    """The run folder, created, before any data is read: it must be a writable folder, must not
    hold the --init checkpoint (this run overwrites last.pt and best.pt), and may hold an earlier
    run only with --resume (continue it) or --overwrite (replace it)."""
    check_folder(out, "--out")
    if cfg.resume:
        return
    if cfg.init and cfg.init not in BUNDLED:
        init = Path(cfg.init).expanduser().resolve()
        if init in ((out / "last.pt").resolve(), (out / "best.pt").resolve()):
            raise UsageError(f"--init {cfg.init}: is in --out {cfg.out}, which this run overwrites; copy it elsewhere or choose another --out")
    if (out / "last.pt").exists() and not cfg.overwrite:
        raise RoadsegError(f"--out {cfg.out}: holds an earlier run (last.pt); add --resume to continue it, "
                           "--overwrite to replace it, or choose another --out")  # fmt: skip


def train(cfg: TrainConfig) -> Path:
    """Train `cfg.model` on `cfg.data`, writing `last.pt` every epoch, `best.pt` at each best val
    mIoU and `log.jsonl` to `cfg.out` (`roadseg train`; under torchrun, one process per rank).

    Args:
        cfg: every setting; `roadseg train --help` explains each (the fields have the flags' names).
    Returns:
        The best checkpoint's path (`last.pt` when there is no validation split).
    Raises:
        RoadsegError: a bad dataset or sample, an --out holding another run, an --init or --resume
            that does not fit, a device that is not there.
        UsageError: settings that contradict each other.
    """
    world, rank, local = _distributed()
    device = resolve_device(cfg.device, local, world)
    if device.startswith("cuda"):  # before NCCL starts, so its communicator binds this rank's GPU
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    main_proc = rank == 0
    out = Path(cfg.out).expanduser()
    if main_proc:
        _check_out(out, cfg)
    _seed_all(cfg.seed)

    if cfg.holdout_drive:  # the splits the checkpoint records are the ones used
        if cfg.val_split == "none":
            raise UsageError("--holdout-drive validates on the held-out drive; drop --val-split none")
        pool = f"{cfg.train_split}+{cfg.val_split}"
        cfg = replace(cfg, train_split=f"{pool}[^{cfg.holdout_drive}]", val_split=f"{pool}[{cfg.holdout_drive}]",
                      holdout_drive=None)  # fmt: skip
    train_ds = load_dataset(cfg.data, cfg.dataset, cfg.train_split, skip_bad=cfg.skip_bad, cache=True)
    pasted = _paste_classes(cfg.paste_classes, train_ds) if cfg.paste > 0 else ()
    if cfg.paste > 0 and (not pasted or len(train_ds) < 2):
        raise RoadsegError(f"{cfg.data}: --paste needs at least 2 training frames and one class to paste (got {pasted or 'none'}); drop --paste")
    aug = AugmentConfig(crop=tuple(cfg.crop), scale=tuple(cfg.scale), jitter=cfg.jitter, hue=cfg.hue, paste=cfg.paste,
                        paste_classes=pasted)  # type: ignore[arg-type]  # fmt: skip
    val_ds = None
    if cfg.val_split != "none":
        val_ds = load_dataset(cfg.data, cfg.dataset, cfg.val_split, skip_bad=cfg.skip_bad, cache=True)
    info = train_ds.info
    # the card's input size: given, or the frame size rounded to multiples of 32 (360x480 -> 352x480)
    imgsz = tuple(cfg.imgsz) if cfg.imgsz else tuple(max(32, round(s / 32) * 32) for s in (val_ds or train_ds).read(0)[1].shape)
    card = ModelCard(
        name=f"{cfg.model}_{info.name}", arch=cfg.model, classes=info.classes, palette=info.palette,
        ignore_index=info.ignore_index, input_size=imgsz, dataset=info.name,  # type: ignore[arg-type]
    )  # fmt: skip
    train_ds.transform = TrainTransform(aug, card.mean, card.std, info.ignore_index, cfg.seed, pool=train_ds)
    if main_proc and pasted:
        print(f"class paste (p={cfg.paste}): {', '.join(info.classes[c] for c in pasted)}")
    if main_proc and (train_ds.skipped or (val_ds and val_ds.skipped)):
        n = len(train_ds.skipped) + (len(val_ds.skipped) if val_ds else 0)
        print(f"skipped {n} bad samples (--skip-bad); first: {(train_ds.skipped or val_ds.skipped)[0]}")  # type: ignore[union-attr]

    try:
        model = build(cfg.model, num_classes=len(info.classes), **cfg.model_kwargs).to(device)
    except TypeError as e:
        raise RoadsegError(f"--model-kwargs {cfg.model_kwargs}: not options of '{cfg.model}' ({e})") from None
    except (ValueError, RuntimeError) as e:  # e.g. a negative width reaches a layer's constructor
        raise RoadsegError(f"--model-kwargs {cfg.model_kwargs}: not valid for '{cfg.model}' ({e})") from None
    if world > 1 and device.startswith("cuda"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.init and not cfg.resume:
        _load_init(model, cfg, info.classes)
    elif cfg.init and main_proc:
        print(f"--init {cfg.init} is not used: --resume continues from the run's own last.pt")
    opt = _make_optimizer(cfg, model)
    crit = SegLoss(info.ignore_index, _class_weights(cfg.class_weights, train_ds), cfg.ohem, cfg.aux_weight, cfg.lovasz).to(device)
    amp_dtype = _amp_dtype(device, cfg.amp)
    use_scaler = amp_dtype is torch.float16  # loss scaling: CUDA float16 only (bf16 needs none)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    if main_proc and amp_dtype is not None:
        print(f"mixed precision: {str(amp_dtype).removeprefix('torch.')} autocast on {device} (--no-amp trains in FP32)")

    start_epoch, best, step, ema_state = 0, -1.0, 0, None
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "log.jsonl"
    if main_proc and not cfg.resume:  # a fresh run: do not mix two runs in one log, nor (--overwrite) keep their weights
        for stale in (log_path, best_path, last_path) if cfg.overwrite else (log_path,):
            stale.unlink(missing_ok=True)
    if cfg.resume:
        if not last_path.is_file():
            raise RoadsegError(f"{last_path}: nothing to resume; run without --resume or point --out at the earlier run")
        ck = load_raw(last_path)
        if ck["model"]["name"] != cfg.model:
            raise RoadsegError(f"{last_path}: was trained as '{ck['model']['name']}', not '{cfg.model}'; pass --model {ck['model']['name']}")
        if "train_state" not in ck:
            raise RoadsegError(f"{last_path}: has no training state (a released or best.pt copy); resume needs the last.pt a run wrote")
        st = ck["train_state"]
        raw = st.get("model", ck["state_dict"])  # with --ema the checkpoint's weights are the average
        check_state_dict(model, raw, str(last_path))
        model.load_state_dict(raw)
        ema_state = st.get("ema")  # absent when --ema was added on resume: the average starts here
        opt.load_state_dict(st["optimizer"])
        if "scaler" in st and use_scaler:
            scaler.load_state_dict(st["scaler"])
        start_epoch, best, step = int(st["epoch"]) + 1, float(st["best_miou"]), int(st["step"])
        torch.set_rng_state(st["torch_rng"])
        if main_proc:
            print(f"resuming {last_path} at epoch {start_epoch + 1}/{cfg.epochs} (best val mIoU {best:.4f})")
            changed = _changed_settings(st.get("config", {}), cfg)
            if changed:
                print(f"--resume: this command changes the run's settings ({'; '.join(changed)}); the new values apply")

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True) if cfg.ema else None
    if ema is not None and ema_state is not None:
        ema.load_state_dict(ema_state)
    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.startswith("cuda") else None)
    if cfg.balance > 0:
        pixels = class_pixels((train_ds.read(i)[1] for i in range(len(train_ds))), train_ds.num_classes)
        weights = frame_weights(pixels, cfg.balance)
        sampler: Sampler = BalancedSampler(weights, cfg.seed, world, rank)
        if main_proc:
            top = np.argsort(weights)[::-1][:3]
            print(f"rare-class sampling (T={cfg.balance}): frames drawn {weights.min() * len(weights):.2f} to "
                  f"{weights.max() * len(weights):.1f} times an epoch on average; most: "
                  f"{', '.join(train_ds.samples[i].image.stem for i in top)}")  # fmt: skip
    elif world > 1:
        sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    else:
        sampler = RandomSampler(train_ds, generator=torch.Generator().manual_seed(cfg.seed))
    # every index reaches the dataset with its epoch (EpochIndexed), so loader workers stay alive
    # across epochs (no start cost per epoch) and still augment each epoch anew: a worker's own copy
    # of the transform keeps the epoch it started with. The loader draws its workers' base seed from its own generator, not the global RNG: each new iterator draws one,
    # and persistent workers make one iterator for the run, so the global stream (and the weights)
    # would depend on --workers
    indexed = EpochIndexed(sampler)
    loader = DataLoader(train_ds, batch_size=cfg.batch, sampler=indexed, num_workers=cfg.workers, drop_last=True,
                        pin_memory=device.startswith("cuda"), persistent_workers=cfg.workers > 0,
                        generator=torch.Generator().manual_seed(cfg.seed))  # fmt: skip
    iters = len(loader)
    if iters == 0:
        raise RoadsegError(f"{cfg.data}: {len(train_ds)} training samples are fewer than one batch of {cfg.batch}; lower --batch")
    total = cfg.epochs * iters
    base_lrs = [cfg.lr for _ in opt.param_groups]  # not the loaded groups: those hold the last scaled lr

    end_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, start_epoch + cfg.stop_after)
    started, longest = time.time(), 0.0
    for epoch in range(start_epoch, end_epoch):
        if cfg.time_limit is not None and epoch > start_epoch and time.time() - started + longest > cfg.time_limit:
            if main_proc:
                print(f"--time-limit {cfg.time_limit:g} s: stopping after epoch {epoch}/{cfg.epochs} (the next would pass "
                      f"it); continue with --resume", flush=True)  # fmt: skip
            break
        t0 = time.time()
        train_ds.transform.set_epoch(epoch)  # type: ignore[union-attr]
        indexed.epoch = epoch
        if isinstance(sampler, (DistributedSampler, BalancedSampler)):
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(cfg.seed * 100003 + epoch)  # type: ignore[union-attr]
        ddp_model.train()
        running, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (main_proc and cfg.progress), leave=False)
        for x, y in bar:
            f = _lr_factor(cfg, step, total)
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * f
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = crit(ddp_model(x), y)
            if not torch.isfinite(loss):
                raise RoadsegError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); lower --lr or resume from {last_path}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            running += loss.item() * x.shape[0]
            seen += x.shape[0]
            bar.set_postfix(loss=f"{running / seen:.4f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
        bar.close()
        record = {"epoch": epoch + 1, "loss": running / max(seen, 1), "lr": opt.param_groups[0]["lr"], "time_s": 0.0}
        if main_proc:
            kept = ema.module if ema is not None else model  # what is validated and saved
            metrics: dict = {}
            if val_ds is not None and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                cm = evaluate(kept, val_ds, card, device, progress=cfg.progress)
                metrics = {"val_miou": cm.miou(), "val_pixel_accuracy": cm.pixel_accuracy()}
                record.update(metrics)
            record["time_s"] = round(time.time() - t0, 2)
            state = {"optimizer": opt.state_dict(), "epoch": epoch, "best_miou": max(best, metrics.get("val_miou", -1.0)),
                     "step": step, "torch_rng": torch.get_rng_state(), "config": _jsonable(asdict(cfg))}  # fmt: skip
            if use_scaler:
                state["scaler"] = scaler.state_dict()
            if ema is not None:
                state["ema"] = ema.state_dict()
                state["model"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            card.metrics = {k: round(v, 5) for k, v in metrics.items()}
            ckpt = make_checkpoint(kept, cfg.model, cfg.model_kwargs, card, metrics | {"epoch": epoch + 1}, state)
            atomic_save(ckpt, last_path)
            if metrics.get("val_miou", -1.0) > best:
                best = metrics["val_miou"]
                atomic_save({k: v for k, v in ckpt.items() if k != "train_state"}, best_path)
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            shown = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
            print(shown, flush=True)
        longest = max(longest, time.time() - t0)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return best_path if best_path.is_file() else last_path


# settings that do not change what a resumed run computes (or only where it writes and shows)
_RESUME_NEUTRAL = {"resume", "stop_after", "time_limit", "progress", "init", "workers", "device", "out", "data", "overwrite"}


def _changed_settings(saved: dict, cfg: TrainConfig) -> list[str]:
    """`name old -> new` for each setting a --resume command changes against the run's saved config:
    every setting comes from the command line, so a flag left out silently takes its default."""
    now = _jsonable(asdict(cfg))
    return [f"{k} {saved[k]} -> {now[k]}" for k in now if k in saved and k not in _RESUME_NEUTRAL and saved[k] != now[k]]


def _load_init(model: nn.Module, cfg: TrainConfig, classes: list[str]) -> None:
    """--init: the weights of another checkpoint of the same architecture and classes. The model
    may have blocks the checkpoint lacks (e.g. ddrnet23s grown with `detail`): they keep their
    initialisation and are named; weights the model has no place for, or of another shape, fail."""
    ck = load_raw(cfg.init)  # type: ignore[arg-type]
    src = str(resolve(cfg.init))  # type: ignore[arg-type]
    if ck["model"].get("name") != cfg.model:
        raise RoadsegError(f"{src}: --init checkpoint is a '{ck['model'].get('name')}', not a '{cfg.model}'; pass --model {ck['model'].get('name')}")
    theirs = list(ck["card"].get("classes", []))
    if theirs != list(classes):
        raise RoadsegError(f"{src}: --init checkpoint predicts {len(theirs)} classes ({', '.join(theirs[:3])}, ...), the dataset "
                           f"has {len(classes)} ({', '.join(classes[:3])}, ...); --init needs the same classes in the same order")  # fmt: skip
    fresh = check_state_dict(model, ck["state_dict"], src, allow_missing=True)
    if len(fresh) == len(model.state_dict()):
        raise RoadsegError(f"{src}: --init checkpoint shares no weights with this '{cfg.model}'; check --model-kwargs")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}, strict=False)
    if fresh:
        blocks = sorted({k.split(".")[0] for k in fresh})
        print(f"--init {src}: {len(fresh)} tensors of blocks it lacks start fresh ({', '.join(blocks[:4])}{', ...' if len(blocks) > 4 else ''})")


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=list))
