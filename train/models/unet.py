"""U-Net (Ronneberger et al. 2015): a symmetric encoder-decoder whose decoder concatenates the
encoder features of the same stride, so fine boundaries lost by pooling come back through the skips.

Two choices matter for deployment and are options: the decoder upsamples either bilinearly (no
weights, one Resize op) or with a learned 2x2 transposed convolution (the original). A transposed
convolution doubles the size exactly, which misses the skip whenever a side was odd before pooling
(360 -> ... -> 45 -> 22 -> 44, not 45), so both variants end with a resize to the exact skip size;
at sizes where nothing was lost it resizes by a factor of 1, which is the identity.
`attention` adds an attention module (see attention.py): the cheap channel/spatial gates ("se",
"cbam") after every decoder block, the quadratic self-attention ones ("nonlocal", "danet") once, at
the bottleneck, where H*W is smallest.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import make_attention
from .blocks import conv_bn_relu, resize, upsample_to

UPSAMPLE_MODES = ("bilinear", "deconv")
DECODER_ATTENTION = ("se", "cbam")


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class Up(nn.Module):
    """Decoder block: upsample to the skip's size, concatenate, two 3x3 convs, optional attention."""

    def __init__(self, cin: int, cskip: int, cout: int, upsample: str, attention: str | None):
        super().__init__()
        if upsample == "deconv":
            self.up: nn.Module = nn.ConvTranspose2d(cin, cin // 2, 2, 2)
            cin //= 2
        else:
            self.up = nn.Identity()
        self.conv = double_conv(cin + cskip, cout)
        self.attn = make_attention(attention, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = upsample_to(self.up(x), skip)
        return self.attn(self.conv(torch.cat([x, skip], 1)))


class UNet(nn.Module):
    """U-Net with `depth` poolings (stride 2**depth at the bottleneck) and `base` channels at full
    resolution, doubled per level."""

    def __init__(
        self,
        num_classes: int = 11,
        base: int = 32,
        depth: int = 4,
        upsample: str = "bilinear",
        attention: str | None = None,
    ):
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            from roadseg.core.errors import RoadsegError

            raise RoadsegError(f"unknown upsample '{upsample}'; choose one of: {', '.join(UPSAMPLE_MODES)}")
        widths = [base * 2**i for i in range(depth + 1)]
        self.inc = double_conv(3, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.bottleneck_attn = make_attention(None if attention in DECODER_ATTENTION else attention, widths[-1])
        dec_attn = attention if attention in DECODER_ATTENTION else None
        self.up = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], upsample, dec_attn) for i in reversed(range(depth))
        )
        self.cls = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor, size=None) -> torch.Tensor:
        x = self.inc(x)
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(self.pool(x))
        x = self.bottleneck_attn(x)
        for up, skip in zip(self.up, reversed(skips)):
            x = up(x, skip)
        out = self.cls(x)  # at the input resolution already
        return out if size is None else resize(out, size)
