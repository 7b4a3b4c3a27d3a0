"""``equilayers.export``: turn a model that uses equilayers modules into one built only from
standard ``torch.nn`` layers, for deployment (TorchScript, ONNX, runtimes that know
``nn.Conv2d`` but not us).

Reshapes are the standard ``nn.Flatten`` / ``nn.Unflatten`` modules; no custom module remains.

* ``LiftingConv2d`` -> ``Sequential([pad,] Conv2d(C_in, C_out*|G|), Unflatten(1, (C_out, |G|)))``
* ``GroupConv2d``   -> ``Sequential(Flatten(1, 2), [pad,] Conv2d(C_in*|G|, C_out*|G|),
  Unflatten(1, (C_out, |G|)))``; the ``Conv2d`` holds the expanded filter (pixel or steerable
  basis; harmonic fields have ``2M+1`` slots in place of ``|G|``) and the bias per slot.
  ``pad`` (``ZeroPad2d``/``ReflectionPad2d``/``ReplicationPad2d``/
  ``CircularPad2d``) appears only for asymmetric padding; symmetric padding stays in the
  ``Conv2d`` (with its ``padding_mode``).
* ``LiftingConvTranspose2d`` / ``GroupConvTranspose2d`` -> the same with one
  ``ConvTranspose2d`` (its ``output_padding``; the ``output_size`` argument of the forward is
  not kept: the exported layer has the module's fixed ``output_padding``).
* ``GroupBatchNorm2d`` -> ``BatchNorm3d`` (same state).
* ``GroupPool`` -> ``Sequential(MaxPool3d((F, 1, 1)), Flatten(1, 2))`` (or ``AvgPool3d``) when
  every group conv of the model has the same fiber size ``F`` (TorchScript-able), else
  ``Sequential(AdaptiveMaxPool3d((1, None, None)), Flatten(1, 2))``, which pools any fiber in
  eager mode but is not scriptable.
* ``GroupMaxPool2d`` / ``GroupAvgPool2d`` -> ``MaxPool3d`` / ``AvgPool3d`` with a
  ``(1, k, k)`` window.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TypeVar, cast

import torch
from torch import nn

from . import _checks as C
from .nn._group_conv import _GroupConvNd
from .nn._group_conv_transpose import _GroupConvTransposeNd
from .nn._group_norm import GroupBatchNorm2d
from .nn._group_pool import GroupAvgPool2d, GroupMaxPool2d, GroupPool

__all__ = ["export", "register_export"]

Converter = Callable[[nn.Module, "int | None"], nn.Module]
_CONVERTERS: dict[type, Converter] = {}
M = TypeVar("M", bound=nn.Module)


def register_export(cls: type[M]) -> Callable[[Callable[[M, int | None], nn.Module]],
                                              Callable[[M, int | None], nn.Module]]:
    """Register ``fn(module, fiber) -> nn.Module`` converting instances of ``cls`` (and
    subclasses); ``fiber`` is the model's single group-conv fiber size, or ``None``."""
    def deco(fn: Callable[[M, int | None], nn.Module]) -> Callable[[M, int | None], nn.Module]:
        _CONVERTERS[cls] = cast(Converter, fn)  # called on instances of cls only
        return fn
    return deco


_PADS = {"zeros": nn.ZeroPad2d, "reflect": nn.ReflectionPad2d,
         "replicate": nn.ReplicationPad2d, "circular": nn.CircularPad2d}


@register_export(_GroupConvNd)
def _export_conv(m: _GroupConvNd, fiber: int | None) -> nn.Module:
    w = m.weight
    with torch.no_grad():
        expanded = m._expand().detach().clone()
    left, right, top, bottom = m._pad
    symmetric = left == right and top == bottom
    conv = nn.Conv2d(m.in_channels * m.fiber_in, m.out_channels * m.fiber_out,
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


@register_export(_GroupConvTransposeNd)
def _export_conv_transpose(m: _GroupConvTransposeNd, fiber: int | None) -> nn.Module:
    w = m.weight
    with torch.no_grad():
        expanded = m._expand().detach().clone()  # (C_in * F_in, C_out * F_out // groups, k, k)
    conv = nn.ConvTranspose2d(m.in_channels * m.fiber_in, m.out_channels * m.fiber_out,
                              m.kernel_size[0], m.stride, (m._pad[2], m._pad[0]),
                              m.output_padding, m.groups, m.bias is not None, m.dilation,
                              device=w.device, dtype=w.dtype)
    with torch.no_grad():
        conv.weight.copy_(expanded)
        if m.bias is not None:
            slot_bias = m._slot_bias()
            assert conv.bias is not None and slot_bias is not None  # m has a bias: so has conv
            conv.bias.copy_(slot_bias)
    layers: list[nn.Module] = [] if m.lifting else [nn.Flatten(1, 2)]
    return nn.Sequential(*layers, conv, nn.Unflatten(1, (m.out_channels, m.fiber_out)))


@register_export(GroupBatchNorm2d)
def _export_bn(m: GroupBatchNorm2d, fiber: int | None) -> nn.Module:
    ref = m.weight if m.weight is not None else m.running_mean
    bn = nn.BatchNorm3d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
                        device=None if ref is None else ref.device,
                        dtype=None if ref is None else ref.dtype)
    bn.load_state_dict(m.state_dict())
    return bn


@register_export(GroupPool)
def _export_group_pool(m: GroupPool, fiber: int | None) -> nn.Module:
    pool: nn.Module
    if fiber is not None:
        pool = (nn.MaxPool3d if m.reduction == "max" else nn.AvgPool3d)((fiber, 1, 1))
    else:
        pool = (nn.AdaptiveMaxPool3d if m.reduction == "max" else nn.AdaptiveAvgPool3d)(
            (1, None, None))
    return nn.Sequential(pool, nn.Flatten(1, 2))


def _win(v) -> tuple[int, int, int]:
    a, b = C.check_pair(v, "pool argument")
    return (1, a, b)


@register_export(GroupMaxPool2d)
def _export_max_pool(m: GroupMaxPool2d, fiber: int | None) -> nn.Module:
    k, s, p, d = _win(m.kernel_size), _win(m.stride), _win(m.padding), _win(m.dilation)
    return nn.MaxPool3d(k, s, (0,) + p[1:], d, ceil_mode=m.ceil_mode)


@register_export(GroupAvgPool2d)
def _export_avg_pool(m: GroupAvgPool2d, fiber: int | None) -> nn.Module:
    k, s, p = _win(m.kernel_size), _win(m.stride), _win(m.padding)
    return nn.AvgPool3d(k, s, (0,) + p[1:], m.ceil_mode, m.count_include_pad)


def _convert(m: nn.Module, fiber: int | None) -> nn.Module | None:
    for cls in type(m).__mro__:
        fn = _CONVERTERS.get(cls)
        if fn is not None:
            new = fn(m, fiber)
            new.train(m.training)
            return new
    return None


def _replace(module: nn.Module, fiber: int | None) -> None:
    for name, child in list(module.named_children()):
        new = _convert(child, fiber)
        if new is None:
            _replace(child, fiber)
        else:
            setattr(module, name, new)


def export(model: nn.Module) -> nn.Module:
    """An equivalent copy of ``model`` in which every equilayers module is replaced by standard
    ``torch.nn`` layers (``Conv2d`` with the expanded filter, ``BatchNorm3d``, 3-D pooling,
    ``Flatten``/``Unflatten`` reshapes); other modules are deep-copied unchanged.

    The result has the same outputs (up to float rounding of the different conv order), keeps
    each module's train/eval mode, and no longer ties the filter copies: training it does not
    keep the equivariance constraint. ``model`` itself is not modified.

    Example:
        >>> import torch
        >>> from equilayers.nn import LiftingConv2d, GroupPool
        >>> net = torch.nn.Sequential(LiftingConv2d(1, 4, 3, group="p4m"), GroupPool()).eval()
        >>> x = torch.randn(1, 1, 9, 9)
        >>> torch.allclose(export(net)(x), net(x), atol=1e-6)
        True
    """
    C.check_module(model, "model", "export")
    fibers = {m.fiber_out for m in model.modules() if isinstance(m, _GroupConvNd)}
    fiber = fibers.pop() if len(fibers) == 1 else None
    new = _convert(model, fiber)
    if new is not None:
        return new
    out = copy.deepcopy(model)
    _replace(out, fiber)
    return out
