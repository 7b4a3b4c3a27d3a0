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
    """torch's EMA recipe, ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d),
    use_buffers=True)``, as is (decay 0.9: it truncates integer buffers, ``7 * 0.9 + 7 * 0.1``
    landing on 6): the averaged model's eval output is that of a model built from its state
    dict, and it moves with the updates. (The group convs' gather tables were integer buffers:
    torch's averaging corrupted them, and their forward raised.)"""
    if not any(p.requires_grad for p in ZOO[name].make().parameters()):
        pytest.skip(f"{name} has no trainable parameters")
    ema, args = _ema_run(name, get_ema_multi_avg_fn(0.9))
    fresh = ZOO[name].make().double()
    fresh.load_state_dict(ema.module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(_first(ema(*args)), _first(fresh.eval()(*args)),
                                   rtol=1e-10, atol=1e-10)


def _tables(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{n}.{t}": getattr(m, t) for n, m in model.named_modules()
            for t in getattr(type(m), "_table_names", ())}


@pytest.mark.parametrize("name", ["LiftingConv2d", "GroupConv2d[c8]", "GroupConvTranspose2d",
                                  "GroupConv3d", "UNet", "tables"])
def test_torch_ema_leaves_the_integer_tables_alone(name):
    """The gather tables (``expansion_index``, the 3-D convs' ``expansion_table`` and
    ``bias_index``, ``Restrict``'s and ``CosetPool``'s ``index``) are not buffers, so torch's
    EMA averages none of them: each equals the table of a model built afresh. The control:
    the same average of an integer tensor does change one."""
    if name == "tables":
        from equilayers.nn import GroupConv2d, LiftingConv2d
        m = torch.nn.Sequential(LiftingConv2d(2, 3, 3, group="d4"), Restrict("d4", "d1"),
                                GroupConv2d(12, 2, 3, group="d1"), CosetPool("d1", "c1"))
        m.double()
        ema = AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
        for _ in range(3):
            ema.update_parameters(m)
        ref = copy.deepcopy(m)
    else:
        ema, _ = _ema_run(name, get_ema_multi_avg_fn(0.9))
        ref = ZOO[name].make()
    tables = _tables(ema.module)
    assert tables and tables.keys() == _tables(ref).keys()
    assert not any(t is b for t in tables.values() for b in ema.module.buffers())
    for key, t in tables.items():
        assert torch.equal(t, _tables(ref)[key]), key
    control = torch.arange(7, 100)
    avg = control.clone()
    get_ema_multi_avg_fn(0.9)([avg], [control], torch.tensor(1))
    assert not torch.equal(avg, control)


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
    with pytest.raises(RuntimeError, match="integer table 'index'"):
        m(x)
