"""The U-Net of ``equilayers.models.UNet`` / ``UNet3d`` built with escnn, for the
segmentation benchmarks' side-by-side rows (escnn is imported by the caller's ``gs``)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def _encode_decode(net: nn.Module, x, depth: int):
    """The U-Net's pass of ``x`` (a plain tensor) through ``net``'s escnn modules: the
    encoder's levels with ``down`` between them, the decoder's with ``up`` and the skip
    (``tensor_directsum``), then ``head``; a ``GeometricTensor``."""
    from escnn import nn as enn

    h = enn.GeometricTensor(x, net.in_type)
    skips = []
    for level, block in enumerate(net.encoder):
        if level:
            h = net.down[level - 1](h)
        h = block(h)
        skips.append(h)
    for level in reversed(range(depth)):
        h = net.decoder[level](enn.tensor_directsum([skips[level], net.up[level](h)]))
    return net.head(h)


def escnn_unet(gs, width: int, *, depth: int, classes: int, conv: Callable,
               pool: Callable, upsample: Callable) -> nn.Module:
    """An escnn U-Net on the gspace ``gs`` with ``width * 2**level`` regular fields: two
    ``conv(t_in, t_out, 3)`` (circular padding, no bias) with ``InnerBatchNorm`` and ``ReLU``
    per level, ``pool(t)`` down, ``upsample(t)`` up, the skip by ``tensor_directsum``; a
    ``1 x 1`` conv to ``classes`` regular fields and ``GroupPooling`` (max over the fiber).
    ``conv`` is ``enn.R2Conv`` or ``enn.R3Conv``; ``pool`` / ``upsample`` take a field type."""
    from escnn import nn as enn

    def regular(c):
        return enn.FieldType(gs, c * [gs.regular_repr])

    def double(t_in, c):
        t = regular(c)
        return enn.SequentialModule(
            conv(t_in, t, 3, padding=1, bias=False, padding_mode="circular"),
            enn.InnerBatchNorm(t), enn.ReLU(t, inplace=True),
            conv(t, t, 3, padding=1, bias=False, padding_mode="circular"),
            enn.InnerBatchNorm(t), enn.ReLU(t, inplace=True))

    class EscnnUNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [width * 2**lv for lv in range(depth + 1)]
            self.in_type = enn.FieldType(gs, [gs.trivial_repr])
            self.encoder = nn.ModuleList(
                [double(self.in_type, widths[0])]
                + [double(regular(widths[lv - 1]), widths[lv]) for lv in range(1, depth + 1)])
            self.down = nn.ModuleList(pool(regular(widths[lv])) for lv in range(depth))
            self.up = nn.ModuleList(upsample(regular(widths[lv + 1])) for lv in range(depth))
            self.decoder = nn.ModuleList(
                double(regular(widths[lv]) + regular(widths[lv + 1]), widths[lv])
                for lv in range(depth))
            self.head = conv(regular(widths[0]), regular(classes), 1)
            self.pool = enn.GroupPooling(regular(classes))

        def forward(self, x):
            return self.pool(_encode_decode(self, x, depth)).tensor

    return EscnnUNet()



def escnn_harmonic_unet(gs, width: int, *, depth: int, classes: int, conv: Callable,
                        nonlinearity: Callable, pool: Callable, upsample: Callable
                        ) -> nn.Module:
    """The U-Net of harmonic fields of ``equilayers.models.UNet(group="so2")`` /
    ``UNet3d(group="so3")`` built with escnn on ``gs``: ``width * 2**level`` fields, their
    type the input type of ``nonlinearity(c)`` (``FourierELU`` / ``QuotientFourierELU``: one
    representation per field, the irreps ``0 .. L``); per level two ``conv`` 3 x 3 (``R2Conv``
    / ``R3Conv``; circular, no bias) with ``GNormBatchNorm`` (each order's norm normalized,
    order 0 centred: our ``HarmonicBatchNorm``'s statistics) and the nonlinearity; ``pool(t)``
    down, ``upsample(t)`` up, the skip by ``tensor_directsum``; a ``1 x 1`` conv to ``classes``
    trivial fields (the logits)."""
    from escnn import nn as enn

    def double(t_in, c):
        first, second = nonlinearity(c), nonlinearity(c)
        return enn.SequentialModule(
            conv(t_in, first.in_type, 3, padding=1, bias=False, padding_mode="circular"),
            enn.GNormBatchNorm(first.in_type), first,
            conv(first.in_type, second.in_type, 3, padding=1, bias=False,
                 padding_mode="circular"),
            enn.GNormBatchNorm(second.in_type), second)

    class EscnnHarmonicUNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [width * 2**lv for lv in range(depth + 1)]
            types = [nonlinearity(c).in_type for c in widths]
            self.in_type = enn.FieldType(gs, [gs.trivial_repr])
            self.encoder = nn.ModuleList(
                [double(self.in_type, widths[0])]
                + [double(types[lv - 1], widths[lv]) for lv in range(1, depth + 1)])
            self.down = nn.ModuleList(pool(types[lv]) for lv in range(depth))
            self.up = nn.ModuleList(upsample(types[lv + 1]) for lv in range(depth))
            self.decoder = nn.ModuleList(double(types[lv] + types[lv + 1], widths[lv])
                                         for lv in range(depth))
            self.head = conv(types[0], enn.FieldType(gs, classes * [gs.trivial_repr]), 1)

        def forward(self, x):
            return _encode_decode(self, x, depth).tensor

    return EscnnHarmonicUNet()
