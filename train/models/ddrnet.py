"""DDRNet (Hong et al. 2021, "Deep Dual-resolution Networks for Real-time and Accurate Semantic
Segmentation of Road Scenes"): a high-resolution branch at 1/8 and a low-resolution context branch
down to 1/64, exchanging features by bilateral fusion, with a Deep Aggregation Pyramid Pooling
Module (DAPPM) on top.

Built only from dense 3x3/1x1 convolutions, so it gains from INT8 where depthwise nets do not.
The DAPPM here pools with fixed kernels plus one global pool, so the graph exports at any size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BasicBlock, SegHead, conv_bn_relu, make_stage, resize, upsample_to


class Bottleneck(nn.Module):
    """1x1-3x3-1x1 residual block with expansion 2 (DDRNet's layer5)."""

    def __init__(self, cin: int, mid: int, stride: int = 1):
        super().__init__()
        cout = mid * 2
        self.body = nn.Sequential(
            conv_bn_relu(cin, mid, 1),
            conv_bn_relu(mid, mid, 3, stride),
            conv_bn_relu(mid, cout, 1, relu=False),
        )
        self.down = conv_bn_relu(cin, cout, 1, stride, relu=False) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        return F.relu(self.body(x) + idt)


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling: fixed-kernel average pools (5/9/17) and a global pool,
    each upsampled and aggregated hierarchically."""

    def __init__(self, cin: int, mid: int, cout: int):
        super().__init__()

        def bn_relu_conv(c_in: int, c_out: int, k: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False))

        self.scale0 = bn_relu_conv(cin, mid)
        self.pools = nn.ModuleList(
            [nn.AvgPool2d(5, 2, 2), nn.AvgPool2d(9, 4, 4), nn.AvgPool2d(17, 8, 8), nn.AdaptiveAvgPool2d(1)]
        )
        self.scales = nn.ModuleList([bn_relu_conv(cin, mid) for _ in self.pools])
        self.process = nn.ModuleList([bn_relu_conv(mid, mid, 3) for _ in self.pools])
        self.compression = bn_relu_conv(mid * 5, cout)
        self.shortcut = bn_relu_conv(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.scale0(x)]
        for pool, scale, proc in zip(self.pools, self.scales, self.process):
            y = upsample_to(scale(pool(x)), x)
            outs.append(proc(y + outs[-1]))
        return self.compression(torch.cat(outs, 1)) + self.shortcut(x)


class DetailRefine(nn.Module):
    """A stride-4 refinement of the logits for thin objects (poles, signs, people).

    DDRNet classifies at 1/8, where a 2-4 px pole is less than one feature cell. This block
    upsamples the 1/8 logits to 1/4, reads them together with the stem's 1/4 features and adds a
    correction. It works on the few logit channels rather than the head's features, so it costs
    ~0.2 GMAC at 416x576 instead of ~0.6. The correction's last convolution starts at zero, so a
    model grown from a checkpoint without this block starts with (almost exactly) the same
    predictions and only learns to use the detail.
    """

    def __init__(self, num_classes: int, stem: int, mid: int):
        super().__init__()
        self.fuse = conv_bn_relu(num_classes + stem, mid, 3)
        self.out = nn.Conv2d(mid, num_classes, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, logits: torch.Tensor, stem: torch.Tensor) -> torch.Tensor:
        up = upsample_to(logits, stem)
        return up + self.out(self.fuse(torch.cat([up, stem], 1)))


class DDRNet(nn.Module):
    """DDRNet-23 family. `planes=32, highres=64` is DDRNet-23-slim; smaller values trade accuracy
    for CPU latency. `detail=True` refines the head's 1/8 logits at 1/4 (DetailRefine) before the
    final upsampling. In training mode it returns (main, aux) logits, in eval mode main only, both
    at the input resolution."""

    def __init__(
        self,
        num_classes: int = 11,
        planes: int = 32,
        highres: int = 64,
        spp: int = 128,
        head: int = 64,
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        aux: bool = True,
        dropout: float = 0.0,
        detail: bool = False,
    ):
        super().__init__()
        p, h = planes, highres
        self.stem = nn.Sequential(conv_bn_relu(3, p, 3, 2), conv_bn_relu(p, p, 3, 2))
        self.layer1 = make_stage(p, p, layers[0])
        self.layer2 = make_stage(p, 2 * p, layers[1], 2)  # 1/8
        self.layer3 = make_stage(2 * p, 4 * p, layers[2], 2)  # 1/16, low branch
        self.layer3_ = make_stage(2 * p, h, layers[2])  # 1/8, high branch
        self.layer4 = make_stage(4 * p, 8 * p, layers[3], 2)  # 1/32
        self.layer4_ = make_stage(h, h, layers[3])
        self.compression3 = conv_bn_relu(4 * p, h, 1, relu=False)
        self.compression4 = conv_bn_relu(8 * p, h, 1, relu=False)
        self.down3 = conv_bn_relu(h, 4 * p, 3, 2, relu=False)
        self.down4 = nn.Sequential(conv_bn_relu(h, 4 * p, 3, 2), conv_bn_relu(4 * p, 8 * p, 3, 2, relu=False))
        self.layer5_ = Bottleneck(h, h)
        self.layer5 = Bottleneck(8 * p, 8 * p, 2)  # 1/64
        self.spp = DAPPM(16 * p, spp, 2 * h)
        self.head = SegHead(2 * h, head, num_classes, dropout)
        self.detail = DetailRefine(num_classes, p, p) if detail else None
        self.aux_head = SegHead(h, head, num_classes) if aux else None

    def forward(self, x: torch.Tensor, size=None):
        size = x.shape[-2:] if size is None else size
        stem = self.layer1(self.stem(x))  # 1/4
        x = self.layer2(stem)
        low = self.layer3(F.relu(x))
        high = self.layer3_(F.relu(x))
        low2 = low + self.down3(F.relu(high))
        high = high + upsample_to(self.compression3(F.relu(low)), high)
        aux_feat = high
        low = self.layer4(F.relu(low2))
        high = self.layer4_(F.relu(high))
        low2 = low + self.down4(F.relu(high))
        high = high + upsample_to(self.compression4(F.relu(low)), high)
        high = self.layer5_(F.relu(high))
        ctx = upsample_to(self.spp(self.layer5(F.relu(low2))), high)
        out = self.head(high + ctx)
        if self.detail is not None:
            out = self.detail(out, stem)
        out = resize(out, size)
        if self.training and self.aux_head is not None:
            aux = resize(self.aux_head(aux_feat), size)
            return out, aux
        return out


__all__ = ["DDRNet", "DAPPM", "Bottleneck", "BasicBlock"]
