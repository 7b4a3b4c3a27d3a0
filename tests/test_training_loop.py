"""The training-loop matrix: every module of the zoo (``tests/_zoo.py``) inside the
code users write around it, checked against a fresh copy of the model built from the same
state dict (the reference a stale filter, a meta buffer or a NaN statistic would differ from).

Here, the routes that change the weights: optimizer steps (plain, foreach, fused: fused steps
do not bump ``_version``), ``.data`` edits, ``vector_to_parameters``, ``swap_tensors``,
parametrizations, ``load_state_dict`` (with ``assign=True`` and after ``to_empty`` on a
meta-built model), ``torch.func.functional_call`` with other weights, parameters of another
dtype (``assign=True`` from a float64 or bfloat16 state dict, ``.data =``, a new ``Parameter``,
``functional_call``); and a forward on the meta device. The contexts:
``tests/test_training_loop_trace.py`` (``inference_mode``, ``torch.jit.trace``,
``torch.compile``), ``tests/test_training_loop_func.py`` (``torch.func``,
forward AD), ``tests/test_training_loop_edges.py`` (empty batches, 0 channels,
``channels_last``, checkpoints, buffers).
"""

from __future__ import annotations

import pytest
import torch
from _training_loop_common import (
    NAMES,
    _double_args,
    _eval_out,
    _first,
    _fresh,
    _model,
    _same,
)
from _zoo import ZOO, build
from conftest import seeded_rng
from torch import nn
from torch.nn.utils import parametrize

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
    _same_eval_and_train(m, ref, args)
    again, args2 = build(name)  # CPU build after the meta build
    assert torch.isfinite(_first(again(*args2))).all()


@pytest.mark.parametrize("name", NAMES)
def test_meta_assign_load_then_to(name):
    """Built under ``torch.device("meta")`` and given a state dict by ``load_state_dict(sd,
    assign=True)`` (docs/deployment.md), then moved by ``.to("cpu")`` and ``.double()``: the
    eager build's outputs. A parameter-free module keeps its derived buffers on meta through
    the load; ``.to("cpu")`` copied them and raised torch's "Cannot copy out of meta tensor"
    (34 of the zoo's entries, every U-Net), and torch's advice there (``to_empty()``) wiped
    the loaded weights."""
    ref, args = build(name)
    with torch.device("meta"):
        m = ZOO[name].make()
    m.load_state_dict(ref.state_dict(), assign=True)
    m = m.to("cpu").double()
    assert not any(t.is_meta for t in [*m.parameters(), *m.buffers()])
    _same_eval_and_train(m, ref.double(), _double_args(args))


@pytest.mark.parametrize("name", NAMES)
def test_meta_to_empty_of_a_module_without_state(name):
    """A module with an empty state dict built on meta and materialized by ``to_empty()`` alone
    computes the eager build's outputs (its derived buffers are refilled, not left as the
    uninitialized memory ``to_empty()`` gives)."""
    ref, args = build(name)
    if ref.state_dict():
        pytest.skip(f"{name} has state: to_empty() + load_state_dict() is tested above")
    with torch.device("meta"):
        m = ZOO[name].make()
    m.to_empty(device="cpu")
    _same_eval_and_train(m, ref, args)


def _same_eval_and_train(m: nn.Module, ref: nn.Module, args: tuple) -> None:
    """``m`` computes what ``ref`` does, in eval mode and then in train mode (both left in
    train mode), with the same draws for a module drawing noise in training (dropout)."""
    _same(_eval_out(m, args), _eval_out(ref, args))
    m.train()
    ref.train()
    with seeded_rng(1):
        out = m(*args)
    with seeded_rng(1):
        _same(out, ref(*args))


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


def _assign_loaded(name: str, sd: dict, meta: bool) -> nn.Module:
    """A new float32 build of the zoo entry (or one under ``torch.device("meta")``) given
    ``sd`` by ``load_state_dict(sd, assign=True)``: it keeps ``sd``'s dtype (torch's rule)."""
    with torch.device("meta" if meta else "cpu"):
        m = ZOO[name].make()
    m.load_state_dict(sd, assign=True)
    return m


@pytest.mark.parametrize("meta", [False, True], ids=["float32", "meta"])
@pytest.mark.parametrize("name", NAMES)
def test_assign_load_of_another_dtype(name, meta):
    """``load_state_dict(sd, assign=True)`` keeps the state dict's dtype, as for ``nn.Conv2d``,
    which then runs in it (the meta-init recipe of docs/deployment.md): a float32 (or meta)
    build loaded so from a float64 state dict computes what the ``.double()`` build loaded the
    normal way computes, eval and train (its derived bases rebuilt in float64, not float32 ones
    widened: the steerable and harmonic convs raised torch's dtype errors deep in the
    expansion, the pixel ones were off by 4e-8); from a bfloat16 state dict it runs in
    bfloat16, as the ``.bfloat16()`` build does."""
    ref, args = _model(name)
    m = _assign_loaded(name, ref.state_dict(), meta).train(ref.training)
    _same_eval_and_train(m, ref, args)
    half = ref.bfloat16()
    sd = half.state_dict()
    m = _assign_loaded(name, sd, meta).train(half.training)
    args16 = tuple(a.bfloat16() if a.is_floating_point() else a for a in args)
    got, want = _first(_eval_out(m, args16)), _first(_eval_out(half, args16))
    assert got.dtype == want.dtype and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.05)


ROUTES = ("data", "parameter", "functional_call")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", NAMES)
def test_parameters_of_another_dtype_without_to(name, route):
    """Routes that give a module parameters of another dtype without ``Module._apply`` (and
    so without a rebuild of its derived buffers): ``p.data = p.data.double()``, a new float64
    ``Parameter`` assigned, ``torch.func.functional_call`` with float64 parameters and
    buffers. An ``nn.Conv2d`` runs in float64 there; every zoo module computes what its
    ``.double()`` build does (the group convs raised torch's dtype errors from the expansion,
    or computed through a float32 basis widened). The forward leaves the module's derived
    buffers as they were (it builds them on a throwaway copy)."""
    ref, args = _model(name)
    with seeded_rng(0):
        m = ZOO[name].make().eval()
    state = ref.state_dict()
    derived = {n: b for n, b in m.named_buffers() if n not in state}
    with torch.no_grad():
        if route == "functional_call":
            _same(torch.func.functional_call(m, state, args), _eval_out(ref, args))
        else:
            for key, value in state.items():
                owner, _, attr = key.rpartition(".")
                mod = m.get_submodule(owner)
                if attr in mod._parameters and route == "parameter":
                    setattr(mod, attr, nn.Parameter(
                        value.clone(), requires_grad=mod._parameters[attr].requires_grad))
                else:
                    mod._parameters.get(attr, mod._buffers.get(attr)).data = value.clone()
            _same(_eval_out(m, args), _eval_out(ref, args))
    after = {n: b for n, b in m.named_buffers() if n not in state}
    assert after.keys() == derived.keys()
    assert all(after[n] is b for n, b in derived.items()), "the forward replaced a buffer"
