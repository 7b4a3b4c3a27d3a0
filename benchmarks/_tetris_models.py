"""The tetris family's models (:mod:`benchmarks.bench_tetris`): three 3 x 3 x 3 convolutions
(the second at stride 2), batch norm, an invariant pooling and a linear layer, built plain,
on the cube's groups, on SO(3) and on SO(2) about the depth axis with equilayers, and the
equivariant ones with escnn (``pip install escnn``)."""

from __future__ import annotations

import torch
from torch import nn

MAX_ORDER = 1  # the SO(3) model's fields: orders 0..1 (4 slots)

def plain_cnn(width: int, classes: int) -> nn.Module:
    """Three ``nn.Conv3d`` (k3; the second at stride 2), batch norm, ReLU, global mean."""
    return nn.Sequential(
        nn.Conv3d(1, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU(),
        nn.Conv3d(width, width, 3, stride=2, padding=1), nn.BatchNorm3d(width), nn.ReLU(),
        nn.Conv3d(width, 2 * width, 3, padding=1), nn.BatchNorm3d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.BatchNorm1d(2 * width),
        nn.Linear(2 * width, classes))


class SpaceThenFiber(nn.Module):
    """``(B, C, |G|, D, H, W) -> (B, 2C)``: the global mean of every slot, then the max and the
    mean over the slots. Exactly invariant to the group's grid elements (they permute the
    voxels, which the mean forgets, and the slots, which the max and the mean forget)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((-3, -2, -1))
        return torch.cat([m.amax(2), m.mean(2)], 1)


def octahedral_cnn(width: int, classes: int, basis: str = "voxel", group: str = "o"
                   ) -> nn.Module:
    """The same with regular fields of the cube's 24 rotations (``group="o"``, voxel filters,
    or band-limited ones with ``basis="harmonic"``), then :class:`SpaceThenFiber`: exactly
    O-invariant on the grid (``group="ico"``: the icosahedron's 60 rotations, exact on its 12
    grid elements)."""
    from equilayers.nn import GroupBatchNorm3d, GroupConv3d, LiftingConv3d

    kw = {"padding": 1, "group": group, "basis": basis}
    return nn.Sequential(
        LiftingConv3d(1, width, 3, **kw), GroupBatchNorm3d(width), nn.ReLU(),
        GroupConv3d(width, width, 3, stride=2, **kw), GroupBatchNorm3d(width), nn.ReLU(),
        GroupConv3d(width, 2 * width, 3, **kw), GroupBatchNorm3d(2 * width), nn.ReLU(),
        SpaceThenFiber(), nn.BatchNorm1d(4 * width), nn.Linear(4 * width, classes))


def so3_cnn(width: int, classes: int, max_order: int = MAX_ORDER,
            norm_relu: str = "default") -> nn.Module:
    """The same with SO(3) harmonic fields of orders ``0..max_order`` (``SteerableConv3d``),
    harmonic batch norm, norm-ReLU; the norm of every order, then the global mean:
    O-invariant exactly on the grid, other rotations approximately. ``norm_relu``:
    ``"default"`` (``NormNonlinearity``'s defaults: a plain ReLU on order 0) or ``"escnn"``
    (escnn's ``n_relu``, :func:`escnn_so3_cnn` 's maths: order 0 a norm field too, and a
    log-threshold, ``order0="norm", bias_form="exp"``)."""
    from equilayers.nn import HarmonicBatchNorm, NormNonlinearity, NormPool, SteerableConv3d

    L = max_order
    kw = {"default": {}, "escnn": {"order0": "norm", "bias_form": "exp"}}[norm_relu]

    def block(c_in, c_out, stride, lin):
        return [SteerableConv3d(c_in, c_out, 3, stride=stride, padding=1, group="so3",
                                in_max_order=lin, max_order=L),
                HarmonicBatchNorm(c_out, L, group="so3"),
                NormNonlinearity(c_out, L, group="so3", **kw)]

    features = 2 * width * (L + 1)
    return nn.Sequential(*block(1, width, 1, None), *block(width, width, 2, L),
                         *block(width, 2 * width, 1, L), NormPool(L, group="so3"),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.BatchNorm1d(features),
                         nn.Linear(features, classes))


class _EscnnNet(nn.Module):
    """An escnn ``SequentialModule`` on ``GeometricTensor`` s, then a head on its plain
    tensor: plain tensors in and out."""

    def __init__(self, in_type, body, head: nn.Module, fiber: int | None = None) -> None:
        super().__init__()
        self.escnn_type, self.body, self.head, self.fiber = in_type, body, head, fiber

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from escnn.nn import GeometricTensor

        y = self.body(GeometricTensor(x, self.escnn_type)).tensor
        if self.fiber is not None:  # regular fields: (B, C * |G|, ...) -> (B, C, |G|, ...)
            y = y.unflatten(1, (-1, self.fiber))
        return self.head(y)


def escnn_octahedral_cnn(width: int, classes: int) -> nn.Module:
    """:func:`octahedral_cnn` built with escnn (``pip install escnn``): ``R3Conv`` on
    ``octaOnR3`` regular fields (escnn's steerable basis for the 3 x 3 x 3 filters, its
    generalized He init), ``InnerBatchNorm``, ``ReLU``, the same head. escnn lists the 24
    slots in another order; the head forgets the order."""
    from escnn import gspaces
    from escnn import nn as enn

    gs = gspaces.octaOnR3()
    t = in_type = enn.FieldType(gs, [gs.trivial_repr])
    mods = []
    for mult, stride in ((1, 1), (1, 2), (2, 1)):
        out = enn.FieldType(gs, mult * width * [gs.regular_repr])
        mods += [enn.R3Conv(t, out, 3, stride=stride, padding=1), enn.InnerBatchNorm(out),
                 enn.ReLU(out)]
        t = out
    head = nn.Sequential(SpaceThenFiber(), nn.BatchNorm1d(4 * width),
                         nn.Linear(4 * width, classes))
    return _EscnnNet(in_type, enn.SequentialModule(*mods), head, fiber=gs.fibergroup.order())


def escnn_so3_cnn(width: int, classes: int, max_order: int = MAX_ORDER) -> nn.Module:
    """:func:`so3_cnn` built with escnn (``pip install escnn``): ``R3Conv`` on ``rot3dOnR3``
    fields of the irreps ``0..max_order``, ``GNormBatchNorm`` (order 0 centred and scaled,
    the others scaled by their norm, as ``HarmonicBatchNorm``), ``NormNonLinearity``
    (``"n_relu"``, escnn's default bias) on every irrep, ``NormPool``, the same head."""
    from escnn import gspaces

    gs = gspaces.rot3dOnR3(maximum_frequency=max_order)
    return _escnn_norm_cnn(gs, [gs.irrep(ell) for ell in range(max_order + 1)], width,
                           classes)


def _escnn_norm_cnn(gs, field: list, width: int, classes: int) -> nn.Module:
    """escnn's ``R3Conv`` / ``GNormBatchNorm`` / ``NormNonLinearity`` (``"n_relu"``) x 3 on
    ``gs`` fields ``field`` (irreps ``0..L``), ``NormPool``, then our head."""
    from escnn import nn as enn

    t = in_type = enn.FieldType(gs, [gs.trivial_repr])
    mods = []
    for mult, stride in ((1, 1), (1, 2), (2, 1)):
        out = enn.FieldType(gs, mult * width * field)
        mods += [enn.R3Conv(t, out, 3, stride=stride, padding=1), enn.GNormBatchNorm(out),
                 enn.NormNonLinearity(out, "n_relu")]
        t = out
    mods.append(enn.NormPool(t))
    features = 2 * width * len(field)
    head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.BatchNorm1d(features),
                         nn.Linear(features, classes))
    return _EscnnNet(in_type, enn.SequentialModule(*mods), head)


def so3_escnn_norm_relu_cnn(width: int, classes: int) -> nn.Module:
    """:func:`so3_cnn` with escnn's norm-ReLU (``norm_relu="escnn"``): the same model as
    :func:`escnn_so3_cnn`, built with equilayers."""
    return so3_cnn(width, classes, norm_relu="escnn")


def octahedral_harmonic_cnn(width: int, classes: int) -> nn.Module:
    """:func:`octahedral_cnn` with ``basis="harmonic"``: 10 numbers per 3 x 3 x 3 filter
    instead of 27 (escnn's function space for these fields)."""
    return octahedral_cnn(width, classes, basis="harmonic")


def icosahedral_cnn(width: int, classes: int) -> nn.Module:
    """:func:`octahedral_cnn` on the icosahedron's 60 rotations (``group="ico"``, its only
    basis, the harmonic one, turned per slot): exact on the 12 grid elements ("t"), the
    others approximate. Not in the default run: ``--filter icosahedral``."""
    return octahedral_cnn(width, classes, basis="harmonic", group="ico")


def c4z_cnn(width: int, classes: int) -> nn.Module:
    """:func:`octahedral_cnn` on ``"c4z"``: the quarter turns about the depth axis (4 slots,
    voxel filters, exact)."""
    return octahedral_cnn(width, classes, group="c4z")


def so2_depth_cnn(width: int, classes: int, max_order: int = 2,
                  norm_relu: str = "default") -> nn.Module:
    """:func:`so3_cnn`'s architecture for SO(2) about the depth axis: ``SteerableConv3d``
    (``group="so2"``, its default basis: escnn's shells) to planar fields of orders
    ``0..max_order``, ``HarmonicBatchNorm`` / ``NormNonlinearity`` / ``NormPool`` with
    ``spatial_dims=3``, global mean: exact on the quarter turns about the depth axis, other
    angles approximately. ``norm_relu``: as :func:`so3_cnn`'s."""
    from equilayers.nn import HarmonicBatchNorm, NormNonlinearity, NormPool, SteerableConv3d

    L, kw = max_order, {"group": "so2", "spatial_dims": 3}
    relu = {"default": {}, "escnn": {"order0": "norm", "bias_form": "exp"}}[norm_relu]

    def block(c_in, c_out, stride, lin):
        return [SteerableConv3d(c_in, c_out, 3, stride=stride, padding=1, group="so2",
                                in_max_order=lin, max_order=L),
                HarmonicBatchNorm(c_out, L, **kw), NormNonlinearity(c_out, L, **kw, **relu)]

    features = 2 * width * (L + 1)
    return nn.Sequential(*block(1, width, 1, None), *block(width, width, 2, L),
                         *block(width, 2 * width, 1, L), NormPool(L, **kw),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.BatchNorm1d(features),
                         nn.Linear(features, classes))


def so2_depth_escnn_norm_relu_cnn(width: int, classes: int) -> nn.Module:
    """:func:`so2_depth_cnn` with escnn's norm-ReLU: :func:`escnn_so2_depth_cnn` 's maths,
    built with equilayers."""
    return so2_depth_cnn(width, classes, norm_relu="escnn")


def escnn_so2_depth_cnn(width: int, classes: int, max_order: int = 2) -> nn.Module:
    """:func:`so2_depth_cnn` built with escnn (``pip install escnn``): ``R3Conv`` on
    ``rot2dOnR3()`` fields of the irreps ``0..max_order`` (its basis on spherical shells),
    ``GNormBatchNorm``, ``NormNonLinearity`` (``"n_relu"``), ``NormPool``, the same head."""
    from escnn import gspaces

    gs = gspaces.rot2dOnR3()
    return _escnn_norm_cnn(gs, [gs.fibergroup.irrep(m) for m in range(max_order + 1)], width,
                           classes)


def so3_tensor_product_cnn(width: int, classes: int, max_order: int = MAX_ORDER) -> nn.Module:
    """:func:`so3_cnn` with the tensor-product nonlinearity (``TensorProductNonlinearity``,
    each field's square mapped back to orders ``0..L``) in place of the norm-ReLU. Not in the
    default run: ``--filter "tetris: tensor-product"``."""
    from equilayers.nn import (
        HarmonicBatchNorm,
        NormPool,
        SteerableConv3d,
        TensorProductNonlinearity,
    )

    L = max_order

    def block(c_in, c_out, stride, lin):
        return [SteerableConv3d(c_in, c_out, 3, stride=stride, padding=1, group="so3",
                                in_max_order=lin, max_order=L),
                HarmonicBatchNorm(c_out, L, group="so3"),
                TensorProductNonlinearity(c_out, "so3", L)]

    features = 2 * width * (L + 1)
    return nn.Sequential(*block(1, width, 1, None), *block(width, width, 2, L),
                         *block(width, 2 * width, 1, L), NormPool(L, group="so3"),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.BatchNorm1d(features),
                         nn.Linear(features, classes))


def escnn_so3_tensor_product_cnn(width: int, classes: int,
                                 max_order: int = MAX_ORDER) -> nn.Module:
    """:func:`so3_tensor_product_cnn` built with escnn: ``R3Conv`` on ``rot3dOnR3`` fields of
    one representation each (the irreps ``0..L``: ``TensorProductModule`` needs a uniform
    type), ``GNormBatchNorm``, ``TensorProductModule``; the norm of every order (our
    ``NormPool`` on the plain tensor: escnn's slots differ from ours by signs only), the same
    head."""
    from escnn import group as eg
    from escnn import gspaces
    from escnn import nn as enn

    from equilayers.nn import NormPool

    gs = gspaces.rot3dOnR3(maximum_frequency=2 * max_order + 1)
    field = eg.directsum([gs.irrep(ell) for ell in range(max_order + 1)])
    t = in_type = enn.FieldType(gs, [gs.trivial_repr])
    mods = []
    for mult, stride in ((1, 1), (1, 2), (2, 1)):
        out = enn.FieldType(gs, mult * width * [field])
        mods += [enn.R3Conv(t, out, 3, stride=stride, padding=1), enn.GNormBatchNorm(out),
                 enn.TensorProductModule(out, out)]
        t = out
    features = 2 * width * (max_order + 1)
    head = nn.Sequential(NormPool(max_order, group="so3"), nn.AdaptiveAvgPool3d(1),
                         nn.Flatten(), nn.BatchNorm1d(features), nn.Linear(features, classes))
    return _EscnnNet(in_type, enn.SequentialModule(*mods), head, fiber=(max_order + 1) ** 2)
