"""Every registry entry trains (forward + backward), keeps the input resolution at sizes that are and
are not multiples of 32, and exports to ONNX with ONNX Runtime matching PyTorch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from roadseg.core.errors import RoadsegError
from roadseg.train.models import DESCRIPTIONS, MODELS, build
from roadseg.train.models.attention import ATTENTION_KINDS, make_attention

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, on purpose

NUM_CLASSES = 5

# Tiny widths so the whole file runs in seconds on a small CPU; the structure is the default one.
TINY: dict[str, dict] = {
    "ddrnet23s": {"planes": 8, "highres": 16, "spp": 16, "head": 16},
    "fastscnn": {"downsample": (8, 8, 16), "features": (16, 16, 16), "blocks": (1, 1, 1), "expansion": 2, "fusion": 16},
    "fcn": {"width": 8, "layers": (1, 1, 1, 1)},
    "unet": {"base": 8},
    "unet-deconv": {"base": 8},
    "danet-lite": {"width": 8, "layers": (1, 1, 1, 1), "head": 16},
}


def tiny(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return build(name, NUM_CLASSES, **{**TINY[name], **kwargs})


def perturb(model: nn.Module) -> nn.Module:
    """Move every weight (zero-initialised gates and residual scales included) and the BN running
    statistics away from their initial values, so parity checks exercise every path."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def outputs(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def check_train_step(model: nn.Module, h: int, w: int) -> None:
    model.train()
    model.zero_grad()
    outs = outputs(model(torch.randn(2, 3, h, w)))
    for o in outs:
        assert o.shape == (2, NUM_CLASSES, h, w)
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"


def check_onnx(model: nn.Module, path, h: int, w: int) -> None:
    model = perturb(model).eval()
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        ref = model(x).numpy()
    assert ref.shape == (1, NUM_CLASSES, h, w)
    torch.onnx.export(
        model, (x,), str(path), opset_version=17, dynamo=False, input_names=["input"], output_names=["logits"]
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-4


def test_registry() -> None:
    assert next(iter(MODELS)) == "ddrnet23s"
    assert list(MODELS) == list(DESCRIPTIONS)
    assert "attention" in DESCRIPTIONS["danet-lite"]
    with pytest.raises(RoadsegError):
        build("no-such-model", NUM_CLASSES)


@pytest.mark.parametrize("name", list(MODELS))
def test_train_step(name: str) -> None:
    model = tiny(name)
    for h, w in [(64, 96), (96, 128)]:
        check_train_step(model, h, w)


@pytest.mark.parametrize("name", list(MODELS))
def test_eval_non_multiple_of_32(name: str) -> None:
    model = tiny(name).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 360, 480))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, NUM_CLASSES, 360, 480)


@pytest.mark.parametrize("name", list(MODELS))
def test_logits_at_requested_size(name: str) -> None:
    """`net(x, size)`: logits upsampled once to `size`, within float rounding of the default
    output (input size) wherever both resizes see the same head output: size == input size."""
    model = perturb(tiny(name)).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = model(x, (90, 120))
        same = model(x, (64, 96))
        default = model(x)
    assert out.shape == (1, NUM_CLASSES, 90, 120)
    assert torch.allclose(same, default, atol=1e-5)
    # not a resize of the default output: one upsampling from the head, not two
    twice = torch.nn.functional.interpolate(default, size=(90, 120), mode="bilinear", align_corners=False)
    assert (name in ("unet", "unet-deconv")) == torch.allclose(out, twice, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("size", [(72, 96), (64, 96)], ids=["72x96", "64x96"])
def test_onnx_parity(name: str, size: tuple[int, int], tmp_path) -> None:
    check_onnx(tiny(name), tmp_path / f"{name}.onnx", *size)


@pytest.mark.parametrize("attention", ATTENTION_KINDS[1:])
@pytest.mark.parametrize("name", ["unet", "unet-deconv"])
def test_unet_attention(name: str, attention: str, tmp_path) -> None:
    model = tiny(name, attention=attention)
    check_train_step(model, 64, 96)
    check_onnx(model, tmp_path / "unet.onnx", 72, 96)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_make_attention_keeps_shape(kind: str | None) -> None:
    x = torch.randn(2, 16, 6, 10)
    assert make_attention(kind, 16).eval()(x).shape == x.shape


def test_unknown_options_are_user_errors() -> None:
    with pytest.raises(RoadsegError):
        make_attention("transformer", 16)
    with pytest.raises(RoadsegError):
        build("unet", NUM_CLASSES, upsample="nearest")


def test_ddrnet_detail_refinement(tmp_path) -> None:
    """ddrnet23s with `detail`: trains, exports with parity, and a model grown from weights without
    the block starts with the old model's labels (the correction is zero-initialised)."""
    model = tiny("ddrnet23s", detail=True)
    check_train_step(model, 64, 96)
    check_onnx(model, tmp_path / "detail.onnx", 72, 96)
    old = perturb(tiny("ddrnet23s")).eval()
    grown = tiny("ddrnet23s", detail=True).eval()
    missing = grown.load_state_dict(old.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("detail.") for k in missing)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        a, b = old(x), grown(x)
    # only the logits' upsampling path differs (1/8 -> 1/4 -> full instead of 1/8 -> full)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.97
    with torch.no_grad():
        grown.detail.out.weight.fill_(0.1)  # type: ignore[union-attr]
        c = grown(x)
    assert (c - b).abs().max() > 1e-3, "the refinement is not in the output path"
