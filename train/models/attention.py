"""Attention modules, and DANet-lite, a segmentation net built around them.

Road scenes have long, thin, far-apart structures (lane marks, poles, kerbs) whose class is easier
to decide with context from the whole frame than from a local receptive field. The modules here add
that context at different costs: `SEBlock` and `CBAM` reweight channels (and, for CBAM, positions)
from global statistics at almost no cost; `NonLocal` and `DANetHead` relate every position to every
other one, which is quadratic in H*W and so belongs at a coarse stride (1/8 or lower).

All pooling is global (mean/max over H,W as reductions), never `adaptive_avg_pool2d` to a fixed
grid, so every module exports to ONNX at any input size.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import SegHead, conv_bn_relu, make_stage, resize


class SEBlock(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): per-channel gates from the global mean."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3), keepdim=True))


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al. 2018): channel gates from global mean and max
    through a shared MLP, then a spatial gate from a 7x7 conv over the channel-wise mean and max."""

    def __init__(self, channels: int, reduction: int = 16, kernel: int = 7):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))
        x = x * torch.sigmoid(gate)
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(desc))


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. 2018): y_i = sum_j softmax_j(theta_i . phi_j) g_j,
    projected back and added to the input. The output BN starts at zero, so a freshly inserted block
    is the identity and does not disturb a pretrained network."""

    def __init__(self, channels: int, inter: int | None = None):
        super().__init__()
        inter = inter or max(channels // 2, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.out = conv_bn_relu(inter, channels, 1, relu=False)
        nn.init.zeros_(self.out[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.theta(x).flatten(2).transpose(1, 2)  # N, HW, C'
        k = self.phi(x).flatten(2)  # N, C', HW
        v = self.g(x).flatten(2).transpose(1, 2)  # N, HW, C'
        attn = torch.softmax(q @ k, dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(x.shape[0], -1, x.shape[2], x.shape[3])
        return x + self.out(y)


class PositionAttention(nn.Module):
    """DANet position attention: every position is a softmax-weighted sum over all positions,
    scaled by a learned `gamma` that starts at 0."""

    def __init__(self, channels: int):
        super().__init__()
        qk = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query(x).flatten(2).transpose(1, 2)  # N, HW, C'
        k = self.key(x).flatten(2)  # N, C', HW
        v = self.value(x).flatten(2)  # N, C, HW
        attn = torch.softmax(q @ k, dim=-1)  # N, HW, HW
        y = (v @ attn.transpose(1, 2)).reshape(x.shape)
        return x + self.gamma * y


class ChannelAttention(nn.Module):
    """DANet channel attention: every channel is a softmax-weighted sum over all channels.

    The channel affinity is a mean over positions, not the paper's sum, so its softmax temperature
    does not change between training crops and full frames (and the affinities stay small, which
    suits FP16)."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(2)  # N, C, HW
        attn = torch.softmax(f @ f.transpose(1, 2) / f.shape[-1], dim=-1)  # N, C, C
        return x + self.gamma * (attn @ f).reshape(x.shape)


class DANetHead(nn.Module):
    """DANet head (Fu et al. 2019): a position-attention branch and a channel-attention branch,
    each between 3x3 convs, summed. Maps `channels` to `out_channels` (default: the same) features;
    the classifier is left to the caller."""

    def __init__(self, channels: int, out_channels: int | None = None, reduction: int = 4):
        super().__init__()
        inter = max(channels // reduction, 8)
        out_channels = out_channels or channels
        self.pam = nn.Sequential(conv_bn_relu(channels, inter), PositionAttention(inter), conv_bn_relu(inter, inter))
        self.cam = nn.Sequential(conv_bn_relu(channels, inter), ChannelAttention(), conv_bn_relu(inter, inter))
        self.proj = conv_bn_relu(inter, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pam(x) + self.cam(x))


ATTENTION_KINDS = (None, "se", "cbam", "nonlocal", "danet")


def make_attention(kind: str | None, channels: int) -> nn.Module:
    """The attention module `kind` for `channels` in and out, or `nn.Identity` for None."""
    if kind is None:
        return nn.Identity()
    if kind == "se":
        return SEBlock(channels)
    if kind == "cbam":
        return CBAM(channels)
    if kind == "nonlocal":
        return NonLocal(channels)
    if kind == "danet":
        return DANetHead(channels)
    from roadseg.core.errors import RoadsegError

    choices = ", ".join(str(k) for k in ATTENTION_KINDS)
    raise RoadsegError(f"unknown attention '{kind}'; choose one of: {choices}")


class AttnSegNet(nn.Module):
    """DANet-lite: a small ResNet-like backbone kept at stride 8 (no further downsampling, so the
    attention map stays fine enough for thin classes) and a DANet head that supplies the global
    context a deeper backbone would. In training mode returns (main, aux) with an auxiliary head on
    the backbone features; both at the input resolution."""

    def __init__(
        self,
        num_classes: int = 11,
        width: int = 32,
        layers: tuple[int, int, int, int] = (1, 2, 2, 2),
        head: int = 64,
        aux: bool = True,
        dropout: float = 0.1,
    ):
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn_relu(3, w, 3, 2), conv_bn_relu(w, w, 3, 2))  # 1/4
        self.backbone = nn.Sequential(
            make_stage(w, w, layers[0]),
            make_stage(w, 2 * w, layers[1], 2),  # 1/8
            make_stage(2 * w, 4 * w, layers[2]),
            make_stage(4 * w, 4 * w, layers[3]),
        )
        self.attn = DANetHead(4 * w, head)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.cls = nn.Conv2d(head, num_classes, 1)
        self.aux_head = SegHead(4 * w, head, num_classes) if aux else None

    def forward(self, x: torch.Tensor, size=None):
        size = x.shape[-2:] if size is None else size
        feat = self.backbone(self.stem(x))
        out = resize(self.cls(self.drop(self.attn(feat))), size)
        if self.training and self.aux_head is not None:
            aux = resize(self.aux_head(feat), size)
            return out, aux
        return out
