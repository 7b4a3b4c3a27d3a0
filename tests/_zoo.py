"""One small instance of every public module, with an input builder: the table the
compatibility tests (``tests/test_compat.py``) iterate over.

Every name in ``equilayers.nn.__all__`` must have an entry here (the models of
:mod:`equilayers.models` have one too) (a test enforces it; keys are
the class name, or ``Name[variant]`` for further configurations of the same class), so a new
module is covered by torch.compile / torch.export / ONNX / autocast / channels_last / pickle
checks as soon as it is added to the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from conftest import seeded_rng
from torch import nn

from equilayers import nn as enn
from equilayers.interop import EscnnRestrictedBasis, EscnnSphereFourier
from equilayers.models import UNet, UNet3d

__all__ = ["ZooEntry", "ZOO", "build"]


@dataclass(frozen=True)
class ZooEntry:
    """``make()`` builds the module (float32, seeded); ``inputs(gen)`` the positional args."""

    make: Callable[[], nn.Module]
    inputs: Callable[[torch.Generator], tuple[torch.Tensor, ...]]


def _x(*shape: int) -> Callable[[torch.Generator], tuple[torch.Tensor, ...]]:
    return lambda gen: (torch.randn(*shape, generator=gen),)


def _expanded() -> nn.Module:
    """An ExpandedGroupConv2d holding a c8 GroupConv2d's expanded filter (not all zeros)."""
    conv = enn.GroupConv2d(3, 4, 3, padding=1, group="c8")
    assert conv.bias is not None  # bias=True by default
    return enn.ExpandedGroupConv2d.from_filter(conv.expanded_filter().detach(),
                                               conv.bias.detach(), padding=1, group="c8")


def _sphere_fourier() -> nn.Module:
    """An EscnnSphereFourier holding our own SO(3) sampling (no escnn needed to build it)."""
    ref = enn.FourierNonlinearity("so3", 1)
    return EscnnSphereFourier(ref.sample_matrix, ref.inverse_matrix)


def _upsample_inputs(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    x = torch.randn(2, 3, 4, 4, generator=gen)
    index = torch.randint(0, 4, (2,), generator=gen)
    return x, index


def _upsample3d_inputs(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A 6-D map of the octahedral group and a 3-D polyphase pool's component per sample."""
    x = torch.randn(2, 3, 24, 2, 3, 2, generator=gen)
    return x, torch.randint(0, 8, (2,), generator=gen)


def _selection_inputs(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A feature map and a learnable polyphase pool's selection (one-hot, as in evaluation)."""
    x = torch.randn(2, 3, 4, 4, generator=gen)
    index = torch.randint(0, 4, (2,), generator=gen)
    return x, nn.functional.one_hot(index, 4).float()


def _selection_inputs3d(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A volume and a 3-D learnable polyphase pool's selection (one-hot)."""
    x = torch.randn(2, 3, 2, 3, 2, generator=gen)
    index = torch.randint(0, 8, (2,), generator=gen)
    return x, nn.functional.one_hot(index, 8).float()


ZOO: dict[str, ZooEntry] = {
    "BlurConv2d": ZooEntry(lambda: enn.BlurConv2d(3, 4, 3, padding=1), _x(2, 3, 8, 8)),
    # the paths of blur_conv2d: the composition, the folded weight, blur first (chosen by
    # fold=None for these channel counts), pool first (1x1), each with its exact border ring
    "BlurConv2d[composition]": ZooEntry(lambda: enn.BlurConv2d(3, 4, 3, padding=1, fold=False),
                                        _x(2, 3, 8, 8)),
    "BlurConv2d[fold]": ZooEntry(lambda: enn.BlurConv2d(3, 4, 3, padding=1, fold=True),
                                 _x(2, 3, 9, 8)),
    "BlurConv2d[blur_first]": ZooEntry(lambda: enn.BlurConv2d(32, 64, 3, padding=1),
                                       _x(2, 32, 40, 39)),
    "BlurConv2d[pool_first]": ZooEntry(lambda: enn.BlurConv2d(4, 6, 1, fold=True),
                                       _x(2, 4, 9, 8)),
    "BlurPool1d": ZooEntry(lambda: enn.BlurPool1d(3), _x(2, 3, 10)),
    "BlurPool2d": ZooEntry(lambda: enn.BlurPool2d(3), _x(2, 3, 8, 8)),
    "BlurPool3d": ZooEntry(lambda: enn.BlurPool3d(3), _x(2, 3, 6, 6, 6)),
    "BlurUpsample2d": ZooEntry(lambda: enn.BlurUpsample2d(), _x(2, 3, 5, 5)),
    "BlurUpsample3d": ZooEntry(lambda: enn.BlurUpsample3d(), _x(2, 3, 3, 3, 3)),
    # the U-Net pair on a cube group's map (exact: no warning)
    "BlurUpsample3d[6d]": ZooEntry(
        lambda: enn.BlurUpsample3d(2, 4, "circular", transposed=True), _x(2, 3, 4, 3, 3, 3)),
    "GroupUpsample2d": ZooEntry(lambda: enn.GroupUpsample2d(scale_factor=2, mode="bilinear"),
                                _x(2, 3, 4, 5, 5)),
    "GroupUpsample2d[image]": ZooEntry(lambda: enn.GroupUpsample2d(size=(7, 9)),
                                       _x(2, 3, 5, 5)),
    "GroupUpsample3d": ZooEntry(lambda: enn.GroupUpsample3d(scale_factor=2, mode="trilinear"),
                                _x(1, 2, 24, 3, 3, 3)),
    # train mode draws a new mask per call (global RNG): the matrices that compare
    # train-mode outputs of two copies draw both under one seed
    "FieldDropout": ZooEntry(lambda: enn.FieldDropout(0.5), _x(2, 3, 4, 5, 5)),
    "FieldDropout[6d]": ZooEntry(lambda: enn.FieldDropout(0.3), _x(1, 2, 24, 3, 3, 3)),
    "FieldDropout[image]": ZooEntry(lambda: enn.FieldDropout(0.2), _x(2, 3, 5, 5)),
    "EdgeAwareBlurPool2d": ZooEntry(lambda: enn.EdgeAwareBlurPool2d(3),
                                    lambda gen: (torch.rand(2, 3, 9, 9, generator=gen) + 0.1,)),
    "MaxBlurPool2d": ZooEntry(lambda: enn.MaxBlurPool2d(), _x(2, 3, 8, 8)),
    # (8 - 3) % 2 == 1: ceil_mode adds a last window (the edge replicated as far as it reaches)
    "MaxBlurPool2d[ceil]": ZooEntry(lambda: enn.MaxBlurPool2d(3, 2, ceil_mode=True),
                                    _x(2, 3, 8, 8)),
    "LiftingConv2d": ZooEntry(lambda: enn.LiftingConv2d(3, 4, 3, padding=1, group="p4m"),
                              _x(2, 3, 7, 7)),
    "GroupConv2d": ZooEntry(lambda: enn.GroupConv2d(3, 4, 3, padding=1, group="p4"),
                            _x(2, 3, 4, 7, 7)),
    "LiftingConvTranspose2d": ZooEntry(
        lambda: enn.LiftingConvTranspose2d(3, 4, 3, stride=2, padding=1, group="p4m"),
        _x(2, 3, 5, 5)),
    "GroupConvTranspose2d": ZooEntry(
        lambda: enn.GroupConvTranspose2d(3, 4, 4, stride=2, padding=1, group="p4"),
        _x(2, 3, 4, 5, 5)),
    # output_padding (inexact on any group but c1, which a zoo forward would warn about)
    "GroupConvTranspose2d[output_padding]": ZooEntry(
        lambda: enn.GroupConvTranspose2d(4, 2, 3, 2, 1, 1, groups=2, group="c1"),
        _x(2, 4, 1, 5, 4)),
    "GroupConvTranspose2d[c8]": ZooEntry(
        lambda: enn.GroupConvTranspose2d(3, 4, 3, stride=2, padding=1, group="c8"),
        _x(2, 3, 8, 5, 5)),
    "GroupConvTranspose2d[so2]": ZooEntry(
        lambda: enn.GroupConvTranspose2d(3, 4, 5, stride=2, padding=2, group="so2",
                                         max_order=2), _x(2, 3, 5, 5, 5)),
    "GroupConvTranspose2d[so2,k2]": ZooEntry(  # an even steerable kernel (U-Net up-conv)
        lambda: enn.GroupConvTranspose2d(3, 4, 2, stride=2, group="so2", max_order=1),
        _x(2, 3, 3, 4, 4)),
    # equivariant MLPs on fibers alone (B, C, F)
    "GroupLinear": ZooEntry(lambda: enn.GroupLinear(3, 4, group="p4m"), _x(2, 3, 8)),
    "GroupLinear[so2]": ZooEntry(lambda: enn.GroupLinear(3, 4, group="so2", max_order=2),
                                 _x(2, 3, 5)),
    "GroupLinear[so3]": ZooEntry(lambda: enn.GroupLinear(3, 4, group="so3", max_order=1),
                                 _x(2, 3, 4)),
    "GroupLinear[o]": ZooEntry(lambda: enn.GroupLinear(2, 3, group="o"), _x(2, 2, 24)),
    "OnFibers": ZooEntry(lambda: enn.OnFibers(enn.NormNonlinearity(3, 2)), _x(2, 3, 5)),
    "OnFibers[so3-batch-norm]": ZooEntry(
        lambda: enn.OnFibers(enn.HarmonicBatchNorm(3, 1, group="so3")), _x(4, 3, 4)),
    "LiftingConv3d": ZooEntry(lambda: enn.LiftingConv3d(2, 3, 3, padding=1, group="c4z"),
                              _x(2, 2, 5, 5, 5)),
    "LiftingConv3d[o]": ZooEntry(lambda: enn.LiftingConv3d(2, 2, 3, padding=1, group="o"),
                                 _x(2, 2, 5, 5, 5)),
    "GroupConv3d": ZooEntry(lambda: enn.GroupConv3d(2, 3, 3, padding=1, group="d4z"),
                            _x(2, 2, 8, 5, 5, 5)),
    "GroupConv3d[harmonic]": ZooEntry(
        lambda: enn.GroupConv3d(2, 3, 3, padding=1, group="c4z", basis="harmonic"),
        _x(2, 2, 4, 5, 5, 5)),
    "LiftingConv3d[ico]": ZooEntry(lambda: enn.LiftingConv3d(2, 2, 3, padding=1, group="ico"),
                                   _x(2, 2, 5, 5, 5)),
    "GroupConv3d[ico]": ZooEntry(lambda: enn.GroupConv3d(2, 2, 3, padding=1, group="ico"),
                                 _x(2, 2, 60, 4, 4, 4)),
    "LiftingConv3d[ih]": ZooEntry(lambda: enn.LiftingConv3d(2, 2, 3, padding=1, group="ih"),
                                  _x(2, 2, 4, 4, 4)),
    "LiftingConvTranspose3d": ZooEntry(
        lambda: enn.LiftingConvTranspose3d(2, 3, 3, stride=2, padding=1, group="c4z"),
        _x(2, 2, 3, 3, 3)),
    "GroupConvTranspose3d": ZooEntry(
        lambda: enn.GroupConvTranspose3d(2, 3, 4, stride=2, padding=1, group="d4z"),
        _x(2, 2, 8, 3, 3, 3)),
    "GroupConvTranspose3d[harmonic]": ZooEntry(
        lambda: enn.GroupConvTranspose3d(2, 2, 3, stride=2, padding=1, group="o",
                                         basis="harmonic"), _x(2, 2, 24, 3, 3, 3)),
    # output_padding on the depth, which c4z leaves alone (exact: no warning), and groups
    "GroupConvTranspose3d[output_padding]": ZooEntry(
        lambda: enn.GroupConvTranspose3d(4, 2, 3, 2, 1, (1, 0, 0), groups=2, group="c4z"),
        _x(2, 4, 4, 3, 3, 3)),
    "SteerableConv3d": ZooEntry(lambda: enn.SteerableConv3d(2, 3, 3, padding=1, max_order=1),
                                _x(2, 2, 5, 5, 5)),
    "SteerableConv3d[harmonic]": ZooEntry(
        lambda: enn.SteerableConv3d(2, 3, 3, padding=1, in_max_order=1, max_order=2,
                                    group="o3"), _x(2, 2, 4, 5, 5, 5)),
    "SteerableConv3d[so2]": ZooEntry(
        lambda: enn.SteerableConv3d(2, 3, 3, padding=1, in_max_order=1, max_order=2,
                                    group="so2"), _x(2, 2, 3, 4, 5, 5)),
    "SteerableConv3d[so2-slices]": ZooEntry(
        lambda: enn.SteerableConv3d(2, 3, (1, 3, 3), padding=(0, 1, 1), max_order=1,
                                    group="o2", basis="slices"), _x(2, 2, 4, 5, 5)),
    "SteerableConvTranspose3d": ZooEntry(
        lambda: enn.SteerableConvTranspose3d(2, 3, 3, stride=2, padding=1, in_max_order=1,
                                             max_order=2), _x(2, 2, 4, 3, 3, 3)),
    "SteerableConvTranspose3d[so2]": ZooEntry(
        lambda: enn.SteerableConvTranspose3d(2, 3, (1, 3, 3), (1, 2, 2), (0, 1, 1),
                                             group="o2", max_order=1), _x(2, 2, 3, 4, 4)),
    "SteerableConvTranspose3d[k2]": ZooEntry(  # an even kernel (UNet3d's up-conv)
        lambda: enn.SteerableConvTranspose3d(2, 3, 2, stride=2, in_max_order=1, max_order=1),
        _x(2, 2, 4, 2, 2, 2)),
    "GroupBatchNorm3d": ZooEntry(lambda: enn.GroupBatchNorm3d(3), _x(2, 3, 4, 3, 3, 3)),
    "GroupMaxPool3d": ZooEntry(lambda: enn.GroupMaxPool3d(2), _x(2, 3, 4, 4, 4, 4)),
    "GroupAvgPool3d": ZooEntry(lambda: enn.GroupAvgPool3d(3, 2, 1), _x(2, 3, 4, 5, 5, 5)),
    "PolyphasePool3d": ZooEntry(lambda: enn.PolyphasePool3d(), _x(2, 3, 4, 4, 4, 4)),
    "BlurPool3d[6d]": ZooEntry(lambda: enn.BlurPool3d(3), _x(2, 3, 4, 5, 5, 5)),
    "InvariantHead[o]": ZooEntry(lambda: enn.InvariantHead(3, 5, group="o"),
                                 _x(2, 3, 24, 3, 3, 3)),
    "Restrict[cube]": ZooEntry(lambda: enn.Restrict("o", "c4z"), _x(2, 3, 24, 3, 3, 3)),
    "GroupBatchNorm2d": ZooEntry(lambda: enn.GroupBatchNorm2d(3), _x(2, 3, 4, 5, 5)),
    "GroupAvgPool2d": ZooEntry(lambda: enn.GroupAvgPool2d(2), _x(2, 3, 4, 6, 6)),
    "GroupMaxPool2d": ZooEntry(lambda: enn.GroupMaxPool2d(2), _x(2, 3, 4, 6, 6)),
    "GroupPool": ZooEntry(lambda: enn.GroupPool(), _x(2, 3, 4, 5, 5)),
    "FourierNonlinearity": ZooEntry(lambda: enn.FourierNonlinearity("so2", 2),
                                    _x(2, 3, 5, 5, 5)),
    "FourierNonlinearity[d4]": ZooEntry(lambda: enn.FourierNonlinearity("d4"),
                                        _x(2, 3, 3, 5, 5)),
    "GatedNonlinearity": ZooEntry(lambda: enn.GatedNonlinearity(2), _x(2, 3, 5, 5, 5)),
    "GatedNonlinearity[first_half]": ZooEntry(
        lambda: enn.GatedNonlinearity(2, gates="first_half"), _x(2, 6, 5, 5, 5)),
    "HarmonicBatchNorm": ZooEntry(lambda: enn.HarmonicBatchNorm(3, 2), _x(2, 3, 5, 5, 5)),
    "HarmonicBatchNorm[field]": ZooEntry(lambda: enn.HarmonicBatchNorm(3, 2, statistics="field"),
                                         _x(2, 3, 5, 5, 5)),
    "HarmonicBatchNorm[order_centred]": ZooEntry(
        lambda: enn.HarmonicBatchNorm(3, 2, statistics="order_centred"), _x(2, 3, 5, 5, 5)),
    "HarmonicToRegular": ZooEntry(lambda: enn.HarmonicToRegular("c8", 2), _x(2, 3, 5, 5, 5)),
    "NormNonlinearity": ZooEntry(lambda: enn.NormNonlinearity(3, 2), _x(2, 3, 5, 5, 5)),
    "NormMaxPool": ZooEntry(lambda: enn.NormMaxPool(3, 2, 1), _x(2, 3, 5, 7, 7)),
    "NormMaxPool[order]": ZooEntry(lambda: enn.NormMaxPool(2, per="order"), _x(2, 3, 5, 6, 6)),
    "NormPool": ZooEntry(lambda: enn.NormPool(2), _x(2, 3, 5, 5, 5)),
    # the order read from the fiber (a 0-d tensor under torch.jit.trace, which it refused)
    "NormPool[inferred order]": ZooEntry(lambda: enn.NormPool(), _x(2, 3, 5, 5, 5)),
    "HarmonicBatchNorm[volume]": ZooEntry(
        lambda: enn.HarmonicBatchNorm(3, 2, group="so2", spatial_dims=3), _x(2, 3, 5, 3, 4, 4)),
    "NormNonlinearity[volume]": ZooEntry(
        lambda: enn.NormNonlinearity(3, 1, group="o2", spatial_dims=3), _x(2, 3, 3, 3, 4, 4)),
    "GatedNonlinearity[volume]": ZooEntry(
        lambda: enn.GatedNonlinearity(2, gates="first_half", group="so2", spatial_dims=3),
        _x(2, 6, 5, 3, 4, 4)),
    "NormPool[volume]": ZooEntry(lambda: enn.NormPool(2, group="so2", spatial_dims=3),
                                 _x(2, 3, 5, 3, 4, 4)),
    "FourierNonlinearity[volume]": ZooEntry(
        lambda: enn.FourierNonlinearity("c8", 2, spatial_dims=3), _x(2, 3, 5, 3, 4, 4)),
    "HarmonicBatchNorm[so3]": ZooEntry(lambda: enn.HarmonicBatchNorm(3, 1, group="so3"),
                                       _x(2, 3, 4, 3, 3, 3)),
    "FourierNonlinearity[so3]": ZooEntry(lambda: enn.FourierNonlinearity("so3", 1),
                                         _x(2, 3, 4, 3, 3, 3)),
    "NormPool[so3]": ZooEntry(lambda: enn.NormPool(1, group="so3"), _x(2, 3, 4, 3, 3, 3)),
    "NormMaxPool[so3]": ZooEntry(lambda: enn.NormMaxPool(2, group="so3"),
                                 _x(2, 3, 4, 4, 4, 4)),
    "NormNonlinearity[so3]": ZooEntry(lambda: enn.NormNonlinearity(3, 1, group="so3"),
                                      _x(2, 3, 4, 3, 3, 3)),
    "NormNonlinearity[so3,exp]": ZooEntry(
        lambda: enn.NormNonlinearity(3, 1, group="so3", order0="norm", bias_form="exp"),
        _x(2, 3, 4, 3, 3, 3)),
    "GatedNonlinearity[o3]": ZooEntry(lambda: enn.GatedNonlinearity(1, group="o3"),
                                      _x(2, 3, 4, 3, 3, 3)),
    "TensorProductNonlinearity": ZooEntry(
        lambda: enn.TensorProductNonlinearity(3, "so2", 2), _x(2, 3, 5, 5, 5)),
    "TensorProductNonlinearity[o3]": ZooEntry(
        lambda: enn.TensorProductNonlinearity(3, "o3", 1, 2), _x(2, 3, 4, 3, 3, 3)),
    "TensorProductNonlinearity[d4,volume]": ZooEntry(
        lambda: enn.TensorProductNonlinearity(3, "d4", 1, spatial_dims=3), _x(2, 3, 3, 3, 4, 4)),
    "RegularToHarmonic": ZooEntry(lambda: enn.RegularToHarmonic("c8", 2), _x(2, 3, 8, 5, 5)),
    # the steerable (harmonic) basis of the same two classes
    "LiftingConv2d[so2]": ZooEntry(
        lambda: enn.LiftingConv2d(3, 4, 5, padding=2, group="so2", max_order=2),
        _x(2, 3, 9, 9)),
    "GroupConv2d[so2]": ZooEntry(
        lambda: enn.GroupConv2d(3, 4, 5, padding=2, group="so2", max_order=2),
        _x(2, 3, 5, 9, 9)),
    "GroupConv2d[c8]": ZooEntry(lambda: enn.GroupConv2d(3, 4, 3, padding=1, group="c8"),
                                _x(2, 3, 8, 7, 7)),
    "GroupConv2d[c8-settings]": ZooEntry(
        lambda: enn.GroupConv2d(3, 4, 5, padding=2, group="c8", sigma=0.5,
                                frequencies_cutoff=lambda r: r, rings=[0, 1, 1.5, 2]),
        _x(2, 3, 8, 7, 7)),
    "ExpandedGroupConv2d": ZooEntry(_expanded, _x(2, 3, 8, 7, 7)),
    "PolyphasePool2d": ZooEntry(lambda: enn.PolyphasePool2d(2), _x(2, 3, 8, 8)),
    "PolyphaseUpsample2d": ZooEntry(lambda: enn.PolyphaseUpsample2d(2), _upsample_inputs),
    "PolyphaseUpsample3d": ZooEntry(lambda: enn.PolyphaseUpsample3d(2, blur_size=3),
                                    _upsample3d_inputs),
    # gumbel=False: a deterministic training step (the fresh-copy comparisons run train mode)
    "LearnablePolyphasePool2d": ZooEntry(
        lambda: enn.LearnablePolyphasePool2d(3, gumbel=False), _x(4, 3, 8, 8)),
    "LearnablePolyphasePool2d[5d-index]": ZooEntry(
        lambda: enn.LearnablePolyphasePool2d(3, hidden_channels=4, kernel_size=1, hard=False,
                                             gumbel=False, return_index=True),
        _x(4, 3, 4, 6, 6)),
    "LearnablePolyphaseUpsample2d": ZooEntry(lambda: enn.LearnablePolyphaseUpsample2d(),
                                             _selection_inputs),
    "LearnablePolyphaseUpsample2d[int]": ZooEntry(lambda: enn.LearnablePolyphaseUpsample2d(),
                                                  _upsample_inputs),
    "LearnablePolyphasePool3d": ZooEntry(
        lambda: enn.LearnablePolyphasePool3d(3, gumbel=False), _x(4, 3, 4, 6, 4)),
    "LearnablePolyphasePool3d[6d-index]": ZooEntry(
        lambda: enn.LearnablePolyphasePool3d(3, hidden_channels=4, kernel_size=1, hard=False,
                                             gumbel=False, return_index=True),
        _x(4, 3, 4, 2, 4, 2)),
    "LearnablePolyphaseUpsample3d": ZooEntry(lambda: enn.LearnablePolyphaseUpsample3d(),
                                             _selection_inputs3d),
    "Restrict": ZooEntry(lambda: enn.Restrict("d4", "d1"), _x(2, 3, 8, 5, 5)),
    "Restrict[harmonic]": ZooEntry(lambda: enn.Restrict("o2", "so2", rep="harmonic"),
                                   _x(2, 3, 5, 5, 5)),
    "EscnnRestrictedBasis": ZooEntry(lambda: EscnnRestrictedBasis("o2", 2), _x(2, 3, 5, 5, 5)),
    "EscnnSphereFourier": ZooEntry(lambda: _sphere_fourier(), _x(2, 3, 4, 3, 3, 3)),
    "CosetPool": ZooEntry(lambda: enn.CosetPool("d4", "d1"), _x(2, 3, 8, 5, 5)),
    "GaussianBlurPool2d": ZooEntry(lambda: enn.GaussianBlurPool2d(0.66), _x(2, 3, 9, 9)),
    "GaussianBlurPool2d[5d]": ZooEntry(lambda: enn.GaussianBlurPool2d(1.0, 2, 1),
                                       _x(2, 3, 4, 9, 9)),
    "GaussianBlurPool3d": ZooEntry(lambda: enn.GaussianBlurPool3d(0.66), _x(2, 3, 7, 7, 7)),
    "GaussianBlurPool3d[6d]": ZooEntry(lambda: enn.GaussianBlurPool3d(1.0, 2, 1),
                                       _x(2, 2, 4, 5, 5, 5)),
    "DiskMask": ZooEntry(lambda: enn.DiskMask(7, margin=10.0), _x(2, 3, 7, 7)),
    "DiskMask[5d]": ZooEntry(lambda: enn.DiskMask(7), _x(2, 3, 8, 7, 7)),
    "BallMask": ZooEntry(lambda: enn.BallMask(5, margin=10.0), _x(2, 3, 5, 5, 5)),
    "BallMask[6d]": ZooEntry(lambda: enn.BallMask(5), _x(2, 2, 4, 5, 5, 5)),
    "InvariantHead": ZooEntry(lambda: enn.InvariantHead(3, 5, group="p4"), _x(2, 3, 4, 5, 5)),
    # models (equilayers.models): a whole network in the same matrices
    "UNet": ZooEntry(lambda: UNet(2, 3, group="p4", depth=1, width=2), _x(2, 2, 6, 6)),
    "UNet[polyphase]": ZooEntry(lambda: UNet(2, 3, group="p4m", depth=1, width=1,
                                             down="polyphase"), _x(2, 2, 6, 6)),
    "UNet[learned]": ZooEntry(lambda: _no_gumbel(UNet(2, 3, group="p4m", depth=1, width=1,
                                                      down="learned")), _x(2, 2, 6, 6)),
    "UNet3d": ZooEntry(lambda: UNet3d(2, 3, group="c4z", depth=1, width=1), _x(2, 2, 4, 4, 4)),
    "UNet[transposed-up]": ZooEntry(lambda: UNet(2, 3, group="p4m", depth=1, width=1, down="max",
                                                 up="transposed"), _x(2, 2, 6, 6)),
    "UNet3d[polyphase]": ZooEntry(lambda: UNet3d(2, 3, group="o", depth=1, width=1,
                                                 down="polyphase"), _x(2, 2, 2, 4, 2)),
    "UNet3d[learned]": ZooEntry(lambda: _no_gumbel(UNet3d(2, 3, group="c4z", depth=1, width=1,
                                                          down="learned")), _x(2, 2, 2, 2, 4)),
    "UNet[so2]": ZooEntry(lambda: UNet(2, 3, group="so2", depth=1, width=1, max_order=1),
                          _x(2, 2, 6, 6)),
    "UNet3d[so3]": ZooEntry(lambda: UNet3d(2, 3, group="so3", depth=1, width=1,
                                           down="polyphase"), _x(2, 2, 4, 4, 2)),
    "UNet[so2,norm]": ZooEntry(lambda: UNet(2, 3, group="so2", depth=1, width=2, max_order=1,
                                            nonlinearity="norm"), _x(2, 2, 6, 6)),
    "UNet3d[so3,max,gated]": ZooEntry(lambda: UNet3d(2, 3, group="so3", depth=1, width=2,
                                                     down="max", nonlinearity="gated"),
                                      _x(2, 2, 4, 4, 2)),
    "UNet[o2,transposed-up]": ZooEntry(lambda: UNet(2, 3, group="o2", depth=1, width=1,
                                                    max_order=1, down="max", up="transposed"),
                                       _x(2, 2, 6, 6)),
}


def _no_gumbel(net: nn.Module) -> nn.Module:
    """Learned polyphase pools without Gumbel noise (as the zoo's own LPS entries): the
    matrices compare training-mode outputs between calls."""
    for m in net.modules():
        if isinstance(m, enn.LearnablePolyphasePool2d):
            m.gumbel = False
    return net


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The module (eval mode; running statistics moved off their init by one train-mode
    forward) and its inputs, both deterministic in ``seed``."""
    entry = ZOO[name]
    with seeded_rng(seed):
        module = entry.make()
    args = entry.inputs(torch.Generator().manual_seed(seed))
    if any(isinstance(b, torch.Tensor) and n.endswith("running_mean")
           for n, b in module.named_buffers()):
        with torch.no_grad():
            module.train()(*args)
    return module.eval(), args
