"""The harmonic layers' fewer-op formulations (one ``var_mean`` over every slot, one
``addcmul`` affine, running averages by ``lerp_``; split views instead of per-order slices)
equal their former per-order formulations, kept here as the specification, to float
rounding: outputs, every gradient and the running statistics. Each comparison has a negative
control, a deliberately wrong reference the same check must reject."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from equilayers.functional import harmonic_batch_norm, norm_nonlinearity

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def _tol(dtype: torch.dtype) -> dict:
    return {"rtol": 2e-2, "atol": 2e-2} if dtype in (torch.float16, torch.bfloat16) else {}


# ------------------------------------------------------------------ the former formulations
def _pair_sq(x: torch.Tensor) -> torch.Tensor:
    b, c, f, h, w = x.shape
    v = x[:, :, 1:].float() if x.dtype in (torch.float16, torch.bfloat16) else x[:, :, 1:]
    return (v * v).view(b, c, (f - 1) // 2, 2, h, w).sum(3)


def _ref_norm_nonlinearity(x, bias, m, function, eps=1e-6, order0="function", broken=False):
    """Per order: slices of ``x`` and ``bias``, the norm of each pair (``broken``: of each
    slot alone, which is not the map)."""
    if order0 == "norm":
        a0 = x[:, :, :1]
        out0 = torch.sign(a0) * function(
            a0.abs() if bias is None else a0.abs() + bias[None, :, :1, None, None])
    else:
        out0 = function(x[:, :, :1] if bias is None else x[:, :, :1]
                        + bias[None, :, :1, None, None])
    if m == 0:
        return out0
    b, c, f, h, w = x.shape
    sq = _pair_sq(x)
    if broken:
        sq = x[:, :, 1::2].to(sq.dtype) ** 2 * 2
    norm = (sq + eps).sqrt()
    arg = norm if bias is None else norm + bias[None, :, 1:, None, None]
    scale = function(arg) / norm
    pairs = (x[:, :, 1:].view(b, c, m, 2, h, w) * scale.unsqueeze(3)).to(x.dtype)
    return torch.cat([out0, pairs.view(b, c, f - 1, h, w)], dim=2)


def _ref_batch_norm(x, m, rm, rv, weight, bias, momentum=0.1, eps=1e-5, broken=False):
    """Training mode, statistics per order: order 0 by ``var_mean`` of its slot, the pairs by
    their mean squared magnitude (``broken``: centred, which is not the layer)."""
    low = x.dtype in (torch.float16, torch.bfloat16)
    ct = torch.float32 if low else x.dtype
    b, c, f, h, w = x.shape
    n = b * h * w
    var0, mean0 = torch.var_mean(x[:, :, 0].to(ct), dim=(0, 2, 3), unbiased=False)
    sq = _pair_sq(x - x.mean((0, 3, 4), keepdim=True) if broken else x).to(ct)
    var_m = sq.mean(dim=(0, 3, 4)) / 2
    with torch.no_grad():
        rm.mul_(1 - momentum).add_(momentum * mean0.to(rm.dtype))
        rv.mul_(1 - momentum).add_(momentum * torch.cat(
            [(var0 * n / (n - 1))[:, None], var_m], 1).to(rv.dtype))
    scale = torch.cat([var0[:, None], var_m], dim=1).add(eps).rsqrt() * weight.to(ct)
    slot = torch.cat([scale[:, :1]] + [scale[:, k:k + 1].expand(c, 2)
                                       for k in range(1, m + 1)], dim=1)
    shift0 = -mean0 * slot[:, 0] + bias.to(ct)
    shift = torch.cat([shift0[:, None], shift0.new_zeros(c, f - 1)], dim=1)
    view = (1, c, f, 1, 1)
    return (x.to(ct) * slot.reshape(view) + shift.view(view)).to(x.dtype)


# ------------------------------------------------------------------------------- the tests
def _grads(y, inputs, gen):
    g = torch.randn(y.shape, generator=gen).to(y.dtype)
    return (y, *torch.autograd.grad(y, inputs, g))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [0, 1, 3])
@pytest.mark.parametrize("order0", ["function", "norm"])
@pytest.mark.parametrize("function", [F.relu, torch.tanh])
def test_norm_nonlinearity_equals_the_per_order_formulation(gen, dtype, m, order0, function):
    x = (torch.randn(2, 3, 2 * m + 1, 4, 5, generator=gen) * 2).to(dtype).requires_grad_()
    bias = torch.randn(3, m + 1, generator=gen).to(dtype).requires_grad_()
    for b in (bias, None):
        inputs = [x] if b is None else [x, b]
        got = _grads(norm_nonlinearity(x, b, m, function, order0=order0), inputs,
                     torch.Generator().manual_seed(1))
        want = _grads(_ref_norm_nonlinearity(x, b, m, function, order0=order0), inputs,
                      torch.Generator().manual_seed(1))
        # c^2 + s^2 is one mul and one addcmul here, (v * v).sum(3) there: float rounding
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, **_tol(dtype))


def test_norm_nonlinearity_comparison_rejects_a_wrong_reference(gen):
    x = torch.randn(2, 3, 5, 4, 5, generator=gen, dtype=torch.float64)
    bias = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(norm_nonlinearity(x, bias, 2),
                                   _ref_norm_nonlinearity(x, bias, 2, F.relu, broken=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [0, 1, 3])
def test_batch_norm_equals_the_per_order_formulation(gen, dtype, m):
    pdt = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    x = (torch.randn(4, 3, 2 * m + 1, 5, 6, generator=gen) * 3 + 1).to(dtype).requires_grad_()
    weight = (torch.rand(3, m + 1, generator=gen) + 0.5).to(pdt).requires_grad_()
    bias = torch.randn(3, generator=gen).to(pdt).requires_grad_()
    rm, rv = torch.randn(3, generator=gen).to(pdt), (torch.rand(3, m + 1, generator=gen) + 0.5)
    rv = rv.to(pdt)
    rm2, rv2 = rm.clone(), rv.clone()
    got = _grads(harmonic_batch_norm(x, m, rm, rv, weight, bias, True), [x, weight, bias],
                 torch.Generator().manual_seed(1))
    want = _grads(_ref_batch_norm(x, m, rm2, rv2, weight, bias), [x, weight, bias],
                  torch.Generator().manual_seed(1))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **_tol(dtype))
    torch.testing.assert_close(rm, rm2)
    torch.testing.assert_close(rv, rv2)
    # eval mode with those running statistics: the affine alone
    y = harmonic_batch_norm(x, m, rm, rv, weight, bias, False)
    scale = (rv + 1e-5).rsqrt() * weight
    slot = torch.cat([scale[:, :1]] + [scale[:, k:k + 1].expand(3, 2)
                                       for k in range(1, m + 1)], 1)[None, :, :, None, None]
    want_eval = x.to(pdt) * slot
    want_eval[:, :, 0] += (bias - rm * scale[:, 0])[None, :, None, None]
    torch.testing.assert_close(y, want_eval.to(dtype), **_tol(dtype))


def test_batch_norm_comparison_rejects_a_wrong_reference(gen):
    x = torch.randn(4, 3, 5, 5, 6, generator=gen, dtype=torch.float64) + 1
    w, b = torch.ones(3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    state = [torch.zeros(3, dtype=torch.float64), torch.ones(3, 3, dtype=torch.float64)]
    got = harmonic_batch_norm(x, 2, *[t.clone() for t in state], w, b, True)
    torch.testing.assert_close(got, _ref_batch_norm(x, 2, *[t.clone() for t in state], w, b))
    with pytest.raises(AssertionError):
        torch.testing.assert_close(got, _ref_batch_norm(x, 2, *state, w, b, broken=True))


# ------------------------------------------------------- the hand-written batch-norm backward
def _bn_inputs(gen, m, dtype=torch.float64):
    x = (torch.randn(3, 2, 2 * m + 1, 3, 4, generator=gen, dtype=dtype) + 0.5).requires_grad_()
    w = (torch.rand(2, m + 1, generator=gen, dtype=dtype) + 0.5).requires_grad_()
    b = torch.randn(2, generator=gen, dtype=dtype).requires_grad_()
    return x, w, b


def _bn(x, w, b, m, eps=1e-5):
    return harmonic_batch_norm(x, m, None, None, w, b, True, eps=eps)


@pytest.mark.parametrize("m", [0, 1, 2])
def test_batch_norm_hand_backward_gradcheck(gen, m):
    x, w, b = _bn_inputs(gen, m)
    assert "_PlanarBatchNorm" in type(_bn(x, w, b, m).grad_fn).__name__  # the fast path
    torch.autograd.gradcheck(lambda *a: _bn(*a, m), (x, w, b))
    torch.autograd.gradgradcheck(lambda *a: _bn(*a, m), (x, w, b))  # create_graph: plain ops
    torch.autograd.gradcheck(lambda x: _bn(x, None, None, m), (x,))


@pytest.mark.parametrize("m", [0, 2])
def test_batch_norm_hand_backward_equals_autograd_of_the_plain_ops(gen, m):
    """torch.func.vjp takes the plain ops (no custom Function under transforms): the same
    gradients, and a different eps (the negative control) does not give them."""
    x, w, b = _bn_inputs(gen, m)
    g = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    fast = torch.autograd.grad(_bn(x, w, b, m), (x, w, b), g)
    plain = torch.func.vjp(lambda *a: _bn(*a, m), x, w, b)[1](g)
    for u, v in zip(fast, plain, strict=True):
        torch.testing.assert_close(u, v)
    other = torch.func.vjp(lambda *a: _bn(*a, m, eps=1e-1), x, w, b)[1](g)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(fast[0], other[0])


# ------------------------------------------------------------ the hand-written norm-ReLU backward
@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("order0", ["function", "norm"])
def test_norm_relu_hand_backward_gradcheck(gen, m, order0):
    x = torch.randn(2, 3, 2 * m + 1, 3, 4, generator=gen, dtype=torch.float64)
    x.requires_grad_()
    bias = (torch.randn(3, m + 1, generator=gen, dtype=torch.float64) * 0.5).requires_grad_()
    def nl(x, b):
        return norm_nonlinearity(x, b, m, order0=order0)

    assert "_NormReLU" in type(nl(x, bias).grad_fn).__name__  # the fast path
    torch.autograd.gradcheck(nl, (x, bias))
    torch.autograd.gradgradcheck(nl, (x, bias))
    torch.autograd.gradcheck(lambda x: nl(x, None), (x,))
    torch.autograd.gradcheck(lambda b: nl(x.detach(), b), (bias,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("order0", ["function", "norm"])
def test_norm_relu_hand_backward_equals_autograd_of_the_plain_ops(gen, dtype, order0):
    """torch.func.vjp takes the plain ops: the same gradients, with exact zeros and cut fields
    in the input; a differently cut map (the negative control) does not give them."""
    x = torch.randn(4, 3, 5, 6, 6, generator=gen, dtype=dtype)
    x[0, :, 1:3] = 0  # |v| = sqrt(eps)
    x[1, :, 0] = 0  # a_0 = 0: sign 0
    x = x.requires_grad_()
    bias = torch.randn(3, 3, generator=gen, dtype=dtype).requires_grad_()
    g = torch.randn(x.shape, generator=gen, dtype=dtype)

    def nl(x, b):
        return norm_nonlinearity(x, b, 2, order0=order0)

    fast = torch.autograd.grad(nl(x, bias), (x, bias), g)
    plain = torch.func.vjp(nl, x, bias)[1](g)
    for u, v in zip(fast, plain, strict=True):
        torch.testing.assert_close(u, v)
    other = torch.func.vjp(lambda x, b: nl(x, b + 0.1), x, bias)[1](g)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(fast[1], other[1])


@pytest.mark.parametrize("one_buffer", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "channels_last_3d"])
@pytest.mark.parametrize("order0", ["function", "norm"])
def test_norm_relu_one_buffer_forward_and_backward_on_any_layout(gen, layout, order0,
                                                                 one_buffer, monkeypatch):
    """The norm-ReLU's forward into one buffer (the autograd Function, and under no_grad; the
    CPU's formulation) and its ``cat`` formulation (other devices', forced here) equal the
    plain ops (what torch.func runs) bit for bit (float32: the pair norms summed alike), on any
    layout of ``x``; their backwards equal the plain ops' vjp, also for the expanded gradient
    of a ``sum``. Negative control: a buffer with order 0 left out is caught."""
    from equilayers.functional import _norm_map

    monkeypatch.setattr(_norm_map, "_one_buffer", lambda x: one_buffer)
    x = torch.randn(4, 3, 5, 6, 14, generator=gen)
    x = {"contiguous": x[..., :7].contiguous(), "strided": x[..., ::2],
         "channels_last_3d": x[..., :7].contiguous(memory_format=torch.channels_last_3d)}[layout]
    bias = torch.randn(3, 3, generator=gen)

    def nl(x, b):
        return norm_nonlinearity(x, b, 2, order0=order0)

    plain = torch.func.vjp(nl, x, bias)[0]
    with torch.no_grad():
        torch.testing.assert_close(nl(x, bias), plain, rtol=0, atol=0)
    xg, bg = x.clone().requires_grad_(), bias.clone().requires_grad_()
    fast = nl(xg, bg)
    assert "_NormReLU" in type(fast.grad_fn).__name__  # the one-buffer path
    torch.testing.assert_close(fast, plain, rtol=0, atol=0)
    for g in (torch.randn(x.shape, generator=gen), torch.ones(()).expand(x.shape)):
        got = torch.autograd.grad(nl(xg, bg), (xg, bg), g)
        want = torch.func.vjp(nl, x, bias)[1](g)
        for u, v in zip(got, want, strict=True):
            torch.testing.assert_close(u, v)
    broken = fast.detach().clone()
    broken[:, :, :1] = 0
    with pytest.raises(AssertionError):
        torch.testing.assert_close(broken, plain, rtol=0, atol=0)


# --------------------------------------------------------------- the fiber matmul and norm pool
@pytest.mark.parametrize("layout", ["contiguous", "strided", "channels_last", "empty"])
def test_fiber_matmul_equals_einsum(gen, layout):
    from equilayers.functional._fourier import _fiber_matmul

    x = torch.randn(2, 3, 5, 6, 7, generator=gen, dtype=torch.float64)
    if layout == "strided":
        x = torch.randn(2, 3, 5, 6, 14, generator=gen, dtype=torch.float64)[..., ::2]
    elif layout == "channels_last":
        x = x.flatten(1, 2).contiguous(memory_format=torch.channels_last).unflatten(1, (3, 5))
    elif layout == "empty":
        x = x[:0]
    mat = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    got = _fiber_matmul(x, mat)
    torch.testing.assert_close(got, torch.einsum("ij,bcjhw->bcihw", mat, x))
    if layout != "empty":  # negative control: the rows in another order
        with pytest.raises(AssertionError):
            torch.testing.assert_close(got, torch.einsum("ij,bcjhw->bcihw", mat.flip(0), x))


@pytest.mark.parametrize("m", [0, 2])
def test_norm_pool_split_buffers_equal_per_order_norms(gen, m):
    from equilayers.functional import norm_pool

    x = torch.randn(2, 3, 2 * m + 1, 4, 5, generator=gen, dtype=torch.float64)
    x[0, :, :] = 0  # exact zeros: gradient 0 there
    x.requires_grad_()
    want = torch.cat([x[:, :, :1].abs()] + [x[:, :, 2 * k - 1:2 * k + 1].norm(dim=2, keepdim=True)
                                            for k in range(1, m + 1)], 2).flatten(1, 2)
    got = norm_pool(x, m)
    torch.testing.assert_close(got, want)
    g = torch.randn(got.shape, generator=gen, dtype=x.dtype)
    gx = torch.autograd.grad(got, x, g)[0]
    assert gx[0].eq(0).all()
    torch.testing.assert_close(gx[1], torch.autograd.grad(want, x, g)[0][1])
    with pytest.raises(AssertionError):  # negative control: orders in another order
        torch.testing.assert_close(got, want.unflatten(1, (3, m + 1)).flip(2).flatten(1, 2)
                                   if m else -want)


def _graph_nodes(t: torch.Tensor, shape: tuple[int, ...]) -> list[str]:
    """The names of every node of ``t``'s autograd graph; a slice is named ``SliceBackward0``
    only when it slices a tensor of ``shape`` (slices of small statistics are fine)."""
    seen, todo, names = set(), [t.grad_fn], []
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        name = type(node).__name__
        if name == "SliceBackward0" and tuple(node._saved_self_sym_sizes) != shape:
            name = "SliceBackward0 (small)"
        names.append(name)
        todo += [n for n, _ in node.next_functions]
    return names


def _so3_layers():
    from equilayers.functional import norm_pool

    # (the norm-ReLU's plain formulation: its one-buffer path has no per-order view)
    return {"norm-relu": lambda x: norm_nonlinearity(x, None, 2, lambda t: F.relu(t),
                                                     group="so3"),
            "batch-norm": lambda x: harmonic_batch_norm(x, 2, None, None, training=True,
                                                        group="so3"),
            "norm-pool": lambda x: norm_pool(x, 2, group="so3")}


@pytest.mark.parametrize("layer", ["norm-relu", "batch-norm", "norm-pool"])
def test_so3_layers_read_their_orders_through_one_split(gen, monkeypatch, layer):
    """The SO(3) layers view their input's orders through one ``split``
    (``_harmonic3d.order_blocks``; its backward is one ``cat``) and no slice (each gave
    autograd a gradient of the input's size, mostly zeros: norm-ReLU step 26.5 -> 18.7 ms at
    (8, 16, 9, 16^3), benchmarks/results/so3-order-blocks/); values and gradients equal the
    former per-order slices'. Control: the slices put back show in the graph."""
    from equilayers.functional import _harmonic3d

    fn = _so3_layers()[layer]
    x = torch.randn(2, 3, 9, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = fn(x)
    nodes = _graph_nodes(y, tuple(x.shape))
    assert nodes.count("SplitWithSizesBackward0") == 1 and "SliceBackward0" not in nodes, nodes
    g = torch.randn(y.shape, generator=gen, dtype=y.dtype)
    (gx,) = torch.autograd.grad(y, x, g)
    monkeypatch.setattr(_harmonic3d, "order_blocks", lambda t, m: tuple(
        t[:, :, l * l:(l + 1) ** 2] for l in range(m + 1)))
    yo = fn(x)
    assert "SliceBackward0" in _graph_nodes(yo, tuple(x.shape))  # the control
    (go,) = torch.autograd.grad(yo, x, g)
    torch.testing.assert_close(y, yo, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(gx, go, rtol=1e-12, atol=1e-12)
