"""Expanding steerable weights into dense ``F.conv2d`` filters: the per-forward half of a
steerable conv (the bases themselves are built once, in :mod:`._steerable`)."""

from __future__ import annotations

import torch

from .. import _checks as C

__all__ = ["expand_steerable", "expand_regular"]


def expand_steerable(weight: torch.Tensor, basis: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """The dense ``F.conv2d`` filter ``sum_j weight[..., j] * basis[j]``, fields major.

    Args:
        weight: ``(C_out, C_in // groups, num_basis)``.
        basis: ``(num_basis, F_out, F_in, k, k)`` from :func:`steerable_basis`.
        groups: the conv's ``groups`` (checked against ``C_out``).

    Returns:
        ``(C_out * F_out, C_in // groups * F_in, k, k)``: slot ``(o, f)`` is row
        ``o * F_out + f``, so ``F.conv2d(x.reshape(B, C_in * F_in, H, W), filt, groups=groups)``
        reshaped to ``(B, C_out, F_out, H', W')`` is the steerable conv.
    """
    C.check_tensor(weight, "weight", "expand_steerable")
    C.check_tensor(basis, "basis", "expand_steerable")
    C.check_int(groups, "groups", "expand_steerable", minimum=1)
    if weight.dim() != 3 or basis.dim() != 5 or weight.shape[-1] != basis.shape[0]:
        raise ValueError(f"expand_steerable needs weight (C_out, C_in // groups, num_basis) and "
                         f"basis (num_basis, F_out, F_in, k, k) with matching num_basis; got "
                         f"{tuple(weight.shape)} and {tuple(basis.shape)}")
    C.check_weight_groups(weight, groups, "expand_steerable")
    C.check_tensors_match(weight, "expand_steerable", (("basis", basis),), x_name="weight")
    c_out, c_in, nb = weight.shape
    _, f_out, f_in, kh, kw = basis.shape
    filt = (weight.reshape(c_out * c_in, nb) @ basis.reshape(nb, -1)).reshape(
        c_out, c_in, f_out, f_in, kh, kw)
    return filt.transpose(1, 2).reshape(c_out * f_out, c_in * f_in, kh, kw)


def expand_regular(weight: torch.Tensor, table: torch.Tensor, index: torch.Tensor | None = None,
                   fourier: torch.Tensor | None = None,
                   scale: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`expand_steerable` for regular output fields, from the compact table.

    ``K[o, a, c, b] = sum_j weight[o, c, h, j] T[a, j]`` with ``h = a^-1 b`` (group conv), or
    ``K[o, a, c] = sum_j weight[o, c, j] T[a, j]`` (lifting, ``index=None``): the same filter
    as ``expand_steerable(weight, steerable_basis(...))`` (up to float rounding of the sum
    order) with ``|G|`` times fewer multiply-adds for the group conv.

    Args:
        weight: ``(C_out, C_in // groups, J)`` (lifting) or ``(C_out, C_in // groups, |G| J)``
            (basis element ``(h, j)`` at ``h * J + j``, as in :func:`steerable_basis`).
        table: ``(|G|, J, k, k)`` from :func:`regular_table`.
        index: ``(|G|^2,)`` from :func:`inverse_cayley_index` for a group conv; ``None`` for
            a lifting conv.
        fourier: ``(|G|, |G|)`` from :func:`~equilayers.groups.group_fourier_basis` (group
            conv): the weight's group axis holds coefficients ``k`` of that basis, ``w[h] =
            sum_k F[k, h] weight[k]`` (as every layer stores it); ``None``: the weight is
            per element ``h`` already.
        scale: ``(num_basis,)`` from :func:`irrep_scale` (the layers' element norms,
            ``sqrt(d_out)``), multiplied into the weight first; ``None``: unit-norm elements.

    Returns:
        ``(C_out * |G|, C_in // groups * F_in, k, k)`` with ``F_in = |G|`` (group conv) or 1.
    """
    g, j, kh, kw = table.shape
    c_out, c_in, nb = weight.shape
    if scale is not None:
        weight = weight * scale.to(weight)
    if index is None:
        if nb != j:
            raise ValueError(f"expand_regular (lifting): weight {tuple(weight.shape)} needs "
                             f"J={j} basis elements in its last dim")
        filt = (weight.reshape(c_out * c_in, j) @ table.transpose(0, 1).reshape(j, -1))
        return filt.reshape(c_out, c_in, g, kh, kw).transpose(1, 2).reshape(
            c_out * g, c_in, kh, kw)
    if nb != g * j or index.shape != (g * g,):
        raise ValueError(f"expand_regular: weight {tuple(weight.shape)} needs |G| J = {g * j} "
                         f"basis elements and index |G|^2 = {g * g} entries; got "
                         f"{tuple(index.shape)}")
    # w[h, o, c, j] gathered to [a, b, o, c, j] = weight[o, c, a^-1 b, j]; one batched matmul
    # over a with the copies T[a]: (b o c, j) @ (j, k k)
    w = weight.reshape(c_out * c_in, g, j)  # (o c, k or h, j)
    if fourier is not None:  # w[h] = F^T w_hat: a broadcast bmm on the view, no copy first
        if fourier.dtype != w.dtype or fourier.device != w.device:
            fourier = fourier.to(w)
        w = torch.bmm(fourier.t().expand(c_out * c_in, g, g), w)
    # (the gather reads the (h, o c, j) view through its strides)
    w = w.transpose(0, 1).index_select(0, index).view(g, g * c_out * c_in, j)
    filt = torch.bmm(w, table.reshape(g, j, kh * kw))  # (a, b o c, k k)
    return filt.reshape(g, g, c_out, c_in, kh, kw).permute(2, 0, 3, 1, 4, 5).reshape(
        c_out * g, c_in * g, kh, kw)
