"""Proof that an exported graph computes what the PyTorch model computes, and accuracy gates that
refuse a reduced-precision variant losing more than its budget.

Every check runs the graph in ONNX Runtime on the CPU, so it is measurable on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from roadseg.runtime.card import ModelCard
from roadseg.runtime.metrics import ConfusionMatrix, label_agreement

MIN_AGREEMENT = 0.999  # FP32 graph vs PyTorch, label maps
MAX_LOGIT_DIFF = 1e-4  # FP32 raw graph vs PyTorch, logits


def session(model: onnx.ModelProto, threads: int = 0) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_batches(sess: ort.InferenceSession, frames: list[np.ndarray] | np.ndarray, batch: int | None = 1) -> np.ndarray:
    """Run frames through a session in batches of the graph's batch size."""
    inp = sess.get_inputs()[0]
    b = inp.shape[0] if isinstance(inp.shape[0], int) else (batch or 1)
    outs = []
    for i in range(0, len(frames), b):
        chunk = np.stack(list(frames[i : i + b]))
        pad = b - len(chunk)
        if pad:  # a fixed batch size: pad the last chunk, drop the padding after
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
        outs.append(sess.run(None, {inp.name: chunk})[0][: b - pad])
    return np.concatenate(outs)


@dataclass
class Parity:
    agreement: float
    max_abs_diff: float | None = None
    frames: int = 0

    def ok(self) -> bool:
        return self.agreement >= MIN_AGREEMENT and (self.max_abs_diff is None or self.max_abs_diff < MAX_LOGIT_DIFF)


@torch.no_grad()
def parity(module: nn.Module, model: onnx.ModelProto, inputs: np.ndarray, raw: bool) -> Parity:
    """Compare the traced torch module with the ONNX graph on `inputs` (frames, or NCHW floats when raw)."""
    sess = session(model)
    ref = module(torch.from_numpy(inputs)).numpy()
    got = run_batches(sess, list(inputs), len(inputs))
    if raw:
        return Parity(label_agreement(ref.argmax(1), got.argmax(1)), float(np.abs(ref - got).max()), len(inputs))
    return Parity(label_agreement(ref, got), None, len(inputs))


@dataclass
class GateReport:
    precision: str
    frames: int
    labelled: bool
    fp32_miou: float | None = None
    miou: float | None = None
    drop_points: float | None = None
    agreement_with_fp32: float = 0.0
    max_drop: float = 0.0
    passed: bool = False
    per_class_iou: dict = field(default_factory=dict)

    def line(self) -> str:
        if self.labelled:
            return (f"{self.precision}: mIoU {self.miou:.4f} vs fp32 {self.fp32_miou:.4f} "
                    f"(drop {self.drop_points:.2f} points, budget {self.max_drop}), agreement {self.agreement_with_fp32:.4f}")  # fmt: skip
        return f"{self.precision}: label agreement with fp32 {self.agreement_with_fp32:.4f} on {self.frames} frames (no labels)"


def gate(card: ModelCard, fp32: onnx.ModelProto, variant: onnx.ModelProto, precision: str, frames: list[np.ndarray],
         masks: list[np.ndarray] | None, max_drop: float, min_agreement: float, raw: bool = False) -> GateReport:  # fmt: skip
    """mIoU of the variant and of FP32 on labelled frames (drop in points = 100 x mIoU difference),
    or label agreement with FP32 when there are no labels. Raw graphs are compared on the ArgMax
    of their logits, at the model size (masks resized with nearest neighbour)."""
    ref = run_batches(session(fp32), frames)
    got = run_batches(session(variant), frames)
    if raw:
        import cv2

        ref, got = ref.argmax(1), got.argmax(1)
        if masks is not None:
            h, w = ref.shape[1:]
            masks = [cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in masks]
    agree = label_agreement(ref, got)
    rep = GateReport(precision, len(frames), masks is not None, agreement_with_fp32=agree, max_drop=max_drop)
    if masks is not None:
        cm_ref, cm = ConfusionMatrix(card.num_classes, card.ignore_index), ConfusionMatrix(card.num_classes, card.ignore_index)
        for r, g, m in zip(ref, got, masks):
            cm_ref.update(r, m)
            cm.update(g, m)
        rep.fp32_miou, rep.miou = cm_ref.miou(), cm.miou()
        rep.drop_points = 100.0 * (rep.fp32_miou - rep.miou)
        rep.per_class_iou = cm.summary(card.classes)["iou"]
        rep.passed = rep.drop_points <= max_drop
    else:
        rep.passed = agree >= min_agreement
    return rep
