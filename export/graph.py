"""The exported graph: pre- and post-processing wrapped around the network, so whatever device
runs the graph also does the resizing, normalisation and ArgMax (docs/ARCHITECTURE.md, "Pre- and post-processing live in the graph").

    frames uint8 [N,H,W,3] BGR
      -> Cast float -> NCHW -> bilinear resize to the card's input size and colour order + (x/255 - mean)/std
      (one 1x1 convolution) -> network, its logits upsampled once to H x W (bilinear, align_corners=False)
      -> ArgMax -> labels uint8 [N,H,W]

Pre and post ops live in submodules `pre` and `post`, so their ONNX node names start with `/pre/`
and `/post/`: quantisation and FP16 conversion leave those nodes in FP32 by name. The logits'
upsampling to the frame size is the network's last node (`/net/`): FP16 in an FP16 graph, FP32 in an
INT8 one (precision.py keeps the logits out of quantisation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from roadseg.core.card import ModelCard
from roadseg.train.models.blocks import resize

PRE_PREFIX, POST_PREFIX = "/pre/", "/post/"


class Preprocess(nn.Module):
    """Cast, NCHW, resize to the card's input size, and colour order + mean/std as one 1x1
    convolution (weight [3,3,1,1]: a channel permutation scaled by 1/(255 std), bias -mean/std):
    one node where separate Slice, Mul and Add nodes each made a pass over the frame
    (docs/EXPORT.md has what it saved).

    The normalisation runs at the smaller of the frame and the model input: an affine map per
    channel commutes with bilinear resizing (its weights sum to 1), so the order changes only
    float rounding, and 480x360 frames going into a 512x384 model are normalised at 0.88x the
    pixels. With dynamic frame sizes it runs after the resize, whose cost is bounded."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, card: ModelCard, frame_size: tuple[int, int] | None):
        super().__init__()
        self.size = tuple(card.input_size)
        # resize is skipped only when the frame size is fixed and already the model's size
        self.resize = frame_size is None or tuple(frame_size) != self.size
        self.normalise_first = frame_size is not None and frame_size[0] * frame_size[1] < self.size[0] * self.size[1]
        # frames arrive BGR, as OpenCV decodes them: output channel o reads input channel src[o]
        src = (2, 1, 0) if card.color_order == "RGB" else (0, 1, 2)
        weight = torch.zeros(3, 3, 1, 1)
        for o, (c, s) in enumerate(zip(src, card.std)):
            weight[o, c] = 1.0 / (255.0 * s)
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", torch.tensor([-m / s for m, s in zip(card.mean, card.std)]), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float().permute(0, 3, 1, 2)
        if not self.resize:
            return F.conv2d(x, self.weight, self.bias)
        if self.normalise_first:
            return resize(F.conv2d(x, self.weight, self.bias), self.size)
        return F.conv2d(resize(x, self.size), self.weight, self.bias)


class Postprocess(nn.Module):
    """Logits (already at the frame size: the network upsamples them once, see FramesToLabels)
    -> ArgMax -> uint8 labels."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(1).to(torch.uint8)


class FramesToLabels(nn.Module):
    """uint8 BGR frames -> uint8 class maps at the frame size; the whole deployed computation.
    The network is asked for its logits at the frame size (`net(x, size)`, the zoo's contract), so
    they are upsampled once, straight from the head's stride, never to the model input first."""

    def __init__(self, net: nn.Module, card: ModelCard, frame_size: tuple[int, int] | None):
        super().__init__()
        self.pre = Preprocess(card, frame_size)
        self.net = net
        self.post = Postprocess()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.pre(frames)
        logits = self.net(x, frames.shape[1:3]) if self.pre.resize else self.net(x)
        return self.post(logits)
