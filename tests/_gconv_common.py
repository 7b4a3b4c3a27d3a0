"""Shared by the group conv tests (``tests/test_gconv*.py``, the transposed 3-D ones): the
planar groups, seeded random tensors, and the export-and-gradcheck check of a transposed 3-D
conv."""

import warnings

import torch
from torch import nn

import equilayers

GROUPS = ["c1", "c2", "c4", "d1", "d2", "d4"]


def _rand(gen, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


def assert_exports_to_conv_transpose3d_and_gradchecks(m: nn.Module, x: torch.Tensor) -> None:
    """``export(m)`` is plain torch with an ``nn.ConvTranspose3d`` and gives ``m``'s output
    exactly on ``x`` (float64); ``m`` passes gradcheck in its input and in its weight (through
    ``torch.func.functional_call``). Warnings (the inexact-grid one) are silenced."""
    def quiet(fn, *args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args)

    plain = equilayers.export(m)
    assert any(isinstance(c, nn.ConvTranspose3d) for c in plain.modules())
    assert not any(type(c).__module__.startswith("equilayers") for c in plain.modules())
    torch.testing.assert_close(quiet(plain, x), quiet(m, x), rtol=0, atol=0)
    x = x.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: quiet(m, t), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(
        lambda w: torch.func.functional_call(m, {"weight": w}, (x.detach(),)), (m.weight,),
        fast_mode=True)
