"""The pieces :class:`~equilayers.models.UNet` and :class:`~equilayers.models.UNet3d` are
assembled from: a double conv block and the matched down/upsampling pairs, for group feature
maps and (``group=None``) plain images or volumes, with ``nd`` (2 or 3) spatial dims."""

from __future__ import annotations

import torch
from torch import nn

from ..groups import Group
from ..nn import (
    BlurPool2d,
    BlurPool3d,
    BlurUpsample2d,
    BlurUpsample3d,
    FourierNonlinearity,
    GatedNonlinearity,
    GroupBatchNorm2d,
    GroupBatchNorm3d,
    GroupConv2d,
    GroupConv3d,
    GroupConvTranspose2d,
    GroupConvTranspose3d,
    GroupMaxPool2d,
    GroupMaxPool3d,
    HarmonicBatchNorm,
    LearnablePolyphasePool2d,
    LearnablePolyphasePool3d,
    LearnablePolyphaseUpsample2d,
    LearnablePolyphaseUpsample3d,
    LiftingConv2d,
    LiftingConv3d,
    NormMaxPool,
    NormNonlinearity,
    PolyphasePool2d,
    PolyphasePool3d,
    PolyphaseUpsample2d,
    PolyphaseUpsample3d,
    SteerableConv3d,
    SteerableConvTranspose3d,
)

__all__ = ["DOWNS", "UPS", "NONLINEARITIES", "DoubleConv", "make_down", "make_up",
           "transposed_up", "concat", "LAYERS", "steerable_conv", "nonlinearity_module"]

#: The downsampling modes of :class:`~equilayers.models.UNet` and
#: :class:`~equilayers.models.UNet3d`, each with its upsampling partner.
DOWNS = ("blur", "polyphase", "max", "learned")
#: Their ``up`` modes: the partner of ``down``, or a learned transposed conv.
UPS = ("matched", "transposed")
#: The nonlinearities after each batch norm, per kind of field (the first is the default):
#: pointwise on plain channels and regular fields, on the fiber's norms or its samples on
#: harmonic fields.
NONLINEARITIES = {"pointwise": ("relu", "elu"), "harmonic": ("fourier", "gated", "norm")}

#: Per number of spatial dims: plain conv and norm, lifting and group conv, group norm, the
#: blur, max and polyphase pools and their upsampling partners.
LAYERS: dict[int, dict[str, type[nn.Module]]] = {
    2: {"conv": nn.Conv2d, "norm": nn.BatchNorm2d, "lift": LiftingConv2d, "gconv": GroupConv2d,
        "gconv_t": GroupConvTranspose2d, "conv_t": nn.ConvTranspose2d,
        "gnorm": GroupBatchNorm2d, "blur": BlurPool2d, "blur_up": BlurUpsample2d,
        "max": nn.MaxPool2d, "gmax": GroupMaxPool2d, "polyphase": PolyphasePool2d,
        "polyphase_up": PolyphaseUpsample2d, "learned": LearnablePolyphasePool2d,
        "learned_up": LearnablePolyphaseUpsample2d},
    3: {"conv": nn.Conv3d, "norm": nn.BatchNorm3d, "lift": LiftingConv3d, "gconv": GroupConv3d,
        "gconv_t": GroupConvTranspose3d, "conv_t": nn.ConvTranspose3d,
        "gnorm": GroupBatchNorm3d, "blur": BlurPool3d, "blur_up": BlurUpsample3d,
        "max": nn.MaxPool3d, "gmax": GroupMaxPool3d, "polyphase": PolyphasePool3d,
        "polyphase_up": PolyphaseUpsample3d, "learned": LearnablePolyphasePool3d,
        "learned_up": LearnablePolyphaseUpsample3d},
}


def steerable_conv(in_channels: int, out_channels: int, kernel_size: int, group: Group, *,
                   nd: int, max_order: int, in_max_order: int | None, **kw) -> nn.Module:
    """A conv to harmonic fields of order ``0 .. max_order`` of a continuous group, from
    harmonic fields of order ``0 .. in_max_order`` or (``None``) from images / volumes:
    :class:`~equilayers.nn.LiftingConv2d` / :class:`~equilayers.nn.GroupConv2d` on images,
    :class:`~equilayers.nn.SteerableConv3d` on volumes (SO(3)/O(3), or a planar group turning
    every depth slice)."""
    if nd == 3:
        return SteerableConv3d(in_channels, out_channels, kernel_size, group=group,
                               max_order=max_order, in_max_order=in_max_order, **kw)
    if in_max_order is None:
        return LiftingConv2d(in_channels, out_channels, kernel_size, group=group,
                             max_order=max_order, **kw)
    return GroupConv2d(in_channels, out_channels, kernel_size, group=group,
                       max_order=max_order, in_max_order=in_max_order, **kw)


def nonlinearity_module(name: str, channels: int, group: Group | None, max_order: int | None,
                        nd: int, **factory) -> nn.Module:
    """The nonlinearity ``name`` (:data:`NONLINEARITIES`) after a batch norm of ``channels``
    fields: ``nn.ReLU``/``nn.ELU`` (in place) on plain channels and regular fields; on harmonic
    fields of orders ``0 .. max_order``, :class:`~equilayers.nn.FourierNonlinearity` (ELU on
    the samples), :class:`~equilayers.nn.GatedNonlinearity` (each field's order-0 slot, through
    a sigmoid, gates its higher orders; ReLU on the order-0 slot) or
    :class:`~equilayers.nn.NormNonlinearity` (ReLU of each order's norm minus a learned bias)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "elu":
        return nn.ELU(inplace=True)
    assert group is not None and max_order is not None  # harmonic fields (checked by UNet)
    if name == "fourier":
        return FourierNonlinearity(group, max_order, spatial_dims=nd, **factory)
    if name == "gated":
        return GatedNonlinearity(max_order, group=group, spatial_dims=nd)
    return NormNonlinearity(channels, max_order, group=group, spatial_dims=nd, **factory)


class DoubleConv(nn.Sequential):
    """Two ``3 x 3`` (``3 x 3 x 3`` with ``nd=3``) convs (stride 1, padding 1), each followed
    by batch norm and ReLU.

    Group version (``group`` a :class:`~equilayers.groups.Group`): a lifting conv first when
    ``lift`` (images or volumes in), else a group conv; group batch norm. Plain version
    (``group=None``): ``nn.Conv2d``/``nn.Conv3d`` and ``nn.BatchNorm2d``/``nn.BatchNorm3d``.
    Steerable version (``max_order`` given, ``group`` continuous): harmonic fields of orders
    ``0 .. max_order`` (:func:`steerable_conv`), :class:`~equilayers.nn.HarmonicBatchNorm` and
    :class:`~equilayers.nn.FourierNonlinearity` (ELU on the samples) in place of the ReLU.
    ``nonlinearity``: another one of :data:`NONLINEARITIES` (:func:`nonlinearity_module`).
    Convs have no bias (the batch norm adds one).
    """

    def __init__(self, in_channels: int, out_channels: int, group: Group | None, *,
                 lift: bool = False, padding_mode: str = "circular", basis: str | None = None,
                 nd: int = 2, max_order: int | None = None, nonlinearity: str | None = None,
                 device=None, dtype=None) -> None:
        kw = {"padding": 1, "bias": False, "padding_mode": padding_mode, "device": device,
              "dtype": dtype}
        norm = {"device": device, "dtype": dtype}
        t = LAYERS[nd]
        harmonic = group is not None and max_order is not None
        name = nonlinearity or NONLINEARITIES["harmonic" if harmonic else "pointwise"][0]
        layers: list[nn.Module] = []
        for i, c_in in enumerate((in_channels, out_channels)):
            if group is not None and max_order is not None:
                layers += [steerable_conv(c_in, out_channels, 3, group, nd=nd,
                                          max_order=max_order,
                                          in_max_order=None if lift and i == 0 else max_order,
                                          **kw),
                           HarmonicBatchNorm(out_channels, max_order, group=group,
                                             spatial_dims=nd, **norm),
                           nonlinearity_module(name, out_channels, group, max_order, nd,
                                               **norm)]
                continue
            if group is None:
                layers += [t["conv"](c_in, out_channels, 3, **kw),
                           t["norm"](out_channels, **norm)]
            else:
                cls = t["lift"] if lift and i == 0 else t["gconv"]
                layers += [cls(c_in, out_channels, 3, group=group, basis=basis, **kw),
                           t["gnorm"](out_channels, **norm)]
            layers.append(nonlinearity_module(name, out_channels, None, None, nd))
        super().__init__(*layers)


def make_down(down: str, group: Group | None, padding_mode: str, channels: int, *,
              nd: int = 2, harmonic: bool = False, device=None, dtype=None) -> nn.Module:
    """The stride-2 downsampling of a level (``channels``: the fields, or plain channels, of
    its input).

    ``"blur"``: ``BlurPool2d(kernel_size=4)`` (``BlurPool3d`` with ``nd=3``; even, so its
    windows tile even sizes symmetrically), padded circularly with ``padding_mode="circular"``,
    by replication otherwise (exact for flips too, and it takes every size).
    ``"polyphase"``: ``PolyphasePool2d(2, blur_size=3, return_index=True)`` (circular blur;
    ``PolyphasePool3d``).
    ``"max"``: a ``2 x 2`` (``2 x 2 x 2``) max pool (``GroupMaxPool2d``/``3d`` on group maps;
    on harmonic fields, ``harmonic``, the field of largest norm: ``NormMaxPool(2)``, with
    ``group`` and ``spatial_dims=3`` on volumes).
    ``"learned"``: learnable polyphase sampling,
    ``LearnablePolyphasePool2d(channels, 2, return_index=True)`` (``...3d``; its scoring net is
    the only module here with parameters).
    """
    t = LAYERS[nd]
    if down == "blur":
        return t["blur"](kernel_size=4, stride=2,
                         padding_mode="circular" if padding_mode == "circular" else "replicate",
                         device=device, dtype=dtype)
    if down == "polyphase":
        return t["polyphase"](2, blur_size=3, padding_mode="circular", return_index=True)
    if down == "learned":
        return t["learned"](channels, 2, return_index=True, device=device, dtype=dtype)
    if harmonic:
        return NormMaxPool(2) if nd == 2 else NormMaxPool(2, group=group, spatial_dims=3)
    return t["max"](2) if group is None else t["gmax"](2)


def make_up(down: str, padding_mode: str, *, nd: int = 2, device=None, dtype=None
            ) -> nn.Module:
    """The partner of :func:`make_down`: the transpose of the even blur pool
    (``BlurUpsample2d(2, 4, transposed=True)``, nearest-neighbour then a ``[1, 2, 1]`` blur),
    ``PolyphaseUpsample2d(2, blur_size=3)`` with the encoder's index,
    ``LearnablePolyphaseUpsample2d(2)`` with the learned pool's selection, or
    nearest-neighbour (``BlurUpsample2d(2, 2, transposed=True)``) after a max pool (the
    ``3d`` ones with ``nd=3``)."""
    t = LAYERS[nd]
    mode = "circular" if padding_mode == "circular" else "zeros"
    if down == "learned":
        return t["learned_up"](2)
    if down == "polyphase":
        return t["polyphase_up"](2, blur_size=3, padding_mode="circular")
    return t["blur_up"](2, 4 if down == "blur" else 2, mode, transposed=True, device=device,
                        dtype=dtype)


def transposed_up(in_channels: int, out_channels: int, group: Group | None, *, nd: int = 2,
                  max_order: int | None = None, device=None, dtype=None) -> nn.Module:
    """The original U-Net's up-convolution (``up="transposed"``): a ``2 x 2`` (``2 x 2 x 2``)
    transposed conv at stride 2, no padding, from ``in_channels`` to ``out_channels`` fields
    (a group transposed conv in the group's default basis, between harmonic fields of
    ``max_order`` where given, or ``nn.ConvTranspose2d``/``3d``). Its footprints tile the
    output without overlap, centred on the input's grid: exact under the grid elements at
    every size, and under circular shifts by even amounts."""
    t = LAYERS[nd]
    factory = {"device": device, "dtype": dtype}
    if group is None:
        return t["conv_t"](in_channels, out_channels, 2, stride=2, **factory)
    if max_order is None:
        return t["gconv_t"](in_channels, out_channels, 2, stride=2, group=group, **factory)
    if nd == 3:  # harmonic fields on volumes
        return SteerableConvTranspose3d(in_channels, out_channels, 2, stride=2, group=group,
                                        max_order=max_order, in_max_order=max_order, **factory)
    return t["gconv_t"](in_channels, out_channels, 2, stride=2, group=group,
                        max_order=max_order, **factory)


def concat(skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The skip connection: fields (``C``, dim 1) of the encoder's map, then the decoder's."""
    return torch.cat([skip, up], 1)
