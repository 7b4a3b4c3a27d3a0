"""The gated nonlinearity's one-buffer ReLU path on the CPU (``functional/_gated.py``) against
the plain formulation (``cat`` of ``relu(a_0)`` and ``sigmoid(g) v``), which any other
``function`` takes: outputs, gradients (an expanded upstream gradient too), second
derivatives, layouts, both gate layouts, planar and SO(3) fields, and which path runs when.
The control: a backward without the gate's term fails the comparison."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import equilayers.functional as EF
from equilayers.functional import _gated


def _plain_relu(t):
    return F.relu(t)  # not F.relu itself: the plain formulation


def _fields(gen, gates, group, dtype):
    c = 4 if gates == "first_half" else 3
    shape = (2, c, 5, 6, 7) if group is None else (2, c, 9, 3, 4, 5)
    return torch.randn(shape, generator=gen, dtype=dtype)


def _layouts(x):
    yield "contiguous", x
    if x.dim() == 5:
        yield "channels_last_3d", x.contiguous(memory_format=torch.channels_last_3d)
    yield "strided", torch.cat([x, x], dim=-1)[..., ::2]


def _grads(fn, x, gy):
    x = x.detach().requires_grad_(True)
    y = fn(x)
    (gx,) = torch.autograd.grad(y, x, gy)
    return y, gx, type(y.grad_fn).__name__


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("group", [None, "so3"])
@pytest.mark.parametrize("gates", ["own", "first_half"])
def test_one_buffer_equals_the_plain_formulation(gen, gates, group, dtype):
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    for fn_name in ("relu", "torch.relu"):
        fn = F.relu if fn_name == "relu" else torch.relu
        for layout, x in _layouts(_fields(gen, gates, group, dtype)):
            out_shape = (x.shape[0], 2 if gates == "first_half" else 3, *x.shape[2:])
            for gy in (torch.randn(out_shape, generator=gen, dtype=dtype),
                       torch.randn(1, generator=gen, dtype=dtype).expand(out_shape)):
                y, gx, node = _grads(lambda t, fn=fn: EF.gated_nonlinearity(
                    t, 2, fn, gates, group=group), x, gy)
                yp, gp, plain = _grads(lambda t: EF.gated_nonlinearity(
                    t, 2, _plain_relu, gates, group=group), x, gy)
                assert (node, plain) == ("_GatedReLUBackward", "CatBackward0"), layout
                assert torch.equal(y, yp), layout
                torch.testing.assert_close(gx, gp, atol=tol, rtol=tol, msg=layout)
            with torch.no_grad():  # eval: the forward without a graph
                torch.testing.assert_close(EF.gated_nonlinearity(x, 2, fn, gates, group=group),
                                           yp, atol=0, rtol=0)


@pytest.mark.parametrize("gates", ["own", "first_half"])
def test_gradcheck_and_second_derivatives(gen, gates):
    """First derivatives by the hand-written backward, second ones (``create_graph=True``)
    by the plain ops under it; float64 against finite differences."""
    x = _fields(gen, gates, None, torch.float64)[:1, :, :, :3, :3].requires_grad_(True)
    fn = lambda t: EF.gated_nonlinearity(t, 2, gates=gates)  # noqa: E731
    assert type(fn(x).grad_fn).__name__ == "_GatedReLUBackward"
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_which_path_runs(gen):
    """The plain formulation off the path: another function, order 0 only, half precision,
    torch.func, forward-mode AD; the one-buffer path with either ReLU in float32/float64."""
    x = _fields(gen, "own", None, torch.float32).requires_grad_(True)

    def node(t, fn=F.relu, m=2):
        return type(EF.gated_nonlinearity(t, m, fn).grad_fn).__name__

    assert node(x) == node(x, torch.relu) == "_GatedReLUBackward"
    assert node(x, F.elu) == node(x.half()) == "CatBackward0"
    assert _gated.gated_relu(x[:, :, :1], 0, F.relu, "own") is None  # order 0: relu alone
    stacked = torch.stack([x.detach(), 2 * x.detach()])  # vmap over a stack of batches
    out = torch.func.vmap(lambda t: EF.gated_nonlinearity(t, 2))(stacked)
    torch.testing.assert_close(out[1], EF.gated_nonlinearity(2 * x.detach(), 2))
    assert _gated.gated_relu(x.detach(), 2, F.relu, "own") is not None
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        dual = fwAD.make_dual(x.detach(), torch.ones_like(x))
        assert _gated.gated_relu(dual, 2, F.relu, "own") is None
        tangent = fwAD.unpack_dual(EF.gated_nonlinearity(dual, 2)).tangent
    assert tangent is not None and torch.isfinite(tangent).all()


def test_a_backward_without_the_gate_term_fails(gen, monkeypatch):
    """The control: with the gate's gradient dropped from the hand-written backward, the
    comparison of the first test fails."""
    monkeypatch.setattr(torch.ops.aten, "sigmoid_backward",
                        lambda dg, s: torch.zeros_like(dg), raising=False)
    x = _fields(gen, "own", None, torch.float64)
    gy = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    _, gx, node = _grads(lambda t: EF.gated_nonlinearity(t, 2), x, gy)
    _, gp, _ = _grads(lambda t: EF.gated_nonlinearity(t, 2, _plain_relu), x, gy)
    assert node == "_GatedReLUBackward" and (gx - gp).abs().max() > 1e-2
