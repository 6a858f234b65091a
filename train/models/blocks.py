"""Building blocks shared by the model zoo.

Every block here exports to ONNX at any input size: pooling uses fixed kernels or global pooling,
never `adaptive_avg_pool2d` to a size that may not divide the input, and upsampling names the exact
target size (bilinear, align_corners=False, as the exported graph does it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of `x` to `size` (H, W) (align_corners=False, as in export)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of `x` to the spatial size of `ref`."""
    return resize(x, ref.shape[-2:])


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions): dense 3x3 convs quantise well to INT8."""

    def __init__(self, cin: int, cout: int, stride: int = 1, last_relu: bool = True):
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout, 3, stride)
        self.conv2 = conv_bn_relu(cout, cout, 3, 1, relu=False)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = conv_bn_relu(cin, cout, 1, stride, relu=False)
        self.last_relu = last_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        out = self.conv2(self.conv1(x)) + idt
        return F.relu(out) if self.last_relu else out


def make_stage(cin: int, cout: int, blocks: int, stride: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [BasicBlock(cin, cout, stride)]
    layers += [BasicBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 (Fast-SCNN's 'DSConv')."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.dw = conv_bn_relu(cin, cin, 3, stride, groups=cin)
        self.pw = conv_bn_relu(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class SegHead(nn.Module):
    """3x3 conv + 1x1 classifier; the logits stay at the feature stride (upsampled by the caller)."""

    def __init__(self, cin: int, mid: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.conv = conv_bn_relu(cin, mid, 3)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.cls = nn.Conv2d(mid, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls(self.drop(self.conv(x)))
