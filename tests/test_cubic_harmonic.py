"""The harmonic voxel basis of the 3-D group convs (``basis="harmonic"``): its span is closed
under the cube's 48 symmetries, dependent functions are left out, the layers are the public
functional of their voxel filters, and its settings are checked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import equilayers.functional as EF
import equilayers.nn as enn
from equilayers.groups import get, group_fourier_basis
from equilayers.groups._fourier_basis import fourier_row_dims


@pytest.mark.parametrize("k", [3, 5])
def test_harmonic_voxel_basis_is_closed_under_the_cube(k, gen):
    """The harmonic basis's span holds every moved filter of the 48 symmetries (so each
    slot's filter is band-limited too, escnn's function space), at escnn's size per filter
    (10 for k = 3, 19 for k = 5); the control: a random voxel filter added to the rows breaks
    the closure."""
    from equilayers.functional._voxel_basis import voxel_basis
    from equilayers.groups import act_spatial

    def outside(rows):
        q, _ = torch.linalg.qr(rows.T)  # an orthonormal basis of the span, (k^3, n)
        moved = torch.cat([act_spatial(rows.view(-1, k, k, k), g).reshape(len(rows), -1)
                           for g in get("oh").elements()])
        return (moved - moved @ q @ q.T).abs().max().item()

    rows = voxel_basis(k, None)
    assert rows.shape == ({3: 10, 5: 19}[k], k ** 3)
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(len(rows), dtype=rows.dtype))
    assert outside(rows) < 1e-10
    noisy = torch.cat([rows, torch.randn(1, k ** 3, generator=gen, dtype=rows.dtype)])
    assert outside(noisy) > 1e-2


def test_harmonic_voxel_basis_leaves_out_dependent_functions():
    """Rings at every voxel distance of a 3x3x3 filter (0, 1, sqrt 2, sqrt 3) with frequencies
    up to 3 or 4 give more shell functions than its 27 voxels: the basis keeps a linearly
    independent 27 (full rank), each of unit norm, so no coefficient of a layer is
    redundant."""
    from equilayers.functional import harmonic_voxel_basis

    for cutoff in (3.0, 4.0):
        rows = harmonic_voxel_basis(3, frequencies_cutoff=cutoff, rings=[0, 1, 2 ** 0.5, 3 ** 0.5],
                                    dtype=torch.float64).flatten(1)
        assert rows.shape == (27, 27) and torch.linalg.matrix_rank(rows) == 27
        torch.testing.assert_close(rows.norm(dim=1), torch.ones(27, dtype=torch.float64))


def test_harmonic_basis_layers(gen):
    """``basis="harmonic"``: coefficient weights, the voxel filters they stand for, He-scaled
    init (second moment about 1), repr, state dict (no basis in it), refused settings."""
    lift = enn.LiftingConv3d(4, 3, 3, padding=1, group="o", basis="harmonic")
    conv = enn.GroupConv3d(8, 4, 3, group="c4z", basis="harmonic", sigma=0.5)
    assert lift.weight.shape == (3, 4, 10) and conv.weight.shape == (4, 8, 4, 10)
    assert lift.voxel_filter().shape == (3, 4, 3, 3, 3)
    assert repr(lift) == ("LiftingConv3d(4, 3, kernel_size=3, group='o', padding=1, "
                          "basis='harmonic')")
    assert "sigma=0.5" in repr(conv) and "filter_basis" not in conv.state_dict()
    y = conv(torch.randn(4, 8, 4, 7, 7, 7, generator=gen))
    assert 0.7 < y.square().mean().item() < 1.3
    other = enn.GroupConv3d(8, 4, 3, group="c4z", basis="harmonic", sigma=0.5)
    other.load_state_dict(conv.state_dict())
    x = torch.randn(1, 8, 4, 5, 5, 5, generator=gen)
    torch.testing.assert_close(other(x), conv(x))
    # the voxel filters are the coefficients times the rows: the same layer in voxels
    voxel = enn.GroupConv3d(8, 4, 3, group="c4z")
    with torch.no_grad():  # (both hold the group axis in the Fourier basis)
        voxel.weight.copy_(voxel._to_fourier(conv.voxel_filter()))
        voxel.bias.copy_(conv.bias)
    torch.testing.assert_close(voxel.voxel_filter(), conv.voxel_filter())
    torch.testing.assert_close(voxel(x), conv(x))
    with pytest.raises(ValueError, match="basis='voxel' has free"):
        enn.GroupConv3d(2, 2, 3, group="o", sigma=0.5)
    with pytest.raises(ValueError, match="basis='bogus' must be one of 'voxel', 'harmonic'"):
        enn.GroupConv3d(2, 2, 3, group="o", basis="bogus")
    assert enn.GroupConv3d(2, 2, 4, group="o", basis="harmonic").weight.shape[-1] == 9
    with pytest.raises(ValueError, match="harmonic basis is empty"):
        enn.LiftingConv3d(2, 2, 3, group="o", basis="harmonic", rings=[1.0],
                          frequencies_cutoff=[-1])


@pytest.mark.parametrize("settings", [{}, {"sigma": 0.5}, {"rings": (0.0, 1.0, 1.5)},
                                      {"frequencies_cutoff": 1.0}])
def test_harmonic_layers_are_the_public_functional_of_their_voxel_filters(settings, gen):
    """A ``basis="harmonic"`` layer's forward is "voxel filters from the coefficients through
    the public basis, then the public functional": ``tensordot(weight, harmonic_voxel_basis(k,
    settings), 1)`` into ``lifting_conv3d`` / ``group_conv3d``, with the layer's stored
    (normalized) settings; the basis is the layer's own rows. The control: the basis of
    other shell widths (same size) gives other numbers."""
    lift = enn.LiftingConv3d(2, 3, 3, padding=1, group="d4z", basis="harmonic",
                             dtype=torch.float64, **settings)
    conv = enn.GroupConv3d(3, 2, 3, stride=2, padding=1, group="d4z", basis="harmonic",
                           dtype=torch.float64, **settings)
    for m in (lift, conv):
        nn.init.normal_(m.bias)
    x = torch.randn(2, 2, 5, 5, 5, generator=gen, dtype=torch.float64)

    def basis(m, sigma=None):
        return EF.harmonic_voxel_basis(3, sigma=sigma or m.sigma, rings=m.rings,
                                       frequencies_cutoff=m.frequencies_cutoff,
                                       dtype=torch.float64)

    b = basis(lift)
    assert b.shape == (lift.weight.shape[-1], 3, 3, 3)
    torch.testing.assert_close(b.flatten(1), lift.filter_basis, rtol=0, atol=0)
    y = lift(x)
    torch.testing.assert_close(y, EF.lifting_conv3d(x, torch.tensordot(lift.weight, b, 1),
                                                    lift.bias, padding=1, group="d4z"))
    z = conv(y)
    # the group axis from the Fourier basis to one slot per element, with escnn's element norms
    # of the harmonic basis: w[h] = sum_k F[k, h] s[k] v[k], s[k] = sqrt(d_k / |G|)
    fourier = group_fourier_basis("d4z") * (fourier_row_dims("d4z") / 8).sqrt()[:, None]
    voxels = torch.tensordot(torch.einsum("oikn,kh->oihn", conv.weight, fourier), basis(conv), 1)
    torch.testing.assert_close(z, EF.group_conv3d(y, voxels, conv.bias, stride=2, padding=1,
                                                  group="d4z"))
    other = basis(lift, sigma=0.9)  # the control
    assert other.shape == b.shape
    wrong = EF.lifting_conv3d(x, torch.tensordot(lift.weight, other, 1), lift.bias, padding=1,
                              group="d4z")
    assert (wrong - y).abs().max() > 1e-2


def test_harmonic_voxel_basis_is_checked():
    B = EF.harmonic_voxel_basis
    assert B(5).shape == (19, 5, 5, 5) and B(3).dtype == torch.get_default_dtype()
    assert B((3, 3, 3), dtype=torch.float64).dtype == torch.float64
    torch.testing.assert_close(B(3).flatten(1).norm(dim=1), torch.ones(10))
    # even: shells 1 (k = 4: J <= 2) and the eight middle voxels' shell (k = 2: J <= 1)
    assert B(4).shape == (9, 4, 4, 4) and B(2).shape == (4, 2, 2, 2)
    with pytest.raises(ValueError, match="kernel_size=0 must be an integer >= 1"):
        B(0)
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3, 5\) must be cubic"):
        B((3, 3, 5))
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        B(3, sigma=0.0)
    with pytest.raises(ValueError, match="rings must be a non-empty list"):
        B(3, rings=[])
    with pytest.raises(TypeError, match="dtype=torch.int64 must be a floating-point"):
        B(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="harmonic_voxel_basis: the harmonic basis is empty"):
        B(3, rings=[1.0], frequencies_cutoff=[-1])
