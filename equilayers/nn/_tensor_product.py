"""The tensor-product nonlinearity of harmonic fields (escnn's ``TensorProductModule``)."""

from __future__ import annotations

import torch
from torch import nn

from .._host import host_constants
from ..functional import _tensor_product as TP
from ..groups import Group, GroupLike
from ..groups._fields import field_type
from . import _checks as C
from ._derived import _WeightDerived, in_weight_dtype, normal_tensors
from ._exactness import warn_at_user
from ._harmonic import _dims_repr, _spatial
from ._param_shapes import checked
from ._typed import Typed

__all__ = ["TensorProductNonlinearity"]


class TensorProductNonlinearity(_WeightDerived, Typed, nn.Module):
    """Tensor-product (quadratic) nonlinearity for harmonic fields: each field's square
    ``x x^T`` mapped back to harmonic fields by a learned equivariant map, ``y_c = sum_k
    w[c, k] B_k(x_c, x_c)`` (escnn's ``TensorProductModule``; the nonlinearity of tensor
    field networks and e3nn's tensor products of a field with itself).

    ``B_k`` are the equivariant symmetric bilinear maps from orders ``0 .. max_order`` to
    orders ``0 .. out_max_order`` (:func:`~equilayers.functional.tensor_product_basis`): for
    SO(3) the Clebsch-Gordan products ``l1 x l2 -> L`` with ``|l1 - l2| <= L <= l1 + l2``
    (``l1 + l2 + L`` even for O(3), and for ``l1 = l2``, whose odd ``L`` are antisymmetric
    and vanish on a square); for SO(2) the frequencies ``m1 + m2`` and ``|m1 - m2|``, two maps
    each (one for O(2)); C_N/D_N add the orders that alias modulo ``N``. Every field has its
    own weights, and fields are not mixed (a conv or :class:`GroupLinear` does that). escnn's
    basis spans the whole square ``x x^T``; its antisymmetric maps never change the output,
    so this one keeps the symmetric maps alone: fewer weights, the same functions.

    The weights start at ``N(0, var_k)`` with ``var_k = d_L / (n_L e_k)`` (``d_L`` the slots
    of ``B_k``'s output order ``L``: ``2L+1`` for SO(3), 2 for a planar order ``m >= 1``, 1
    for order 0; ``n_L`` the maps into order ``L``; ``e_k`` the second moment of ``B_k`` on
    unit normal fibers): on unit normal input every output slot has second moment 1 at init.
    A network of only these is a polynomial whose degree doubles with each layer (escnn's
    warning): put a norm or batch norm between them, or use them beside a gated or norm
    nonlinearity.

    Functional twin: :func:`~equilayers.functional.tensor_product_nonlinearity`.

    Args:
        channels: the number of fields ``C`` (in and out).
        group: ``"so2"``, ``"o2"``, ``"cN"``, ``"dN"``, ``"so3"`` or ``"o3"`` (the fields'
            group: the maps depend on it).
        max_order: the input's orders ``0 .. M``.
        out_max_order: the output's orders (default ``max_order``); products reach at most
            ``2 M`` (an order no product reaches warns: its slots are always 0).
        device, dtype: of the weight ``(C, K)`` and the basis buffer.
        spatial_dims: ``3`` for volumes of planar fields ``(B, C, 2M+1, D, H, W)``; default
            ``None``: the group's (2 planar, 3 SO(3)/O(3)). For fibers alone ``(B, C, F)``,
            wrap it in :class:`OnFibers`.

    Shape: ``(B, C, F_in, *spatial)`` -> ``(B, C, F_out, *spatial)``, ``F = 2M+1`` (planar)
    or ``(M+1)^2`` (SO(3)/O(3)).

    Equivariance: exact (float rounding) for every element of the group acting on the fiber,
    off the grid too: it acts on each position alone. The product costs ``(F+1)/2`` times the
    input's memory for the pairs ``x_i x_j``, ``i <= j``.

    Example:
        >>> m = TensorProductNonlinearity(4, "so3", 2)
        >>> m(torch.randn(2, 4, 9, 5, 5, 5)).shape, m.weight.shape
        (torch.Size([2, 4, 9, 5, 5, 5]), torch.Size([4, 9]))
    """

    group: Group
    basis: torch.Tensor  # (K, F_out, P) buffer, the pair form of the basis
    _fixed_args = ("group", "max_order", "out_max_order")  # (:class:`~._derived.FixedArgs`)
    _fixed_reason = "the weight's shape and the basis buffer are built from it"

    def __init__(self, channels: int, group: GroupLike, max_order: int,
                 out_max_order: int | None = None, *, device=None, dtype=None,
                 spatial_dims: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.channels = C.positive_int(channels, "channels", name)
        grp, m_in, m_out = TP.check_orders(group, max_order, out_max_order, name)
        dims = C.spatial_dims(spatial_dims, name)
        self.group = grp
        self.max_order, self.out_max_order = m_in, m_out
        self.in_type = field_type(grp, "harmonic", m_in, dims, what=name)
        self.out_type = field_type(grp, "harmonic", m_out, dims, what=name)
        C.dtype(dtype, name)
        cached = TP.pair_basis(grp, m_in, m_out)
        dead = [lo for lo in range(m_out + 1) if not _reaches(cached, grp, lo)]
        if dead:
            warn_at_user(f"{name}: no product of orders 0..{m_in} of {grp.name} reaches "
                          f"output order(s) {dead} (out_max_order={m_out}): those slots are "
                          f"always 0. Use out_max_order <= {2 * m_in}")
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(self.channels, cached.shape[0], **factory))
        self.register_buffer("basis", torch.empty(0, **factory), persistent=False)
        self.reset_parameters()

    def _cached(self) -> torch.Tensor:
        return TP.pair_basis(self.group, self.max_order, self.out_max_order)

    def reset_parameters(self) -> None:
        """Fill the basis buffer and draw the weight (class docstring: unit second moment per
        output slot on unit normal input)."""
        self._fill_derived(self.weight.device)
        with torch.no_grad():
            with torch.device("cpu"):
                std = _init_std(self.group, self.max_order, self.out_max_order)
            self.weight.normal_().mul_(std.to(self.weight.device, self.weight.dtype))

    @normal_tensors
    def _fill_derived(self, device: torch.device) -> None:
        """(Re)build the basis buffer on ``device`` in the weight's dtype (after
        ``reset_parameters``, ``.to()``, ``to_empty()`` and ``load_state_dict``, with
        ``assign=True`` the state dict's dtype; on the meta device with its shape)."""
        self.basis = self._cached().to(device=device, dtype=self.weight.dtype, copy=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name, w = type(self).__name__, self.weight  # (read once: a parametrization runs once)
        C.fields(x, self.channels, name, ndim=3 + _spatial(self), param=w)
        # (C, K), K the basis buffer's maps: it reads the weight in that shape (else ValueError;
        # after the input's checks, which name equilayers.symbolic_trace to a plain fx trace)
        w = checked(self, "weight", w, (self.channels, self.basis.shape[0]))
        TP.check_input(x, w, self.group, self.max_order, w.shape[1], name)
        basis = in_weight_dtype(self).basis  # (a weight given another dtype without .to())
        if basis.is_meta and not x.is_meta:  # built on the meta device, not yet materialised
            basis = self._cached().to(device=x.device, dtype=w.dtype)
        return TP.apply_pairs(x, w, basis)

    def extra_repr(self) -> str:
        out = ("" if self.out_max_order == self.max_order
               else f", out_max_order={self.out_max_order}")
        return (f"{self.channels}, group={self.group.name!r}, max_order={self.max_order}" + out
                + _dims_repr(self))


@host_constants()  # (values read: real tensors, also under a FakeTensorMode)
def _reaches(basis: torch.Tensor, group: Group, order: int) -> bool:
    a, d = TP._slots(group, order)[order]
    return bool(basis[:, a:a + d].abs().amax() > 0) if basis.shape[0] else False


@host_constants()
def _init_std(group: Group, m_in: int, m_out: int) -> torch.Tensor:
    """Per basis map: ``sqrt(d_L / (n_L e_k))`` (class docstring), with ``e_k = 2 |B_k|^2
    + sum_o (tr B_k[o])^2`` (Isserlis: ``E[(x^T B x)^2] = (tr B)^2 + 2 |B|^2`` for unit
    normal ``x``), so ``E |y_L|^2 = d_L`` at init."""
    full = TP._basis_cpu(group, m_in, m_out)  # (K, F_out, F, F), unit norm each
    slots = TP._slots(group, m_out)
    order = torch.empty(full.shape[0], dtype=torch.long)
    for lo, (a, d) in enumerate(slots):
        hit = full[:, a:a + d].flatten(1).abs().amax(1) > 0
        order[hit] = lo
    size = torch.tensor([slots[int(lo)][1] for lo in order], dtype=torch.float64)
    count = torch.bincount(order, minlength=len(slots)).double()[order]
    trace = full.diagonal(dim1=2, dim2=3).sum(-1)  # (K, F_out)
    second = 2 * full.flatten(1).pow(2).sum(1) + trace.pow(2).sum(1)
    return (size / (count * second)).sqrt()
