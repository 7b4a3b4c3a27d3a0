"""The pieces :class:`~equilayers.models.UNet` is assembled from: a double conv block and the
matched down/upsampling pairs, for group feature maps and (``group=None``) plain images."""

from __future__ import annotations

import torch
from torch import nn

from ..groups import Group
from ..nn import (
    BlurPool2d,
    BlurUpsample2d,
    GroupBatchNorm2d,
    GroupConv2d,
    GroupMaxPool2d,
    LearnablePolyphasePool2d,
    LearnablePolyphaseUpsample2d,
    LiftingConv2d,
    PolyphasePool2d,
    PolyphaseUpsample2d,
)

__all__ = ["DOWNS", "DoubleConv", "make_down", "make_up", "concat"]

#: The downsampling modes of :class:`~equilayers.models.UNet` and their upsampling partners.
DOWNS = ("blur", "polyphase", "max", "learned")


class DoubleConv(nn.Sequential):
    """Two ``3 x 3`` convs (stride 1, padding 1), each followed by batch norm and ReLU.

    Group version (``group`` a :class:`~equilayers.groups.Group`): ``LiftingConv2d`` first when
    ``lift`` (images in), else ``GroupConv2d``; ``GroupBatchNorm2d``. Plain version
    (``group=None``): ``nn.Conv2d`` and ``nn.BatchNorm2d``. Convs have no bias (the batch norm
    adds one).
    """

    def __init__(self, in_channels: int, out_channels: int, group: Group | None, *,
                 lift: bool = False, padding_mode: str = "circular", basis: str | None = None,
                 device=None, dtype=None) -> None:
        kw = {"padding": 1, "bias": False, "padding_mode": padding_mode, "device": device,
              "dtype": dtype}
        norm = {"device": device, "dtype": dtype}
        layers: list[nn.Module] = []
        for i, c_in in enumerate((in_channels, out_channels)):
            if group is None:
                layers += [nn.Conv2d(c_in, out_channels, 3, **kw),
                           nn.BatchNorm2d(out_channels, **norm)]
            else:
                cls = LiftingConv2d if lift and i == 0 else GroupConv2d
                layers += [cls(c_in, out_channels, 3, group=group, basis=basis, **kw),
                           GroupBatchNorm2d(out_channels, **norm)]
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def make_down(down: str, group: Group | None, padding_mode: str, channels: int, *,
              device=None, dtype=None) -> nn.Module:
    """The stride-2 downsampling of a level (``channels``: the fields, or plain channels, of
    its input).

    ``"blur"``: ``BlurPool2d(kernel_size=4)`` (even, so its windows tile even sizes
    symmetrically), padded circularly with ``padding_mode="circular"``, by replication
    otherwise (exact for flips too, and it takes every size).
    ``"polyphase"``: ``PolyphasePool2d(2, blur_size=3, return_index=True)`` (circular blur).
    ``"max"``: a ``2 x 2`` max pool (``GroupMaxPool2d`` on group maps).
    ``"learned"``: learnable polyphase sampling,
    ``LearnablePolyphasePool2d(channels, 2, return_index=True)`` (its scoring net is the only
    module here with parameters).
    """
    if down == "blur":
        return BlurPool2d(kernel_size=4, stride=2,
                          padding_mode="circular" if padding_mode == "circular" else "replicate",
                          device=device, dtype=dtype)
    if down == "polyphase":
        return PolyphasePool2d(2, blur_size=3, padding_mode="circular", return_index=True)
    if down == "learned":
        return LearnablePolyphasePool2d(channels, 2, return_index=True, device=device,
                                        dtype=dtype)
    return nn.MaxPool2d(2) if group is None else GroupMaxPool2d(2)


def make_up(down: str, padding_mode: str, *, device=None, dtype=None) -> nn.Module:
    """The partner of :func:`make_down`: the transpose of the even blur pool
    (``BlurUpsample2d(2, 4, transposed=True)``, nearest-neighbour then a ``[1, 2, 1]`` blur),
    ``PolyphaseUpsample2d(2, blur_size=3)`` with the encoder's index,
    ``LearnablePolyphaseUpsample2d(2)`` with the learned pool's selection, or
    nearest-neighbour (``BlurUpsample2d(2, 2, transposed=True)``) after a max pool."""
    mode = "circular" if padding_mode == "circular" else "zeros"
    if down == "learned":
        return LearnablePolyphaseUpsample2d(2)
    if down == "polyphase":
        return PolyphaseUpsample2d(2, blur_size=3, padding_mode="circular")
    return BlurUpsample2d(2, 4 if down == "blur" else 2, mode, transposed=True, device=device,
                          dtype=dtype)


def concat(skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The skip connection: fields (``C``, dim 1) of the encoder's map, then the decoder's."""
    return torch.cat([skip, up], 1)
