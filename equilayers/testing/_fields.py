"""What the harness and the metrics act with: the :class:`~equilayers.groups.FieldType` of
a tensor, from the caller's argument, the module's declaration, or (last) its rank.

In that order: an ``in_rep=``/``out_rep=`` argument (a rep name or a ``FieldType``), the
module's ``in_type``/``out_type`` (or, for modules written before field types, its
``in_rep``/``out_rep`` names; an ``nn.Sequential`` declares its first module's input and its
last module's output), and only then the rank: ``<= 2`` dims invariant, 4 or ``>= 6``
trivial, and 5 dims, which are ambiguous (``(B, C, F, H, W)`` group maps or ``(B, C, D, H,
W)`` volumes): the input's type for a rank-preserving map's output, a regular field when
``F = |G|`` (the documented default), otherwise a ``ValueError`` asking for the argument.
For a group acting on 3 spatial dims (the cube's) everything is one rank higher: 5 dims are
volumes (trivial), 6 dims the ambiguous case. 3 dims are fibers alone ``(B, C, F)`` (an
MLP's, ``spatial_dims=0``) or a map without channels ``(B, H, W)``: the input's type for
the output of a fiber-alone input, otherwise a ``ValueError`` asking for the argument (a
module declares its type; a function wrapping it, as for ``torch.autocast``, does not). A
fiber rep name (``"regular"``, ``"harmonic"``, ``"quotient:K"``) given for a 3-D tensor means
fibers alone. (Without a group, as in the Lie derivative, 3 dims stay a trivial map.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..groups import Element, FieldType, Group, act
from ..groups._actions import check_rep
from ..groups._fields import field_type

__all__ = ["resolve_field_type", "act_on", "declared_type"]


def declared_type(f: Any, side: str) -> FieldType | str | None:
    """``f``'s own ``{side}_type`` or ``{side}_rep`` (``side`` is ``"in"`` or ``"out"``); an
    ``nn.Sequential`` without one declares its first module's input / last module's output.
    Only equilayers' declarations count (a :class:`FieldType` or a rep name): another
    library's attribute of the same name (escnn modules have an ``in_type``, its own
    ``FieldType``) is not one, and the type is guessed as for any undeclared model."""
    for attr in (f"{side}_type", f"{side}_rep"):
        value = getattr(f, attr, None)
        if isinstance(value, (FieldType, str)):
            return value
    if isinstance(f, nn.Sequential) and len(f) > 0:
        if side == "in":
            return declared_type(f[0], side)
        last = declared_type(f[-1], side)
        return _through_any_group(list(f), last) if isinstance(last, FieldType) else last
    return None


def _through_any_group(layers: list, last: FieldType) -> FieldType:
    """A ``Sequential``'s output type ``last``, declared by a layer of any group (a batch norm,
    a spatial pool: the field it was given): the type of the layer before it that gave that
    field, through layers of any group of the same rep and undeclared ones (activations);
    ``last`` where none is found (a lifting conv of d4, then ``GroupBatchNorm2d``: d4's
    regular fields, which c4 also acts on, not c4's, whose 4 slots the 8 are not)."""
    if last.group is not None:
        return last
    for layer in reversed(layers[:-1]):
        t = declared_type(layer, "out")
        if t is None:
            continue
        if not isinstance(t, FieldType) or t.rep != last.rep:
            return last
        if t.group is not None:
            return t
    return last


def resolve_field_type(t: torch.Tensor, given: Any, f: Any, side: str, group: Group | None,
                       what: str, like: FieldType | None = None,
                       group_arg: str = "group") -> tuple[FieldType, bool]:
    """``(type, declared)``: the field type of ``t``, the input (``side="in"``) or output of
    ``f``, acted on by ``group`` (``None``: not known, as in the Lie derivative); ``declared``
    is True for a ``FieldType`` (given or declared), whose shape the caller checks. ``like``:
    the input's type, the guess for an undeclared output of the same layout. ``group_arg``:
    the caller's argument that gave ``group`` (``in_group``), as its errors name it."""
    name = f"{side}_rep"
    value = given if given is not None else declared_type(f, side)
    declared = isinstance(value, FieldType)
    if (isinstance(value, FieldType) and value.group is None and like is not None
            and like.group is not None and like.rep == value.rep and given is None):
        value = like  # a layer of any group: the field it was given (layerwise's previous)
    if isinstance(value, FieldType):
        ft = value if group is None else _bind(value, group, given is not None, side, what,
                                               group_arg)
    elif value is not None:
        ft = _from_rep(value, t, group, name, what)
    else:
        ft = _guess(t, group, name, what, like)
    if side == "in":
        _check_spatial(ft, t, group, what)
    return ft, declared


def _bind(ft: FieldType, group: Group, given: bool, side: str, what: str,
          group_arg: str = "group") -> FieldType:
    """``ft.bind(group)``, or a ``ValueError`` naming the caller's ``group=`` (``group_arg``)
    argument, the type it does not act on and the fix (bind's own message names only
    ``FieldType.bind``)."""
    try:
        return ft.bind(group)
    except ValueError as exc:
        assert ft.group is not None  # bind refuses only a type of another group
        source = f"{side}_rep={ft!r}" if given else f"the model's {side}_type {ft!r}"
        why = str(exc).removeprefix("FieldType.bind: ")
        raise ValueError(f"{what}: {group_arg}={group.name!r} cannot act on {source}: {why}. "
                         f"Measure with {group_arg}={ft.group.name!r}, the group the field is "
                         "built for, or one of its subgroups") from None


def _check_spatial(ft: FieldType, t: torch.Tensor, group: Group | None, what: str) -> None:
    """An input that ``group`` moves has its spatial dims: a cube group on a 4-D image batch
    would turn the channels as a depth axis (``ValueError`` naming both and the fix)."""
    if group is None or ft.rep == "invariant" or group.spatial_dim < 3 or ft.spatial_dims == 0:
        return
    if t.dim() < 2 + group.spatial_dim:
        raise ValueError(f"{what}: group={group.name!r} acts on volumes (3 spatial dims), so "
                         "x must be a 5-D volume batch (B, C, D, H, W) or a 6-D group map "
                         f"(B, C, F, D, H, W); got a {t.dim()}-D tensor of shape "
                         f"{tuple(t.shape)}. For images (B, C, H, W) use a planar group "
                         "('p4', 'p4m', 'c4', 'd4', ...)")


def _noun(name: str) -> str:
    return "x" if name == "in_rep" else "the output"


def _from_rep(rep: str, t: torch.Tensor, group: Group | None, name: str,
              what: str) -> FieldType:
    """A rep name given for ``t``: its field type, with the spatial dims ``t`` has."""
    rep = check_rep(rep, name, what)
    if rep == "invariant":
        return FieldType(group, rep)
    fiber = rep != "trivial"
    sd = 2 if group is None else group.spatial_dim
    if fiber and t.dim() == 3:  # fibers alone (B, C, F): an MLP's (GroupLinear, OnFibers)
        ft = field_type(group, rep, None, 0, what=what)
        ft.check(t, f"{_noun(name)} with {name}={rep!r}", what)  # its F slots
        return ft
    if fiber and t.dim() < 3 + sd:
        layout = "(B, C, F, H, W)" if sd == 2 else "(B, C, F, D, H, W)"
        raise ValueError(f"{what}: {_noun(name)} with {name}={rep!r} must be {3 + sd}-D "
                         f"{layout} or fibers alone (B, C, F); got shape {tuple(t.shape)}")
    if t.dim() < 2:
        raise ValueError(f"{what}: {_noun(name)} with {name}={rep!r} must be at least 2-D "
                         f"(..., H, W); got shape {tuple(t.shape)}")
    # trivial maps of any rank >= 2 only move on (H, W): act_on takes them as they are
    return field_type(group, rep, None, max(t.dim() - 2 - fiber, sd), what=what)


def _guess(t: torch.Tensor, group: Group | None, name: str, what: str,
           like: FieldType | None) -> FieldType:
    if t.dim() <= 2:
        return FieldType(group, "invariant")
    if like is not None and like.has_fiber and like.spatial_dims == 0 and t.dim() == 3:
        try:  # a fiber alone (B, C, F) after a fiber-alone input: an MLP's ReLU, batch norm
            like.check(t)
        except ValueError:
            pass
        else:
            return like
    sd = 2 if group is None else group.spatial_dim
    if t.dim() == 3 and group is not None:
        raise ValueError(_three_d(t, group, name, what))
    if t.dim() != 3 + sd:
        return FieldType(group, "trivial", spatial_dims=max(t.dim() - 2, sd))
    if like is not None and like.tensor_ndim == t.dim() and like.rep != "invariant":
        try:
            like.check(t)
        except ValueError:
            pass
        else:
            return like
    size = t.shape[2]
    if group is None or (group.is_finite and size == group.order):
        return FieldType(group, "regular")  # the documented default for 5-D group maps
    regular = (f"a regular field of {group.name} has F = |G| = {int(group.order)} slots"
               if group.is_finite else f"{group.name} has no regular fields")
    raise ValueError(
        f"{what}: cannot tell what the {t.dim()}-D {_noun(name)} of shape {tuple(t.shape)} "
        f"is ({regular}; {_other(t.dim())}): pass {name}= "
        "('harmonic', 'trivial' for a volume, 'quotient:K', or a FieldType) or declare "
        f"{name.replace('_rep', '_type')} on the module")


def _three_d(t: torch.Tensor, group: Group, name: str, what: str) -> str:
    """The error for an undeclared 3-D tensor: fibers alone or (planar groups) a map."""
    reps = "'regular', 'harmonic' or 'quotient:K'" if group.is_finite else "'harmonic'"
    ask = (f"for fibers alone (B, C, F), as GroupLinear and OnFibers take them, pass {name}="
           f"{reps}, or the module's {name.replace('_rep', '_type')} (a FieldType with "
           "spatial_dims=0)")
    if group.spatial_dim == 2:
        ask += f"; for a map without channels (B, H, W), {name}='trivial'"
    return (f"{what}: cannot tell what {_noun(name)} (3-D, shape {tuple(t.shape)}) is, "
            "and nothing declares its type (a function or lambda wrapping a module, as for "
            f"torch.autocast, declares none): {ask}")


def _other(ndim: int) -> str:
    if ndim == 5:
        return "it may be a harmonic field or a volume (B, C, D, H, W)"
    return "it may be a quotient field or a trivial map of 4 spatial dims"


def act_on(ft: FieldType, g: Element, x: torch.Tensor) -> torch.Tensor:
    """``g . x`` for ``x`` of type ``ft``; trivial maps of another rank move on ``(H, W)``
    (what a ``"trivial"`` rep name has always meant)."""
    if not ft.has_fiber and x.dim() != ft.tensor_ndim:
        return act(x, g, ft.rep)
    return ft.act(g, x)
