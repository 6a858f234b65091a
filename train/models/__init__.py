"""The model zoo: a plain dict registry, name -> constructor.

Every constructor takes `num_classes` (plus its own keyword options), accepts inputs of any size
(multiples of 32 at least), returns logits at the input resolution in eval mode (and
`(main, *aux)` in training mode when it has auxiliary heads), and exports to ONNX (opset >= 17).
`forward(x, size)` returns them at `size` (H, W) instead: the exported graph and evaluation pass
the frame's size, so logits are upsampled once, from the head's stride straight to the frame,
rather than to the model input and then again to the frame: one pass over the full-size logits
instead of two, and the same accuracy (docs/EXPORT.md).
The checkpoint stores the registry name and the kwargs, so `build(name, **kwargs)` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from .attention import AttnSegNet
from .ddrnet import DDRNet
from .fastscnn import FastSCNN
from .fcn import FCN
from .unet import UNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "ddrnet23s": partial(DDRNet, planes=32, highres=64, spp=128, head=64),
    "fastscnn": FastSCNN,
    "fcn": FCN,
    "unet": partial(UNet, upsample="bilinear"),
    "unet-deconv": partial(UNet, upsample="deconv"),
    "danet-lite": AttnSegNet,
}

DESCRIPTIONS: dict[str, str] = {
    "ddrnet23s": "DDRNet-23-slim: dual-resolution real-time net, dense 3x3 convs (INT8-friendly); option detail=true",
    "fastscnn": "Fast-SCNN: depthwise two-branch net, ~1.1M params, fastest on CPU (export-safe pyramid pooling)",
    "fcn": "FCN-8s on a small ResNet-like backbone: the baseline (score fusion at strides 8/16/32)",
    "unet": "U-Net, bilinear decoder; option attention=se|cbam|nonlocal|danet",
    "unet-deconv": "U-Net, transposed-conv decoder; option attention=se|cbam|nonlocal|danet",
    "danet-lite": "DANet-lite: stride-8 ResNet-like backbone + dual attention head (position + channel attention)",
}


def build(name: str, num_classes: int, **kwargs) -> nn.Module:
    from roadseg.core.errors import RoadsegError

    if name not in MODELS:
        raise RoadsegError(f"unknown model '{name}'; choose one of: {', '.join(sorted(MODELS))} (see `roadseg models`)")
    return MODELS[name](num_classes=num_classes, **kwargs)
