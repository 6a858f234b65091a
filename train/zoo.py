"""`roadseg models`: every registered model with its size and cost, and the bundled checkpoints."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .checkpoint import BUNDLED, WEIGHTS_DIR
from .models import DESCRIPTIONS, MODELS, build


def gflops(model: torch.nn.Module, size: tuple[int, int]) -> float:
    """Multiply-accumulates x 2 / 1e9 of one forward pass at batch 1 (torch's FLOP counter)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, *size))
    return fc.get_total_flops() / 1e9


def describe(size: tuple[int, int], num_classes: int = 11) -> str:
    rows = [f"{'model':<14} {'params':>9} {'GFLOPs':>8}  description (GFLOPs at {size[0]}x{size[1]})"]
    for name in MODELS:
        m = build(name, num_classes=num_classes)
        params = sum(p.numel() for p in m.parameters())
        rows.append(f"{name:<14} {params / 1e6:>8.2f}M {gflops(m, size):>8.2f}  {DESCRIPTIONS.get(name, '')}")
    rows.append("")
    rows.append("bundled checkpoints:")
    for alias, fname in BUNDLED.items():
        p = WEIGHTS_DIR / fname
        state = f"{p.stat().st_size / 1e6:.1f} MB" if p.is_file() else "not installed"
        rows.append(f"  {alias:<18} {fname} ({state})")
    return "\n".join(rows)
