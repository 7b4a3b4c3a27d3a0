"""The eval-mode filter of the group convs (``equilayers.nn._eval_filter``): reused between
inference calls, never stale. The routes that change a weight without bumping its version
(``.data`` edits, fused optimizers) are in test_gconv.py's
``test_every_weight_change_reaches_the_next_eval_forward``; here: that reuse happens at all,
parametrized weights, buffers, the modes that must not reuse, and pickling."""

import io
import pickle

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.nn.utils import parametrize, prune

from equilayers.nn import (
    GroupConv2d,
    GroupConv3d,
    GroupConvTranspose2d,
    LiftingConv2d,
    LiftingConv3d,
    SteerableConv3d,
    SteerableConvTranspose3d,
)

BUILD = {
    "lifting-p4": lambda: LiftingConv2d(2, 3, 3, padding=1, group="p4"),
    "group-p4m": lambda: GroupConv2d(2, 3, 3, padding=1, group="p4m"),
    "group-c8-harmonic": lambda: GroupConv2d(2, 3, 5, padding=2, group="c8"),
    "group-so2": lambda: GroupConv2d(2, 3, 5, padding=2, group="so2", max_order=2),
    "transposed-p4": lambda: GroupConvTranspose2d(2, 3, 3, stride=2, padding=1, group="p4"),
    "lifting3d-o": lambda: LiftingConv3d(2, 3, 3, padding=1, group="o"),
    "group3d-c4z": lambda: GroupConv3d(2, 3, 3, padding=1, group="c4z"),
    "group3d-c4z-harmonic": lambda: GroupConv3d(2, 3, 3, padding=1, group="c4z",
                                                basis="harmonic"),
    "steerable3d-so3-lifting": lambda: SteerableConv3d(2, 3, 3, padding=1, group="so3",
                                                       max_order=1),
    "steerable3d-o3": lambda: SteerableConv3d(2, 3, 3, padding=1, group="o3", in_max_order=1,
                                              max_order=2),
    "steerable3d-so2-slices": lambda: SteerableConv3d(2, 3, 3, padding=1, group="so2",
                                                      in_max_order=1, max_order=1,
                                                      basis="slices"),
    "steerable-transpose3d-so3": lambda: SteerableConvTranspose3d(
        2, 3, 3, stride=2, padding=1, group="so3", in_max_order=1, max_order=1),
}


def _input(m, gen):
    lifting = m.lifting if hasattr(m, "lifting") else m.in_type.rep == "trivial"
    lead = (1, m.in_channels) if lifting else (1, m.in_channels, m.fiber_in)
    space = ((5, 5, 5) if isinstance(m, (LiftingConv3d, GroupConv3d, SteerableConv3d))
             else (7, 7))
    return torch.randn(*lead, *space, generator=gen, dtype=torch.float64)


def _counting(m):
    """``m`` with its expansion counted (``m.expansions``)."""
    m.expansions = 0
    name = "_expand" if hasattr(m, "_expand") else "expanded_filter"  # 2-D / 3-D convs
    expand = getattr(m, name)

    def counted():
        m.expansions += 1
        return expand()
    setattr(m, name, counted)
    return m


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("name", BUILD)
def test_eval_forwards_reuse_the_filter_and_match_a_fresh_one(name, gen):
    m = _counting(BUILD[name]().double().eval())
    x = _input(m, gen)
    with torch.no_grad():
        y = [m(x) for _ in range(3)]
    assert m.expansions == 1  # reused (the control of "never stale": it is there to go stale)
    with torch.enable_grad():
        fresh = m(x)  # autograd on: computed afresh
    assert m.expansions == 2
    for yi in y:
        torch.testing.assert_close(yi, fresh, rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILD)
def test_no_reuse_in_training_mode_or_with_autograd(name, gen):
    m = _counting(BUILD[name]().double())
    x = _input(m, gen)
    with torch.no_grad():
        m(x), m(x)  # training mode
    m.eval()
    m(x), m(x)  # autograd on
    assert m.expansions == 4
    with torch.no_grad():
        m(x)
    assert "_eval_filter" in m.__dict__
    m.train()  # drops the entry (no memory held while training)
    assert "_eval_filter" not in m.__dict__


@pytest.mark.parametrize("name", BUILD)
def test_parametrized_weight_is_read_through(name, gen):
    """A parametrized weight is not in ``_parameters``: its computed value is what is
    compared (a cache keyed on the module's own parameters would miss every change)."""

    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s = nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

        def forward(self, w):
            return w * self.s

    m = BUILD[name]().double().eval()
    x = _input(m, gen)
    parametrize.register_parametrization(m, "weight", Scale())
    m = _counting(m)
    with torch.no_grad():
        before = m(x)
        torch.testing.assert_close(m(x), before, rtol=0, atol=0)
        assert m.expansions == 1  # a new tensor on each read, the same values: reused
        m.parametrizations.weight[0].s.fill_(2.0)
        after = m(x)
    assert m.expansions == 2
    with torch.enable_grad():
        torch.testing.assert_close(after, m(x).detach(), rtol=0, atol=0)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("name", BUILD)
def test_pruned_weight_reuses_while_its_values_hold(name, gen):
    """A pruned (or parametrized) weight is a new tensor on every read: compared by value, its
    filter is reused while the values hold (it was compared by identity too, and re-expanded
    on every eval call), and a new mask is seen by the next call."""
    m = BUILD[name]().double().eval()
    prune.random_unstructured(m, "weight", amount=0.3)
    m = _counting(m)
    x = _input(m, gen)
    with torch.no_grad():
        first = [m(x) for _ in range(3)]
        assert m.expansions == 1
        m.weight_mask.fill_(1.0)  # the whole weight back: other values, a new filter
        unpruned = m(x)
    assert m.expansions == 2
    with torch.enable_grad():
        torch.testing.assert_close(unpruned, m(x).detach(), rtol=0, atol=0)
    assert not torch.allclose(first[0], unpruned)  # the control: the mask mattered
    for y in first[1:]:
        torch.testing.assert_close(y, first[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILD)
def test_a_write_during_the_expansion_is_not_kept(name, gen):
    """The weight written while the filter is expanded (what another thread or a process
    sharing the weights does, made deterministic here): the entry must not pair the filter of
    the old weight with the new one. It did (the copies were taken after the expansion): every
    later eval forward reused the old filter (probe: 56 of 100 threaded runs ended stale)."""
    m = BUILD[name]().double().eval()
    x = _input(m, gen)
    name_ = "_expand" if hasattr(m, "_expand") else "expanded_filter"  # 2-D / 3-D convs
    expand = getattr(m, name_)

    def expand_then_written():
        out = expand()
        with torch.no_grad():
            m.weight.add_(0.5)  # lands after the expansion read the weight
        return out

    setattr(m, name_, expand_then_written)
    with torch.no_grad():
        m(x)
    setattr(m, name_, expand)
    with torch.no_grad():
        after = m(x)
    with torch.enable_grad():  # computed afresh from the current weight
        fresh = m(x).detach()
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)
    with torch.no_grad():
        again = m(x)
    assert m.__dict__.get("_eval_filter") is not None  # control: a quiet call keeps its entry
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILD)
def test_a_write_during_the_expansion_then_undone_is_not_kept(name, gen):
    """The weight written before the expansion reads it and restored after the call: the
    filter of that call is the written weight's, and the copies (taken before) hold the
    restored values, so only the check after the expansion keeps the entry out; without it
    the next call reused the written weight's filter."""
    m = BUILD[name]().double().eval()
    x = _input(m, gen)
    name_ = "_expand" if hasattr(m, "_expand") else "expanded_filter"
    expand = getattr(m, name_)
    saved = m.weight.detach().clone()

    def written_then_expand():
        with torch.no_grad():
            m.weight.add_(0.5)
        return expand()

    setattr(m, name_, written_then_expand)
    with torch.no_grad():
        m(x)
    setattr(m, name_, expand)
    with torch.no_grad():
        m.weight.copy_(saved)
        after = m(x)
    with torch.enable_grad():
        fresh = m(x).detach()
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILD)
def test_a_dtype_change_through_data_is_seen(name, gen):
    """``t.data = t.data.double()`` on the weight, bias and bases keeps the objects and their
    values: the kept float32 filter must not be reused for the float64 weight."""
    m = BUILD[name]().eval()
    x = _input(m, gen).float()
    with torch.no_grad():
        m(x)
        m.weight.data = m.weight.data.double()
        for t in [m.bias, *m.buffers()]:  # a harmonic basis too (else a TypeError)
            if t is not None and t.is_floating_point():
                t.data = t.data.double()
        y = m(x.double())
    assert y.dtype == torch.float64
    with torch.enable_grad():
        torch.testing.assert_close(y, m(x.double()).detach(), rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILD)
def test_bias_edited_between_eval_calls_is_seen(name, gen):
    m = BUILD[name]().double().eval()
    x = _input(m, gen)
    with torch.no_grad():
        before = m(x)
        m.bias.add_(1.0)
        after = m(x)
    with torch.enable_grad():
        torch.testing.assert_close(after, m(x).detach(), rtol=0, atol=0)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("name", BUILD)
def test_buffers_rebuilt_or_edited_in_place_are_seen(name, gen):
    """A basis edited or replaced is seen by the next eval forward; an integer table (a gather
    index) edited or replaced with other values raises instead (its values are fixed by the
    constructor's arguments: any other table gives wrong outputs, ``equilayers.nn._tables``)."""
    m = BUILD[name]().double().eval()
    x = _input(m, gen)
    with torch.no_grad():
        y = m(x)
        m.float().double()  # rebuilds every derived buffer: new tensors
        torch.testing.assert_close(m(x), y)
    tables = [(n, getattr(m, n)) for n in getattr(type(m), "_table_names", ())]
    assert tables or not any(type(b) is torch.Tensor and not b.is_floating_point()
                             for b in m.buffers())  # integer tables are no buffers

    def put(name_, t):  # a buffer, or an integer table (a plain attribute)
        if name_ in m._buffers:
            m._buffers[name_] = t
        else:
            setattr(m, name_, t)

    for name_, buf in list(m.named_buffers()) + tables:
        if buf.numel() == 0:
            continue
        with torch.no_grad():
            m(x)  # warm
            if buf.is_floating_point():
                kept = buf.clone()
                buf.mul_(2.0)  # in place: a new version
                edited = m(x)
                with torch.enable_grad():
                    torch.testing.assert_close(edited, m(x).detach(), rtol=0, atol=0)
                assert not torch.allclose(edited, y), name_
                put(name_, kept)  # another tensor with the old values
                torch.testing.assert_close(m(x), y, rtol=0, atol=0)
                continue
            for write in ("in place", "replaced", "same values"):
                table = buf.clone()
                if write == "in place":
                    buf.copy_(buf.flip(-1))  # the filter's taps in another order
                elif write == "replaced":
                    put(name_, buf.flip(-1).clone())
                else:
                    buf.copy_(table)
                    torch.testing.assert_close(m(x), y, rtol=0, atol=0)
                    continue
                with pytest.raises(RuntimeError, match=f"integer table '{name_}'"):
                    m(x)
                put(name_, table)  # the right table again: no error
                buf = table
                torch.testing.assert_close(m(x), y, rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILD)
def test_floating_buffers_edited_through_data_are_seen(name, gen):
    """An edit through ``.data`` bumps no version counter: the bases (floating-point
    buffers) are compared by value. (They were compared by version only, and the eval
    forward kept using the filter of the old basis.)"""
    m = BUILD[name]().double().eval()
    floats = [b for b in m.buffers() if b.is_floating_point() and b.numel()]
    if not floats:
        pytest.skip(f"{name} has no floating-point buffer")
    x = _input(m, gen)
    with torch.no_grad():
        y = m(x)
        for b in floats:
            b.data.mul_(2.0)
        edited = m(x)
    with torch.enable_grad():
        torch.testing.assert_close(edited, m(x).detach(), rtol=0, atol=0)
    assert not torch.allclose(edited, y)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")  # torch 2.13
@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")  # torch 2.15
@pytest.mark.parametrize("name", BUILD)
def test_tracing_and_functional_call_do_not_reuse(name, gen):
    m = BUILD[name]().double().eval()
    x = _input(m, gen)
    with torch.no_grad():
        m(x)  # an entry exists
        traced = torch.jit.trace(m, x, check_trace=False)
        m.weight.mul_(3.0)
        # the trace holds the expansion ops on the weight, not a frozen filter
        torch.testing.assert_close(traced(x), m(x))
        other = BUILD[name]().double().eval()
        state = dict(other.named_parameters()) | dict(other.named_buffers())
        torch.testing.assert_close(torch.func.functional_call(m, state, (x,)), other(x))
        with torch.enable_grad():
            fresh = m(x).detach()
        torch.testing.assert_close(m(x), fresh, rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILD)
def test_forward_mode_ad_through_a_dual_weight(name, gen):
    """A dual weight (forward-mode AD through ``functional_call``, autograd off) equals its
    primal by value: with the filter compared by value, a kept entry answered it and the
    output had no tangent. An open dual level computes afresh."""
    m = BUILD[name]().double().eval()
    x = _input(m, gen)
    tangent = torch.randn(m.weight.shape, generator=gen, dtype=torch.float64)

    def jvp():
        with fwAD.dual_level():
            w = fwAD.make_dual(m.weight.detach().clone(), tangent)
            out = torch.func.functional_call(m, {"weight": w}, (x,))
            return fwAD.unpack_dual(out).tangent

    want = jvp()  # autograd on: no entry read or kept
    assert want is not None and want.abs().max() > 0  # the control: the tangent is there
    with torch.no_grad():
        m(x)  # an entry exists, of the same weight values
        got = jvp()
    assert got is not None
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_vmap_over_weights_computes_afresh(gen):
    m = GroupConv2d(2, 3, 3, padding=1, group="p4").double().eval()
    x = _input(m, gen)
    weights = torch.randn(2, *m.weight.shape, generator=gen, dtype=torch.float64)

    def run(w):
        return torch.func.functional_call(m, {"weight": w}, (x,))
    with torch.no_grad():
        m(x)
        out = torch.func.vmap(run)(weights)
        for i in range(2):
            torch.testing.assert_close(out[i], run(weights[i]))


def test_pickle_and_state_dict_leave_the_entry_out(gen):
    m = GroupConv2d(2, 3, 3, padding=1, group="p4m").eval()
    x = _input(m, gen).float()
    with torch.no_grad():
        y = m(x)
    assert "_eval_filter" in m.__dict__
    assert all("eval_filter" not in k for k in m.state_dict())
    clone = pickle.loads(pickle.dumps(m))
    assert "_eval_filter" not in clone.__dict__
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert "_eval_filter" not in loaded.__dict__
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), y, rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILD)
def test_autocast_and_plain_calls_do_not_share_an_entry(name, gen):
    """A filter expanded under ``torch.autocast`` is in the autocast dtype (the basis matmul
    runs there): a plain call after an autocast one (validate under autocast, then test
    without) must compute its own, and both then reuse theirs. Before, the plain call got the
    bfloat16 filter (a dtype error, or bfloat16 rounding)."""
    m = _counting(BUILD[name]().float().eval())
    x = _input(m, gen).float()
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            m(x)
        n = m.expansions
        y = m(x)
        assert m.expansions == n + 1
        y2 = m(x)
        assert m.expansions == n + 1  # the plain entry is reused
    assert y.dtype == torch.float32
    with torch.enable_grad():
        torch.testing.assert_close(y, m(x), rtol=0, atol=0)
    torch.testing.assert_close(y2, y, rtol=0, atol=0)


@pytest.mark.parametrize("name", BUILD)
@pytest.mark.parametrize("route", ["built", "loaded", "converted"])
def test_modules_made_under_inference_mode_run_in_eval(name, route, gen):
    """A serving pattern: build, load or convert the model inside ``torch.inference_mode``,
    then run it (there, or under ``no_grad``). Its buffers are inference tensors, which have no
    version counter; the eval filter must compute afresh instead of failing ("Inference tensors
    do not track version counter"). The reference: the same weights in a module made outside."""
    ref = BUILD[name]().double().eval()
    x = _input(ref, gen)
    with torch.inference_mode():
        m = BUILD[name]() if route == "built" else BUILD[name]().double()
        if route == "built":
            m = m.double()
        if route == "loaded":
            m.load_state_dict(ref.state_dict())
        if route == "converted":
            m = m.float().double()
        m.load_state_dict(ref.state_dict())
        m.eval()
        torch.testing.assert_close(m(x), ref(x), rtol=0, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=0, atol=1e-12)
        torch.testing.assert_close(m(x), ref(x), rtol=0, atol=1e-12)
        assert "_eval_filter" not in m.__dict__  # no version counters: never kept
        ref(x)
        assert "_eval_filter" in ref.__dict__  # the control: the plain module keeps it


@pytest.mark.parametrize("name", ["group-p4m", "group3d-c4z"])
def test_no_reuse_on_an_accelerator(name, gen, monkeypatch):
    """On CUDA (or any accelerator) the checks would synchronise host and device every call:
    the filter is expanded afresh. The rule (CPU only), and its wiring with the rule turned
    against the CPU; the control is the CPU's own reuse above."""
    from equilayers.nn import _eval_filter

    assert _eval_filter.reuses("cpu")
    assert not any(map(_eval_filter.reuses, ("cuda", "xpu", "mps", "meta")))
    monkeypatch.setattr(_eval_filter, "reuses", lambda device_type: False)
    m = _counting(BUILD[name]().double().eval())
    x = _input(m, gen)
    with torch.no_grad():
        m(x), m(x), m(x)
    assert m.expansions == 3 and "_eval_filter" not in m.__dict__


def test_a_subclass_parameter_the_filter_reads_is_seen(gen):
    """A subclass whose ``_expand`` also reads a gain of its own (the 3-D test cases' kind):
    only the weight and bias were compared, so after the gain changed an eval call returned
    the old filter's output (ratio 1.0, not 3.0)."""
    from torch import nn

    from equilayers.nn import GroupConv2d

    class GainConv(GroupConv2d):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.gain = nn.Parameter(torch.ones(()))

        def _expand(self):
            return super()._expand() * self.gain

    m = GainConv(2, 3, 3, group="p4", bias=False).double().eval()
    x = torch.randn(1, 2, 4, 7, 7, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        before = m(x)
        m.gain.fill_(3.0)
        after = m(x)
    torch.testing.assert_close(after, 3 * before)
