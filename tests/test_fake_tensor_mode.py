"""Shape propagation under torch's ``FakeTensorMode`` (``allow_non_fake_inputs=True``), as
``nn.Conv2d`` and the meta device give it: every zoo module, built outside the mode or inside
it, in eval mode with autograd on and off, and a copy of a module that ran. The modules holding
integer group tables (group convs, GroupLinear, Restrict/CosetPool, the U-Nets) and the
polyphase upsamplings with an integer index raised torch's ``DataDependentOutputException``:
their tables were built, read (``.tolist()``) and compared (``torch.equal``) on the mode's
fake tensors, which have no values. They are now built and read as real tensors
(``equilayers._host.host_constants``); the value checks still fire in plain use, and under the
mode wherever the values are real (the negative controls below)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from _zoo import ZOO, build
from conftest import seeded_rng
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

from equilayers import nn as enn
from equilayers._cpu_cache import cpu_cache
from equilayers._host import fake_mode_active, host_constants, readable

NAMES = sorted(ZOO)
VARIANTS = ["outside", "outside-no-grad", "inside", "copy-of-a-run"]


def _shapes(out) -> list[tuple[int, ...]]:
    outs = [out] if isinstance(out, torch.Tensor) else [o for o in out if o is not None]
    return [tuple(o.shape) for o in outs]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NAMES)
def test_fake_mode_propagates_the_shapes(name, variant):
    m, args = build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # grid-exactness warnings of the zoo's sizes
        want = _shapes(m(*args))
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        if variant == "inside":
            with mode, seeded_rng(0):
                m = ZOO[name].make().eval()
        else:  # a copy that has not run (its tables unchecked), or one of a module that ran
            m = copy.deepcopy(m if variant == "copy-of-a-run" else build(name)[0])
        fake = tuple(mode.from_tensor(a) for a in args)
        with mode, torch.set_grad_enabled(variant != "outside-no-grad"):
            out = m(*fake)
    assert _shapes(out) == want
    assert all(not readable(o) for o in ([out] if isinstance(out, torch.Tensor) else out)
               if isinstance(o, torch.Tensor))


def test_after_the_mode_a_real_call_is_unchanged(gen):
    """Nothing fake is kept: the eval-mode filter of a group conv made under the mode is not
    reused by the next real call (its values are the ones before)."""
    m = enn.GroupConv2d(3, 4, 3, padding=1, group="p4").eval()
    x = torch.randn(2, 3, 4, 7, 7, generator=gen)
    with torch.no_grad():
        before = m(x)
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        with mode:
            assert fake_mode_active()
            m(mode.from_tensor(x))
        assert not fake_mode_active()
        assert torch.equal(m(x), before)


def test_host_constants_suspends_the_mode_and_restores_it():
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        t = torch.arange(4)
        assert not readable(t)
        with pytest.raises(DataDependentOutputException):
            t.tolist()
        with pytest.raises(ZeroDivisionError), host_constants():
            assert not fake_mode_active()
            assert torch.arange(4).tolist() == [0, 1, 2, 3]
            raise ZeroDivisionError
        assert fake_mode_active() and not readable(torch.arange(4))


@cpu_cache(maxsize=4)
def _table(n: int) -> torch.Tensor:
    return torch.arange(n)[torch.arange(n).tolist()]  # (a value read while building)


def test_cached_tables_as_the_mode_takes_them():
    """A cached table is built real (its values read) under any fake mode; a mode that takes
    real tensors gets the real one, a mode that refuses them (torch's default) a fake one,
    which it can mix with its own."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        t = _table(5)
        assert readable(t) and t is _table(5)
    with FakeTensorMode() as strict:
        t = _table(5)
        assert not readable(t) and t.shape == (5,)
        assert (t + strict.from_tensor(torch.ones(5, dtype=torch.long))).shape == (5,)
        with host_constants():
            assert _table(5).tolist() == [0, 1, 2, 3, 4]
    assert _table(5).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["GroupConv2d", "LiftingConv3d", "FourierNonlinearity", "UNet"])
def test_a_strict_mode_takes_a_module_built_inside_it(name):
    """``allow_non_fake_inputs=False``: a module built inside the mode gets its cached tables
    fake and propagates shapes (not yet every module: docs/deployment.md)."""
    m, args = build(name)
    want = _shapes(m(*args))
    mode = FakeTensorMode()
    with warnings.catch_warnings(), mode, seeded_rng(0):
        warnings.simplefilter("ignore")
        built = ZOO[name].make().eval()
        assert _shapes(built(*(mode.from_tensor(a) for a in args))) == want


# --- negative controls: the value checks still fire ----------------------------------------------

def test_a_written_table_is_caught_in_plain_use_and_under_the_mode(gen):
    m = enn.GroupConv2d(3, 4, 3, padding=1, group="p4")
    x = torch.randn(2, 3, 4, 7, 7, generator=gen)
    m(x)
    with torch.no_grad():
        m.bias_index[0] = 1
    with pytest.raises(RuntimeError, match="its integer table 'bias_index'"):
        m(x)
    m = copy.deepcopy(m)  # unchecked, with the written table: under the mode (real tables)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, pytest.raises(RuntimeError, match="its integer table 'bias_index'"):
        m(mode.from_tensor(x))
    r = enn.Restrict("d4", "d1")
    with torch.no_grad():
        r.index[0] = 1
    with mode, pytest.raises(RuntimeError, match="integer table 'index'"):
        r(mode.from_tensor(torch.randn(2, 3, 8, 5, 5, generator=gen)))


@pytest.mark.parametrize("fake_index", [False, True])
def test_a_bad_polyphase_index_is_caught_where_its_values_exist(gen, fake_index):
    """An index out of ``0..stride**2-1``: a ``ValueError`` in plain use and under the mode for
    a real index; a fake index has no values to check, and its shapes propagate."""
    up = enn.PolyphaseUpsample2d(2)
    x, bad = torch.randn(2, 3, 4, 4, generator=gen), torch.tensor([0, 4])
    with pytest.raises(ValueError, match="index values must lie in 0..stride"):
        up(x, bad)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    index = mode.from_tensor(bad) if fake_index else bad
    with mode:
        if fake_index:
            assert up(mode.from_tensor(x), index).shape == (2, 3, 8, 8)
        else:
            with pytest.raises(ValueError, match="index values must lie in 0..stride"):
                up(mode.from_tensor(x), index)
