"""The zoo (``tests/_zoo.py``) under the tools of ``torch`` that users put around a training
loop and that ``tests/test_training_loop.py`` does not cover: model ensembling with
``torch.func.stack_module_state`` + ``functional_call`` + ``vmap`` (torch's "model ensembling"
tutorial), weight averaging (``torch.optim.swa_utils.AveragedModel``) and in-place edits of a
warm eval model's derived buffers. Each compares with a model built from the same state dict
or with the loop over the ensemble's members."""

from __future__ import annotations

import copy

import pytest
import torch
from _zoo import ZOO, build
from torch.func import functional_call, stack_module_state, vmap
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from equilayers.nn import CosetPool, Restrict

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
    """The EMA of docs/training.md: floating-point tensors averaged, integer buffers (the
    group convs' gather tables, batch norms' counters) copied."""
    for a, c in zip(averaged, current, strict=True):
        if a.is_floating_point():
            a.lerp_(c, 1 - decay)
        else:
            a.copy_(c)


def _ema_run(name, multi_avg_fn):
    m, args = _model(name)
    ema = AveragedModel(m, multi_avg_fn=multi_avg_fn, use_buffers=True)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(3):
        m.train()
        opt.zero_grad()
        _first(m(*args)).square().mean().backward()
        opt.step()
        ema.update_parameters(m)
    return ema.eval(), args


@pytest.mark.parametrize("name", NAMES)
def test_ema_of_parameters_and_buffers_follows_the_model(name):
    """``AveragedModel(use_buffers=True)`` with the documented EMA: the averaged model's eval
    output is that of a model built from its state dict, and it moves with the updates."""
    if not any(p.requires_grad for p in ZOO[name].make().parameters()):
        pytest.skip(f"{name} has no trainable parameters")
    ema, args = _ema_run(name, ema_update)
    fresh = ZOO[name].make().double()
    fresh.load_state_dict(ema.module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(_first(ema(*args)), _first(fresh.eval()(*args)),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["LiftingConv2d", "GroupConv2d[c8]", "GroupConvTranspose2d",
                                  "GroupConv3d", "UNet"])
def test_torch_ema_of_integer_tables_raises(name):
    """torch's ``get_ema_multi_avg_fn`` averages integer buffers in floating point and
    truncates: a group conv's gather table came out with other indices and the averaged model
    gave wrong outputs (off by ~1, no error). Now its forward says so; the documented EMA
    (the control) does not raise."""
    ema, args = _ema_run(name, get_ema_multi_avg_fn(0.9))
    with torch.no_grad(), pytest.raises(RuntimeError, match="integer table.*AveragedModel"):
        ema(*args)
    ema.to("cpu")  # the message's fix: .to() rebuilds the tables
    fresh = ZOO[name].make().double()
    fresh.load_state_dict(ema.module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(_first(ema(*args)), _first(fresh.eval()(*args)),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("make", [lambda: Restrict("d4", "d1"), lambda: CosetPool("d4", "d1")],
                         ids=["Restrict", "CosetPool"])
def test_parameter_free_integer_tables_written_in_place_raise(make):
    m = make()
    x = torch.randn(2, 3, 8, 5, 5)
    y = m(x)
    with torch.no_grad():
        m.index.copy_(m.index)  # the same values: fine
    torch.testing.assert_close(m(x), y, rtol=0, atol=0)
    with torch.no_grad():
        m.index.copy_(m.index.flip(0))
    with pytest.raises(RuntimeError, match="buffer 'index'"):
        m(x)
