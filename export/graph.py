"""The exported graph: pre- and post-processing wrapped around the network, so whatever device
runs the graph also does the resizing, normalisation and ArgMax (DESIGN: pre/post live in the graph).

    frames uint8 [N,H,W,3] BGR
      -> Cast float -> colour order of the card -> NCHW -> bilinear resize to the card's input size
      -> (x/255 - mean)/std -> network -> bilinear resize of logits to H x W (align_corners=False)
      -> ArgMax -> labels uint8 [N,H,W]

Pre and post ops live in submodules `pre` and `post`, so their ONNX node names start with `/pre/`
and `/post/`: quantisation and FP16 conversion leave those nodes in FP32 by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from roadseg.runtime.card import ModelCard

INPUT_NAME, OUTPUT_NAME = "frames", "labels"
RAW_INPUT_NAME, RAW_OUTPUT_NAME = "input", "logits"
PRE_PREFIX, POST_PREFIX = "/pre/", "/post/"


class Preprocess(nn.Module):
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, card: ModelCard, frame_size: tuple[int, int] | None):
        super().__init__()
        self.size = tuple(card.input_size)
        # resize is skipped only when the frame size is fixed and already the model's size
        self.resize = frame_size is None or tuple(frame_size) != self.size
        self.flip = card.color_order == "RGB"  # frames arrive BGR, as OpenCV decodes them
        mean = torch.tensor(card.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(card.std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x/255 - mean)/std == x*scale + shift: one Mul and one Add in the graph
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float()
        if self.flip:
            x = x.flip(-1)
        x = x.permute(0, 3, 1, 2)
        if self.resize:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x * self.scale + self.shift


class Postprocess(nn.Module):
    def __init__(self, card: ModelCard, frame_size: tuple[int, int] | None):
        super().__init__()
        # logits come at the model's input size; resize unless the fixed frame size is the same
        self.resize = frame_size is None or tuple(frame_size) != tuple(card.input_size)

    def forward(self, logits: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        if self.resize:
            logits = F.interpolate(logits, size=frames.shape[1:3], mode="bilinear", align_corners=False)
        return logits.argmax(1).to(torch.uint8)


class FramesToLabels(nn.Module):
    """uint8 BGR frames -> uint8 class maps at the frame size; the whole deployed computation."""

    def __init__(self, net: nn.Module, card: ModelCard, frame_size: tuple[int, int] | None):
        super().__init__()
        self.pre = Preprocess(card, frame_size)
        self.net = net
        self.post = Postprocess(card, frame_size)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.post(self.net(self.pre(frames)), frames)
