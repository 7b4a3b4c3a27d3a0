"""The training-loop matrix (see ``tests/test_training_loop.py``), contexts: ``inference_mode``
then a forward with gradients, ``torch.jit.trace`` (saved and loaded) and ``torch.compile`` of a
warm eval model, and the process-wide CPU caches they meet (built while tracing or in inference
mode)."""

from __future__ import annotations

import io
import sys
import warnings

import pytest
import torch
from _training_loop_common import NAMES, _eval_out, _first, _fresh, _model, _same
from torch import nn

from equilayers._cpu_cache import CacheInfo, cpu_cache
from equilayers.nn import GroupPool, InvariantHead, LiftingConv2d, NormPool


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


@pytest.mark.parametrize("name", NAMES)
def test_restored_and_converted_under_inference_mode_then_trains(name):
    """A checkpoint restored (``load_state_dict``) and a no-op conversion (``.double()`` of a
    float64 model, ``.cpu()``) inside ``torch.inference_mode``, as a validation function that
    restores the best weights does, then training: the derived tables rebuilt there were
    inference tensors, and the next backward raised "Inference tensors cannot be saved for
    backward" (52 of the zoo's modules; a plain ``nn.Conv2d`` trains on)."""
    m, args = _model(name)
    with torch.inference_mode():
        m.load_state_dict(m.state_dict())
        m.double().cpu()
    inference = [n for n, t in [*m.named_buffers(), *m.named_parameters()]
                 if t.is_inference()]
    inference += [f"{n}.{a}" for n, sub in m.named_modules()
                  for a, t in vars(sub).items() if isinstance(t, torch.Tensor)
                  and t.is_inference()]
    assert not inference, f"inference tensors left in the model: {inference}"
    m.train()
    leaf = args[0].clone().requires_grad_(True)
    _first(m(leaf, *args[1:])).square().sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


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
