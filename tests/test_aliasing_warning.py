"""The steerable convs warn at construction when an output order is reached only through
angular frequencies above their ring's alias-free cap (``alias_free_cap``): the last ring of an
even ``k >= 6`` by default (escnn's caps, kept for parameter counts), or a raised
``frequencies_cutoff``. Such an order does not turn with the input off the 90-degree grid; the
controls (an odd kernel, a lower max_order, the suggested caps, a grid group) do not warn."""

import ast
import re
import warnings

import pytest
import torch
from torch import nn

from equilayers.functional._basis_settings import (
    alias_free_cap,
    basis_frequency_cap,
    default_spec,
)
from equilayers.groups import FieldType, disk_mask, gaussian_smooth, get
from equilayers.nn import (
    GroupConv2d,
    GroupConvTranspose2d,
    LiftingConv2d,
    SteerableConv3d,
    SteerableConvTranspose3d,
)
from equilayers.testing import equivariance_error

_ALIAS = "alias-free cap"


def _aliasing(make, *args, **kwargs) -> list[str]:
    """The aliasing warnings that ``make(*args, **kwargs)`` raises (others are dropped)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make(*args, **kwargs)
    return [str(w.message) for w in caught if _ALIAS in str(w.message)]


_FIX_OPT = "(optionally with frequencies_cutoff="
#: (class, positional args, keyword args, the warned orders, parts of the message)
_WARNED = [
    # the default basis of an even kernel: f = k/2 on ring k/2 - 1 (cap 2 there)
    (LiftingConv2d, (1, 8, 6), dict(padding=3, group="so2", max_order=3), [3],
     ["Use kernel_size=7 or max_order=2 " + _FIX_OPT + "[2, 2]"]),
    (LiftingConv2d, (1, 8, 8), dict(group="o2", max_order=4), [4],
     ["kernel_size=9", "max_order=3 " + _FIX_OPT + "[2, 3, 2]"]),
    (LiftingConv2d, (1, 8, 10), dict(group="so2", max_order=5), [5],
     ["kernel_size=11", "max_order=4 " + _FIX_OPT + "[2, 3, 4, 2]"]),
    (GroupConvTranspose2d, (1, 8, 6), dict(stride=2, group="c8", max_order=3, in_max_order=0),
     [3], ["kernel_size=7", "max_order=2"]),
    # a raised frequencies_cutoff: frequencies 3 and 4 on the outer ring of k = 5
    (LiftingConv2d, (1, 8, 5), dict(padding=2, group="so2", max_order=4,
                                    frequencies_cutoff=2.0), [3, 4],
     ["Use max_order=2 " + _FIX_OPT + "[0, 2, 2]"]),
    (LiftingConv2d, (1, 8, 3), dict(group="so2", max_order=3, frequencies_cutoff=3.0), [3],
     ["Use max_order=2 " + _FIX_OPT + "[0, 2]"]),
    (LiftingConv2d, (1, 8, 7), dict(group="so2", max_order=4, frequencies_cutoff=2.0), [4],
     ["Use max_order=3 " + _FIX_OPT + "[0, 2, 3, 2]"]),
    # a raised cutoff at an even k: k + 1 would keep the cutoff, so it is not offered
    (LiftingConv2d, (1, 8, 6), dict(group="so2", max_order=3, frequencies_cutoff=2.0), [3],
     ["Use max_order=2 "]),
    # regular fields: the irreps of the regular field of C8 / D8
    (LiftingConv2d, (1, 4, 6), dict(group="c8"), [3],
     ["Use kernel_size=7 or frequencies_cutoff=[2, 2] (the alias-free caps)"]),
    (LiftingConv2d, (1, 4, 8), dict(group="d8"), [4],
     ["kernel_size=9", "frequencies_cutoff=[2, 3, 2]"]),
    (LiftingConv2d, (1, 4, 5), dict(group="c8", frequencies_cutoff=2.0), [3, 4],
     ["Use frequencies_cutoff=[0, 2, 2] (the alias-free caps)"]),
    # 3-D convs of a planar group: "slices" is the planar basis on each depth slice, and a
    # shell's frequency f about z lands on its planar radius (measured as the 2-D convs)
    *[(SteerableConv3d, (1, 2, ks), dict(group=g, basis=b, max_order=3), [3],
       [f"Use kernel_size={up} or max_order=2 " + _FIX_OPT + "[2, 2]"])
      for b in ("slices", "shells") for g in ("so2", "o2")
      for ks, up in (((1, 6, 6), (1, 7, 7)), ((3, 6, 6), (3, 7, 7)), (6, 7))],
    (SteerableConvTranspose3d, (1, 2, (1, 6, 6)), dict(group="so2", basis="slices",
                                                       max_order=3), [3], ["(1, 7, 7)"]),
    *[(SteerableConv3d, (1, 2, (1, 5, 5)), dict(group="so2", basis=b, max_order=4,
                                                frequencies_cutoff=2.0), [3, 4],
       ["Use max_order=2 " + _FIX_OPT + "[0, 2, 2]"]) for b in ("slices", "shells")],
]
# the measured table's rows (functional/_basis_settings.py) as 3-D "slices" convs of depth 1
_WARNED += [(SteerableConv3d, (1, 2, (1, a[2], a[2])),
             {**{k: v for k, v in kw.items() if k != "padding"}, "basis": "slices"}, o,
             [f.replace(f"kernel_size={a[2] + 1}", f"kernel_size=(1, {a[2] + 1}, {a[2] + 1})")
              for f in fx])
            for c, a, kw, o, fx in _WARNED[:7] if c is LiftingConv2d]
_IDS = [f"{c.__name__}-{a[2]}-{sorted(kw.items())}" for c, a, kw, _, _ in _WARNED]


@pytest.mark.parametrize("cls,args,kwargs,orders,fixes", _WARNED, ids=_IDS)
def test_aliased_orders_warn_naming_orders_and_fixes(cls, args, kwargs, orders, fixes):
    found = _aliasing(cls, *args, **kwargs)
    assert len(found) == 1, found
    assert re.search(rf"order\(s\) {re.escape(str(orders))} ", found[0]), found[0]
    for fix in fixes:
        assert fix in found[0], (fix, found[0])


def _suggestions(args, kwargs, message):
    """Every construction that the message's fixes name, as a user would read them:
    ``kernel_size=`` (or "an odd kernel_size": ``k - 1`` and ``k + 1``), ``max_order=`` alone
    and with the caps it offers, the caps alone where offered so."""
    text = message.split(" Use ", 1)[1]
    k = args[2]
    out = [((*args[:2], ast.literal_eval(m)), kwargs)
           for m in re.findall(r"kernel_size=(\(\d+, \d+, \d+\)|\d+)", text)]
    if "an odd kernel_size" in text:
        out += [((*args[:2], k + d), kwargs) for d in (-1, 1)]
    for order, caps in re.findall(r"max_order=(\d+)(?: \(optionally with "
                                  r"frequencies_cutoff=(\[[^\]]*\]))?", text):
        out.append((args, {**kwargs, "max_order": int(order)}))
        if caps:
            out.append((args, {**kwargs, "max_order": int(order),
                               "frequencies_cutoff": ast.literal_eval(caps)}))
    out += [(args, {**kwargs, "frequencies_cutoff": ast.literal_eval(caps)})
            for caps in re.findall(r"(?<!with )frequencies_cutoff=(\[[^\]]*\])", text)]
    return out


@pytest.mark.parametrize("cls,args,kwargs,orders,fixes", _WARNED, ids=_IDS)
def test_every_suggested_fix_constructs_without_any_warning(cls, args, kwargs, orders, fixes):
    """The caps alone are no fix for a harmonic output (the warned orders are those they do not
    reach: always-0 slots, another warning), nor is ``k - 1``: each fix the message names
    builds silently."""
    (message,) = _aliasing(cls, *args, **kwargs)
    suggested = _suggestions(args, kwargs, message)
    assert suggested, message
    for a, kw in suggested:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cls(*a, **kw)
        assert [str(w.message) for w in caught] == [], (a, kw)


@pytest.mark.parametrize("make", [
    lambda: LiftingConv2d(1, 8, 6, padding=3, group="so2", max_order=2),  # f <= 2 only
    lambda: LiftingConv2d(1, 8, 7, group="so2", max_order=3),  # odd k: f = 3 on ring 2
    lambda: LiftingConv2d(1, 8, 6, group="so2", max_order=3, frequencies_cutoff=[2, 2]),
    lambda: LiftingConv2d(1, 8, 5, group="so2", max_order=4, frequencies_cutoff=[0, 2, 2]),
    lambda: LiftingConv2d(1, 8, 5, group="so2", max_order=2, frequencies_cutoff=2.0),
    lambda: LiftingConv2d(1, 4, 6, group="c4"),  # every element on the grid: exact anyway
    lambda: LiftingConv2d(1, 4, 6, group="c4", max_order=2),
    lambda: LiftingConv2d(1, 4, 6, group="c8", frequencies_cutoff=[2, 2]),
    lambda: LiftingConv2d(1, 4, 7, group="c16"),
    lambda: GroupConv2d(2, 2, 6, group="c8"),  # each irrep also reached by f = 0
    lambda: GroupConv2d(2, 2, 6, group="so2", max_order=3),  # (f = m - n for n = m)
])
def test_alias_free_settings_do_not_warn(make):
    assert _aliasing(make) == []


def test_default_odd_kernels_never_warn():
    """At odd k the alias-free caps are the default caps: the default basis of an odd kernel
    never warns, whatever the group or max_order."""
    for k in range(1, 16, 2):
        for r, _, cap in default_spec(k):
            assert cap == basis_frequency_cap(r, k) == (alias_free_cap(r, k) if r else 0)
    for k in (1, 3, 5, 7, 9, 11):
        for group in ("so2", "o2", "c8", "d8", "c16"):
            for m in range(6):
                if group.startswith(("c", "d")) and m > int(group[1:]) // 2:
                    continue
                assert _aliasing(LiftingConv2d, 1, 2, k, group=group, max_order=m) == []
            if group not in ("so2", "o2"):  # regular fields
                assert _aliasing(LiftingConv2d, 1, 2, k, group=group) == []
                assert _aliasing(GroupConv2d, 2, 2, k, group=group) == []
    for k in (3, 5, 7):  # 3-D convs of planar groups: both bases, flat and cubic kernels
        for basis in ("slices", "shells"):
            for ks in ((1, k, k), k):
                for m in range(4):
                    assert _aliasing(SteerableConv3d, 1, 2, ks, group="so2", basis=basis,
                                     max_order=m) == []


class _Only(nn.Module):
    """The conv's output with every rotation order but ``keep`` zeroed."""

    def __init__(self, conv, keep):
        super().__init__()
        self.conv, self.keep = conv, keep
        self.in_type, self.out_type = conv.in_type, conv.out_type

    def forward(self, x):
        y = self.conv(x)
        mask = torch.zeros(y.shape[2], dtype=y.dtype)
        mask[0 if self.keep == 0 else slice(2 * self.keep - 1, 2 * self.keep + 1)] = 1
        return y * mask.view(1, 1, -1, 1, 1)


def test_the_warned_order_does_not_turn_and_the_control_does():
    """The warning is about a measurable fault: the warned order's off-grid error (library
    harness, float64, smooth disk-faded input, 30/45/137 degrees) is ~1 (measured 1.08), the
    same order of an odd kernel (no warning) is small (0.06)."""
    gen = torch.Generator().manual_seed(0)
    x = gaussian_smooth(torch.randn(2, 1, 41, 41, generator=gen, dtype=torch.float64), 2.0)
    x = x * gaussian_smooth(disk_mask(41, 41, margin=8).double()[None, None], 2.0)
    els = get("so2").elements_at([30.0, 45.0, 137.0])
    errors = {}
    for k in (6, 7):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conv = LiftingConv2d(1, 8, k, padding=k // 2, group="so2", max_order=3,
                                 dtype=torch.float64)
        errors[k] = equivariance_error(_Only(conv, 3), x, "so2", elements=els)
    assert errors[6] > 0.5 and errors[7] < 0.15, errors
    assert FieldType.harmonic("so2", 3) == conv.out_type


def test_the_warned_3d_order_does_not_turn_and_the_control_does():
    """The 3-D convs of a planar group warn for a measurable fault too: order 3 of a so2
    ``(1, 6, 6)`` conv, ``"shells"`` and ``"slices"``, errs as the 2-D conv's (measured 0.45
    both at this input), the odd ``(1, 7, 7)`` control does not (0.10)."""
    gen = torch.Generator().manual_seed(0)
    x = gaussian_smooth(torch.randn(2, 1, 41, 41, generator=gen, dtype=torch.float64), 2.0)
    x = x * gaussian_smooth(disk_mask(41, 41, margin=8).double()[None, None], 2.0)
    els = get("so2").elements_at([30.0, 45.0, 137.0])
    for basis in ("shells", "slices"):
        errors = {}
        for k in (6, 7):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                conv = SteerableConv3d(1, 8, (1, k, k), padding=(0, k // 2, k // 2),
                                       group="so2", basis=basis, max_order=3,
                                       dtype=torch.float64)
            errors[k] = equivariance_error(_Only(_Flat(conv), 3), x, "so2", elements=els)
        assert errors[6] > 0.25 and errors[7] < 0.15, (basis, errors)


class _Flat(nn.Module):
    """A depth-1 3-D conv on images: ``(B, C, H, W) -> (B, C, 2M+1, H', W')``."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.in_type = FieldType.trivial("so2")
        self.out_type = FieldType.harmonic("so2", conv.max_order)

    def forward(self, x):
        return self.conv(x.unsqueeze(2)).squeeze(3)
