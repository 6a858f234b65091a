"""Fast-SCNN (Poudel et al. 2019, "Fast-SCNN: Fast Semantic Segmentation Network"): a shared
learning-to-downsample stem to 1/8, a global feature extractor of inverted-residual bottlenecks down
to 1/32 with pyramid pooling, a feature-fusion module that adds the two, and a light classifier.

About 1.1M parameters and mostly depthwise convolutions: the fastest model here on CPUs and small
GPUs, though depthwise layers gain little from INT8.

The paper's pyramid pooling pools to fixed grids of 1, 2, 3 and 6 bins (`adaptive_avg_pool2d`).
ONNX has no adaptive pooling: the exporter turns it into a fixed-kernel pool, which it can only do
when the bins divide the feature map, and fails otherwise (360x480 gives 12x15 at 1/32, and 15 is
divisible by neither 2 nor 6). Here the pyramid is a global mean plus average pools with fixed kernels and
strides (5/2, 9/4, 17/8, as in DDRNet's DAPPM), which export at every size. They also keep each
branch's receptive field the same between training crops and full frames, where fixed bins would
not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DepthwiseSeparable, SegHead, conv_bn_relu, resize, upsample_to


class InvertedResidual(nn.Module):
    """MobileNetV2 bottleneck: 1x1 expansion, 3x3 depthwise (strided), linear 1x1 projection;
    residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expansion: int = 6):
        super().__init__()
        mid = cin * expansion
        self.body = nn.Sequential(
            conv_bn_relu(cin, mid, 1),
            conv_bn_relu(mid, mid, 3, stride, groups=mid),
            conv_bn_relu(mid, cout, 1, relu=False),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def bottleneck_stage(cin: int, cout: int, blocks: int, stride: int, expansion: int) -> nn.Sequential:
    layers = [InvertedResidual(cin, cout, stride, expansion)]
    layers += [InvertedResidual(cout, cout, 1, expansion) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class PyramidPooling(nn.Module):
    """Export-safe pyramid pooling: a global mean and three fixed-kernel average pools, each reduced
    to cin/4 channels by a 1x1 conv, upsampled to the input and concatenated with it."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cin // 4, 1)
        self.pools = nn.ModuleList([nn.AvgPool2d(5, 2, 2), nn.AvgPool2d(9, 4, 4), nn.AvgPool2d(17, 8, 8)])
        self.convs = nn.ModuleList(conv_bn_relu(cin, mid, 1) for _ in range(len(self.pools) + 1))
        self.out = conv_bn_relu(cin + mid * len(self.convs), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [x.mean((2, 3), keepdim=True)] + [pool(x) for pool in self.pools]
        branches = [upsample_to(conv(p), x) for conv, p in zip(self.convs, pooled)]
        return self.out(torch.cat([x, *branches], 1))


class FeatureFusion(nn.Module):
    """Adds the 1/8 detail features (1x1 conv) to the upsampled 1/32 context features (dilated
    depthwise 3x3 + 1x1), both linear, then ReLU."""

    def __init__(self, c_high: int, c_low: int, cout: int):
        super().__init__()
        self.low_dw = nn.Sequential(
            nn.Conv2d(c_low, c_low, 3, padding=4, dilation=4, groups=c_low, bias=False),
            nn.BatchNorm2d(c_low),
            nn.ReLU(inplace=True),
        )
        self.low_pw = conv_bn_relu(c_low, cout, 1, relu=False)
        self.high = conv_bn_relu(c_high, cout, 1, relu=False)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.low_pw(self.low_dw(upsample_to(low, high)))
        return F.relu(self.high(high) + low)


class FastSCNN(nn.Module):
    """Fast-SCNN. `downsample` are the learning-to-downsample widths (1/2, 1/4, 1/8), `features`
    the bottleneck stage widths (1/16, 1/32, 1/32), `blocks` their depths. In training mode returns
    (main, aux) with an auxiliary head on the 1/8 stem features; both at the input resolution."""

    def __init__(
        self,
        num_classes: int = 11,
        downsample: tuple[int, int, int] = (32, 48, 64),
        features: tuple[int, int, int] = (64, 96, 128),
        blocks: tuple[int, int, int] = (3, 3, 3),
        expansion: int = 6,
        fusion: int = 128,
        aux: bool = True,
        dropout: float = 0.1,
    ):
        super().__init__()
        d1, d2, d3 = downsample
        self.downsample = nn.Sequential(
            conv_bn_relu(3, d1, 3, 2), DepthwiseSeparable(d1, d2, 2), DepthwiseSeparable(d2, d3, 2)
        )
        self.global_features = nn.Sequential(
            bottleneck_stage(d3, features[0], blocks[0], 2, expansion),  # 1/16
            bottleneck_stage(features[0], features[1], blocks[1], 2, expansion),  # 1/32
            bottleneck_stage(features[1], features[2], blocks[2], 1, expansion),
            PyramidPooling(features[2], fusion),
        )
        self.fusion = FeatureFusion(d3, fusion, fusion)
        self.classifier = nn.Sequential(
            DepthwiseSeparable(fusion, fusion),
            DepthwiseSeparable(fusion, fusion),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(fusion, num_classes, 1),
        )
        self.aux_head = SegHead(d3, 32, num_classes) if aux else None

    def forward(self, x: torch.Tensor, size=None):
        size = x.shape[-2:] if size is None else size
        high = self.downsample(x)
        out = resize(self.classifier(self.fusion(high, self.global_features(high))), size)
        if self.training and self.aux_head is not None:
            aux = resize(self.aux_head(high), size)
            return out, aux
        return out
