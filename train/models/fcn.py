"""FCN-8s (Long et al. 2015, "Fully Convolutional Networks for Semantic Segmentation") over a small
ResNet-like backbone.

The baseline every other model here is measured against: class scores at strides 32, 16 and 8,
each upsampled and added to the next finer one, then upsampled to the input. The original learns
its upsampling with transposed convolutions; here it is bilinear to the exact size of the finer
map, which is what those layers were initialised to, lets any input size through (360x480 is not a
multiple of 32), and matches the resize that the exported graph does. The skip score layers start
at zero, as in the paper, so training begins as FCN-32s and learns to use the finer strides.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import conv_bn_relu, make_stage, resize, upsample_to


class FCN(nn.Module):
    """FCN-8s. `width` is the stride-4 channel count, doubled at each later stride (1/8 .. 1/32)."""

    def __init__(
        self,
        num_classes: int = 11,
        width: int = 32,
        layers: tuple[int, int, int, int] = (1, 2, 2, 2),
        dropout: float = 0.1,
    ):
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn_relu(3, w, 3, 2), conv_bn_relu(w, w, 3, 2))  # 1/4
        self.layer1 = make_stage(w, w, layers[0])
        self.layer2 = make_stage(w, 2 * w, layers[1], 2)  # 1/8
        self.layer3 = make_stage(2 * w, 4 * w, layers[2], 2)  # 1/16
        self.layer4 = make_stage(4 * w, 8 * w, layers[3], 2)  # 1/32
        self.fc = nn.Sequential(conv_bn_relu(8 * w, 8 * w, 3), nn.Dropout2d(dropout) if dropout > 0 else nn.Identity())
        self.score32 = nn.Conv2d(8 * w, num_classes, 1)
        self.score16 = nn.Conv2d(4 * w, num_classes, 1)
        self.score8 = nn.Conv2d(2 * w, num_classes, 1)
        for score in (self.score16, self.score8):
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)

    def forward(self, x: torch.Tensor, size=None) -> torch.Tensor:
        size = x.shape[-2:] if size is None else size
        f8 = self.layer2(self.layer1(self.stem(x)))
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        s = upsample_to(self.score32(self.fc(f32)), f16) + self.score16(f16)
        s = upsample_to(s, f8) + self.score8(f8)
        return resize(s, size)
