"""The tensor-product nonlinearity of harmonic fields: each field's symmetric square ``x x^T``
mapped back to harmonic fields by a learned equivariant map (escnn's ``TensorProductModule``,
the quadratic nonlinearity of tensor field networks and e3nn).

The maps are the equivariant bilinear forms ``y_o = sum_ij B[o, i, j] x_i x_j`` with ``B``
symmetric in ``i, j``, one block per output order ``L`` and pair of input orders ``l1 <= l2``
(the square of a field holds each product twice: its antisymmetric part is 0, so a basis of
the symmetric maps is all a field can use; escnn's basis spans the full square, whose
antisymmetric maps never change the output). Each block's basis is the nullspace of the
constraint ``rho_L(g) B = B (rho_l1(g) x rho_l2(g))`` for elements ``g`` that generate the
group (its generators for C_N/D_N; for SO(2)/O(2) a rotation by ``360 / K`` degrees with ``K``
above every frequency the block holds, so it admits the same maps; two generic rotations for
SO(3), and the inversion for O(3)), made canonical (Gram-Schmidt of the nullspace projector's
columns in a fixed order), so the same weights mean the same map on every machine. The
blocks are small (at most ``7 x 7 x 7`` numbers for order 3): a basis costs 5-15 ms to build
for planar orders up to 3 and SO(3) orders up to 2, about 90 ms for SO(3) orders 0..3 (one
thread, measured 2026-12-06), once per process (:func:`equilayers._cpu_cache.cpu_cache`).
"""

from __future__ import annotations

import math
import warnings

import torch

from .. import _checks as C
from .._cpu_cache import cpu_cache
from .._host import host_tensor, traced_ints
from ..groups import GroupLike
from ..groups._actions import harmonic_matrix
from ..groups._fields import field_type
from ._fourier3d import float16_guard

__all__ = ["tensor_product_basis", "tensor_product_nonlinearity"]

_WHAT = "tensor_product_nonlinearity"


def _slots(group, max_order: int) -> list[tuple[int, int]]:
    """``(start, size)`` of each order's slots in a harmonic fiber of ``group``."""
    if group.spatial_dim == 3:
        return [(l * l, 2 * l + 1) for l in range(max_order + 1)]
    return [(0, 1)] + [(2 * m - 1, 2) for m in range(1, max_order + 1)]


def _generators(group, top: int) -> list:
    """Elements whose constraints admit exactly the group's equivariant maps between harmonic
    blocks of orders up to ``top`` (the constraint's frequencies are at most ``3 * top``)."""
    if group.spatial_dim == 3:  # two generic rotations generate a dense subgroup of SO(3)
        els = [group.from_axis_angle((1.0, 2.0, 3.0), 1.0),
               group.from_axis_angle((-2.0, 1.0, 0.5), 2.0)]
        if group.has_reflections:
            els.append(group.from_axis_angle((0.0, 0.0, 1.0), 0.0, inversion=True))
        return els
    n, _ = group.planar_params()
    if n is None:  # SO(2)/O(2): a rotation of C_K, K > every frequency of the blocks
        els = [group.element(2 * math.pi / (3 * top + 1))]
    else:
        els = [group.element(1)]
    if group.has_reflections:
        els.append(group.element(0, reflection=True))
    return els


def _canonical(span: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
    """An orthonormal basis of the column space of ``span`` ``(n, k)`` that depends on the
    space alone: Gram-Schmidt of its projector's columns, taken in order."""
    if span.shape[1] == 0:
        return span
    u, s, _ = torch.linalg.svd(span, full_matrices=False)
    q = u[:, s > tol * max(1.0, float(s[0]))]
    if q.shape[1] == 0:
        return q
    proj = q @ q.T
    out: list[torch.Tensor] = []
    for j in range(proj.shape[1]):
        v = proj[:, j].clone()
        for b in out:
            v -= (b @ v) * b
        norm = float(v.norm())
        if norm > 1e-6:
            out.append(v / norm)
            if len(out) == q.shape[1]:
                break
    return torch.stack(out, 1)


def _block_basis(rho_out: list[torch.Tensor], rho1: list[torch.Tensor],
                 rho2: list[torch.Tensor], same: bool) -> torch.Tensor:
    """``(n, d_L, d1, d2)``: the maps ``B`` with ``rho_L(g) B = B (rho1(g) x rho2(g))`` for
    each listed ``g``, symmetrised in the two inputs where they are one order (``same``)."""
    d_out, d1, d2 = rho_out[0].shape[0], rho1[0].shape[0], rho2[0].shape[0]
    eye = torch.eye(d_out, dtype=torch.float64)
    rows = []
    for r_out, r1, r2 in zip(rho_out, rho1, rho2, strict=True):
        pair = torch.kron(r1, r2)  # on vec(x1 x2^T), row-major
        # vec(r_out B - B pair) with B (d_out, d1 d2) row-major: (r_out x I - I x pair^T)
        rows.append(torch.kron(r_out, torch.eye(d1 * d2, dtype=torch.float64))
                    - torch.kron(eye, pair.T.contiguous()))
    a = torch.cat(rows)
    # the nullspace of a: eigenvectors of a^T a at eigenvalue ~0 (the others are at least
    # about 0.01 here: the constraint's rotations are far from fixing any frequency);
    # eigh of the small Gram matrix is several times faster than an SVD of ``a``
    e, v = torch.linalg.eigh(a.T @ a)
    null = v[:, e < 1e-8]
    if same:  # only the symmetric part of x x^T is there to map
        b = null.T.reshape(-1, d_out, d1, d2)
        null = ((b + b.transpose(2, 3)) / 2).reshape(b.shape[0], d_out * d1 * d2).T
    return _canonical(null).T.reshape(-1, d_out, d1, d2)


@cpu_cache(maxsize=64)
def _basis_cpu(group, max_order: int, out_max_order: int) -> torch.Tensor:
    top = max(max_order, out_max_order)
    els = _generators(group, top)
    mats = [harmonic_matrix(g, top) for g in els]
    slots = _slots(group, top)

    def rho(order: int) -> list[torch.Tensor]:
        a, d = slots[order]
        return [m[a:a + d, a:a + d] for m in mats]

    f_in = slots[max_order][0] + slots[max_order][1]
    f_out = slots[out_max_order][0] + slots[out_max_order][1]
    out = []
    for lo in range(out_max_order + 1):
        ao, do = slots[lo]
        for l1 in range(max_order + 1):
            for l2 in range(l1, max_order + 1):
                (a1, d1), (a2, d2) = slots[l1], slots[l2]
                for b in _block_basis(rho(lo), rho(l1), rho(l2), l1 == l2):
                    full = torch.zeros(f_out, f_in, f_in, dtype=torch.float64)
                    full[ao:ao + do, a1:a1 + d1, a2:a2 + d2] = b
                    full = (full + full.transpose(1, 2)) / 2  # the symmetric bilinear form
                    out.append(full / full.norm())
    if not out:
        return torch.zeros(0, f_out, f_in, f_in, dtype=torch.float64)
    return torch.stack(out)


def _pairs(f: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The slot pairs ``i <= j`` of a fiber of ``f`` slots, row by row."""
    idx = torch.triu_indices(f, f)
    return idx[0], idx[1]


def pair_form(full: torch.Tensor) -> torch.Tensor:
    """``(K, F_out, F, F)`` symmetric forms -> ``(K, F_out, P)`` on the products ``x_i x_j``,
    ``i <= j`` (the two mirrored entries of ``i < j`` added)."""
    i, j = _pairs(full.shape[-1])
    return full[..., i, j] + torch.where(i == j, 0.0, 1.0).to(full) * full[..., j, i]


def check_orders(group: GroupLike, max_order, out_max_order, what: str):
    """The group (one with harmonic fields) and the two orders, validated and named."""
    if group is None:
        raise ValueError(f"{what}: group=None; the maps depend on the group: pass the fields' "
                         "group, e.g. group='so2', 'o2', 'c8', 'd4', 'so3' or 'o3'")
    in_type = field_type(group, "harmonic", max_order, 0, what=what, order_required=True)
    out_type = in_type if out_max_order is None else field_type(
        group, "harmonic", out_max_order, 0, what=what, order_required=True,
        order_name="out_max_order")
    assert in_type.max_order is not None and out_type.max_order is not None
    return in_type.group, in_type.max_order, out_type.max_order


def tensor_product_basis(group: GroupLike, max_order: int,
                         out_max_order: int | None = None) -> torch.Tensor:
    """The basis of the tensor-product nonlinearity: ``(K, F_out, F_in, F_in)`` float64, each
    element a symmetric equivariant bilinear form ``y_o = sum_ij B[o, i, j] x_i x_j`` of unit
    Frobenius norm, from harmonic fields of ``group`` of orders ``0 .. max_order`` to orders
    ``0 .. out_max_order`` (default ``max_order``), one block of orders per element
    (module docstring).

    Example:
        >>> tensor_product_basis("so3", 1).shape  # 0x0->0, 1x1->0, 0x1->1 (1x1->1: antisymmetric)
        torch.Size([3, 4, 4, 4])
    """
    grp, m_in, m_out = check_orders(group, max_order, out_max_order, "tensor_product_basis")
    return _basis_cpu(grp, m_in, m_out).clone()


@cpu_cache(maxsize=64)
def _pair_basis_cpu(group, max_order: int, out_max_order: int) -> torch.Tensor:
    return pair_form(_basis_cpu(group, max_order, out_max_order))


def pair_basis(group, max_order: int, out_max_order: int) -> torch.Tensor:
    """The cached ``(K, F_out, P)`` pair form of :func:`tensor_product_basis` (read only)."""
    return _pair_basis_cpu(group, max_order, out_max_order)


def _traced_pairs(f: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_pairs` as constants of a ``torch.jit`` trace (built from Python lists: a traced
    ``triu_indices`` has no legacy ONNX symbolic)."""
    rows = [(a, b) for a in range(f) for b in range(a, f)]
    with warnings.catch_warnings():  # (the tracer's note that the tensor is a constant)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        i = host_tensor([a for a, _ in rows], dtype=torch.long, device=device)
        j = host_tensor([b for _, b in rows], dtype=torch.long, device=device)
    return i, j


def apply_pairs(x: torch.Tensor, weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``y[b, c, o] = sum_p (weight[c] @ basis)[o, p] x_i x_j`` over the pairs ``p = (i <= j)``
    of each field, at every position: one gather of the products, one batched matmul.

    A product of two float16 coefficients passes 65504 from 256 on, where the output (scaled
    by the weights) still fits: ``|x| = 300`` gave inf and NaN. So a float16 input (or
    ``torch.autocast`` to float16 on its device) is multiplied in float32, autocast off, and
    cast back to ``x``'s dtype, as the Fourier nonlinearity samples (:func:`._fourier3d.
    float16_guard`: a compiled graph is always guarded)."""
    guard = float16_guard(x)
    if guard is None:
        return _apply_pairs(x, weight, basis)
    ct, off = guard
    with off:
        y = _apply_pairs(x.to(ct), weight.to(ct), basis.to(ct))
    return y.to(x.dtype)


def _apply_pairs(x: torch.Tensor, weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    f = x.shape[2]
    if isinstance(f, torch.Tensor):  # sizes traced as tensors (the legacy ONNX exporter, which
        i, j = _traced_pairs(traced_ints(f)[0], x.device)  # has no triu_indices): constants
    else:
        i, j = torch.triu_indices(f, f, device=x.device)  # (made there: no copy)
    t = x.index_select(2, i) * x.index_select(2, j)  # (B, C, P, *S)
    m = (weight @ basis.flatten(1)).view(weight.shape[0], basis.shape[1], basis.shape[2])
    # (C, F_out, P) @ (B, C, P, N), N the positions (1 for fibers alone, 0 for an empty map)
    y = torch.matmul(m, t.reshape(*t.shape[:3], math.prod(t.shape[3:])))
    return y.view(*y.shape[:3], *x.shape[3:])


def tensor_product_nonlinearity(x: torch.Tensor, weight: torch.Tensor, group: GroupLike,
                                max_order: int, out_max_order: int | None = None
                                ) -> torch.Tensor:
    """Tensor-product nonlinearity: each field's square mapped back by the learned
    equivariant bilinear map ``y_c = sum_k weight[c, k] B_k(x_c, x_c)``
    (:func:`tensor_product_basis`; module twin :class:`~equilayers.nn.
    TensorProductNonlinearity`).

    ``x``: harmonic fields ``(B, C, F_in, *spatial)`` of ``group`` of orders ``0 ..
    max_order`` (any number of spatial dims, none for fibers alone: the map acts on each
    position alone); ``weight``: ``(C, K)``. Returns ``(B, C, F_out, *spatial)``. Exact for
    every element of the group acting on the fiber (float rounding).
    """
    grp, m_in, m_out = check_orders(group, max_order, out_max_order, _WHAT)
    basis = pair_basis(grp, m_in, m_out)
    check_input(x, weight, grp, m_in, basis.shape[0], _WHAT, m_out)
    return apply_pairs(x, weight, basis.to(device=x.device, dtype=weight.dtype))


def check_input(x: torch.Tensor, weight: torch.Tensor, group, max_order: int, k: int,
                what: str, out_max_order: int | None = None) -> None:
    """``x`` a floating ``(B, C, F, *spatial)`` harmonic field and ``weight`` ``(C, K)`` on its
    device, of its dtype."""
    C.check_tensor(x, "x", what)
    f = group.harmonic_size(max_order)
    if x.dim() < 3 or x.shape[2] != f:
        raise ValueError(f"{what}: x must be harmonic fields (B, C, F, *spatial) of "
                         f"{group.name} with F = {f} slots for max_order={max_order}; got "
                         f"shape {tuple(x.shape)}")
    C.check_tensor(weight, "weight", what)
    if weight.shape != (x.shape[1], k):
        out = "" if out_max_order is None else f", out_max_order={out_max_order}"
        raise ValueError(f"{what}: weight must be (C, K) = ({x.shape[1]}, {k}): C = "
                         f"{x.shape[1]} fields of x (shape {tuple(x.shape)}) and the K = {k} "
                         f"basis maps of {group.name} for max_order={max_order}{out}; got "
                         f"weight of shape {tuple(weight.shape)}")
    C.check_tensors_match(x, what, (("weight", weight),))
