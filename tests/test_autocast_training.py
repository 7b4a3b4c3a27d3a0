"""Training steps under ``torch.autocast`` (bfloat16 and float16, CPU) with inputs that need a
gradient (adversarial training, saliency, gradient penalties), across the zoo
(``tests/_zoo.py``): the backward runs, every gradient is finite and in its input's dtype
(docs/kernels.md: "the gradient reaches the input in its own dtype"), the parameters' in
theirs. ``test_compat`` runs autocast forwards only, on inputs that need no gradient."""

from __future__ import annotations

import pytest
import torch
from _zoo import ZOO, build
from torch import nn

from equilayers import nn as enn
from equilayers.functional import blur_conv2d_path

LOW = [pytest.param(torch.bfloat16, id="bfloat16"), pytest.param(torch.float16, id="float16")]


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _check_grads(model: nn.Module, inputs) -> None:
    for i, a in enumerate(inputs):
        if not a.requires_grad:
            continue
        assert a.grad is not None or i > 0, "no gradient reached the input"
        if a.grad is not None:
            assert a.grad.dtype == a.dtype, (i, a.grad.dtype, a.dtype)
            assert torch.isfinite(a.grad).all(), i
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert p.grad.dtype == p.dtype, (n, p.grad.dtype)
            assert torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_training_step_with_input_gradients(name, dtype):
    """``BlurConv2d[blur_first]`` raised torch's ``index_add_(): self (BFloat16) and source
    (Float) must have the same scalar type`` here: the blur-first path's hand-written backward
    added the gathered border rows' float32 gradients to the blur's autocast-dtype one."""
    model, args = build(name)
    model.train()
    inputs = [a.clone().requires_grad_(True) if a.is_floating_point() else a for a in args]
    with torch.autocast("cpu", dtype=dtype):
        out = _first(model(*inputs))
    loss = out.float().square().mean()
    assert torch.isfinite(loss)
    loss.backward()
    _check_grads(model, inputs)


def _stem() -> nn.Module:
    """A ResNet-style stem whose strided conv is a BlurConv2d (what ``antialias()`` makes)."""
    return nn.Sequential(enn.BlurConv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def _mid(padding_mode: str) -> nn.Module:
    """A BlurConv2d after a conv, its padding mode also the conv's (reflect, replicate and
    circular: ``F.pad`` returns float32 under CPU autocast, even from a bfloat16 input)."""
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, padding_mode=padding_mode), nn.ReLU(),
                         enn.BlurConv2d(32, 64, 3, padding=1, padding_mode=padding_mode),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


CASES = [pytest.param(_stem, (4, 3, 64, 64), id="stem-3-16-k7-s2")] + [
    pytest.param(lambda m=m: _mid(m), (4, 3, 28, 28), id=f"mid-{m}")
    for m in ("zeros", "reflect", "replicate", "circular")]


def _blur_conv(model: nn.Module) -> enn.BlurConv2d:
    return next(m for m in model.modules() if isinstance(m, enn.BlurConv2d))


def _assert_blur_first(blur: enn.BlurConv2d, x: torch.Tensor) -> None:
    """The test's sizes take the blur-first path (the one it is for)."""
    path = blur_conv2d_path(x.detach().float(), blur.weight, stride=blur.stride,
                            padding=blur.padding, padding_mode=blur.padding_mode)
    assert path == "blur_first", path


@pytest.mark.parametrize("inside", [False, True], ids=["backward-outside", "backward-inside"])
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("make,shape", CASES)
def test_blur_conv_blur_first_training_step(make, shape, dtype, inside, gen):
    """The report's cases: the input's gradient (FGSM) and the parameters' of a training step
    through the blur-first path; the backward also under autocast (which blurs the gradient in
    autocast's dtype)."""
    model = make().train()
    seen: list[torch.Tensor] = []
    hook = _blur_conv(model).register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    x = torch.randn(shape, generator=gen).requires_grad_(True)
    t = torch.randint(0, 10, (shape[0],), generator=gen)
    with torch.autocast("cpu", dtype=dtype):
        loss = nn.functional.cross_entropy(model(x), t)
        if inside:
            loss.backward()
    if not inside:
        loss.backward()
    hook.remove()
    _assert_blur_first(_blur_conv(model), seen[0])
    _check_grads(model, [x])


LAYERS = [pytest.param(lambda: enn.BlurConv2d(3, 16, 7, 2, 3, bias=False), (4, 3, 64, 64),
                       id="stem")] + [
    pytest.param(lambda m=m: enn.BlurConv2d(32, 64, 3, padding=1, padding_mode=m),
                 (4, 32, 28, 28), id=m) for m in ("zeros", "reflect", "replicate", "circular")]


@pytest.mark.parametrize("inside", [False, True], ids=["backward-outside", "backward-inside"])
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("make,shape", LAYERS)
def test_blur_conv_blur_first_input_gradient_values(make, shape, dtype, inside, gen):
    """The input's gradient of one blur-first BlurConv2d under autocast against float32: the
    dtype's rounding (measured 3.4e-3 bfloat16, 4.3e-4 float16, as the reference path's
    3.3e-3 and 4.1e-4), not a wrong gradient (a border ring's rows left out is O(1e-1))."""
    layer = make()
    x = torch.randn(shape, generator=gen)
    _assert_blur_first(layer, x)
    probe = torch.randn(layer(x).shape, generator=gen)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((layer(xr) * probe).sum(), xr)
    xa = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype):
        y = layer(xa)
        if inside:
            (y.float() * probe).sum().backward()
    if not inside:
        (y.float() * probe).sum().backward()
    _check_grads(layer, [xa])
    assert xa.grad is not None
    rel = ((xa.grad - ref).norm() / ref.norm()).item()
    assert rel < (1e-2 if dtype == torch.bfloat16 else 2e-3), rel


def test_blur_conv_blur_first_low_precision_input(gen):
    """The blur-first path on a bfloat16 input under autocast (the output of a previous conv):
    the gradient in bfloat16."""
    model = enn.BlurConv2d(32, 64, 3, padding=1, padding_mode="reflect")
    x = torch.randn(2, 32, 28, 28, generator=gen).bfloat16().requires_grad_(True)
    _assert_blur_first(model, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    y.float().square().mean().backward()
    _check_grads(model, [x])
