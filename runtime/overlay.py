"""Overlay drawing: the class-colour mask blended over the frame, a class legend and a small HUD.

Colours come from the model card's palette (RGB, converted here to OpenCV's BGR); label values
outside the palette (the ignore index) are drawn black. The legend is rendered once per frame size
and reused.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from roadseg.core.card import ModelCard

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def palette_lut(palette_rgb: list[list[int]]) -> np.ndarray:
    """[256, 3] uint8 BGR lookup table: label -> colour (black beyond the palette)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    pal = np.asarray(palette_rgb, dtype=np.uint8).reshape(-1, 3)[:256]
    lut[: len(pal)] = pal[:, ::-1]
    return lut


def colorize(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """uint8 [H, W] labels -> uint8 [H, W, 3] BGR colour mask. OpenCV's applyColorMap with the
    palette as a user colour map: the same result as numpy's lut[labels], an order of magnitude
    faster (docs/RUN.md)."""
    return cv2.applyColorMap(np.ascontiguousarray(labels, dtype=np.uint8), lut.reshape(256, 1, 3))


def blend(frame: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * colour + (1 - alpha) * frame, alpha in [0, 1]."""
    if alpha <= 0.0:
        return frame.copy()
    if alpha >= 1.0:
        return color.copy()
    return cv2.addWeighted(color, alpha, frame, 1.0 - alpha, 0.0)


def _text_scale(height: int) -> tuple[float, int]:
    scale = max(0.3, min(0.8, height / 900.0))
    return scale, 1 if scale < 0.6 else 2


class Overlay:
    """`overlay(frame, labels, fps=, latency_ms=)` -> a new BGR image: mask blended over the frame,
    the legend on the right edge (when the frame is tall enough to fit it) and the HUD top left."""

    def __init__(self, card: ModelCard, alpha: float = 0.5, legend: bool = True, hud: bool = True):
        if not 0.0 <= alpha <= 1.0:
            from roadseg.core.errors import UsageError

            raise UsageError(f"--alpha must be between 0 and 1, not {alpha}")
        self.classes = list(card.classes)
        self.lut = palette_lut(card.palette)
        self.alpha = float(alpha)
        self.legend, self.hud = legend, hud
        self._legend_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, int, int] | None] = {}

    def __call__(
        self, frame: np.ndarray, labels: np.ndarray, fps: float | None = None, latency_ms: float | None = None
    ) -> np.ndarray:
        if labels.shape != frame.shape[:2]:
            labels = cv2.resize(labels, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
        out = blend(frame, colorize(labels, self.lut), self.alpha)
        if self.legend:
            self._draw_legend(out)
        if self.hud and (fps is not None or latency_ms is not None):
            draw_hud(out, fps, latency_ms)
        return out

    def _legend_patch(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray, int, int] | None:
        key = (h, w)
        if key in self._legend_cache:
            return self._legend_cache[key]
        n = len(self.classes)
        scale, thick = _text_scale(h)
        (tw, th), base = cv2.getTextSize("M", _FONT, scale, thick)
        row = th + base + 4
        box = th + 2
        width = max(cv2.getTextSize(c, _FONT, scale, thick)[0][0] for c in self.classes) + box + 12
        height = row * n + 6
        patch = None
        if height <= h - 4 and width <= w // 3:
            img = np.zeros((height, width, 3), dtype=np.uint8)
            for i, name in enumerate(self.classes):
                y = 3 + i * row
                color = tuple(int(c) for c in self.lut[i])
                cv2.rectangle(img, (4, y + 1), (4 + box, y + 1 + box), color, -1)
                cv2.putText(img, name, (box + 9, y + th + 1), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
            alpha = np.full((height, width, 1), 0.35, dtype=np.float32)  # translucent dark panel
            alpha[img.any(axis=2)] = 1.0
            patch = (img, alpha, w - width - 2, 2)
        self._legend_cache[key] = patch
        return patch

    def _draw_legend(self, out: np.ndarray) -> None:
        patch = self._legend_patch(*out.shape[:2])
        if patch is None:
            return
        img, alpha, x, y = patch
        roi = out[y : y + img.shape[0], x : x + img.shape[1]]
        roi[:] = (img * alpha + roi * (1.0 - alpha)).astype(np.uint8)


def draw_hud(img: np.ndarray, fps: float | None, latency_ms: float | None) -> None:
    """'12.3 FPS  45 ms' on a dark box in the top-left corner, drawn in place."""
    parts = []
    if fps is not None and not math.isnan(fps):
        parts.append(f"{fps:.1f} FPS")
    if latency_ms is not None and not math.isnan(latency_ms):
        parts.append(f"{latency_ms:.0f} ms")
    if not parts:
        return
    text = "  ".join(parts)
    scale, thick = _text_scale(img.shape[0])
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    x0, y0 = 2, 2
    x1, y1 = min(img.shape[1] - 1, x0 + tw + 8), min(img.shape[0] - 1, y0 + th + base + 6)
    roi = img[y0:y1, x0:x1]
    roi[:] = roi // 3
    cv2.putText(img, text, (x0 + 4, y0 + th + 3), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
