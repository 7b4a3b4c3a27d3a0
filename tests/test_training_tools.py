"""The zoo (``tests/_zoo.py``) under the tools of ``torch`` that users put around a training
loop and that ``tests/test_training_loop.py`` does not cover: model ensembling with
``torch.func.stack_module_state`` + ``functional_call`` + ``vmap`` (torch's "model ensembling"
tutorial) and weight averaging (``torch.optim.swa_utils.AveragedModel``, torch's own EMA
recipe with ``use_buffers=True`` included, over every module family that once held an integer
gather table as a buffer). Each compares with a model built from the same state dict, with
parameters averaged by hand, or with the loop over the ensemble's members."""

from __future__ import annotations

import copy

import pytest
import torch
from _zoo import ZOO, build
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import equilayers.nn as enn

NAMES = sorted(ZOO)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _model(name: str, seed: int = 0):
    m, args = build(name, seed)
    return m.double(), tuple(a.double() if a.is_floating_point() else a for a in args)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", NAMES)
def test_model_ensembling_with_stack_module_state(name, mode):
    """Three members stacked and run by ``vmap`` over ``functional_call`` on a meta copy of
    the first (the tutorial's recipe), each member's eval cache warm: the loop's outputs.
    (A float64 UNet's steerable convs once shared one ``basis_scale`` tensor, which
    ``named_buffers`` lists once, so the meta copy kept the others' and the call failed with
    "Cannot copy out of meta tensor".)"""
    members = []
    for seed in range(3):
        m, args = _model(name, seed)
        members.append(m.train(mode == "train"))
    if not list(members[0].parameters()) + list(members[0].buffers()):
        pytest.skip(f"{name} has no parameters or buffers")
    with torch.no_grad():
        expected = torch.stack([_first(m(*args)) for m in members])  # (eval: warms the caches)
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")

    def call(p, b, *inputs):
        return _first(functional_call(base, (p, b), inputs))

    with torch.no_grad():
        out = vmap(call, in_dims=(0, 0) + (None,) * len(args), randomness="same")(
            params, buffers, *args)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def ema_update(averaged, current, num_averaged, decay=0.9):
    """An EMA by hand: floating-point tensors averaged, the rest (batch norms' counters)
    copied."""
    for a, c in zip(averaged, current, strict=True):
        if a.is_floating_point():
            a.lerp_(c, 1 - decay)
        else:
            a.copy_(c)


def _steps(m, args, ema, n=3):
    """``n`` Adam steps of ``m``, each followed by ``ema.update_parameters(m)``."""
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(n):
        m.train()
        opt.zero_grad()
        _first(m(*args)).square().mean().backward()
        opt.step()
        ema.update_parameters(m)


@pytest.mark.parametrize("avg", ["torch", "by hand"])
@pytest.mark.parametrize("name", NAMES)
def test_ema_of_parameters_and_buffers_follows_the_model(name, avg):
    """``AveragedModel(use_buffers=True)`` with torch's EMA (``get_ema_multi_avg_fn``) or one
    by hand: the averaged model's eval output is that of a model built from its state dict."""
    if not any(p.requires_grad for p in ZOO[name].make().parameters()):
        pytest.skip(f"{name} has no trainable parameters")
    m, args = _model(name)
    ema = AveragedModel(m, use_buffers=True, multi_avg_fn=(
        get_ema_multi_avg_fn(0.9) if avg == "torch" else ema_update))
    _steps(m, args, ema)
    fresh = ZOO[name].make().double()
    fresh.load_state_dict(ema.module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(_first(ema.eval()(*args)), _first(fresh.eval()(*args)),
                                   rtol=1e-10, atol=1e-10)


def _x(*shape):
    return lambda: (torch.randn(*shape, generator=torch.Generator().manual_seed(1),
                                dtype=torch.float64),)


#: Every module family that kept an integer gather table as a buffer until the tables became a
#: process-wide cache (``equilayers.nn._tables``), on pixel and steerable bases.
TABLES = {
    "LiftingConv2d[p4]": (lambda: enn.LiftingConv2d(3, 4, 3, padding=1, group="p4"),
                          _x(2, 3, 7, 7)),
    "LiftingConv2d[c8]": (lambda: enn.LiftingConv2d(3, 4, 5, padding=2, group="c8"),
                          _x(2, 3, 7, 7)),
    "GroupConv2d[p4m]": (lambda: enn.GroupConv2d(3, 4, 3, padding=1, group="p4m"),
                         _x(2, 3, 8, 7, 7)),
    "GroupConv2d[c8]": (lambda: enn.GroupConv2d(3, 4, 5, padding=2, group="c8"),
                        _x(2, 3, 8, 7, 7)),
    "LiftingConvTranspose2d[p4m]": (
        lambda: enn.LiftingConvTranspose2d(3, 4, 3, stride=2, padding=1, group="p4m"),
        _x(2, 3, 5, 5)),
    "GroupConvTranspose2d[p4]": (
        lambda: enn.GroupConvTranspose2d(3, 4, 4, stride=2, padding=1, group="p4"),
        _x(2, 3, 4, 5, 5)),
    "GroupConvTranspose2d[c8]": (
        lambda: enn.GroupConvTranspose2d(3, 4, 3, stride=2, padding=1, group="c8"),
        _x(2, 3, 8, 5, 5)),
    "LiftingConv3d[o]": (lambda: enn.LiftingConv3d(2, 2, 3, padding=1, group="o"),
                         _x(1, 2, 5, 5, 5)),
    "GroupConv3d[o]+Restrict": (
        lambda: nn.Sequential(enn.GroupConv3d(2, 2, 3, padding=1, group="o"),
                              enn.Restrict("o", "c4z")),
        _x(1, 2, 24, 3, 3, 3)),
    "GroupConv3d[c4z]": (lambda: enn.GroupConv3d(2, 3, 3, padding=1, group="c4z"),
                         _x(2, 2, 4, 5, 5, 5)),
    "GroupConv3d[c4z,harmonic]": (
        lambda: enn.GroupConv3d(2, 3, 3, padding=1, group="c4z", basis="harmonic"),
        _x(2, 2, 4, 5, 5, 5)),
    "Restrict": (lambda: nn.Sequential(enn.GroupConv2d(2, 2, 3, padding=1, group="p4m"),
                                       enn.Restrict("d4", "d1")), _x(2, 2, 8, 5, 5)),
    "CosetPool": (lambda: nn.Sequential(enn.GroupConv2d(2, 2, 3, padding=1, group="p4m"),
                                        enn.CosetPool("d4", "d1")), _x(2, 2, 8, 5, 5)),
}
_TABLE_ATTRS = ("expansion_index", "expansion_table", "bias_index", "index")


def _tables_of(model):
    """``{module.attr: table}`` of every gather table the model's modules read."""
    return {f"{n}.{a}": getattr(mod, a) for n, mod in model.named_modules()
            for a in _TABLE_ATTRS if isinstance(getattr(type(mod), a, None), property)}


@pytest.mark.parametrize("name", TABLES)
def test_torch_ema_recipe_with_buffers(name):
    """torch's documented EMA, ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(...),
    use_buffers=True)``, after several Adam steps: the averaged model's outputs are those of a
    model holding the parameters and floating-point buffers averaged by hand, and its gather
    tables are the ones its arguments give. (torch averages integer buffers in floating point
    and truncates: the gather tables were integer buffers, came out with other indices, and
    the averaged model raised, or before that gave wrong outputs; now they are no buffers.)
    The control: the averaged model differs from the last trained one."""
    make, inputs = TABLES[name]
    m, args = make().double(), inputs()
    decay = 0.9  # (0.9 truncates 7 * 0.9 + 7 * 0.1 in float32 to 6; 0.999 misses < 2**21)
    ema = AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    hand: dict[str, torch.Tensor] = {}
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(4):
        m.train()
        opt.zero_grad()
        _first(m(*args)).square().mean().backward()
        opt.step()
        ema.update_parameters(m)
        for n, t in list(m.named_parameters()) + list(m.named_buffers()):
            t = t.detach()
            first = n not in hand or not t.is_floating_point()
            hand[n] = t.clone() if first else hand[n].lerp(t, 1 - decay)
    ref = make().double()
    with torch.no_grad():
        for n, t in list(ref.named_parameters()) + list(ref.named_buffers()):
            t.copy_(hand[n])
        out = _first(ema.eval()(*args))
        torch.testing.assert_close(out, _first(ref.eval()(*args)), rtol=1e-12, atol=1e-12)
        assert not torch.allclose(out, _first(m.eval()(*args)))  # the control
    assert all(b.is_floating_point() for b in ema.module.buffers()), name  # no table
    tables = _tables_of(ema.module)
    assert tables, name
    for key, want in _tables_of(make()).items():  # built afresh from the arguments
        assert torch.equal(tables[key], want), key


def test_table_attributes_are_read_only_copies():
    """The tables' attributes (``expansion_index``, ...) return copies: writing into one, as
    into the buffer it once was, changes no output and no later read; assigning one fails
    (nothing on the module to replace)."""
    conv = enn.GroupConv2d(2, 2, 3, padding=1, group="p4m").double().eval()
    x = TABLES["Restrict"][1]()[0]
    y = conv(x)
    table = conv.expansion_index
    with torch.no_grad():
        table.copy_(table.flip(-1))
    torch.testing.assert_close(conv(x), y, rtol=0, atol=0)
    assert not torch.equal(conv.expansion_index, table)
    with pytest.raises(AttributeError):
        conv.expansion_index = table
    pool = enn.CosetPool("d4", "d1")
    with torch.no_grad():
        pool.index.copy_(pool.index.flip(0))
    torch.testing.assert_close(pool(y), enn.CosetPool("d4", "d1")(y), rtol=0, atol=0)
