"""The SO(3)/O(3) steerable basis stored by blocks of orders (issue 16: the construction cost).

``SteerableConv3d`` keeps only the ``l_in -> l_out`` blocks of its basis (the dense basis
``(num_basis, F_out, F_in, k, k, k)`` is mostly zeros) and expands its filter one matmul per
block. These tests pin that the blocks are the dense basis built element by element (the
former construction, written out here), that the module's expansion is the functional's dense
one, that the Clebsch-Gordan tensors computed on their non-zero entries are the dense complex
products, and that the cached tables are never written through.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import seeded_rng

from equilayers import functional as EF
from equilayers import nn as enn
from equilayers.functional import _steerable3d as S3
from equilayers.functional._basis_settings import default_spec, resolve_settings
from equilayers.groups import _spherical as SPH
from equilayers.groups import clebsch_gordan, get, spherical_harmonics

D64 = torch.float64
SHAPES = [(1, 0, 1), (3, None, 1), (3, 1, 2), (5, 3, 3), (5, None, 2), (7, 2, 1)]


def _dense_reference(group: str, k: int, m_in: int | None, m_out: int, **settings
                     ) -> torch.Tensor:
    """The dense basis element by element: Gaussian shell x harmonics coupled by the real
    Clebsch-Gordan tensor, unit norm, then norm ``sqrt(2 l_out + 1)``."""
    grp = get(group)
    spec = resolve_settings(k, settings.get("sigma"), None, settings.get("rings"), "test")
    spec = default_spec(k) if spec is None else spec
    c = k // 2
    i = torch.arange(k, dtype=D64)
    d, h, w = torch.meshgrid(i, i, i, indexing="ij")
    q = torch.stack([w - c, c - h, d - c], dim=-1)
    r = q.norm(dim=-1)
    elements = S3._blocks(grp, m_in or 0, m_out, spec)
    harmonics = spherical_harmonics(max([j for *_, j in elements], default=0), q)
    f_out, f_in = (m_out + 1) ** 2, ((m_in or 0) + 1) ** 2
    out = []
    for lo, li, ring, j in elements:
        radius, sigma, _ = spec[ring]
        radial = torch.exp(-((r - radius) ** 2) / (2 * sigma * sigma))
        if j > 0:
            radial = radial * (r != 0).double()
        block = torch.einsum("amb,xyzm->abxyz", clebsch_gordan(lo, j, li),
                             harmonics[..., j * j:(j + 1) ** 2]) * radial
        if float(block.norm()) < 1e-9:
            continue
        dense = torch.zeros(f_out, f_in, k, k, k, dtype=D64)
        dense[lo * lo:(lo + 1) ** 2, li * li:(li + 1) ** 2] = (
            block / float(block.norm()) * math.sqrt(2 * lo + 1))
        out.append(dense)
    return torch.stack(out) if out else torch.zeros(0, f_out, f_in, k, k, k, dtype=D64)


@pytest.mark.parametrize("group", ["so3", "o3"])
@pytest.mark.parametrize(("k", "m_in", "m_out"), SHAPES)
def test_blocks_are_the_dense_basis(group, k, m_in, m_out):
    basis = EF.steerable_basis3d(group, k, in_order=m_in, out_order=m_out, dtype=D64)
    torch.testing.assert_close(basis, _dense_reference(group, k, m_in, m_out), rtol=0,
                               atol=1e-15)
    blocks = S3.basis3d_blocks(get(group), m_in or 0, m_out, k, None)
    assert len(blocks.l_out) == len(basis) == sum(n for *_, n in blocks.pairs)
    assert [(lo, li) for lo, li, _ in blocks.pairs] == [
        (lo, li) for lo in range(m_out + 1) for li in range((m_in or 0) + 1)]


def test_settings_are_part_of_the_key():
    """Every input of the basis is in the cache key: other settings, another basis."""
    kw = dict(in_order=2, out_order=2, dtype=D64)
    base = EF.steerable_basis3d("so3", 5, **kw)
    for settings in (dict(sigma=0.5), dict(rings=[0.0, 1.5])):
        other = EF.steerable_basis3d("so3", 5, **kw, **settings)
        torch.testing.assert_close(other, _dense_reference("so3", 5, 2, 2, **settings),
                                   rtol=0, atol=1e-15)
        assert other.shape != base.shape or not torch.equal(other, base)
    assert EF.steerable_basis3d("o3", 5, **kw).shape[0] < base.shape[0]


@pytest.mark.parametrize("kw", [
    dict(k=3, max_order=1),
    dict(k=5, in_max_order=3, max_order=3),
    dict(k=3, in_max_order=3, max_order=2, groups=2),
    dict(k=5, in_max_order=2, max_order=2, group="o3"),
    dict(k=7, in_max_order=1, max_order=3),
])
def test_module_expansion_is_the_dense_expansion(kw, gen):
    kw = dict(kw)
    k = kw.pop("k")
    with seeded_rng(0):
        conv = enn.SteerableConv3d(4, 6, k, padding=k // 2, **kw).double()
    dense = EF.steerable_basis3d(kw.get("group", "so3"), k, in_order=kw.get("in_max_order"),
                                 out_order=kw["max_order"], dtype=D64)
    w = conv.weight.detach().clone().requires_grad_(True)
    expected = S3.expand_steerable3d(w, dense)
    got = conv.expanded_filter()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)
    probe = torch.randn(got.shape, generator=gen, dtype=D64)
    (got * probe).sum().backward()
    (expected * probe).sum().backward()
    torch.testing.assert_close(conv.weight.grad, w.grad)


def test_the_buffer_holds_only_the_blocks():
    with seeded_rng(0):
        conv = enn.SteerableConv3d(2, 2, 5, padding=2, in_max_order=3, max_order=3)
    dense = EF.steerable_basis3d("so3", 5, in_order=3, out_order=3)
    assert conv.filter_basis.dim() == 1 and conv.filter_basis.dtype == torch.float32
    assert conv.filter_basis.numel() * 8 < dense.numel()  # 52 elements: 1.66M -> 0.16M floats
    assert "filter_basis" not in conv.state_dict()


def test_cached_tables_are_never_written_through():
    """The module copies the cached blocks; the functional returns a fresh tensor; writing to
    either leaves the next build alone (the negative controls write to their buffer)."""
    with seeded_rng(0):
        broken = enn.SteerableConv3d(2, 2, 3, padding=1, in_max_order=1, max_order=1)
    block = broken._basis_block(1, 1)
    assert block is not None and block.data_ptr() != S3.basis3d_blocks(
        get("so3"), 1, 1, 3, None).packed.data_ptr()
    with torch.no_grad():
        block.mul_(-1)
        broken.filter_basis.add_(1.0)
    fresh = EF.steerable_basis3d("so3", 3, in_order=1, out_order=1, dtype=D64)
    fresh.zero_()
    with seeded_rng(0):
        conv = enn.SteerableConv3d(2, 2, 3, padding=1, in_max_order=1, max_order=1).double()
    torch.testing.assert_close(
        conv.expanded_filter(),
        S3.expand_steerable3d(conv.weight, _dense_reference("so3", 3, 1, 1)), rtol=0,
        atol=1e-14)


def test_meta_init_then_materialize():
    with torch.device("meta"):
        conv = enn.SteerableConv3d(2, 3, 3, padding=1, in_max_order=2, max_order=2)
    assert conv.weight.is_meta and conv.filter_basis.is_meta
    conv.to_empty(device="cpu")
    conv.reset_parameters()
    with seeded_rng(0):
        ref = enn.SteerableConv3d(2, 3, 3, padding=1, in_max_order=2, max_order=2)
    torch.testing.assert_close(conv.filter_basis, ref.filter_basis, rtol=0, atol=0)


def _clebsch_gordan_dense(l_out: int, order: int, l_in: int) -> torch.Tensor:
    """The real Clebsch-Gordan tensor by dense complex products (the former construction)."""
    def u(l):
        d, s = 2 * l + 1, 1 / math.sqrt(2)
        m = torch.zeros(d, d, dtype=torch.complex128)
        m[l, l] = 1
        for a in range(1, l + 1):
            m[l + a, l + a], m[l + a, l - a] = (-1) ** a * s, s
            m[l - a, l - a], m[l - a, l + a] = 1j * s, -1j * (-1) ** a * s
        return m
    c = torch.tensor([[[SPH._cg_complex(order, m, l_in, b, l_out, a) if b == a - m else 0.0
                        for b in range(-l_in, l_in + 1)] for m in range(-order, order + 1)]
                      for a in range(-l_out, l_out + 1)], dtype=torch.complex128)
    q = torch.einsum("ax,xyz,my,bz->amb", u(l_out), c, u(order).conj(), u(l_in).conj())
    part = q.real if q.real.norm() >= q.imag.norm() else q.imag
    part = part / part.norm()
    return part * torch.sign(part.flatten()[part.flatten().abs() > 1e-9][0])


def test_clebsch_gordan_on_nonzero_entries_is_the_dense_product():
    for l_out in range(5):
        for l_in in range(5):
            for j in range(abs(l_out - l_in), l_out + l_in + 1):
                torch.testing.assert_close(clebsch_gordan(l_out, j, l_in),
                                           _clebsch_gordan_dense(l_out, j, l_in), rtol=0,
                                           atol=1e-14)


def test_racah_formula_in_integers():
    """``<1 1 1 -1 | 1 0> = 1/sqrt(2)``, ``<1 1 1 -1 | 2 0> = 1/sqrt(6)``,
    ``<1 0 1 0 | 1 0> = 0``, ``<2 1 1 0 | 2 1> = 1/sqrt(6)`` (tables, Condon-Shortley)."""
    assert SPH._cg_complex(1, 1, 1, -1, 1, 0) == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    assert SPH._cg_complex(1, 1, 1, -1, 2, 0) == pytest.approx(1 / math.sqrt(6), abs=1e-15)
    assert SPH._cg_complex(1, 0, 1, 0, 1, 0) == 0.0
    assert SPH._cg_complex(2, 1, 1, 0, 2, 1) == pytest.approx(1 / math.sqrt(6), abs=1e-15)
    assert SPH._cg_complex(1, 1, 1, 1, 1, 0) == 0.0  # m1 + m2 != m


# --- checks and conventions the mutation pass found untested ----------------------------------

def test_a_non_cubic_kernel_size_is_refused():
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3, 5\) must be cubic"):
        EF.steerable_basis3d("so3", (3, 3, 5), out_order=1)
    assert EF.steerable_basis3d("so3", (3, 3, 3), out_order=1).shape[-3:] == (3, 3, 3)


def test_steerable_conv3d_refuses_groups_that_do_not_divide_c_out_and_a_basis_of_another_dtype():
    basis = EF.steerable_basis3d("so3", 3, out_order=1, dtype=torch.float64)
    x = torch.zeros(1, 4, 5, 5, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"groups=2 must divide C_out=3"):
        EF.steerable_conv3d(x, torch.zeros(3, 2, basis.shape[0], dtype=torch.float64), basis,
                            groups=2)
    with pytest.raises(TypeError, match=r"x has dtype torch.float64, but basis is torch.float32"):
        EF.steerable_conv3d(x, torch.zeros(2, 4, basis.shape[0], dtype=torch.float64),
                            basis.float())
    # control: the matching call runs
    out = EF.steerable_conv3d(x, torch.zeros(4, 2, basis.shape[0], dtype=torch.float64), basis,
                              groups=2)
    assert out.shape == (1, 4, 4, 3, 3, 3)


def test_clebsch_gordan_refuses_an_order_below_the_coupling_range():
    with pytest.raises(ValueError, match=r"order=0 cannot couple l_in=0 to l_out=2"):
        clebsch_gordan(2, 0, 0)
    with pytest.raises(ValueError, match=r"order=3 cannot couple l_in=1 to l_out=1"):
        clebsch_gordan(1, 3, 1)
    assert clebsch_gordan(2, 2, 0).shape == (5, 5, 1)  # control: the edge of the range


def test_a_zero_vector_has_only_the_constant_harmonic():
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    y = spherical_harmonics(3, pts)
    expected = torch.zeros(16, dtype=torch.float64)
    expected[0] = 1 / math.sqrt(4 * math.pi)
    torch.testing.assert_close(y[0], expected, rtol=0, atol=0)
    assert y[1, 1:].abs().max() > 0.1  # control: a real direction has the higher orders


def test_so3_compose_applies_the_second_element_first():
    g = get("so3")
    a = g.from_axis_angle((0.0, 0.0, 1.0), math.pi / 2)
    b = g.from_axis_angle((1.0, 0.0, 0.0), math.pi / 2)
    ab = g.matrix(g.compose(a, b))
    torch.testing.assert_close(ab, g.matrix(a) @ g.matrix(b))
    assert not torch.allclose(ab, g.matrix(b) @ g.matrix(a))  # they do not commute


def test_voxel_basis_drops_the_rows_a_high_cutoff_makes_dependent():
    # 50 candidate functions on the 27 voxels of k=3 with cutoff 6: at most 27 independent
    basis = EF.harmonic_voxel_basis(3, frequencies_cutoff=6.0, dtype=torch.float64)
    rows = basis.reshape(len(basis), -1)
    assert len(rows) == 27
    assert int(torch.linalg.matrix_rank(rows)) == len(rows)


def test_a_meta_module_loaded_with_assign_rebuilds_its_basis(gen):
    real = enn.SteerableConv3d(2, 3, 3, padding=1, group="so3", max_order=1,
                               dtype=torch.float64)
    with torch.device("meta"):
        meta = enn.SteerableConv3d(2, 3, 3, padding=1, group="so3", max_order=1,
                                   dtype=torch.float64)
    meta.load_state_dict(real.state_dict(), assign=True)
    assert not meta.filter_basis.is_meta
    x = torch.randn(1, 2, 5, 5, 5, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(meta(x), real(x), rtol=0, atol=0)
