"""The training-loop matrix (see ``tests/test_training_loop.py``), contexts: ``torch.func``
``grad``/``vmap``/``jvp`` and ``torch.autograd.forward_ad`` through every module (dual inputs,
and dual parameters with autograd off), and grid tables first built inside ``torch.func.grad``."""

from __future__ import annotations

import pytest
import torch
from _training_loop_common import NAMES, _first, _model, _same


@pytest.mark.parametrize("transform", ["grad", "vmap", "jvp"])
@pytest.mark.parametrize("name", NAMES)
def test_torch_func_transforms(name, transform):
    """``torch.func`` through every module: gradients and JVPs equal autograd's, ``vmap`` over
    a batch of inputs equals the loop."""
    m, args = _model(name)
    m.eval()
    x, rest = args[0], args[1:]

    def f(t):
        return _first(m(t, *rest))

    if transform == "grad":
        g = torch.func.grad(lambda t: f(t).square().sum())(x)
        leaf = x.clone().requires_grad_(True)
        f(leaf).square().sum().backward()
        _same(g, leaf.grad, rtol=1e-10, atol=1e-10)
    elif transform == "vmap":
        xs = torch.stack([x, 2 * x + 1])
        out = torch.func.vmap(f)(xs)
        _same(out, torch.stack([f(xs[0]), f(xs[1])]))
    else:
        v = torch.randn_like(x)
        _, tangent = torch.func.jvp(f, (x,), (v,))
        eps = 1e-6
        fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
        torch.testing.assert_close(tangent, fd, rtol=1e-4, atol=1e-5)


#: One module per fast path with a hand-written autograd Function (no ``jvp``): the blur and
#: max-blur pools, BlurConv2d's border ring, the fiber max, the norm pool. (Every zoo module
#: passes; 15 of the 76 raised before, each through one of these.)
FORWARD_AD = ["BlurPool2d", "MaxBlurPool2d[ceil]", "BlurConv2d[fold]", "GroupPool", "NormPool",
              "InvariantHead"]


@pytest.mark.parametrize("name", FORWARD_AD)
def test_forward_ad_through_the_fast_paths(name):
    """``torch.autograd.forward_ad`` (not a torch.func transform): the tangent equals
    ``torch.func.jvp``'s, and forward-over-reverse (a dual input that requires grad: the
    Hessian-vector product of a loss) equals ``jvp(grad(loss))``. Before, each raised "You must
    implement the jvp function for custom autograd.Function" (15 of the 76 zoo modules did)."""
    from torch.autograd import forward_ad as fwAD

    m, args = _model(name)
    m.eval()
    x, rest = args[0], args[1:]
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype)

    def f(t):
        return _first(m(t, *rest))

    def loss(t):
        return f(t).square().sum()

    _, want = torch.func.jvp(f, (x,), (v,))
    _, want_hv = torch.func.jvp(torch.func.grad(loss), (x,), (v,))
    leaf = x.clone().requires_grad_(True)
    with fwAD.dual_level():
        tangent = fwAD.unpack_dual(f(fwAD.make_dual(x, v))).tangent
        dual = fwAD.make_dual(leaf, v)
        (g,) = torch.autograd.grad(loss(dual), dual, create_graph=True)
        hv = fwAD.unpack_dual(g).tangent
    _same(tangent, want, rtol=1e-10, atol=1e-10)
    _same(hv, want_hv, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["GroupConv3d", "SteerableConv3d", "ExpandedGroupConv2d"])
def test_grid_tables_first_built_inside_torch_func_grad(name, monkeypatch):
    """A module's first call inside ``torch.func.grad`` builds its grid tables there (which
    dims the group moves and trades, read off the group's matrices): torch 2.4-2.6 cannot read
    the values of a tensor made inside ``grad``/``jvp`` (every new one is wrapped), and
    test_torch_func_transforms failed so for every 3-D group module and ExpandedGroupConv2d.
    Simulated on any torch by a ``tolist`` that refuses wrapped tensors, as those releases do
    (the control shows it refuses)."""
    from equilayers.groups import _actions

    real = torch.Tensor.tolist

    def tolist(self):
        if torch._C._functorch.is_functorch_wrapped_tensor(self):
            raise RuntimeError("Cannot access data pointer of Tensor that doesn't have storage")
        return real(self)

    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    with pytest.raises(RuntimeError, match="data pointer"):
        torch.func.grad(lambda t: t.sum() * len(torch.zeros(2).tolist()))(torch.ones(2))
    _actions.grid_moves.cache_clear()
    _actions._grid_ops_of.cache_clear()
    m, args = _model(name)
    m.eval()
    x, rest = args[0], args[1:]
    g = torch.func.grad(lambda t: _first(m(t, *rest)).square().sum())(x)
    leaf = x.clone().requires_grad_(True)
    _first(m(leaf, *rest)).square().sum().backward()
    _same(g, leaf.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_forward_ad_through_dual_parameters_with_autograd_off(name):
    """Forward-mode AD with every parameter and the input dual (``functional_call``), in eval
    mode with autograd off after a warm call: the tangent equals ``torch.func.jvp``'s. A group
    conv's kept eval filter answered a dual weight equal in value to the kept one, and the
    tangent came back ``None`` (tests/test_eval_filter.py has the case by itself)."""
    from torch.autograd import forward_ad as fwAD

    m, args = _model(name)
    m.eval()
    x, rest = args[0], args[1:]
    params = {k: p.detach() for k, p in m.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    tangents = {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype)

    def f(ps, t):
        return _first(torch.func.functional_call(m, ps, (t, *rest)))

    _, want = torch.func.jvp(f, (params, x), (tangents, v))
    with torch.no_grad():
        m(*args)  # warm: whatever an eval call keeps
        with fwAD.dual_level():
            duals = {k: fwAD.make_dual(p.clone(), tangents[k]) for k, p in params.items()}
            got = fwAD.unpack_dual(f(duals, fwAD.make_dual(x.clone(), v))).tangent
    assert got is not None
    _same(got, want, rtol=1e-10, atol=1e-10)


def test_harmonic_batch_norm_under_torch_func_the_fix_its_error_names_works(gen):
    """Training mode under ``torch.func.grad``: torch's ``replace_all_batch_norm_modules_``
    drops the running statistics of a torch ``_BatchNorm`` (GroupBatchNorm2d: the control,
    it then runs) but not of HarmonicBatchNorm, which still raises; its error names what to
    set, and that runs, with the gradient of a module built with ``track_running_stats=False``.
    Before, the error named neither, and the docs said it failed "as nn.BatchNorm" (whose fix
    does not apply)."""
    from equilayers.nn import GroupBatchNorm2d, HarmonicBatchNorm

    x = torch.randn(2, 3, 5, 4, 4, generator=gen, dtype=torch.float64)

    def grads(m):
        params = {k: p.detach() for k, p in m.named_parameters()}
        loss = lambda ps: torch.func.functional_call(m, ps, (x,)).square().sum()  # noqa: E731
        return torch.func.grad(loss)(params)

    control = torch.func.replace_all_batch_norm_modules_(GroupBatchNorm2d(3).double().train())
    grads(control)
    m = torch.func.replace_all_batch_norm_modules_(HarmonicBatchNorm(3, 2).double().train())
    assert m.running_mean is not None  # not patched
    with pytest.raises(RuntimeError, match=r"m\.running_mean = m\.running_var = "
                                           r"m\.num_batches_tracked = None and "
                                           r"m\.track_running_stats = False"):
        grads(m)
    m.running_mean = m.running_var = m.num_batches_tracked = None
    m.track_running_stats = False
    ref = HarmonicBatchNorm(3, 2, track_running_stats=False).double()
    ref.load_state_dict(m.state_dict())
    ref(x).square().sum().backward()
    got = grads(m)
    for k, p in ref.named_parameters():
        _same(got[k], p.grad)
