"""The bad-input table, part 1: every public module of ``equilayers.nn`` and every public
function of ``equilayers.functional`` (see ``tests/_bad_input.py`` for what a case checks)."""

from __future__ import annotations

import torch
from _bad_input import CALLABLE, CHOICE, DTYPE, FLAG, FLOAT, GROUP, INT, OK, PAIR, Case, T

import equilayers.functional as EF
import equilayers.nn as enn

#: The steerable basis' ring radii (in taps of a 3x3 filter: at most sqrt(2)).
RINGS = {"None": None, "0": 0, "str": "1", "empty": [], "neg": [-1.0], "far": [9.0],
         "repeat": [1.0, 1.0], "True": [True], "nan": [float("nan")]}
#: The basis settings of the harmonic convs (keyword-only); ``None`` is the default basis.
_SETTINGS = {"sigma": FLOAT, "frequencies_cutoff": FLOAT, "rings": RINGS}
#: ``frequencies_cutoff=0`` keeps frequency 0 alone: a valid (isotropic) basis.
_SETTINGS_OK = {"sigma": {"None": OK}, "frequencies_cutoff": {"None": OK, "0": OK},
                "rings": {"None": OK}}
_NB = EF.steerable_basis("so2", "harmonic", "harmonic", 3, in_order=1, out_order=1).shape[0]


def _img(*shape, **kw) -> T:
    """An image batch: wrong ranks one below and one above, channels in dim 1."""
    kw.setdefault("ranks", (len(shape) - 1, len(shape) + 1))
    return T(shape, **kw)


def _par(*shape, **kw) -> T:
    """A parameter tensor (no batch dim)."""
    return T(shape, batched=False, **kw)


def _index(gen: torch.Generator) -> torch.Tensor:
    return torch.tensor([0, 3])


def _var(*shape) -> T:
    """A running variance (positive)."""
    return _par(*shape, channel=0, make=lambda g: torch.rand(shape, generator=g) + 0.5)


_INDEX_EXTRA = {
    "index:float": lambda d: {**d, "index": d["index"].float()},
    "index:shape": lambda d: {**d, "index": torch.tensor([0, 1, 2])},
    "index:range": lambda d: {**d, "index": torch.tensor([0, 4])},
    "index:list": lambda d: {**d, "index": [0, 3]},
}
_SELECTION_EXTRA = {
    **{k: v for k, v in _INDEX_EXTRA.items() if k != "index:float"},
    "index:selection-shape": lambda d: {**d, "index": torch.ones(2, 3)},
    "index:bool": lambda d: {**d, "index": torch.tensor([True, False])},
}
#: The scoring net of learnable polyphase sampling: x (C=3), orbit weights, bias, read-out.
_LPS_INPUTS = {"x": _img(2, 3, 8, 8, ranks=(3, 6), channel=1, small=(2, 3, 1, 1)),
               "weight": _par(4, 3, 3, ranks=(2, 4), channel=1),
               "bias": _par(4, ranks=(2,), channel=0),
               "out_weight": _par(4, ranks=(2,), channel=0)}
_LPS_EXTRA = {"weight:orbits": lambda d: {**d, "weight": torch.randn(4, 3, 4)},
              "x:too-small": lambda d: {**d, "x": torch.randn(2, 3, 2, 2),
                                         "weight": torch.randn(4, 3, 6)}}


def _selection(gen: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor([0, 3]), 4).float()


_SQUARE_EXTRA = {
    "shape:nonsquare": lambda d: {**d, "x": torch.randn(2, 3, 8, 5, 6)},
    "shape:size": lambda d: {**d, "x": torch.randn(2, 3, 8, 6, 6)},
}
_CONV_ARGS = {"in_channels": INT, "out_channels": INT, "kernel_size": PAIR, "stride": PAIR,
              "padding": PAIR, "dilation": PAIR, "groups": INT, "bias": FLAG,
              "padding_mode": CHOICE, "dtype": DTYPE}
_BLUR_ARGS = {"kernel_size": INT, "stride": INT, "padding_mode": CHOICE}
_GPOOL = {"kernel_size": 2, "stride": 2, "padding": 0}
_GPOOL_ARGS = {"kernel_size": PAIR, "stride": PAIR, "padding": PAIR}
_GPOOL_OK = {"stride": {"None": 2}, "padding": {"0": OK}}
_G5 = dict(ranks=(4, 6))
#: An int or three ints, the 3-D convs' sizes.
TRIPLE = {**INT, "pair": (1, 1), "triple-float": (1.5, 1, 1)}
#: ...and the groups they reject: a planar one.
GROUP3 = {**GROUP, "planar": "p4"}
_CONV3D_ARGS = {**_CONV_ARGS, "kernel_size": TRIPLE, "stride": TRIPLE, "padding": TRIPLE,
                "dilation": TRIPLE, "group": GROUP3}

NN: list[Case] = [
    Case(enn.BlurConv2d, dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1,
                              blur_padding_mode=None),
         {**_CONV_ARGS, "stride": INT, "blur_size": INT, "blur_padding_mode": CHOICE,
          "fold": FLAG},
         {"x": _img(2, 3, 8, 8, channel=1, small=(2, 3, 1, 1))},
         accept={"padding": {"0": OK}, "blur_padding_mode": {"None": OK}, "fold": {"None": OK}}),
    Case(enn.BlurConv2d, dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1,
                              fold=True),
         {"fold": FLAG, "blur_size": INT, "dilation": PAIR},
         {"x": _img(2, 3, 8, 8, channel=1, small=(2, 3, 1, 1))},
         accept={"fold": {"None": OK}}, variant="[fold]"),
    Case(enn.BlurPool1d, dict(channels=3), {"channels": INT, **_BLUR_ARGS},
         {"x": T((2, 3, 10), ranks=(1,), channel=1, small=(2, 3, 1))},
         accept={"channels": {"None": OK}}),
    Case(enn.BlurPool2d, dict(channels=3), {"channels": INT, **_BLUR_ARGS},
         {"x": T((2, 3, 8, 8), ranks=(2,), channel=1, small=(2, 3, 1, 1))},
         accept={"channels": {"None": OK}}),
    Case(enn.BlurPool3d, dict(channels=3), {"channels": INT, **_BLUR_ARGS},
         {"x": T((2, 3, 4, 4, 4), ranks=(3,), channel=1, small=(2, 3, 1, 1, 1))},
         accept={"channels": {"None": OK}}),
    Case(enn.BlurUpsample2d, {}, {"scale_factor": INT, "blur_size": INT,
                                  "padding_mode": CHOICE},
         {"x": T((2, 3, 5, 5), ranks=(2,), small=(2, 3, 1, 1), small_ok=True)}),
    Case(enn.MaxBlurPool2d, dict(kernel_size=2, stride=2, padding=0),
         {**_BLUR_ARGS, "blur_size": INT, "padding": INT},
         {"x": _img(2, 3, 8, 8, ranks=(3, 6), small=(2, 3, 1, 1))},
         accept={"padding": {"0": OK}}),
    Case(enn.GroupConv2d, dict(in_channels=3, out_channels=4, kernel_size=3, group="p4"),
         {**_CONV_ARGS, "group": GROUP, "basis": CHOICE, "max_order": INT,
          "in_max_order": INT},
         {"x": _img(2, 3, 4, 6, 6, channel=1, fiber=2, small=(2, 3, 4, 2, 2))},
         accept={"padding": {"0": OK}, "basis": {"None": OK}, "max_order": {"0": OK, "None": OK},
                 "in_max_order": {"None": OK}}),
    Case(enn.GroupConv2d, dict(in_channels=3, out_channels=4, kernel_size=3, group="so2",
                               max_order=1),
         {"kernel_size": PAIR, "group": GROUP, "basis": CHOICE, "max_order": INT,
          "in_max_order": INT, **_SETTINGS},
         {"x": _img(2, 3, 3, 6, 6, channel=1, fiber=2, small=(2, 3, 3, 2, 2))},
         accept={"basis": {"None": OK}, "max_order": {"0": OK},
                 "in_max_order": {"0": OK, "None": OK}, **_SETTINGS_OK}, variant="[so2]"),
    Case(enn.LiftingConv2d, dict(in_channels=3, out_channels=4, kernel_size=3, group="p4m"),
         {**_CONV_ARGS, "group": GROUP, "basis": CHOICE, "max_order": INT,
          "in_max_order": INT},
         {"x": _img(2, 3, 6, 6, channel=1, small=(2, 3, 2, 2))},
         accept={"padding": {"0": OK}, "basis": {"None": OK}, "max_order": {"0": OK, "None": OK},
                 "in_max_order": {"None": OK}}),
    Case(enn.LiftingConv2d, dict(in_channels=3, out_channels=4, kernel_size=5, group="d8",
                                 max_order=1),  # 5: a 3x3 kernel reaches no order-1 slot
         {"group": GROUP, **_SETTINGS}, {"x": _img(2, 3, 6, 6, channel=1, small=(2, 3, 2, 2))},
         accept=_SETTINGS_OK, variant="[d8]",
         warns={"frequencies_cutoff=0": "no basis function .* reaches output rotation order"}),
    Case(enn.ExpandedGroupConv2d, dict(in_channels=3, out_channels=4, kernel_size=3,
                                       group="c8"),
         {**_CONV_ARGS, "group": GROUP},
         {"x": _img(2, 3, 8, 6, 6, channel=1, fiber=2, small=(2, 3, 8, 2, 2))},
         accept={"padding": {"0": OK}}),
    Case(enn.LiftingConv3d, dict(in_channels=3, out_channels=4, kernel_size=3, group="c4z"),
         _CONV3D_ARGS, {"x": _img(2, 3, 5, 5, 5, channel=1, small=(2, 3, 2, 2, 2))},
         accept={"padding": {"0": OK}}),
    Case(enn.GroupConv3d, dict(in_channels=3, out_channels=4, kernel_size=3, group="c4z"),
         _CONV3D_ARGS,
         {"x": _img(2, 3, 4, 5, 5, 5, channel=1, fiber=2, small=(2, 3, 4, 2, 2, 2))},
         accept={"padding": {"0": OK}}),
    Case(enn.GroupBatchNorm3d, dict(num_features=3),
         {"num_features": INT, "eps": FLOAT, "momentum": FLOAT, "dtype": DTYPE},
         {"x": _img(2, 3, 4, 3, 3, 3, channel=1)},
         accept={"momentum": {"0": OK, "None": OK}}),
    Case(enn.GroupBatchNorm2d, dict(num_features=3),
         {"num_features": INT, "eps": FLOAT, "momentum": FLOAT, "dtype": DTYPE},
         {"x": _img(2, 3, 4, 5, 5, channel=1)},
         accept={"momentum": {"0": OK, "None": OK}}),
    Case(enn.GroupAvgPool2d, _GPOOL, _GPOOL_ARGS,
         {"x": _img(2, 3, 4, 6, 6, small=(2, 3, 4, 1, 1))}, accept=_GPOOL_OK),
    Case(enn.GroupMaxPool2d, _GPOOL, {**_GPOOL_ARGS, "dilation": PAIR},
         {"x": _img(2, 3, 4, 6, 6, small=(2, 3, 4, 1, 1))}, accept=_GPOOL_OK),
    Case(enn.GroupPool, {}, {"reduction": CHOICE}, {"x": _img(2, 3, 4, 5, 5, ranks=(4, 7))}),
    Case(enn.GatedNonlinearity, dict(max_order=2),
         {"max_order": INT, "function": CALLABLE, "gates": CHOICE},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}, accept={"max_order": {"0": OK}}),
    Case(enn.GatedNonlinearity, dict(max_order=2, gates="first_half"), {"max_order": INT},
         {"x": _img(2, 4, 5, 4, 4, channel=1, fiber=2)}, accept={"max_order": {"0": OK}},
         variant="[first_half]"),
    Case(enn.HarmonicBatchNorm, dict(num_features=3, max_order=2),
         {"num_features": INT, "max_order": INT, "eps": FLOAT, "momentum": FLOAT,
          "affine": FLAG, "track_running_stats": FLAG, "dtype": DTYPE},
         {"x": _img(2, 3, 5, 4, 4, channel=1, fiber=2)},
         accept={"max_order": {"0": OK}, "momentum": {"0": OK, "None": OK}}),
    Case(enn.HarmonicToRegular, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT, "dtype": DTYPE},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}, accept={"max_order": {"0": OK, "None": OK}}),
    Case(enn.NormNonlinearity, dict(channels=3, max_order=2),
         {"channels": INT, "max_order": INT, "function": CALLABLE, "order0": CHOICE,
          "bias": FLAG, "threshold": FLOAT, "dtype": DTYPE},
         {"x": _img(2, 3, 5, 4, 4, channel=1, fiber=2)},
         accept={"max_order": {"0": OK}, "threshold": {"0": OK}}),
    Case(enn.NormPool, dict(max_order=2), {"max_order": INT},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}, accept={"max_order": {"0": OK, "None": OK}}),
    Case(enn.RegularToHarmonic, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT, "dtype": DTYPE},
         {"x": _img(2, 3, 8, 4, 4, fiber=2)}, accept={"max_order": {"0": OK, "None": OK}}),
    Case(enn.FourierNonlinearity, dict(group="so2", max_order=2),
         {"group": GROUP, "max_order": INT, "function": CALLABLE, "samples": INT,
          "dtype": DTYPE},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)},
         accept={"max_order": {"0": OK}, "samples": {"None": OK}}),
    Case(enn.FourierNonlinearity, dict(group="d4"), {"max_order": INT, "samples": INT},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)},
         accept={"max_order": {"0": OK, "None": OK}, "samples": {"None": OK}},
         variant="[d4]"),
    Case(enn.NormMaxPool, dict(kernel_size=2),
         {"kernel_size": PAIR, "stride": PAIR, "padding": PAIR, "dilation": PAIR,
          "ceil_mode": FLAG, "max_order": INT, "per": CHOICE},
         {"x": _img(2, 3, 5, 6, 6, fiber=2, small=(2, 3, 5, 1, 1))},
         accept={"stride": {"None": 2}, "padding": {"0": OK},
                 "max_order": {"0": OK, "None": OK}}),
    Case(enn.Restrict, dict(group="d4", subgroup="c4"),
         {"group": GROUP, "subgroup": GROUP, "rep": CHOICE},
         {"x": _img(2, 3, 8, 4, 4, fiber=2, dtype_ok=True)}),
    Case(enn.Restrict, dict(group="o2", subgroup="so2", rep="harmonic"),
         {"group": GROUP, "subgroup": GROUP, "rep": CHOICE},
         {"x": _img(2, 3, 5, 4, 4, fiber=2, dtype_ok=True)}, variant="[harmonic]"),
    Case(enn.CosetPool, dict(group="d4", subgroup="d1"),
         {"group": GROUP, "subgroup": GROUP, "reduction": CHOICE},
         {"x": _img(2, 3, 8, 4, 4, fiber=2)}),
    Case(enn.GaussianBlurPool2d, dict(sigma=0.66, stride=2, padding=0),
         {"sigma": FLOAT, "stride": PAIR, "padding": PAIR},
         {"x": _img(2, 3, 8, 9, 9, ranks=(3, 6), small=(2, 3, 8, 1, 1))},
         accept={"stride": {"None": OK}, "padding": {"None": OK, "0": OK}}),
    Case(enn.DiskMask, dict(size=5), {"size": INT, "margin": FLOAT, "sigma": FLOAT},
         {"x": _img(2, 3, 8, 5, 5, ranks=(3, 6))}, accept={"margin": {"0": OK}},
         extra=_SQUARE_EXTRA),
    Case(enn.PolyphasePool2d, {}, {"stride": INT, "criterion": CHOICE, "blur_size": INT,
                                   "padding_mode": CHOICE},
         {"x": T((2, 3, 8, 8), ranks=(2,), small=(2, 3, 1, 1))}),
    Case(enn.PolyphaseUpsample2d, {}, {"stride": INT, "blur_size": INT,
                                       "padding_mode": CHOICE},
         {"x": T((2, 3, 4, 4), ranks=(2,)), "index": T((2,), dtypes=False, make=_index)},
         extra=_INDEX_EXTRA),
    Case(enn.LearnablePolyphasePool2d, dict(in_channels=3),
         {"in_channels": INT, "stride": INT, "hidden_channels": INT, "kernel_size": INT,
          "tau": FLOAT, "hard": FLAG, "gumbel": FLAG, "return_index": FLAG, "dtype": DTYPE},
         {"x": _img(2, 3, 8, 8, ranks=(3, 6), channel=1, small=(2, 3, 1, 1))}),
    Case(enn.LearnablePolyphaseUpsample2d, {}, {"stride": INT},
         {"x": T((2, 3, 4, 4), ranks=(2,)), "index": T((2, 4), dtypes=False, make=_selection)},
         extra=_SELECTION_EXTRA),
    Case(enn.InvariantHead, dict(in_channels=3, num_classes=5, group="p4"),
         {"in_channels": INT, "num_classes": INT, "group": GROUP, "pool": CHOICE,
          "spatial": CHOICE, "dtype": DTYPE},
         {"x": _img(2, 3, 4, 5, 5, ranks=(3, 6), channel=1, fiber=2)}),
]

_W = _par(4, 3, 3, 3, ranks=(3, 5))
_B4 = _par(4, ranks=(2,), channel=0)
_BLURF = {"kernel_size": INT, "stride": INT, "padding_mode": CHOICE}

FUNCTIONAL: list[Case] = [
    Case(EF.binomial_filter, dict(kernel_size=3), {"kernel_size": INT, "dtype": DTYPE}),
    *(Case(fn, dict(stride=2, padding=1, **kw),
           {"stride": INT, "padding": PAIR, "dilation": PAIR, "groups": INT, "blur_size": INT,
            "padding_mode": CHOICE, "blur_padding_mode": CHOICE, "fold": FLAG},
           {"x": _img(2, 3, 8, 8, channel=1, small=(2, 3, 1, 1)), "weight": _W, "bias": _B4},
           accept={"padding": {"0": OK}, "blur_padding_mode": {"None": OK},
                   "fold": {"None": OK}}, variant=variant)
      for fn in (EF.blur_conv2d, EF.blur_conv2d_path)
      for kw, variant in (({}, ""), ({"fold": True}, "[fold]"))),
    Case(EF.blur_pool1d, {}, _BLURF, {"x": T((2, 3, 10), ranks=(1,), small=(2, 3, 1))}),
    Case(EF.blur_pool2d, {}, _BLURF, {"x": T((2, 3, 8, 8), ranks=(2,), small=(2, 3, 1, 1))}),
    Case(EF.blur_pool3d, {}, _BLURF,
         {"x": T((2, 3, 4, 4, 4), ranks=(3,), small=(2, 3, 1, 1, 1))}),
    Case(EF.blur_upsample2d, {}, {"scale_factor": INT, "blur_size": INT,
                                  "padding_mode": CHOICE},
         {"x": T((2, 3, 5, 5), ranks=(2,), small=(2, 3, 1, 1), small_ok=True)}),
    Case(EF.max_blur_pool2d, {}, {**_BLURF, "blur_size": INT, "padding": INT},
         {"x": _img(2, 3, 8, 8, ranks=(3, 6), small=(2, 3, 1, 1))},
         accept={"padding": {"0": OK}}),
    Case(EF.exactness_problems, dict(group="p4", size=(9, 9), kernel_size=3, stride=1,
                                     pad=(1, 1, 1, 1), dilation=1),
         {"group": GROUP, "size": PAIR, "kernel_size": INT, "stride": PAIR, "dilation": PAIR,
          "pad": {"None": None, "short": (1, 1), "neg": (-1, -1, -1, -1), "0": 0}}),
    Case(EF.expand_group_filter, dict(group="p4"), {"group": GROUP},
         {"weight": _par(4, 3, 4, 3, 3, ranks=(4, 6), fiber=2, dtype_ok=True)}),
    Case(EF.expand_lifting_filter, dict(group="p4"), {"group": GROUP},
         {"weight": _par(4, 3, 3, 3, ranks=(3, 5), dtype_ok=True)}),
    Case(EF.group_conv2d, dict(group="p4"),
         {"stride": PAIR, "padding": PAIR, "dilation": PAIR, "groups": INT,
          "padding_mode": CHOICE, "group": GROUP, "kernel_size": INT, "max_order": INT,
          "in_max_order": INT},
         {"x": _img(2, 3, 4, 6, 6, channel=1, fiber=2, small=(2, 3, 4, 2, 2)),
          "weight": _par(4, 3, 4, 3, 3, ranks=(4, 6)), "bias": _B4},
         accept={"padding": {"0": OK}, "kernel_size": {"None": OK}, "max_order": {"None": OK},
                 "in_max_order": {"None": OK}}),
    Case(EF.group_conv2d, dict(group="so2", kernel_size=3, max_order=1),
         {"group": GROUP, "kernel_size": INT, "max_order": INT, "in_max_order": INT,
          **_SETTINGS},
         {"x": _img(2, 3, 3, 6, 6, channel=1, fiber=2, small=(2, 3, 3, 2, 2)),
          "weight": _par(4, 3, _NB, ranks=(2, 4)), "bias": _B4},
         accept={"in_max_order": {"None": OK}, **_SETTINGS_OK}, variant="[so2]"),
    Case(EF.lifting_conv2d, dict(group="p4m"),
         {"stride": PAIR, "padding": PAIR, "dilation": PAIR, "groups": INT,
          "padding_mode": CHOICE, "group": GROUP, "kernel_size": INT, "max_order": INT},
         {"x": _img(2, 3, 6, 6, channel=1, small=(2, 3, 2, 2)), "weight": _W, "bias": _B4},
         accept={"padding": {"0": OK}, "kernel_size": {"None": OK}, "max_order": {"None": OK}}),
    Case(EF.group_batch_norm, {}, {"momentum": FLOAT, "eps": FLOAT},
         {"x": _img(2, 3, 4, 5, 5, channel=1, ranks=(4, 7)), "running_mean": _par(3, channel=0),
          "running_var": _var(3), "weight": _par(3, channel=0),
          "bias": _par(3, channel=0)},
         accept={"momentum": {"0": OK}}),
    Case(EF.group_avg_pool2d, _GPOOL, _GPOOL_ARGS,
         {"x": _img(2, 3, 4, 6, 6, small=(2, 3, 4, 1, 1))}, accept=_GPOOL_OK),
    Case(EF.group_max_pool2d, _GPOOL, {**_GPOOL_ARGS, "dilation": PAIR},
         {"x": _img(2, 3, 4, 6, 6, small=(2, 3, 4, 1, 1))}, accept=_GPOOL_OK),
    Case(EF.group_pool, {}, {"reduction": CHOICE}, {"x": _img(2, 3, 4, 5, 5, ranks=(4, 7))}),
    Case(EF.lifting_conv3d, dict(group="c4z"),
         {"stride": TRIPLE, "padding": TRIPLE, "dilation": TRIPLE, "groups": INT,
          "padding_mode": CHOICE, "group": GROUP3},
         {"x": _img(2, 3, 5, 5, 5, channel=1, small=(2, 3, 2, 2, 2)),
          "weight": _par(4, 3, 3, 3, 3, ranks=(4, 6)), "bias": _B4},
         accept={"padding": {"0": OK}}),
    Case(EF.group_conv3d, dict(group="c4z"),
         {"stride": TRIPLE, "padding": TRIPLE, "dilation": TRIPLE, "groups": INT,
          "padding_mode": CHOICE, "group": GROUP3},
         {"x": _img(2, 3, 4, 5, 5, 5, channel=1, fiber=2, small=(2, 3, 4, 2, 2, 2)),
          "weight": _par(4, 3, 4, 3, 3, 3, ranks=(5, 7), fiber=2), "bias": _B4},
         accept={"padding": {"0": OK}}),
    Case(EF.exactness_problems3d, dict(group="o", size=(5, 5, 5), kernel_size=3, stride=1,
                                       pad=(1,) * 6, dilation=1),
         {"group": GROUP3, "size": TRIPLE, "kernel_size": INT, "stride": TRIPLE,
          "dilation": TRIPLE,
          "pad": {"None": None, "short": (1, 1, 1, 1), "neg": (-1,) * 6, "0": 0}}),
    Case(EF.fourier_matrix, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT, "dtype": DTYPE},
         accept={"max_order": {"0": OK, "None": OK}}),
    Case(EF.gated_nonlinearity, dict(max_order=2),
         {"max_order": INT, "function": CALLABLE, "gates": CHOICE},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}),
    Case(EF.gated_nonlinearity, dict(max_order=2, gates="first_half"), {"max_order": INT},
         {"x": _img(2, 4, 5, 4, 4, channel=1, fiber=2)}, variant="[first_half]"),
    Case(EF.harmonic_batch_norm, dict(max_order=2),
         {"max_order": INT, "momentum": FLOAT, "eps": FLOAT, "training": FLAG},
         {"x": _img(2, 3, 5, 4, 4, channel=1, fiber=2), "running_mean": _par(3, channel=0),
          "running_var": _var(3, 3), "weight": _par(3, 3, channel=0),
          "bias": _par(3, channel=0)},
         accept={"momentum": {"0": OK}}),
    Case(EF.harmonic_to_regular, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT}, {"x": _img(2, 3, 5, 4, 4, fiber=2)}),
    Case(EF.norm_nonlinearity, dict(max_order=2),
         {"max_order": INT, "function": CALLABLE, "eps": FLOAT, "order0": CHOICE},
         {"x": _img(2, 3, 5, 4, 4, channel=1, fiber=2), "bias": _par(3, 3, channel=0)}),
    Case(EF.norm_pool, dict(max_order=2), {"max_order": INT},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}),
    Case(EF.regular_to_harmonic, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT}, {"x": _img(2, 3, 8, 4, 4, fiber=2)},
         accept={"max_order": {"None": 4, "0": OK}}),
    Case(EF.fourier_nonlinearity, dict(group="so2", max_order=2),
         {"group": GROUP, "max_order": INT, "function": CALLABLE, "samples": INT},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}, accept={"samples": {"None": OK}}),
    Case(EF.fourier_nonlinearity, dict(group="c8"), {"max_order": INT, "samples": INT},
         {"x": _img(2, 3, 9, 4, 4, fiber=2)},
         accept={"max_order": {"None": OK}, "samples": {"None": OK}}, variant="[c8]"),
    Case(EF.norm_max_pool2d, dict(kernel_size=2),
         {"kernel_size": PAIR, "stride": PAIR, "padding": PAIR, "dilation": PAIR,
          "ceil_mode": FLAG, "max_order": INT, "per": CHOICE},
         {"x": _img(2, 3, 5, 6, 6, fiber=2, small=(2, 3, 5, 1, 1))},
         accept={"stride": {"None": 2}, "padding": {"0": OK}, "max_order": {"None": OK}}),
    Case(EF.restrict, dict(group="d4", subgroup="c4"),
         {"group": GROUP, "subgroup": GROUP, "rep": CHOICE},
         {"x": _img(2, 3, 8, 4, 4, fiber=2, dtype_ok=True)}),
    Case(EF.coset_pool, dict(group="d4", subgroup="d1"),
         {"group": GROUP, "subgroup": GROUP, "reduction": CHOICE},
         {"x": _img(2, 3, 8, 4, 4, fiber=2)}),
    Case(EF.gaussian_blur_pool2d, dict(sigma=0.66),
         {"sigma": FLOAT, "stride": PAIR, "padding": PAIR},
         {"x": _img(2, 3, 9, 9, ranks=(3, 6), small=(2, 3, 1, 1), small_ok=True)},
         accept={"stride": {"None": OK}, "padding": {"None": OK, "0": OK}}),
    Case(EF.disk_mask2d, {}, {"margin": FLOAT, "sigma": FLOAT},
         {"x": _img(2, 3, 5, 5, ranks=(3, 6))}, accept={"margin": {"0": OK}},
         extra={"shape:nonsquare": lambda d: {**d, "x": torch.randn(2, 3, 5, 6)}}),
    Case(EF.steerable_conv2d, {},
         {"stride": PAIR, "padding": PAIR, "dilation": PAIR, "groups": INT},
         {"x": _img(2, 3, 3, 6, 6, channel=1, fiber=2, small=(2, 3, 3, 2, 2)),
          "weight": _par(4, 3, _NB, ranks=(2, 4)),
          "basis": _par(_NB, 3, 3, 3, 3, ranks=(4, 6), make=lambda g: EF.steerable_basis(
              "so2", "harmonic", "harmonic", 3, in_order=1, out_order=1)),
          "bias": _B4},
         accept={"padding": {"0": OK}}),
    Case(EF.fiber_pool, {}, {"pool": CHOICE}, {"x": _img(2, 3, 4, 5, 5)}),
    Case(EF.fiber_pose, {}, {"group": GROUP}, {"x": _img(2, 3, 4, 5, 5, fiber=2)}),
    Case(EF.invariant_head, {}, {"group": GROUP, "pool": CHOICE, "spatial": CHOICE},
         {"x": _img(2, 3, 4, 5, 5, ranks=(3, 6), channel=1, fiber=2),
          "weight": _par(5, 3, ranks=(1, 3), channel=1), "bias": _par(5, ranks=(2,), channel=0)}),
    Case(EF.spatial_pool, {}, {"spatial": CHOICE}, {"x": _img(2, 3, 5, 5)}),
    Case(EF.polyphase_pool2d, {}, {"stride": INT, "criterion": CHOICE, "blur_size": INT,
                                   "padding_mode": CHOICE},
         {"x": T((2, 3, 8, 8), ranks=(2,), small=(2, 3, 1, 1))}),
    Case(EF.polyphase_upsample2d, {}, {"stride": INT, "blur_size": INT, "padding_mode": CHOICE},
         {"x": T((2, 3, 4, 4), ranks=(2,)), "index": T((2,), dtypes=False, make=_index)},
         extra=_INDEX_EXTRA),
    Case(EF.learnable_polyphase_pool2d, {},
         {"stride": INT, "tau": FLOAT, "hard": FLAG, "training": FLAG, "gumbel": FLAG,
          "return_index": FLAG, "generator": {"0": 0, "str": "seed"}},
         _LPS_INPUTS, extra=_LPS_EXTRA),
    Case(EF.polyphase_logits, {}, {"stride": INT}, _LPS_INPUTS, extra=_LPS_EXTRA),
    Case(EF.learnable_polyphase_upsample2d, {}, {"stride": INT},
         {"x": T((2, 3, 4, 4), ranks=(2,)), "index": T((2, 4), dtypes=False, make=_selection)},
         extra=_SELECTION_EXTRA),
    Case(EF.expand_steerable, {}, {"groups": INT},
         {"weight": _par(4, 3, _NB, ranks=(2, 4)),
          "basis": _par(_NB, 3, 3, 3, 3, ranks=(4, 6), make=lambda g: EF.steerable_basis(
              "so2", "harmonic", "harmonic", 3, in_order=1, out_order=1))}),
    Case(EF.steerable_basis, dict(group="so2", in_rep="harmonic", out_rep="harmonic",
                                  kernel_size=3, in_order=1, out_order=1),
         {"group": GROUP, "in_rep": CHOICE, "out_rep": CHOICE, "kernel_size": INT,
          "in_order": INT, "out_order": INT, "dtype": DTYPE, **_SETTINGS},
         accept={"in_order": {"0": OK}, "out_order": {"0": OK}, **_SETTINGS_OK}),
]
