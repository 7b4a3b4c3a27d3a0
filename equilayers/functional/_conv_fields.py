"""The field types of a lifting or group convolution, from its ``group``, ``max_order`` and
``in_max_order``: the one place these arguments are checked (their orders by
:class:`~equilayers.groups.FieldType`)."""

from __future__ import annotations

from ..groups import FieldType, Group, GroupLike, get
from ..groups._fields import field_type

__all__ = ["conv_field_types", "field_types"]


def conv_field_types(group: Group, lifting: bool, max_order: int | None = None,
                     in_max_order: int | None = None, what: str = ""
                     ) -> tuple[FieldType, FieldType]:
    """``(in_type, out_type)`` of a lifting (``lifting=True``) or group conv of ``group``.

    so2/o2 need ``max_order=M`` (harmonic fields, ``2M+1`` slots); for cN/dN ``max_order``
    selects harmonic fields too, else the fields are regular (``|G|`` slots). The input of a
    group conv has ``in_max_order`` (default ``max_order``); a lifting conv's input is an
    image. ``what`` prefixes the errors (the layer's name).
    """
    out = _harmonic(group, max_order, what) if max_order is not None else None
    prefix = f"{what}: " if what else ""
    if lifting and in_max_order is not None:
        raise ValueError(f"{prefix}in_max_order={in_max_order!r} is for group convs; a lifting "
                         "conv's input is a plain image: drop in_max_order")
    if out is None:
        if in_max_order is not None:
            raise ValueError(f"{prefix}in_max_order={in_max_order!r} needs harmonic output "
                             f"fields: also pass max_order=M (regular fields of {group.name} "
                             "need neither)")
        group.require_finite(what, "its fields are harmonic: pass max_order=M (>= "
                             "0, fiber 2M+1 slots); got max_order=None")
        out = FieldType.regular(group)
    if lifting:
        return FieldType.trivial(group), out
    if out.rep == "regular" or in_max_order is None:
        return out, out
    return _harmonic(group, in_max_order, what, "in_max_order"), out


def _harmonic(group: Group, order, what: str, name: str = "max_order") -> FieldType:
    return field_type(group, "harmonic", order, what=what, order_name=name)


def field_types(group: GroupLike, lifting: bool, max_order: int | None = None,
                in_max_order: int | None = None
                ) -> tuple[str, str, int | None, int | None]:
    """``(in_rep, out_rep, in_order, out_order)`` of a lifting/group conv: the rep names and
    orders of :func:`conv_field_types`."""
    in_type, out_type = conv_field_types(get(group), lifting, max_order, in_max_order)
    return in_type.rep, out_type.rep, in_type.max_order, out_type.max_order
