"""The SO(3) norm-ReLU's one-buffer path on the CPU (``functional/_norm_map3d.py``) against
the plain formulation (``_harmonic3d._norm_map3d_plain``, which any other ``function``
takes): outputs, input and bias gradients (an expanded upstream gradient too), second
derivatives, layouts, both order-0 maps, and which path runs when. The control: a backward
without the norm's own term fails the comparison."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import equilayers.functional as EF
from equilayers.functional import _norm_map3d


def _plain_relu(t):
    return F.relu(t)  # not F.relu itself: the plain formulation


def _layouts(x):
    yield "contiguous", x
    yield "strided", torch.cat([x, x], dim=-1)[..., ::2]
    yield "permuted", x.permute(0, 1, 2, 5, 4, 3).contiguous().permute(0, 1, 2, 5, 4, 3)


def _grads(fn, x, bias, gy):
    x = x.detach().requires_grad_(True)
    bias = None if bias is None else bias.detach().requires_grad_(True)
    y = fn(x, bias)
    ins = [x] + ([] if bias is None else [bias])
    return y, torch.autograd.grad(y, ins, gy), type(y.grad_fn).__name__


def _norm(function, order0, group="so3"):
    return lambda t, b: EF.norm_nonlinearity(t, b, 2, function, order0=order0, group=group)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("order0", ["function", "norm"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_one_buffer_equals_the_plain_formulation(gen, dtype, order0, with_bias):
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    base = torch.randn(2, 3, 9, 3, 4, 5, generator=gen, dtype=dtype)
    base[0, 0, 1:4] = 0  # an order of norm 0 (eps keeps it finite)
    bias = torch.randn(3, 3, generator=gen, dtype=dtype) if with_bias else None
    for layout, x in _layouts(base):
        for gy in (torch.randn(x.shape, generator=gen, dtype=dtype),
                   torch.randn(1, generator=gen, dtype=dtype).expand(x.shape)):
            y, g, node = _grads(_norm(F.relu, order0), x, bias, gy)
            yp, gp, plain = _grads(_norm(_plain_relu, order0), x, bias, gy)
            assert (node, plain) == ("_NormReLU3dBackward", "CatBackward0"), layout
            assert torch.equal(y, yp), layout  # the same sums in the same order
            for a, b in zip(g, gp, strict=True):
                torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=layout)
        with torch.no_grad():  # eval: the forward without a graph
            torch.testing.assert_close(_norm(torch.relu, order0)(x, bias), yp, atol=tol,
                                       rtol=tol)


@pytest.mark.parametrize("order0", ["function", "norm"])
def test_gradcheck_and_second_derivatives(gen, order0):
    x = torch.randn(1, 2, 9, 2, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    fn = _norm(F.relu, order0)
    assert type(fn(x, bias).grad_fn).__name__ == "_NormReLU3dBackward"
    assert torch.autograd.gradcheck(fn, (x, bias))
    assert torch.autograd.gradgradcheck(fn, (x, bias))


def test_which_path_runs(gen):
    """The plain formulation off the path: another function, half precision, order 0 only,
    torch.func and forward-mode AD (values still right); O(3) fields take the path too."""
    x = torch.randn(2, 3, 9, 3, 4, 5, generator=gen, requires_grad=True)

    def node(t, fn=F.relu, group="so3"):
        return type(EF.norm_nonlinearity(t, None, 2, fn, group=group).grad_fn).__name__

    assert node(x) == node(x, torch.relu) == node(x, group="o3") == "_NormReLU3dBackward"
    assert node(x, F.elu) == node(x.half()) == "CatBackward0"
    assert _norm_map3d.norm_relu3d(x[:, :, :1], None, 0, F.relu, 1e-6, "function",
                                   None) is None
    stacked = torch.stack([x.detach(), 2 * x.detach()])
    out = torch.func.vmap(lambda t: EF.norm_nonlinearity(t, None, 2, group="so3"))(stacked)
    torch.testing.assert_close(out[1], EF.norm_nonlinearity(2 * x.detach(), None, 2,
                                                            group="so3"))
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        dual = fwAD.make_dual(x.detach(), torch.ones_like(x))
        tangent = fwAD.unpack_dual(EF.norm_nonlinearity(dual, None, 2, group="so3")).tangent
    assert tangent is not None and torch.isfinite(tangent).all()


def test_a_backward_without_the_norms_term_fails(gen, monkeypatch):
    """The control: with the ``v (f' - scale) G / |v|^2`` term dropped (its coefficient
    zeroed), the gradient comparison of the first test fails."""
    x = torch.randn(2, 3, 9, 3, 4, 5, generator=gen, dtype=torch.float64)
    gy = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    bias = torch.full((3, 3), -1.0, dtype=torch.float64)  # (without one, relu(|v|) = |v|)
    _, (gp, _), _ = _grads(_norm(_plain_relu, "function"), x, bias, gy)
    monkeypatch.setattr(torch, "addcmul", lambda u, t, s, value=1: torch.zeros_like(u))
    _, (g, _), node = _grads(_norm(F.relu, "function"), x, bias, gy)
    assert node == "_NormReLU3dBackward" and (g - gp).abs().max() > 1e-2
