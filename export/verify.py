"""Proof that an exported graph computes what the PyTorch model computes, and accuracy gates that
refuse a reduced-precision variant losing more than its budget.

Every check runs the graph in ONNX Runtime on the CPU, so it is measurable on any machine. INT8
graphs are judged in exact integer arithmetic (ONNX Runtime's `session.x64quantprecision`), which is
what TensorRT, VNNI CPUs and ARM CPUs compute: the verdict does not depend on the CPU that exports
(see roadseg.runtime.int8). This CPU's native kernels are scored too, and a difference is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort

from roadseg.core.card import ModelCard
from roadseg.core.metrics import ConfusionMatrix, label_agreement
from roadseg.runtime.int8 import EXACT_OPTION

MIN_AGREEMENT = 0.999  # FP32 graph vs PyTorch, label maps
MAX_LOGIT_DIFF = 1e-4  # FP32 raw graph vs PyTorch, logits


def session(model: onnx.ModelProto, threads: int = 0, exact: bool = False) -> ort.InferenceSession:
    """A CPU session; `exact`: integer products added exactly on every x86 CPU (slower)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if exact:
        so.add_session_config_entry(*EXACT_OPTION)
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


def parity(module, model: onnx.ModelProto, inputs: np.ndarray, raw: bool) -> Parity:
    """Compare the traced torch module with the ONNX graph on `inputs` (frames, or NCHW floats when
    raw). PyTorch is imported here only: the gates below need none."""
    import torch

    sess = session(model)
    with torch.no_grad():
        ref = module(torch.from_numpy(inputs)).numpy()
    got = run_batches(sess, list(inputs), len(inputs))
    if raw:
        return Parity(label_agreement(ref.argmax(1), got.argmax(1)), float(np.abs(ref - got).max()), len(inputs))
    return Parity(label_agreement(ref, got), None, len(inputs))


@dataclass
class GateReport:
    """A variant against FP32. `arithmetic`: how the variant was scored ("exact" for INT8, the
    verdict's basis); `native_*`: the same INT8 graph on this CPU's default kernels."""

    precision: str
    frames: int
    labelled: bool
    fp32_miou: float | None = None
    miou: float | None = None
    drop_points: float | None = None
    agreement_with_fp32: float = 0.0
    max_drop: float = 0.0
    min_agreement: float = 0.0
    passed: bool = False
    failed: str | None = None  # the criterion that refused it, with the flag that sets it
    arithmetic: str = "native"
    native_agreement: float | None = None  # labels of native kernels vs exact arithmetic
    native_miou: float | None = None
    per_class_iou: dict = field(default_factory=dict)

    def line(self) -> str:
        how = " (exact integer arithmetic)" if self.arithmetic == "exact" else ""
        if self.labelled:
            return (f"{self.precision}{how}: mIoU {self.miou:.4f} vs fp32 {self.fp32_miou:.4f} "
                    f"(drop {self.drop_points:.2f} points, budget {self.max_drop}), agreement {self.agreement_with_fp32:.4f}")  # fmt: skip
        return f"{self.precision}{how}: label agreement with fp32 {self.agreement_with_fp32:.4f} on {self.frames} frames (no labels)"

    def native_line(self) -> str | None:
        """One line when this CPU's native kernels label the graph differently from exact arithmetic."""
        if self.native_agreement is None or self.native_agreement >= 1.0:
            return None
        score = f", mIoU {self.native_miou:.4f} ({100 * (self.miou - self.native_miou):+.2f} points from exact)" if self.labelled else ""  # type: ignore[operator]
        return (f"this CPU's native INT8 kernels differ from exact arithmetic on {100 * (1 - self.native_agreement):.2f}% "
                f"of pixels{score}; roadseg runs this graph exactly on such CPUs")  # fmt: skip


def _scores(card: ModelCard, labels: np.ndarray, masks: list[np.ndarray]) -> ConfusionMatrix:
    cm = ConfusionMatrix(card.num_classes, card.ignore_index)
    for lab, m in zip(labels, masks):
        cm.update(lab, m)
    return cm


def gate(card: ModelCard, fp32: onnx.ModelProto, variant: onnx.ModelProto, precision: str, frames: list[np.ndarray],
         masks: list[np.ndarray] | None, max_drop: float, min_agreement: float, raw: bool = False) -> GateReport:  # fmt: skip
    """mIoU of the variant and of FP32 on labelled frames (drop in points = 100 x mIoU difference),
    or label agreement with FP32 when there are no labels. INT8 variants are scored in exact
    integer arithmetic and, for the report, on this CPU's native kernels too. Raw graphs are
    compared on the ArgMax of their logits, at the model size (masks resized with nearest neighbour)."""
    int8 = precision == "int8"
    ref = run_batches(session(fp32), frames)
    got = run_batches(session(variant, exact=int8), frames)
    native = run_batches(session(variant), frames) if int8 else None
    if raw:
        import cv2

        ref, got = ref.argmax(1), got.argmax(1)
        native = native.argmax(1) if native is not None else None
        if masks is not None:
            h, w = ref.shape[1:]
            masks = [cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in masks]
    agree = label_agreement(ref, got)
    rep = GateReport(precision, len(frames), masks is not None, agreement_with_fp32=agree, max_drop=max_drop,
                     min_agreement=min_agreement, arithmetic="exact" if int8 else "native")  # fmt: skip
    if native is not None:
        rep.native_agreement = label_agreement(got, native)
    if masks is not None:
        cm_ref, cm = _scores(card, ref, masks), _scores(card, got, masks)
        rep.fp32_miou, rep.miou = cm_ref.miou(), cm.miou()
        rep.drop_points = 100.0 * (rep.fp32_miou - rep.miou)
        rep.per_class_iou = cm.summary(card.classes)["iou"]
        if native is not None:
            rep.native_miou = _scores(card, native, masks).miou()
        if rep.drop_points > max_drop:
            rep.failed = f"mIoU drop {rep.drop_points:.2f} points > --max-drop {max_drop}"
    elif agree < min_agreement:
        rep.failed = f"label agreement with fp32 {agree:.4f} < --min-agreement {min_agreement}"
    rep.passed = rep.failed is None
    return rep
