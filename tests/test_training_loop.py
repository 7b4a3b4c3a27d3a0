"""The training-loop matrix: every module of the zoo (``tests/_zoo.py``) inside the
code users write around it, checked against a fresh copy of the model built from the same
state dict (the reference a stale filter, a meta buffer or a NaN statistic would differ from).

Routes that change the weights: optimizer steps (plain, foreach, fused: fused steps do not bump
``_version``), ``.data`` edits, ``vector_to_parameters``, ``swap_tensors``, parametrizations,
``load_state_dict`` (with ``assign=True`` and after ``to_empty`` on a meta-built model),
``torch.func.functional_call`` with other weights. Contexts: ``inference_mode`` then a forward with
gradients, ``torch.jit.trace`` and ``torch.compile`` of a warm eval model, ``torch.func``
``grad``/``vmap``/``jvp`` and ``torch.autograd.forward_ad``, empty batches, ``channels_last``
conversion, checkpoints.
"""

from __future__ import annotations

import copy
import io
import sys
import warnings

import pytest
import torch
from _zoo import ZOO, build
from torch import nn
from torch.nn.utils import parametrize

from equilayers._cpu_cache import CacheInfo, cpu_cache
from equilayers.nn import GroupPool, InvariantHead, LiftingConv2d, NormPool

NAMES = sorted(ZOO)

#: Modules whose evaluation output is a hard choice, piecewise constant in the weights (a
#: weight change need not change it): their choice logits stand in for the output where a
#: test asks that a weight change be seen.
HARD_CHOICE = ("LearnablePolyphasePool2d", "LearnablePolyphasePool3d")


def _seen(name: str, m: nn.Module, args) -> torch.Tensor:
    """What a weight change must change: the eval output (and a hard choice's logits)."""
    out = _first(_eval_out(m, args)).flatten()
    if name.startswith(HARD_CHOICE):
        with torch.no_grad():
            out = torch.cat([out, m.component_logits(args[0]).to(out.dtype).flatten()])
    return out


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _double_args(args):
    return tuple(a.double() if a.is_floating_point() else a for a in args)


def _model(name: str, seed: int = 0):
    """The zoo module in float64 (exact comparisons) and its float64 inputs."""
    m, args = build(name, seed)
    return m.double(), _double_args(args)


def _fresh(name: str, m: nn.Module) -> nn.Module:
    """A new instance of the same zoo entry (other random weights), loaded from ``m``."""
    other = ZOO[name].make().double()
    other.load_state_dict(m.state_dict())
    return other.train(m.training)


def _same(a, b, rtol=1e-12, atol=1e-12):
    torch.testing.assert_close(_first(a), _first(b), rtol=rtol, atol=atol)


def _eval_out(m, args):
    # eval() drops a group conv's kept eval filter (train(False) drops it): switch only from
    # train mode, so a model already in eval mode answers from its warm entry, which is what
    # the tests that change it between two eval calls must check
    if m.training:
        m.eval()
    with torch.no_grad():
        return m(*args)


def _train_step(m, args, opt):
    m.train()
    opt.zero_grad()
    _first(m(*args)).square().mean().backward()
    opt.step()


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=False),
    "sgd-foreach": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=True),
    "sgd-fused": lambda p: torch.optim.SGD(p, lr=0.1, fused=True),
    "adam-fused": lambda p: torch.optim.Adam(p, lr=0.05, fused=True),
    "adamw-fused": lambda p: torch.optim.AdamW(p, lr=0.05, fused=True),
    "adagrad-fused": lambda p: torch.optim.Adagrad(p, lr=0.1, fused=True),
}


def _trainable(m):
    return [p for p in m.parameters() if p.requires_grad]


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name", NAMES)
def test_train_validate_loop_matches_a_fresh_copy(name, opt_name):
    """Two epochs of train step + validation: each validation output equals a fresh model's
    built from the state dict at that point, and the second differs from the first."""
    m, args = _model(name)
    params = _trainable(m)
    if not params:
        pytest.skip(f"{name} has no trainable parameters")
    opt = OPTIMIZERS[opt_name](params)
    outs = []
    for _ in range(2):
        _train_step(m, args, opt)
        out = _eval_out(m, args)
        _same(out, _eval_out(_fresh(name, m), args))
        outs.append(_seen(name, m, args))
    assert not torch.equal(outs[0], outs[1]), "the second validation repeated the first"


@pytest.mark.parametrize("name", NAMES)
def test_data_edits_and_vector_to_parameters(name):
    m, args = _model(name)
    params = list(m.parameters())
    if not params:
        pytest.skip(f"{name} has no parameters")
    _eval_out(m, args)  # warm
    for p in params:
        p.data.mul_(1.5).add_(0.01)  # no version bump
    _same(_eval_out(m, args), _eval_out(_fresh(name, m), args))
    vec = nn.utils.parameters_to_vector(params)
    nn.utils.vector_to_parameters(vec * 0.5 - 0.02, params)
    _same(_eval_out(m, args), _eval_out(_fresh(name, m), args))
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn_like(p))
    _same(_eval_out(m, args), _eval_out(_fresh(name, m), args))


@pytest.mark.parametrize("name", NAMES)
def test_swap_tensors(name):
    """``torch.utils.swap_tensors`` (what ``load_state_dict(assign=True)`` and ``.to()`` use under
    ``torch.__future__.set_swap_module_params_on_conversion(True)``) swaps a parameter's whole
    payload in place: the object, its ``_version`` bookkeeping and its address stay unrelated
    to the new values."""
    m, args = _model(name)
    params = list(m.parameters())
    if not params:
        pytest.skip(f"{name} has no parameters")
    before = _seen(name, m, args)  # warm
    for p in params:
        torch.utils.swap_tensors(p, nn.Parameter(torch.randn_like(p) * 0.3,
                                                 requires_grad=p.requires_grad))
    after = _eval_out(m, args)
    _same(after, _eval_out(_fresh(name, m), args))
    assert not torch.equal(before, _seen(name, m, args)), "the swap was not seen"
    was = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        m.float().double()  # swaps every parameter and buffer twice
    finally:
        torch.__future__.set_swap_module_params_on_conversion(was)
    _same(_eval_out(m, args), after, rtol=1e-6, atol=1e-6)


class _Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, w):
        return w * self.s


@pytest.mark.parametrize("name", NAMES)
def test_parametrized_weight(name):
    """A parametrized weight is recomputed per access (a new tensor, possibly at a recycled
    address): every forward must use the current value."""
    m, args = _model(name)
    if not isinstance(getattr(m, "weight", None), nn.Parameter):
        pytest.skip(f"{name} has no weight parameter")
    parametrize.register_parametrization(m, "weight", _Scale())
    scale = m.parametrizations.weight[0].s
    for value in (2.0, 3.0, 0.5, 2.0):
        with torch.no_grad():
            scale.fill_(value)
        out = _eval_out(m, args)
        ref, _ = _model(name)
        with torch.no_grad():
            ref.weight.copy_(m.weight)
            if getattr(m, "bias", None) is not None:
                ref.bias.copy_(m.bias)
        _same(out, _eval_out(ref, args))


@pytest.mark.parametrize("name", NAMES)
def test_functional_call_with_other_weights(name):
    m, args = _model(name)
    m.eval()
    other, _ = _model(name, seed=7)
    state = dict(other.named_parameters()) | dict(other.named_buffers())
    with torch.no_grad():
        _same(torch.func.functional_call(m, state, args), other.eval()(*args))
        _same(m(*args), _fresh(name, m).eval()(*args))  # m itself unchanged


@pytest.mark.parametrize("assign", [True, False], ids=["assign", "to_empty"])
@pytest.mark.parametrize("name", NAMES)
def test_meta_device_init_then_load(name, assign):
    """Build under ``torch.device("meta")``, materialize by ``load_state_dict(assign=True)`` or
    ``to_empty()`` + ``load_state_dict()``: the real model's outputs, in eval and train mode.
    Afterwards a plain CPU build of the same entry still works (no cache holds meta tensors)."""
    ref, args = _model(name)
    sd = ref.state_dict()
    with torch.device("meta"):
        m = ZOO[name].make().double()
    if assign:
        m.load_state_dict(sd, assign=True)
    else:
        m.to_empty(device="cpu")
        m.load_state_dict(sd)
    _same(_eval_out(m, args), _eval_out(ref, args))
    m.train()
    ref.train()
    _same(m(*args), ref(*args))
    again, args2 = build(name)  # CPU build after the meta build
    assert torch.isfinite(_first(again(*args2))).all()


def _outputs(out) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", NAMES)
def test_meta_forward_gives_the_cpu_shapes(name, mode):
    """Built under ``torch.device("meta")`` and never materialized, the module's forward on
    meta inputs gives meta outputs of the CPU forward's shapes and dtypes, as ``nn.Conv3d``'s
    does (shape inference): derived tables exist on meta with their real shapes (the 3-D convs
    once left them empty), and no check reads a value (a polyphase upsampling's index range
    check once called ``.item()`` on a meta index)."""
    ref, args = build(name)
    with torch.no_grad():
        expected = _outputs(getattr(ref, mode)()(*args))
    with torch.device("meta"):
        m = ZOO[name].make()
    with torch.no_grad():
        got = _outputs(getattr(m, mode)()(*(a.to("meta") for a in args)))
    assert [(o.is_meta, o.shape, o.dtype) for o in got] == [
        (True, e.shape, e.dtype) for e in expected]


@pytest.mark.parametrize("name", NAMES)
def test_inference_mode_then_grad(name):
    """A first call under ``torch.inference_mode``, then a training call. Cold (the CPU
    caches empty, as in a fresh process): a cached table first built in inference mode was an
    inference tensor, and ``BlurConv2d``'s ring saves its gather index for backward (it raised;
    run after other tests, the cache held a normal table and the test passed)."""
    _clear_cpu_caches()
    m, args = _model(name)
    m.eval()
    with torch.inference_mode():
        y0 = m(*args)
    leaf = args[0].clone().requires_grad_(True)
    y = m(leaf, *args[1:])
    _same(y.detach() if not isinstance(y, tuple) else y[0].detach(), y0)
    _first(y).square().sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    params = [p for p in m.parameters() if p.requires_grad]
    if params:
        assert all(p.grad is not None for p in params)


def _trace(m, args):
    """``torch.jit.trace`` as users call it: with its default ``check_trace`` (a second trace,
    under ``torch.no_grad``, must record the same graph, or it raises), and an output that
    differs from the module's raising too (torch only warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings of data-dependent shapes
        warnings.filterwarnings("error", "Output nr", torch.jit.TracerWarning)
        return torch.jit.trace(m, args)


def _clear_cpu_caches() -> int:
    """Empty every ``cpu_cache`` of equilayers (the tables built on their first use), as in a
    fresh process; the number of caches."""
    caches = {id(f): f for mod in list(sys.modules.values())
              if mod.__name__.startswith("equilayers") for f in vars(mod).values()
              if isinstance(getattr(f, "cache_info", lambda: None)(), CacheInfo)}
    for f in caches.values():
        f.cache_clear()
    return len(caches)


def test_clear_cpu_caches_finds_them():
    from equilayers.functional import _steerable

    LiftingConv2d(1, 2, 5, group="c8")  # fills the steerable basis cache
    assert _steerable._cached.cache_info().currsize > 0
    assert _clear_cpu_caches() > 10 and _steerable._cached.cache_info().currsize == 0


@cpu_cache(maxsize=4)
def _table(n: int) -> torch.Tensor:
    t = torch.zeros(n, dtype=torch.float64)
    t.index_put_((torch.arange(2),), torch.tensor([1.0, 2.0], dtype=torch.float64))
    return t


def test_a_cpu_cache_table_built_while_tracing_is_a_constant_of_the_graph():
    """A table first built inside a traced call is built with the tracer suspended: a constant
    of the graph, as on every later (cached) call. (Recorded, its construction ops were in the
    first trace only, and ``check_trace``'s second trace, a cache hit, differed.)"""
    _table.cache_clear()
    traced = _trace(lambda x: x * _table(4).to(x), (torch.randn(3, 4),))
    kinds = {n.kind() for n in traced.graph.nodes()}
    assert "aten::zeros" not in kinds and "aten::index_put_" not in kinds, kinds
    info = _table.cache_info()  # built in the first trace; hit by the check's runs
    assert info.misses == 1 and info.hits >= 1 and info.currsize == 1, info
    x = torch.randn(2, 4)
    torch.testing.assert_close(traced(x), x * torch.tensor([1.0, 2.0, 0.0, 0.0]))


def test_a_cpu_cache_table_built_in_inference_mode_is_a_normal_tensor():
    """Built with inference mode off, so a later call with autograd on can save it."""
    _table.cache_clear()
    with torch.inference_mode():
        t = _table(3)
    assert not t.is_inference() and _table.cache_info().currsize == 1
    leaf = torch.ones(3, requires_grad=True)
    (leaf * _table(3)).sum().backward()  # mul saves the table for backward
    torch.testing.assert_close(leaf.grad, torch.tensor([1.0, 2.0, 0.0]))


@pytest.mark.parametrize("name", NAMES)
def test_jit_trace_of_a_warm_eval_model_follows_weight_changes(name):
    m, args = _model(name)
    _eval_out(m, args)  # warm
    traced = _trace(m, args)
    with torch.no_grad():
        for p in m.parameters():
            p.data.mul_(1.25)
        _same(traced(*args), _eval_out(_fresh(name, m), args))


def _save_load(traced):
    buf = io.BytesIO()
    with warnings.catch_warnings():  # torch deprecates TorchScript's save/load: a
        # DeprecationWarning in 2.13, a FutureWarning in 2.15
        warnings.filterwarnings("ignore", r"`torch\.jit\.(save|load)` is deprecated", Warning)
        torch.jit.save(traced, buf)
        buf.seek(0)
        return torch.jit.load(buf)


@pytest.mark.parametrize("name", NAMES)
def test_jit_trace_with_grad_mode_on_saves_and_loads(name):
    """An eval model traced with autograd on (parameters requiring grad: the custom autograd
    Functions' path) holds only TorchScript ops: ``torch.jit.save`` takes it and the loaded
    graph gives the model's outputs. Traced cold (never called, the CPU caches empty, as in a
    fresh process) with the default ``check_trace``: its second trace runs warm and under
    ``torch.no_grad``, and must record the same graph (it did not for a c8 conv, whose first
    call ran its input checks, and for the learned polyphase pools, whose straight-through
    term was recorded only with autograd on)."""
    _clear_cpu_caches()
    m, args = _model(name)
    m.eval()
    traced = _trace(m, args)
    _same(_save_load(traced)(*args), _eval_out(m, args))


def _p4_max_pool_model():
    return nn.Sequential(LiftingConv2d(1, 4, 3, padding=1, group="p4"), GroupPool("max"))


def _invariant_head_model():
    return nn.Sequential(LiftingConv2d(1, 4, 3, padding=1, group="p4m"),
                         InvariantHead(4, 10, group="p4m"))


def _norm_pool_model():
    return nn.Sequential(LiftingConv2d(1, 4, 5, padding=2, group="so2", max_order=2),
                         NormPool(2))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")  # torch 2.13
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # torch 2.15
@pytest.mark.parametrize("make", [_p4_max_pool_model, _invariant_head_model, _norm_pool_model],
                         ids=["GroupPool-max", "InvariantHead", "NormPool"])
def test_jit_trace_checked_with_grad_mode_on(make):
    """``torch.jit.trace`` with its default sanity check (two invocations give the same graph)
    and autograd on, then a save/load round trip: the fiber max and the norm pool trace as
    plain ops, not as their hand-written autograd Functions."""
    m = make().eval()
    x = torch.randn(2, 1, 9, 9)
    traced = torch.jit.trace(m, x)
    loaded = _save_load(traced)
    y = loaded(x)
    torch.testing.assert_close(y, _eval_out(m, (x,)), rtol=0, atol=0)
    y.sum().backward()  # the loaded graph is differentiable
    other = torch.randn(3, 1, 9, 9)
    torch.testing.assert_close(loaded(other), _eval_out(m, (other,)), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_compiled_eval_model_follows_weight_changes(name):
    torch._dynamo.reset()
    m, args = _model(name)
    m.eval()
    compiled = torch.compile(m, backend="eager", fullgraph=True)
    with torch.no_grad():
        _same(compiled(*args), m(*args))
        for p in m.parameters():
            p.data.mul_(0.75)  # .data: not seen by the version counter
        _same(compiled(*args), _eval_out(_fresh(name, m), args))


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
def test_empty_batch(name):
    """A batch of 0 samples gives an empty output of the right shape (as ``nn.Conv2d``) and
    leaves running statistics untouched."""
    m, args = _model(name)
    ref_out = _first(_eval_out(m, args))
    empty = (args[0][:0], *args[1:])
    if name.startswith(("PolyphaseUpsample", "LearnablePolyphaseUpsample")):
        empty = (args[0][:0], args[1][:0])
    stats = {k: v.clone() for k, v in m.state_dict().items()}
    for mode in (False, True):
        m.train(mode)
        out = _first(m(*empty))
        assert out.shape == (0, *ref_out.shape[1:])
    for k, v in m.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(v, stats[k]), f"{k} changed on an empty batch"


@pytest.mark.parametrize("name", NAMES)
def test_zero_channels(name):
    """An input with 0 channels gives the empty output of the right shape (and an empty
    gradient) where the module takes any channel count, or a ValueError that quotes the input's
    shape where it was built for a channel count; never torch's own error. GroupMaxPool2d,
    GroupAvgPool2d/3d, GroupMaxPool3d, NormMaxPool and GaussianBlurPool2d raised torch's
    RuntimeError ("Expected 3D or 4D ... tensor", "cannot reshape tensor of 0 elements"):
    torch's pools refuse 0 channels where the other pools here return an empty map."""
    m, args = _model(name)
    ref = _first(_eval_out(m, args))
    x = args[0].narrow(1, 0, 0).clone().requires_grad_(True)
    for mode in (False, True):
        m.train(mode)
        try:
            out = _first(m(x, *args[1:]))
        except ValueError as e:
            assert str(tuple(x.shape)) in str(e), str(e)
            continue
        assert out.shape == (ref.shape[0], 0, *ref.shape[2:])
        out.sum().backward()
        assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_model_to_channels_last_and_checkpoint(name):
    """``model.to(memory_format=torch.channels_last)`` works on every module (5-D weights
    included) and changes no output; a checkpoint saved with ``torch.save(state_dict)`` and
    loaded with ``weights_only=True`` restores the outputs."""
    m, args = _model(name)
    ref = _eval_out(m, args)
    cl = copy.deepcopy(m).to(memory_format=torch.channels_last)
    _same(_eval_out(cl, args), ref)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    other = ZOO[name].make().double()
    other.load_state_dict(torch.load(buf, weights_only=True))
    _same(_eval_out(other, args), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_buffers_share_no_memory_with_the_process_caches(name, dtype):
    """A module's derived buffers are its own copies of the process-wide tables: editing one
    in place leaves the next build of the same entry untouched. (The 3-D expansion table was
    once the cached tensor itself on the CPU, so one edited buffer broke every later cube conv
    of that group and size; a steerable regular conv's ``basis_scale`` was the cached float64
    tensor itself after ``.double()``, one object shared by every such conv.)"""
    def make():
        return ZOO[name].make().to(dtype)

    fresh = {n: b.clone() for n, b in make().named_buffers()}  # tables: no RNG
    m = make()
    owners: dict[int, str] = {}
    for mod_name, mod in m.named_modules():  # no two modules hold the same buffer object
        for n, b in mod._buffers.items():
            if b is not None:
                where = f"{mod_name}.{n}"
                assert owners.setdefault(id(b), where) == where, (
                    f"{name}: {where} is the same tensor as {owners[id(b)]}")
    with torch.no_grad():
        for b in m.buffers():
            if b.is_floating_point():
                b.add_(1.0)
            elif b.dtype in (torch.int64, torch.int32):
                b.add_(1)
    again = dict(make().named_buffers())
    assert again.keys() == fresh.keys()
    for n, b in again.items():
        assert torch.equal(b, fresh[n]), f"{name}: buffer {n} changed with another module's edit"
