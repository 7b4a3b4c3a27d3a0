"""The group convolution with a given *expanded* filter: the functional twin of
:class:`~equilayers.nn.ExpandedGroupConv2d` (the dense form escnn's
``R2Conv.expand_parameters()`` produces, for any finite planar group).

Math: ``out[o, g] = sum_c in[c] (*) W[o, g, c] + b[o]``, one ``F.conv2d`` of the input viewed as
``(B, C_in * F_in, H, W)`` with ``W`` ``(C_out * |G|, C_in * F_in // groups, k, k)`` (fields
major, slots minor on both sides; slot ``i`` is ``group.elements()[i]``), then the output viewed
as ``(B, C_out, |G|, H', W')``. ``F_in`` is 1 for a lifting conv (images in) and ``|G|``
otherwise. Nothing ties ``W``'s slots to each other: the op is exactly as equivariant as the
filter (:func:`~equilayers.functional.expand_group_filter` and
:meth:`~equilayers.nn.GroupConv2d.expanded_filter` give equivariant ones).
"""

from __future__ import annotations

import torch

from .. import _checks as C
from ..groups import Group, GroupLike, get
from ._gconv import (
    PADDING_MODES,
    _check_same_stride,
    check_conv_input,
    conv_expanded,
    resolve_padding,
)

__all__ = ["expanded_group_conv2d", "check_expanded_group", "check_expanded_weight",
           "expanded_conv_checked"]

#: The layout of an expanded filter, as the messages name it.
_LAYOUT = "(C_out * |G|, C_in * F_in // groups, k, k)"


def check_expanded_group(group: GroupLike, what: str) -> Group:
    """A finite group acting on images (``cN`` / ``dN``, any ``N``), or an error naming
    ``group`` and the fix: a continuous group has no dense regular fiber, a cube group acts on
    volumes."""
    grp = get(group)
    grp.require_finite(what, "a dense expanded filter needs a finite group cN / dN")
    if grp.spatial_dim != 2:
        raise ValueError(f"{what}: group={grp.name!r} acts on volumes ({grp.spatial_dim} "
                         "spatial dims); an expanded 2-D filter needs a planar group cN / dN "
                         "(for the cube's groups use GroupConv3d / group_conv3d)")
    return grp


def check_expanded_weight(weight: torch.Tensor, order: int, lifting: bool, groups: int,
                          what: str, *, floating: bool = True) -> None:
    """``weight`` is a 4-D square filter ``(C_out * |G|, C_in * F_in // groups, k, k)`` with
    ``|G| = order``, ``F_in = 1`` (``lifting``) or ``|G|``, and ``groups`` dividing ``C_out``."""
    C.check_tensor(weight, "weight", what, ndim=4, layout=_LAYOUT, floating=floating)
    f_in = 1 if lifting else order
    if weight.shape[0] % order or weight.shape[1] % f_in:
        raise ValueError(f"{what}: weight must be {_LAYOUT} with |G|={order} and F_in="
                         f"{'1 (lifting)' if lifting else '|G|'}, so dim 0 divisible by "
                         f"{order} and dim 1 by {f_in}; got shape {tuple(weight.shape)}")
    C.check_square_filters(weight, what)
    C.check_weight_groups(weight, groups, what, weight.shape[0] // order,
                          f": C_out * |G| = {weight.shape[0]} with |G|={order}")


def expanded_group_conv2d(x: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None = None, stride=1, padding=0, dilation=1,
                          groups: int = 1, padding_mode: str = "zeros", *, group: GroupLike,
                          lifting: bool = False) -> torch.Tensor:
    """Lifting or group correlation with a dense expanded filter: ``(B, C_in, H, W)``
    (``lifting=True``) or ``(B, C_in, |G|, H, W)`` -> ``(B, C_out, |G|, H', W')``.

    ``out[o, g] = sum_c in[c] (*) weight[o, g, c] + bias[o]`` (module docstring of
    :mod:`equilayers.functional._expanded_conv`): ``weight`` ``(C_out * |G|, C_in * F_in //
    groups, k, k)``, fields major and slots minor on both sides (``F_in`` is 1 when
    ``lifting``, else ``|G|``); ``bias`` ``(C_out,)``, one value per output field, added to
    every slot. ``group``: ``"cN"`` or ``"dN"`` (any ``N``) or a finite planar
    :class:`~equilayers.groups.Group` (required: it fixes ``|G|``); the other arguments as
    :func:`group_conv2d` (``padding`` an int, a pair, ``"same"`` or ``"valid"``). Exactly as
    equivariant as ``weight`` (see :class:`~equilayers.nn.ExpandedGroupConv2d`, whose forward
    this is).

    Example:
        >>> import torch
        >>> from equilayers.functional import expand_group_filter, expanded_group_conv2d
        >>> w = expand_group_filter(torch.randn(3, 2, 4, 3, 3), "p4")  # (12, 8, 3, 3)
        >>> expanded_group_conv2d(torch.randn(1, 2, 4, 7, 7), w, padding=1, group="c4").shape
        torch.Size([1, 3, 4, 7, 7])
    """
    what = "expanded_group_conv2d"
    lifting = C.check_flag(lifting, "lifting", what, fix="True for images in, False for "
                           "regular fields in")
    grp = check_expanded_group(group, what)
    n = int(grp.order)
    C.check_pair(stride, "stride", what, minimum=1)
    C.check_pair(dilation, "dilation", what, minimum=1)
    groups = C.check_int(groups, "groups", what, minimum=1)
    C.check_padding_mode(padding_mode, "padding_mode", what, PADDING_MODES)
    check_expanded_weight(weight, n, lifting, groups, what)
    C.check_bias(bias, (weight.shape[0] // n,), what, per="output field")
    C.check_tensors_match(x, what, (("weight", weight), ("bias", bias)))
    f_in = 1 if lifting else n
    ndim = 4 if lifting else 5
    if isinstance(x, torch.Tensor) and x.dim() != ndim:
        have, other = (("(B, C_in, H, W) images", "regular fields") if lifting
                       else ("(B, C_in, |G|, H, W) regular fields", "images"))
        raise ValueError(f"{what}: lifting={lifting} expects {ndim}-D {have}; got x of shape "
                         f"{tuple(x.shape)}: pass lifting={not lifting} for {other}")
    check_conv_input(x, 4 if lifting else 5, weight.shape[1] // f_in * groups,
                 None if lifting else n, what)
    _check_same_stride(what, padding, stride)
    pad = resolve_padding(padding, weight.shape[-1], dilation, what)
    return conv_expanded(x, weight, bias, n, stride, pad, dilation, groups, padding_mode,
                         what=what)


def expanded_conv_checked(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          order: int, stride, pad: tuple[int, int, int, int], dilation,
                          groups: int, padding_mode: str, what: str) -> torch.Tensor:
    """The computation of :func:`expanded_group_conv2d` without its checks, for
    :class:`~equilayers.nn.ExpandedGroupConv2d`, which checks its arguments in ``__init__``
    and its input in ``forward`` under its own name (not public: a call that skipped the
    checks could fail inside torch or compute something else)."""
    return conv_expanded(x, weight, bias, order, stride, pad, dilation, groups, padding_mode,
                         what=what, checked=True)
