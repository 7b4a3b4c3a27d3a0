"""``equilayers.export``: turn the group convs, group batch norms and group pools of a model
into standard ``torch.nn`` layers, for deployment (TorchScript, ONNX, runtimes that know
``nn.Conv2d`` but not us).

Reshapes are the standard ``nn.Flatten`` / ``nn.Unflatten`` modules. The modules listed below
are replaced; every other module (the harmonic nonlinearities, batch norms and changes of basis,
``InvariantHead``, ``NormPool``, ...) is deep-copied unchanged, so a model made only of the listed
layers and ``torch.nn`` ones exports to ``torch.nn`` layers alone.

* ``LiftingConv2d`` -> ``Sequential([pad,] Conv2d(C_in, C_out*|G|), Unflatten(1, (C_out, |G|)))``
* ``GroupConv2d``   -> ``Sequential(Flatten(1, 2), [pad,] Conv2d(C_in*|G|, C_out*|G|),
  Unflatten(1, (C_out, |G|)))``; the ``Conv2d`` holds the expanded filter (pixel or steerable
  basis; harmonic fields have ``2M+1`` slots in place of ``|G|``) and the bias per slot.
  ``pad`` (``ZeroPad2d``/``ReflectionPad2d``/``ReplicationPad2d``/
  ``CircularPad2d``) appears only for asymmetric padding; symmetric padding stays in the
  ``Conv2d`` (with its ``padding_mode``).
* ``LiftingConvTranspose2d`` / ``GroupConvTranspose2d`` -> the same with one
  ``ConvTranspose2d`` (its ``output_padding``). The exported layer is an ``nn.Sequential``,
  whose forward takes no ``output_size``: a model whose forward calls the layer as
  ``layer(x, output_size=...)`` fails after export with torch's ``TypeError``
  ("Sequential.forward() got an unexpected keyword argument 'output_size'"). Build such a
  layer with the ``output_padding`` that its ``output_size`` implies and call it without
  ``output_size`` (not even ``output_size=None``); ``export`` warns, naming the layer and
  that padding, where the layer has been called with an ``output_size`` before the export
  (its forward records it; a call with ``output_size=None`` leaves no trace).
* ``GroupLinear`` -> ``Sequential(Flatten(1), Linear(C_in*F_in, C_out*F_out), Unflatten(1,
  (C_out, F_out)))``: the ``Linear`` holds the expanded matrix and the bias per slot.
* ``GroupBatchNorm2d`` -> ``BatchNorm3d`` (same state).
* ``GroupPool`` -> ``Sequential(MaxPool3d((F, 1, 1)), Flatten(1, 2))`` (or ``AvgPool3d``) when
  every group conv and every typed module of the model has the same fiber size ``F``
  (TorchScript-able; a ``HarmonicToRegular`` or ``Restrict`` changes it; the window has
  stride 1 on the fiber, so a fiber that a ``forward`` of the user's own changed unseen gives
  a wrong shape or torch's error, not the wrong slots), else
  ``Sequential(AdaptiveMaxPool3d((1, None, None)), Flatten(1, 2))``, which pools any fiber in
  eager mode but is not scriptable.
* ``GroupMaxPool2d`` -> ``MaxPool3d`` with a ``(1, k, k)`` window; ``GroupAvgPool2d`` ->
  ``Sequential(Flatten(1, 2), AvgPool2d, Unflatten(1, (-1, F)))`` when the model has one fiber
  size ``F`` (torch's CPU ``avg_pool3d`` has no float16 / bfloat16; as for ``GroupPool``, a
  fiber a ``forward`` of the user's own changes unseen gives a wrong shape or torch's error),
  else ``AvgPool3d`` with a ``(1, k, k)`` window.

The cube groups' 3-D layers on 6-D maps ``(B, C, F, D, H, W)``:

* ``LiftingConv3d`` -> ``Sequential([pad,] Conv3d(C_in, C_out*|G|), Unflatten(1, (C_out,
  |G|)))``; ``GroupConv3d`` -> ``Sequential(Flatten(1, 2), [pad,] Conv3d(C_in*|G|,
  C_out*|G|), Unflatten(1, (C_out, |G|)))``: the ``Conv3d`` holds the expanded filter and the
  bias per slot (same ``F.conv3d`` call, so the outputs are identical); ``pad``
  (``ZeroPad3d``/``ReflectionPad3d``/``ReplicationPad3d``/``CircularPad3d``) only for
  asymmetric padding. ``LiftingConvTranspose3d`` / ``GroupConvTranspose3d`` -> the same with
  one ``ConvTranspose3d`` (its ``output_padding``; no ``output_size``, as in 2-D).
* With one fiber size ``F`` in the model: ``GroupBatchNorm3d`` -> ``Sequential(Flatten(2, 3),
  BatchNorm3d, Unflatten(2, (F, -1)))`` (fiber and depth share the statistics, as before);
  ``GroupMaxPool3d`` / ``GroupAvgPool3d`` -> ``Sequential(Flatten(1, 2), MaxPool3d/AvgPool3d,
  Unflatten(1, (-1, F)))``.
* ``SteerableConv3d`` (SO(3)/O(3), planar groups about the depth axis) -> the same
  ``Sequential`` (``Flatten(1, 2)`` for harmonic input), the bias on each field's order-0
  slot; ``SteerableConvTranspose3d`` -> the same with one ``ConvTranspose3d`` (no
  ``output_size``, as in 2-D).
* ``GroupMaxPool2d`` / ``GroupMaxPool3d`` with ``return_indices=True`` stay equilayers modules
  (kept, deep-copied): their indices are per slot's plane, a ``MaxPool3d``'s over the fiber
  too.
* ``GroupPool`` on 6-D maps stays an equilayers module (kept, deep-copied): no ``torch.nn``
  layer pools a 6-D tensor's fiber without knowing the spatial size (``nn.MaxPool3d`` takes
  5-D input, and every reshape that brings the fiber into a pooled dim merges two dims of
  unknown size). ``export`` leaves it in any model that holds a 3-D group conv or a layer
  typed for volumes (``Restrict``, ``CosetPool``, the 3-D pools); a ``GroupPool`` exported with
  nothing of either beside it (a 3-D model's head on its own) is taken as planar: export the
  whole model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch
from torch import nn

from . import _checks as C
from ._hooks import carry_hooks, copied, own_forward
from .groups import FieldType
from .nn._checks import OUTPUT_SIZE_CALLS
from .nn._exactness import warn_at_user
from .nn._group_conv import _GroupConvNd
from .nn._group_conv3d import _GroupConv3dBase
from .nn._group_conv_transpose import _GroupConvTransposeNd
from .nn._group_conv_transpose3d import _GroupConvTranspose3dBase
from .nn._group_norm import GroupBatchNorm2d, GroupBatchNorm3d
from .nn._group_pool import GroupAvgPool2d, GroupMaxPool2d, GroupPool
from .nn._linear import GroupLinear
from .nn._pool3d import GroupAvgPool3d, GroupMaxPool3d
from .nn._steerable_conv3d import SteerableConv3d
from .nn._steerable_conv_transpose3d import SteerableConvTranspose3d

__all__ = ["export", "register_export"]

Converter = Callable[[nn.Module, "int | None"], "nn.Module | None"]
_CONVERTERS: dict[type, Converter] = {}
M = TypeVar("M", bound=nn.Module)


def register_export(cls: type[M]) -> Callable[[Callable[[M, int | None], nn.Module | None]],
                                              Callable[[M, int | None], nn.Module | None]]:
    """Register ``fn(module, fiber) -> nn.Module`` converting instances of ``cls`` (and
    subclasses); ``fiber`` is the model's single group-conv fiber size, or ``None``. ``fn``
    may return ``None``: the module has no ``torch.nn`` form here and is kept."""
    def deco(fn: Callable[[M, int | None], nn.Module | None]
             ) -> Callable[[M, int | None], nn.Module | None]:
        _CONVERTERS[cls] = cast(Converter, fn)  # called on instances of cls only
        return fn
    return deco


_PADS = {"zeros": nn.ZeroPad2d, "reflect": nn.ReflectionPad2d,
         "replicate": nn.ReplicationPad2d, "circular": nn.CircularPad2d}


def _undrawn(cls: Any, *args: Any, device: torch.device, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)`` on ``device`` without running its initialiser: built on the
    meta device, then zeros (its weights are overwritten). No draw from torch's global
    generator, which a save-and-restore around ``export`` could not keep for other threads
    (a training thread re-drew its dropout masks while another exported snapshots)."""
    module = cls(*args, device="meta", **kwargs).to_empty(device=device)
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


@register_export(GroupLinear)
def _export_linear(m: GroupLinear, fiber: int | None) -> nn.Module:
    dense = _convert(m.conv, fiber, False)  # Sequential([Flatten,] Conv, Unflatten)
    assert isinstance(dense, nn.Sequential)  # every conv GroupLinear holds converts
    conv = next(c for c in dense if isinstance(c, (nn.Conv2d, nn.Conv3d)))
    w = conv.weight
    linear = _undrawn(nn.Linear, w.shape[1], w.shape[0], conv.bias is not None,
                      device=w.device, dtype=w.dtype)
    with torch.no_grad():
        linear.weight.copy_(w.reshape(w.shape[0], w.shape[1]))
        if conv.bias is not None:
            assert linear.bias is not None  # made with the conv's bias
            linear.bias.copy_(conv.bias)
    fiber_out = m.out_type.fiber_size if m.out_type is not None else None
    assert fiber_out is not None  # a GroupLinear's types are bound and sized
    return nn.Sequential(nn.Flatten(1), linear, nn.Unflatten(1, (m.out_features, fiber_out)))


@register_export(_GroupConvNd)
def _export_conv(m: _GroupConvNd, fiber: int | None) -> nn.Module:
    w = m.weight
    with torch.no_grad():
        expanded = m._expand().detach().clone()
    left, right, top, bottom = m._pad
    symmetric = left == right and top == bottom
    conv = _undrawn(nn.Conv2d, m.in_channels * m.fiber_in, m.out_channels * m.fiber_out,
                    m.kernel_size[0], m.stride, (top, left) if symmetric else 0, m.dilation,
                    m.groups, m.bias is not None,
                    m.padding_mode if symmetric else "zeros", device=w.device, dtype=w.dtype)
    with torch.no_grad():
        conv.weight.copy_(expanded)
        if m.bias is not None:
            slot_bias = m._slot_bias()
            assert conv.bias is not None and slot_bias is not None  # m has a bias: so has conv
            conv.bias.copy_(slot_bias)
    layers: list[nn.Module] = [] if m.lifting else [nn.Flatten(1, 2)]
    if not symmetric:
        layers.append(_PADS[m.padding_mode](m._pad))
    layers += [conv, nn.Unflatten(1, (m.out_channels, m.fiber_out))]
    return nn.Sequential(*layers)


def _dense_conv_transpose(m: _GroupConvTransposeNd | _GroupConvTranspose3dBase
                          | SteerableConvTranspose3d, padding: tuple[int, ...],
                          slot_bias: torch.Tensor | None, fiber_in: bool) -> nn.Module:
    """A transposed group or steerable conv as one ``nn.ConvTranspose2d`` / ``3d`` on the
    flattened fibers: the expanded filter (in the transposed layout ``(C_in * F_in, C_out *
    F_out // groups, *k)``) and ``slot_bias`` per output slot; ``fiber_in``: the input has a
    fiber to flatten (not plain images or volumes)."""
    w = m.weight
    with torch.no_grad():
        expanded = m._expand().detach().clone()
    cls: Any = nn.ConvTranspose2d if len(padding) == 2 else nn.ConvTranspose3d
    conv = _undrawn(cls, m.in_channels * m.fiber_in, m.out_channels * m.fiber_out,
                    m.kernel_size, m.stride, padding, m.output_padding, m.groups,
                    m.bias is not None, m.dilation, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        conv.weight.copy_(expanded)
        if slot_bias is not None and conv.bias is not None:
            conv.bias.copy_(slot_bias)
    layers: list[nn.Module] = [nn.Flatten(1, 2)] if fiber_in else []
    return nn.Sequential(*layers, conv, nn.Unflatten(1, (m.out_channels, m.fiber_out)))


@register_export(_GroupConvTransposeNd)
def _export_conv_transpose(m: _GroupConvTransposeNd, fiber: int | None) -> nn.Module:
    return _dense_conv_transpose(m, (m._pad[2], m._pad[0]), m._slot_bias(), not m.lifting)


@register_export(GroupBatchNorm2d)
def _export_bn(m: GroupBatchNorm2d, fiber: int | None) -> nn.Module:
    return _plain_bn(m)


def _plain_bn(m: nn.BatchNorm3d) -> nn.BatchNorm3d:
    ref = m.weight if m.weight is not None else m.running_mean
    bn = nn.BatchNorm3d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
                        device=None if ref is None else ref.device,
                        dtype=None if ref is None else ref.dtype,
                        **C.batch_norm_bias(m.bias is not None, m.affine, "export"))
    with torch.no_grad():  # by value: a parametrized weight's state-dict keys are not ours
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            src, dst = getattr(m, name, None), getattr(bn, name, None)
            if src is not None and dst is not None:
                dst.copy_(src)
    return bn


@register_export(GroupPool)
def _export_group_pool(m: GroupPool, fiber: int | None) -> nn.Module:
    pool: nn.Module
    if fiber is not None:
        # stride 1 on the fiber: one window where the fiber has the F slots the declared types
        # give, and more (a wrong shape, or torch's error) where a forward of the user's own
        # changed it unseen; stride F pooled the wrong slots silently (so2's 5 slots turned
        # into c8's 8 by a functional: 0.15 off)
        pool = (nn.MaxPool3d if m.reduction == "max" else nn.AvgPool3d)((fiber, 1, 1),
                                                                          stride=1)
    else:
        pool = (nn.AdaptiveMaxPool3d if m.reduction == "max" else nn.AdaptiveAvgPool3d)(
            (1, None, None))
    return nn.Sequential(pool, nn.Flatten(1, 2))


_PADS3 = {"zeros": nn.ZeroPad3d, "reflect": nn.ReflectionPad3d,
          "replicate": nn.ReplicationPad3d, "circular": nn.CircularPad3d}


def _dense_conv3d(m: _GroupConv3dBase | SteerableConv3d, slot_bias: torch.Tensor | None,
                  fiber_in: bool) -> nn.Module:
    """A 3-D group or steerable conv as one ``nn.Conv3d`` on the flattened fibers: the
    expanded filter, ``slot_bias`` per output slot, the padding inside the conv when it is the
    same on both sides (else an explicit ``nn.*Pad3d`` first); ``fiber_in``: the input has a
    fiber to flatten (not a plain volume)."""
    w = m.weight
    with torch.no_grad():
        expanded = m.expanded_filter().detach().clone()
    pad = m._pad  # F.pad's (w_lo, w_hi, h_lo, h_hi, d_lo, d_hi)
    symmetric = pad[0::2] == pad[1::2]
    mode: Any = m.padding_mode if symmetric else "zeros"  # a checked nn.Conv3d mode
    conv = _undrawn(nn.Conv3d, m.in_channels * m.fiber_in, m.out_channels * m.fiber_out,
                    m.kernel_size, m.stride, (pad[4], pad[2], pad[0]) if symmetric else 0,
                    m.dilation, m.groups, m.bias is not None, mode, device=w.device,
                    dtype=w.dtype)
    with torch.no_grad():
        conv.weight.copy_(expanded)
        if slot_bias is not None and conv.bias is not None:
            conv.bias.copy_(slot_bias)
    layers: list[nn.Module] = [nn.Flatten(1, 2)] if fiber_in else []
    if not symmetric:
        layers.append(_PADS3[m.padding_mode](pad))
    layers += [conv, nn.Unflatten(1, (m.out_channels, m.fiber_out))]
    return nn.Sequential(*layers)


@register_export(_GroupConv3dBase)
def _export_conv3d(m: _GroupConv3dBase, fiber: int | None) -> nn.Module:
    bias = None if m.bias is None else m.bias.detach().repeat_interleave(m.fiber_out)
    return _dense_conv3d(m, bias, fiber_in=not m.lifting)


@register_export(_GroupConvTranspose3dBase)
def _export_conv_transpose3d(m: _GroupConvTranspose3dBase, fiber: int | None) -> nn.Module:
    bias = None if m.bias is None else m.bias.detach().repeat_interleave(m.fiber_out)
    return _dense_conv_transpose(m, (m._pad[4], m._pad[2], m._pad[0]), bias, not m.lifting)


def _order0_bias(m: SteerableConv3d) -> torch.Tensor | None:
    """The bias per output slot: on the order-0 slot of each field only."""
    if m.bias is None:
        return None
    bias = m.bias.new_zeros(m.out_channels, m.fiber_out)
    bias[:, 0] = m.bias.detach()
    return bias.flatten()


@register_export(SteerableConv3d)
def _export_steerable3d(m: SteerableConv3d, fiber: int | None) -> nn.Module:
    return _dense_conv3d(m, _order0_bias(m), fiber_in=m.in_max_order is not None)


@register_export(SteerableConvTranspose3d)
def _export_steerable_transpose3d(m: SteerableConvTranspose3d, fiber: int | None
                                  ) -> nn.Module:
    return _dense_conv_transpose(m, (m._pad[4], m._pad[2], m._pad[0]), _order0_bias(m),
                                 m.in_max_order is not None)


@register_export(GroupBatchNorm3d)
def _export_bn3d(m: GroupBatchNorm3d, fiber: int | None) -> nn.Module | None:
    if fiber is None:
        return None
    return nn.Sequential(nn.Flatten(2, 3), _plain_bn(m), nn.Unflatten(2, (fiber, -1)))


def _pool3d(m: GroupMaxPool3d | GroupAvgPool3d, fiber: int | None) -> nn.Module | None:
    if fiber is None or getattr(m, "return_indices", False):  # (kept: the module docstring)
        return None
    pool: nn.Module
    if isinstance(m, GroupMaxPool3d):
        pool = nn.MaxPool3d(m.kernel_size, m.stride, m.padding, m.dilation,
                            ceil_mode=m.ceil_mode)
    else:
        pool = nn.AvgPool3d(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                            m.count_include_pad)
    return nn.Sequential(nn.Flatten(1, 2), pool, nn.Unflatten(1, (-1, fiber)))


register_export(GroupMaxPool3d)(_pool3d)
register_export(GroupAvgPool3d)(_pool3d)


def _win(v) -> tuple[int, int, int]:
    a, b = C.check_pair(v, "pool argument")
    return (1, a, b)


@register_export(GroupMaxPool2d)
def _export_max_pool(m: GroupMaxPool2d, fiber: int | None) -> nn.Module | None:
    if m.return_indices:  # MaxPool3d's indices would count the fiber: kept (module docstring)
        return None
    k, s, p, d = _win(m.kernel_size), _win(m.stride), _win(m.padding), _win(m.dilation)
    return nn.MaxPool3d(k, s, (0,) + p[1:], d, ceil_mode=m.ceil_mode)


@register_export(GroupAvgPool2d)
def _export_avg_pool(m: GroupAvgPool2d, fiber: int | None) -> nn.Module:
    k, s, p = _win(m.kernel_size), _win(m.stride), _win(m.padding)
    if fiber is not None:  # torch's CPU avg_pool3d has no float16 / bfloat16: a 2-D pool
        return nn.Sequential(nn.Flatten(1, 2), nn.AvgPool2d(
            k[1:], s[1:], p[1:], m.ceil_mode, m.count_include_pad), nn.Unflatten(1, (-1, fiber)))
    return nn.AvgPool3d(k, s, (0,) + p[1:], m.ceil_mode, m.count_include_pad)


def _convert(m: nn.Module, fiber: int | None, volumes: bool) -> nn.Module | None:
    if volumes and type(m) is GroupPool:
        return None  # a 6-D fiber pool has no torch.nn form (module docstring)
    for cls in type(m).__mro__:
        fn = _CONVERTERS.get(cls)
        if fn is not None:
            if (own := own_forward(m, "equilayers.")) is not None:
                base = next(k.__name__ for k in type(m).__mro__ if k.__module__.startswith(
                    "equilayers.") and not k.__name__.startswith("_"))
                where = "" if own == type(m).__name__ else f" (in {own})"
                warn_at_user(f"export: {type(m).__name__}, a subclass of {base}, has a forward "
                              f"of its own{where}, which the plain torch layer would not "
                              "compute: it is kept as it is, not converted")
                return None
            new = fn(m, fiber)
            if new is not None:
                new.train(m.training)
            return new
    return None


def _refuse_hook_computed(m: nn.Module) -> None:
    """A weight or bias that a forward pre-hook recomputes (``torch.nn.utils.prune``, the
    legacy ``weight_norm`` / ``spectral_norm``) is a plain attribute, current only after a
    forward: the export baked that copy and carried the hook, which then failed on the plain
    layer ("no attribute 'weight_mask'") at its first call. ``ValueError`` naming the fix."""
    for name in ("weight", "bias"):
        if isinstance(m.__dict__.get(name), torch.Tensor):
            raise ValueError(
                f"export: {type(m).__name__}'s {name} is recomputed by a forward pre-hook "
                "(torch.nn.utils.prune or the legacy weight_norm / spectral_norm), which the "
                f"plain layer cannot run: make it a parameter again first (prune.remove(m, "
                f"{name!r}), remove_weight_norm(m), remove_spectral_norm(m)), or use "
                "torch.nn.utils.parametrize's weight_norm / spectral_norm, which export reads")


def _warn_output_size(name: str, m: nn.Module) -> None:
    """Warn where a transposed conv that export converts has been called with
    ``output_size`` (recorded by its forward): its exported form, an ``nn.Sequential``, takes
    no such argument, so the model's forward fails on it with torch's bare ``TypeError``."""
    seen = m.__dict__.get(OUTPUT_SIZE_CALLS)
    if not seen or not isinstance(m, _TRANSPOSED) or own_forward(m, "equilayers.") is not None:
        return
    kind = type(m).__name__
    nd = len(m.output_padding)
    ops = sorted(seen, key=str)
    if len(ops) > 1 or None in ops[0]:
        fix = ("its calls asked for several output paddings (" + ", ".join(map(str, ops))
               + "), which one layer with a fixed output_padding cannot give: feed it input "
               "sizes that need one, or reach the size another way in the forward (crop or "
               "pad its output)")
    elif tuple(ops[0]) == tuple(m.output_padding):
        fix = (f"call it without output_size: its output_padding={tuple(m.output_padding)} "
               "already gives that size")
    else:
        fix = (f"build it with output_padding={ops[0]} (then load its state_dict) and call it "
               "without output_size")
    where = f"{kind} {name!r}" if name else kind
    warn_at_user(
        f"export: {where} has been called with output_size=, which its exported form (an "
        f"nn.Sequential of reshapes around nn.ConvTranspose{nd}d) does not take: a forward "
        "that passes output_size to it raises torch's TypeError ('Sequential.forward() got "
        f"an unexpected keyword argument'); {fix}")


_TRANSPOSED = (_GroupConvTransposeNd, _GroupConvTranspose3dBase, SteerableConvTranspose3d)


def _replace(module: nn.Module, fiber: int | None, volumes: bool,
             done: dict[int, nn.Module | None]) -> None:
    """Convert the children of ``module`` in place. ``done`` maps each module already seen
    (by id) to its replacement (``None``: kept, its children converted), so a module shared
    under several names (a tied conv) becomes one new module, still shared."""
    # every name: named_children() yields a module once, so a second name in the same parent
    # kept the unconverted module
    for name, child in list(module._modules.items()):
        if child is None:
            continue
        if id(child) in done:
            new = done[id(child)]
        else:
            new = done[id(child)] = _convert(child, fiber, volumes)
            if new is None:
                _replace(child, fiber, volumes, done)
            else:
                carry_hooks(child, new)
        if new is not None:
            setattr(module, name, new)


def export(model: nn.Module) -> nn.Module:
    """An equivalent copy of ``model`` in which the group convs (lifting, group, transposed,
    steerable; 2-D and 3-D), group batch norms and group pools are replaced by standard
    ``torch.nn`` layers (``Conv2d``/``Conv3d`` with the expanded filter, ``BatchNorm3d``, 3-D
    pooling, ``Flatten``/``Unflatten`` reshapes; the list is in the module docstring of
    ``equilayers._export``). Every other module is deep-copied unchanged: the blur layers
    (``BlurPool2d``, ``MaxBlurPool2d``, ``BlurConv2d``, ...), the polyphase pools,
    ``InvariantHead``, the harmonic modules (``NormPool``, ``NormNonlinearity``, ...),
    ``Restrict``, a ``GroupPool`` on the cube groups' 6-D maps, and (with a warning) a user's
    subclass of a converted layer that has a ``forward`` of its own (a residual added in it
    would be lost). A model that keeps one of
    them is not scriptable (``torch.jit.script``); deploy it with ``torch.jit.trace``,
    ``torch.export.export`` or ONNX's dynamo exporter (``docs/deployment.md``).

    The result has the same outputs (up to float rounding of the different conv order), keeps
    each module's train/eval mode and its hooks (an exported layer fires the hooks of the one
    it replaces), and no longer ties the filter copies: training it does not keep the
    equivariance constraint. A module used under several names (a shared group conv) becomes
    one exported module at every name, so its weights stay tied. ``model`` itself is not
    modified.

    A transposed conv exports to an ``nn.Sequential`` of reshapes around
    ``nn.ConvTranspose2d`` / ``3d`` with the layer's fixed ``output_padding``, which takes no
    ``output_size``: a forward that calls the layer with ``output_size=`` (even ``None``)
    raises torch's ``TypeError`` after the export. Build the layer with the
    ``output_padding`` that its ``output_size`` implies and call it without ``output_size``;
    ``export`` warns, naming the layer and that padding, where the layer has been called with
    an ``output_size`` (outside ``torch.compile``) before the export.

    Example:
        >>> import torch
        >>> from equilayers.nn import LiftingConv2d, GroupPool
        >>> net = torch.nn.Sequential(LiftingConv2d(1, 4, 3, group="p4m"), GroupPool()).eval()
        >>> x = torch.randn(1, 1, 9, 9)
        >>> torch.allclose(export(net)(x), net(x), atol=1e-6)
        True
    """
    C.check_module(model, "model", "export")
    convs = [m for m in model.modules()
             if isinstance(m, (_GroupConvNd, _GroupConv3dBase, SteerableConv3d))]
    # the fiber sizes that occur anywhere: every group conv's output and every typed module's
    # input and output (a HarmonicToRegular or Restrict between a conv and a pool changes it)
    fibers = {m.fiber_out for m in convs} | {
        t.fiber_size for m in model.modules()
        for t in (getattr(m, "in_type", None), getattr(m, "out_type", None))
        if isinstance(t, FieldType) and t.has_fiber and t.fiber_size is not None}
    fiber = fibers.pop() if len(fibers) == 1 else None
    # 6-D maps: a 3-D conv, or a layer typed for volumes (Restrict('oh', 'o') before a head)
    volumes = any(isinstance(m, (_GroupConv3dBase, SteerableConv3d)) for m in convs) or any(
        isinstance(t, FieldType) and t.group is not None and t.spatial_dims == 3
        for m in model.modules()
        for t in (getattr(m, "in_type", None), getattr(m, "out_type", None)))
    for name, m in model.named_modules():  # before the copy (torch refuses a pruned weight)
        if any(cls in _CONVERTERS for cls in type(m).__mro__):
            _refuse_hook_computed(m)
            _warn_output_size(name, m)
    new = _convert(model, fiber, volumes)
    if new is not None:
        carry_hooks(model, new, share=False)  # model itself stays the user's, untouched
        return new
    # (a deep copy keeps the sharing of modules, which _replace keeps too)
    out = copied(model, "export", "prune.remove / remove_weight_norm first")
    _replace(out, fiber, volumes, {})
    return out
