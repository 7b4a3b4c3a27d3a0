"""FourierNonlinearity and NormMaxPool against escnn's FourierELU and NormMaxPool.

Our harmonic field ``[a_0, c_1, s_1, ..., c_M, s_M]`` of SO(2) is escnn's
``[irrep(0), irrep(1), ..., irrep(M)]`` in the same slot order, and escnn's ``FourierELU`` samples
it with the same normalized vector (``[1, sqrt2, 0, ...] / sqrt(2M+1)``) on the same rotations,
so the outputs agree to float32 rounding (escnn inverts with a ridge of 1e-8, we with the
pseudo-inverse). ``NormMaxPool(per="order")`` is escnn's ``NormMaxPool`` with one field per irrep;
``per="field"`` with one field ``irrep(0) + ... + irrep(M)``.

Run with an environment that has escnn (``.venv-peers/bin/python -m pytest
tests/test_escnn_nonlinearities.py``); skipped elsewhere.
"""

import pytest
import torch
from _peers import ESCNN_MISSING

escnn = pytest.importorskip("escnn", reason=ESCNN_MISSING)
from escnn import gspaces  # noqa: E402
from escnn import nn as esc  # noqa: E402
from escnn.group import directsum  # noqa: E402

from equilayers import nn as enn  # noqa: E402

C = 3


@pytest.mark.parametrize("max_order,samples", [(1, 8), (2, 16), (3, 12)])
def test_fourier_elu_matches_escnn_so2(max_order, samples):
    gs = gspaces.rot2dOnR2(N=-1, maximum_frequency=max_order)
    theirs = esc.FourierELU(gs, C, irreps=[(m,) for m in range(max_order + 1)], N=samples,
                            inplace=False)
    f = 2 * max_order + 1
    x = torch.randn(2, C * f, 5, 5)
    want = theirs(esc.GeometricTensor(x, theirs.in_type)).tensor
    ours = enn.FourierNonlinearity("so2", max_order, samples=samples)
    got = ours(x.view(2, C, f, 5, 5)).reshape(2, -1, 5, 5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    other = enn.FourierNonlinearity("so2", max_order, samples=samples + 4)  # not vacuous
    assert (other(x.view(2, C, f, 5, 5)).reshape(2, -1, 5, 5) - want).abs().max() > 1e-3


def test_fourier_elu_matches_escnn_c8():
    gs = gspaces.rot2dOnR2(N=8)
    theirs = esc.FourierELU(gs, C, irreps=[(m,) for m in range(4)], type="regular", N=8,
                            inplace=False)
    x = torch.randn(2, C * 7, 5, 5)
    want = theirs(esc.GeometricTensor(x, theirs.in_type)).tensor
    got = enn.FourierNonlinearity("c8", 3)(x.view(2, C, 7, 5, 5)).reshape(2, -1, 5, 5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per", ["order", "field"])
def test_norm_max_pool_matches_escnn(per):
    m = 2
    gs = gspaces.rot2dOnR2(N=-1, maximum_frequency=m)
    irreps = [gs.irrep(k) for k in range(m + 1)]
    ftype = esc.FieldType(gs, C * irreps if per == "order" else C * [directsum(irreps)])
    x = torch.randn(2, ftype.size, 9, 9)
    want = esc.NormMaxPool(ftype, 3, 2, 1)(esc.GeometricTensor(x, ftype)).tensor
    got = enn.NormMaxPool(3, 2, 1, per=per)(x.view(2, C, 2 * m + 1, 9, 9)).reshape(2, -1, 5, 5)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
