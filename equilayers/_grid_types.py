"""check_grid's ``type-mismatch`` finding: a layer fed a field of another type than the one it
is built for. Plain tensors carry no type, and a fiber of the same size runs without an error
(a ``GroupConv2d(group="d2")`` after a p4 lifting conv: 4 slots each; a ``GroupConv2d("c4")``
after a ``CosetPool("c8", "c2")``: 4 cosets), so :class:`TypeFlow` follows the declared types
of one forward from the layer that made a tensor to the layers that take it, and
:func:`type_findings` compares, on a fiber alone, how the checked group acts on the two."""

from __future__ import annotations

import torch
from torch import nn

from .groups import FieldType, Group
from .groups._subgroups import check_subgroup

__all__: list[str] = []


#: torch's activation modules: maps of each entry alone (softmax and its kin of each entry's
#: neighbours along one dim), none of which commutes with a fiber's rotation
_ACTIVATIONS = "torch.nn.modules.activation"
#: the odd ones among them (``f(-v) = -f(v)``): these commute with a sign change
_ODD = frozenset({"Tanh", "Softsign", "Hardtanh", "Tanhshrink", "Softshrink", "Hardshrink"})


def _declared(mod: nn.Module, side: str) -> FieldType | None:
    value = getattr(mod, f"{side}_type", None)
    return value if isinstance(value, FieldType) else None


class TypeFlow:
    """Forward hooks that carry each declared output type to the tensor it is: a layer with a
    typed ``out_type`` sets it, a leaf that declares nothing and keeps the shape (an
    activation, dropout) or a layer typed for any group with the same rep (batch norms, spatial
    pools) passes the incoming type on; anything else (a ``torch.cat``, an addition in a
    forward) leaves its output untyped, and its readers unchecked. ``feeds``: per call of a
    layer that declares a typed ``in_type`` and got a typed tensor, ``(name, module, input
    size, incoming type, the layer that made it)``; ``pointwise``: the same per call of one
    of torch's activations (``torch.nn.modules.activation``) that got a typed tensor."""

    def __init__(self, model: nn.Module) -> None:
        self.feeds: list[tuple[str, nn.Module, tuple[int, ...], FieldType, str]] = []
        self.pointwise: list[tuple[str, nn.Module, tuple[int, ...], FieldType, str]] = []
        self._typed: dict[int, tuple[torch.Tensor, FieldType, str]] = {}
        self._pending: dict[int, list] = {}
        self.handles = []
        for name, mod in model.named_modules():
            leaf = not any(True for _ in mod.children())
            if leaf or _declared(mod, "in") or _declared(mod, "out"):
                label = name or type(mod).__name__
                self.handles.append(mod.register_forward_pre_hook(self._pre(label)))
                self.handles.append(mod.register_forward_hook(self._post(label, leaf)))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def _incoming(self, args) -> tuple[FieldType, str] | None:
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        held = self._typed.get(id(args[0]))
        return (held[1], held[2]) if held is not None and held[0] is args[0] else None

    def _pre(self, name: str):
        def hook(mod, args):
            came = self._incoming(args)
            self._pending.setdefault(id(mod), []).append(came)
            want = _declared(mod, "in")
            if came is None:
                return
            dims = came[0].spatial_dims
            size = tuple(args[0].shape[-dims:]) if dims else ()
            if want is not None and want.has_fiber:
                self.feeds.append((name, mod, size, came[0], came[1]))
            elif want is None and type(mod).__module__ == _ACTIVATIONS:
                self.pointwise.append((name, mod, size, came[0], came[1]))
        return hook

    def _post(self, name: str, leaf: bool):
        def hook(mod, args, out):
            calls = self._pending.get(id(mod))
            came = calls.pop() if calls else None
            if not isinstance(out, torch.Tensor):
                return
            made = _declared(mod, "out")
            if made is not None and made.group is not None:
                self._typed[id(out)] = (out, made, name)
            elif came is not None and (
                    (made is not None and made.rep == came[0].rep)
                    or (made is None and leaf and _declared(mod, "in") is None
                        and isinstance(args[0], torch.Tensor) and out.shape == args[0].shape)):
                self._typed[id(out)] = (out, came[0], came[1])
        return hook


def permutes(ft: FieldType) -> bool:
    """Whether the group acts on ``ft``'s fiber by permuting its slots (regular, quotient)."""
    return ft.rep == "regular" or ft.rep.startswith("quotient:")


def slot_symmetric_fed(mod: nn.Module, sizes, group: Group) -> bool:
    """Whether ``mod`` is invariant under any permutation of its input's slots (an
    ``InvariantHead``) and every typed field it was fed is one that ``group`` permutes."""
    fed = [came for _, m, _, came, _ in getattr(sizes, "feeds", []) if m is mod]
    return bool(getattr(mod, "_slot_symmetric", False) and fed) and all(
        permutes(t) and t.group is not None and contains(t.group, group) for t in fed)


def contains(own: Group, group: Group) -> bool:
    """Whether ``own`` contains ``group`` (as :func:`check_subgroup` embeds them)."""
    try:
        check_subgroup(own, group, "check_grid")
    except ValueError:
        return False
    return True


def _acts_alike(a: FieldType, b: FieldType, group: Group) -> str | None:
    """``None`` where every element of ``group`` acts alike on a fiber of type ``a`` and one of
    type ``b`` (their fibers' sizes equal), else the first element that does not."""
    fa = FieldType(a.group, a.rep, a.max_order, spatial_dims=0)
    fb = FieldType(b.group, b.rep, b.max_order, spatial_dims=0)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(1, 1, a.fiber_size or 0, dtype=torch.float64, generator=gen)
    for g in group.elements() if group.is_finite else group.grid_elements():
        if not torch.allclose(fa.act(g, v), fb.act(g, v), atol=1e-9):
            return str(g)
    return None


def _not_pointwise(ft: FieldType, group: Group, odd: bool) -> str | None:
    """The first element of ``group`` (its grid elements if infinite) whose action on a fiber
    of type ``ft`` a map of each entry alone need not commute with: one that is not a
    permutation of the slots (for an odd map, ``odd``: a signed one); ``None`` if there is
    none."""
    fiber = FieldType(ft.group, ft.rep, ft.max_order, spatial_dims=0)
    eye = torch.eye(ft.fiber_size or 0, dtype=torch.float64)[:, None, :]  # (F, 1, F): a basis
    for g in group.elements() if group.is_finite else group.grid_elements():
        m = fiber.act(g, eye)[:, 0, :]  # each basis vector's image: the action's matrix
        ones = ((m.abs() if odd else m) - 1).abs() < 1e-9
        nonzero = m.abs() > 1e-9
        if not (bool((ones | ~nonzero).all()) and bool((nonzero.sum(0) == 1).all())
                and bool((nonzero.sum(1) == 1).all())):
            return str(g)
    return None


def pointwise_findings(sizes, group: Group) -> list:
    """One of torch's activations fed a field that ``group`` acts on otherwise than by
    permuting its slots (a harmonic field of order >= 1: a rotation turns its coefficients
    into each other, which ``ReLU`` of each coefficient does not follow; measured so2 order 1
    -> ReLU -> NormPool: rot90 invariance error 0.92). Odd maps (tanh) commute with sign
    changes and are fed those unflagged."""
    from ._grid import Finding

    out, seen = [], set()
    for name, mod, size, came, producer in getattr(sizes, "pointwise", []):
        if id(mod) in seen or not came.has_fiber or came.group is None or permutes(came):
            continue
        if not contains(came.group, group):
            continue
        g = _not_pointwise(came, group, type(mod).__name__ in _ODD)
        if g is None:
            continue
        seen.add(id(mod))
        out.append(Finding(
            name, type(mod).__name__, "type-mismatch", "group", size,
            f"it maps each entry of {came!r} (from {producer!r}) alone, but {group.name}'s "
            f"element {g} mixes (or negates) that field's coefficients, which a pointwise "
            "nonlinearity does not commute with",
            "a nonlinearity for these fields (NormNonlinearity, GatedNonlinearity, "
            "FourierNonlinearity), or make the field regular first (HarmonicToRegular)"))
    return out


def type_findings(sizes, group: Group) -> list:
    """A layer whose declared ``in_type`` is acted on by ``group`` otherwise than the field it
    is fed (``sizes.feeds``, from :class:`TypeFlow`): where both types belong to groups that
    contain ``group`` (a layer of a group that does not is :func:`group_findings`'), with
    fibers of the same size, and some element of ``group`` (its grid elements if infinite)
    transforms the two fibers differently (measured p4 error 0.48 for a d2 layer after a p4
    lifting conv, checked with c2, which both contain)."""
    from ._grid import Finding

    out, seen = [], set()
    for name, mod, size, came, producer in getattr(sizes, "feeds", []):
        want = mod.in_type
        if id(mod) in seen or came == want or not came.has_fiber or came.group is None:
            continue
        if not contains(came.group, group) or (
                permutes(came) and getattr(mod, "_slot_symmetric", False)):
            continue
        if want.group is None:  # a layer for one kind of field of any group
            if permutes(came) == permutes(want):
                continue
            fed, built = (("permutes the slots of", "turns the coefficients of")
                          if permutes(came) else
                          ("turns the coefficients of", "permutes the slots of"))
            why = (f"it is fed {came!r} (from {producer!r}) but built for {want.rep} fields: "
                   f"{group.name} {fed} the field it is fed and {built} the ones it is built "
                   "for")
        else:
            if came.fiber_size is None or came.fiber_size != want.fiber_size:
                continue  # the layer's own shape check speaks (or a typeless layer between)
            if not contains(want.group, group):
                continue  # group_findings' (the layer's own group lacks some elements)
            g = _acts_alike(came, want, group)
            if g is None:
                continue
            why = (f"it is fed {came!r} (from {producer!r}) but built for {want!r}: "
                   f"{group.name}'s element {g} moves the two fibers' slots differently")
        seen.add(id(mod))
        out.append(Finding(
            name, type(mod).__name__, "type-mismatch", "group", size,
            why + f" (a fiber of {came.fiber_size or 'that'} slots runs without an error)",
            "build it for the field it takes ("
            + (f"group={came.group.name!r}" if want.group is not None else f"{came.rep} "
               "fields: NormPool / HarmonicBatchNorm for harmonic ones, GroupPool / "
               "GroupBatchNorm for regular ones")
            + (f", the rep {came.rep!r}" if want.group is not None and came.rep != want.rep
               else "")
            + "), or convert the field before it (Restrict, CosetPool, RegularToHarmonic, "
            "HarmonicToRegular)"))
    return out
