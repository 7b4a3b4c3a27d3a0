"""The custom ops' eager twins (``equilayers.kernels._eager``) == the custom ops, and each runs
where it should: the twins in plain eager mode, the ``torch.library`` ops under a dispatch or
function mode (what ``FakeTensorMode``, ``FlopCounterMode`` and ``make_fx`` see is one op).

Like the other kernel tests these run on CUDA, or on CPU through Triton's interpreter
(``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import pytest
import torch
from _refs import DEVICE, needs_triton
from torch.utils._python_dispatch import TorchDispatchMode

from equilayers import kernels

pytestmark = needs_triton

# (op, the custom op's name, its positional arguments after x)
CASES = [
    ("blur_pool2d", (3, 2, "reflect")),
    ("blur_pool2d", (4, 3, "circular")),
    ("max_blur_pool2d", (2, 2, 3, "reflect", 0)),
    ("max_blur_pool2d", (3, 2, 4, "zeros", 1)),
    ("polyphase_pool2d", (2, "l2")),
    ("polyphase_pool2d", (3, "linf")),
]


def _input(gen, op, shape, layout):
    x = torch.randn(*shape, generator=gen)
    if op == "polyphase_pool2d":
        x = x[..., :12, :12]  # divisible by the strides (a view with gaps between its rows)
    elif layout == "strided":
        x = x[..., 1:]  # a view with gaps between its rows
    if layout == "contiguous":
        x = x.contiguous()
    elif layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x.to(DEVICE)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _grads(fn, x, gen):
    """``(y, dy/dx . g, the double backward's d/dg of <that, h>)`` of ``fn`` at ``x``."""
    from equilayers.kernels import _ops  # noqa: F401  (the ops are registered)

    xk = x.detach().requires_grad_(True)
    y = _first(fn(xk))
    g = torch.randn(y.shape, generator=gen).to(x.device).requires_grad_(True)
    (gx,) = torch.autograd.grad(y, xk, g, create_graph=True)
    h = torch.randn(gx.shape, generator=gen).to(x.device)
    (gg,) = torch.autograd.grad(gx, g, h)
    return y, gx, gg


@pytest.mark.parametrize("shape", [(2, 3, 13, 14), (2, 3, 2, 13, 14)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("op,args", CASES)
def test_eager_twin_equals_the_custom_op(interpret, gen, op, args, shape, layout):
    """Forward, backward and double backward, bitwise; negative control: another stride."""
    from equilayers.kernels import _eager, _ops

    if layout == "channels_last" and len(shape) == 5:
        pytest.skip("channels_last is a 4-D layout")
    x = _input(gen, op, shape, layout)
    assert _eager.plain(x)
    twin, custom = getattr(_eager, op), getattr(_ops, op)
    state = gen.get_state()
    got = _grads(lambda t: twin(t, *args), x, gen)
    gen.set_state(state)
    want = _grads(lambda t: custom(t, *args), x, gen)
    for a, b in zip(got, want, strict=True):
        assert a.stride() == b.stride() and torch.equal(a, b)
    if op == "polyphase_pool2d":  # the index too
        assert torch.equal(twin(x, *args)[1], custom(x, *args)[1])
    other = (args[0], args[1] + 1, *args[2:]) if op != "polyphase_pool2d" else args
    if op != "polyphase_pool2d":
        assert not torch.equal(_first(twin(x, *other)), want[0])  # the check can fail


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("op,kwargs", [
    ("blur_pool2d", {"kernel_size": 3, "stride": 2}),
    ("max_blur_pool2d", {"kernel_size": 2, "stride": 2}),
    ("polyphase_pool2d", {"stride": 2, "blur_size": 3}),
])
def test_custom_op_under_a_mode_the_twin_in_plain_eager(interpret, gen, op, kwargs):
    """A dispatch mode sees the custom op (one node per call, as before the twins); in plain
    eager the twin runs, which the mode would have seen as the kernel's allocations."""
    x = torch.randn(2, 3, 8, 8, generator=gen).to(DEVICE)
    assert kernels.select(op, x, **kwargs)[0] == "triton"
    plain = kernels.dispatch(op, x, **kwargs)
    with _Ops() as mode:
        moded = kernels.dispatch(op, x, **kwargs)
    assert f"equilayers.{op}" in mode.names and torch.equal(moded, plain)
    from equilayers.kernels import _ops

    # in plain eager the custom ops are not called (counted: none)
    calls = []

    def counted(real):
        return lambda *a: calls.append(a) or real(*a)

    with pytest.MonkeyPatch.context() as mp:
        for name in {op, "blur_pool2d"}:
            mp.setattr(_ops, name, counted(getattr(_ops, name)))
        assert torch.equal(kernels.dispatch(op, x, **kwargs), plain)
        assert calls == []
        with torch.device(DEVICE):  # a function mode: the custom op (negative control)
            assert torch.equal(kernels.dispatch(op, x, **kwargs), plain)
        assert calls


@pytest.mark.parametrize("op,args", CASES[::2])
def test_eager_twin_takes_a_batch_of_gradients(interpret, gen, op, args):
    """``is_grads_batched=True`` (as ``jacobian(vectorize=True)`` and
    ``gradcheck(check_batched_grad=True)``): the twin's backward goes through the
    differentiable backward op, equal to the loop of backward calls. Before, the kernel got
    torch's batched tensor: "Cannot access storage of BatchedTensorImpl"."""
    from equilayers.kernels import _eager

    x = _input(gen, op, (2, 3, 13, 14), "contiguous").requires_grad_(True)
    y = _first(getattr(_eager, op)(x, *args))
    u = torch.randn((3, *y.shape), generator=gen).to(x.device)
    loop = torch.stack([torch.autograd.grad(y, x, g, retain_graph=True)[0] for g in u])
    (batched,) = torch.autograd.grad(y, x, u, is_grads_batched=True)
    torch.testing.assert_close(batched, loop)
