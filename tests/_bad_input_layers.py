"""The bad-input table, part 1: every public module of ``equilayers.nn`` and every public
function of ``equilayers.functional`` (see ``tests/_bad_input.py`` for what a case checks)."""

from __future__ import annotations

import torch
from _bad_input import CALLABLE, CHOICE, DTYPE, FLAG, FLOAT, GROUP, INT, OK, PAIR, Case, T

import equilayers.functional as EF
import equilayers.nn as enn

HARMONIC = "harmonic validation: other branch"
_XDT = ("x:int64", "x:bool", "x:complex64")
_MOMENTUM = ("momentum=-1", "momentum=nan", "momentum=inf", "momentum=True", "momentum=None",
             "momentum=str")


def _hx(*labels: str) -> dict[str, str]:
    """The cases of the harmonic layers (functional/_harmonic.py, nn/_harmonic.py) that fail
    today: another branch fixes their validation."""
    return dict.fromkeys(labels, HARMONIC)

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
_CONV_ARGS = {"in_channels": INT, "out_channels": INT, "kernel_size": PAIR, "stride": PAIR,
              "padding": PAIR, "dilation": PAIR, "groups": INT, "padding_mode": CHOICE,
              "dtype": DTYPE}
_BLUR_ARGS = {"kernel_size": INT, "stride": INT, "padding_mode": CHOICE}
_GPOOL = {"kernel_size": 2, "stride": 2, "padding": 0}
_GPOOL_ARGS = {"kernel_size": PAIR, "stride": PAIR, "padding": PAIR}
_GPOOL_OK = {"stride": {"None": 2}, "padding": {"0": OK}}
_G5 = dict(ranks=(4, 6))

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
          "in_max_order": INT},
         {"x": _img(2, 3, 3, 6, 6, channel=1, fiber=2, small=(2, 3, 3, 2, 2))},
         accept={"basis": {"None": OK}, "max_order": {"0": OK},
                 "in_max_order": {"0": OK, "None": OK}}, variant="[so2]"),
    Case(enn.LiftingConv2d, dict(in_channels=3, out_channels=4, kernel_size=3, group="p4m"),
         {**_CONV_ARGS, "group": GROUP, "basis": CHOICE, "max_order": INT,
          "in_max_order": INT},
         {"x": _img(2, 3, 6, 6, channel=1, small=(2, 3, 2, 2))},
         accept={"padding": {"0": OK}, "basis": {"None": OK}, "max_order": {"0": OK, "None": OK},
                 "in_max_order": {"None": OK}}),
    Case(enn.ExpandedGroupConv2d, dict(in_channels=3, out_channels=4, kernel_size=3,
                                       group="c8"),
         {**_CONV_ARGS, "group": GROUP},
         {"x": _img(2, 3, 8, 6, 6, channel=1, fiber=2, small=(2, 3, 8, 2, 2))},
         accept={"padding": {"0": OK}}),
    Case(enn.GroupBatchNorm2d, dict(num_features=3),
         {"num_features": INT, "eps": FLOAT, "momentum": FLOAT, "dtype": DTYPE},
         {"x": _img(2, 3, 4, 5, 5, channel=1)},
         accept={"momentum": {"0": OK, "None": OK}}),
    Case(enn.GroupAvgPool2d, _GPOOL, _GPOOL_ARGS,
         {"x": _img(2, 3, 4, 6, 6, small=(2, 3, 4, 1, 1))}, accept=_GPOOL_OK),
    Case(enn.GroupMaxPool2d, _GPOOL, {**_GPOOL_ARGS, "dilation": PAIR},
         {"x": _img(2, 3, 4, 6, 6, small=(2, 3, 4, 1, 1))}, accept=_GPOOL_OK),
    Case(enn.GroupPool, {}, {"reduction": CHOICE}, {"x": _img(2, 3, 4, 5, 5)}),
    Case(enn.GatedNonlinearity, dict(max_order=2), {"max_order": INT, "function": CALLABLE},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}, accept={"max_order": {"0": OK}},
         xfail=_hx("function=*", *_XDT)),
    Case(enn.HarmonicBatchNorm, dict(num_features=3, max_order=2),
         {"num_features": INT, "max_order": INT, "eps": FLOAT, "momentum": FLOAT},
         {"x": _img(2, 3, 5, 4, 4, channel=1, fiber=2)},
         accept={"max_order": {"0": OK}, "momentum": {"0": OK, "None": OK}},
         xfail=_hx("num_features=*", "eps=*", *_MOMENTUM, "x:channels", *_XDT)),
    Case(enn.HarmonicToRegular, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT}, {"x": _img(2, 3, 5, 4, 4, fiber=2)},
         accept={"max_order": {"0": OK, "None": OK}}, xfail=_hx(*_XDT)),
    Case(enn.NormNonlinearity, dict(channels=3, max_order=2),
         {"channels": INT, "max_order": INT, "function": CALLABLE, "order0": CHOICE},
         {"x": _img(2, 3, 5, 4, 4, channel=1, fiber=2)}, accept={"max_order": {"0": OK}},
         xfail=_hx("channels=*", "function=*", "x:channels", *_XDT)),
    Case(enn.NormPool, dict(max_order=2), {"max_order": INT},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}, accept={"max_order": {"0": OK, "None": OK}},
         xfail=_hx(*_XDT)),
    Case(enn.RegularToHarmonic, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT}, {"x": _img(2, 3, 8, 4, 4, fiber=2)},
         accept={"max_order": {"0": OK, "None": OK}}, xfail=_hx(*_XDT, "x:list")),
    Case(enn.PolyphasePool2d, {}, {"stride": INT, "criterion": CHOICE, "blur_size": INT,
                                   "padding_mode": CHOICE},
         {"x": T((2, 3, 8, 8), ranks=(2,), small=(2, 3, 1, 1))}),
    Case(enn.PolyphaseUpsample2d, {}, {"stride": INT, "blur_size": INT,
                                       "padding_mode": CHOICE},
         {"x": T((2, 3, 4, 4), ranks=(2,)), "index": T((2,), dtypes=False, make=_index)},
         extra=_INDEX_EXTRA),
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
         {"group": GROUP, "kernel_size": INT, "max_order": INT, "in_max_order": INT},
         {"x": _img(2, 3, 3, 6, 6, channel=1, fiber=2, small=(2, 3, 3, 2, 2)),
          "weight": _par(4, 3, _NB, ranks=(2, 4)), "bias": _B4},
         accept={"in_max_order": {"None": OK}}, variant="[so2]"),
    Case(EF.lifting_conv2d, dict(group="p4m"),
         {"stride": PAIR, "padding": PAIR, "dilation": PAIR, "groups": INT,
          "padding_mode": CHOICE, "group": GROUP, "kernel_size": INT, "max_order": INT},
         {"x": _img(2, 3, 6, 6, channel=1, small=(2, 3, 2, 2)), "weight": _W, "bias": _B4},
         accept={"padding": {"0": OK}, "kernel_size": {"None": OK}, "max_order": {"None": OK}}),
    Case(EF.group_batch_norm, {}, {"momentum": FLOAT, "eps": FLOAT},
         {"x": _img(2, 3, 4, 5, 5, channel=1), "running_mean": _par(3, channel=0),
          "running_var": _var(3), "weight": _par(3, channel=0),
          "bias": _par(3, channel=0)},
         accept={"momentum": {"0": OK}}),
    Case(EF.group_avg_pool2d, _GPOOL, _GPOOL_ARGS,
         {"x": _img(2, 3, 4, 6, 6, small=(2, 3, 4, 1, 1))}, accept=_GPOOL_OK),
    Case(EF.group_max_pool2d, _GPOOL, {**_GPOOL_ARGS, "dilation": PAIR},
         {"x": _img(2, 3, 4, 6, 6, small=(2, 3, 4, 1, 1))}, accept=_GPOOL_OK),
    Case(EF.group_pool, {}, {"reduction": CHOICE}, {"x": _img(2, 3, 4, 5, 5)}),
    Case(EF.fourier_matrix, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT, "dtype": DTYPE},
         accept={"max_order": {"0": OK, "None": OK}}, xfail=_hx("dtype=*")),
    Case(EF.gated_nonlinearity, dict(max_order=2), {"max_order": INT, "function": CALLABLE},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}, xfail=_hx("function=*", *_XDT)),
    Case(EF.harmonic_batch_norm, dict(max_order=2),
         {"max_order": INT, "momentum": FLOAT, "eps": FLOAT},
         {"x": _img(2, 3, 5, 4, 4, channel=1, fiber=2), "running_mean": _par(3, channel=0),
          "running_var": _var(3, 3), "weight": _par(3, 3, channel=0),
          "bias": _par(3, channel=0)},
         accept={"momentum": {"0": OK}},
         xfail=_hx(*_MOMENTUM, "eps=*", "x:channels", *_XDT, "running_mean:*", "running_var:*",
                   "weight:*", "bias:*")),
    Case(EF.harmonic_to_regular, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT}, {"x": _img(2, 3, 5, 4, 4, fiber=2)},
         xfail=_hx(*_XDT)),
    Case(EF.norm_nonlinearity, dict(max_order=2),
         {"max_order": INT, "function": CALLABLE, "eps": FLOAT, "order0": CHOICE},
         {"x": _img(2, 3, 5, 4, 4, channel=1, fiber=2), "bias": _par(3, 3, channel=0)},
         xfail=_hx("function=*", "eps=*", "x:channels", *_XDT, "bias:int64", "bias:bool",
                   "bias:complex64", "bias:list")),
    Case(EF.norm_pool, dict(max_order=2), {"max_order": INT},
         {"x": _img(2, 3, 5, 4, 4, fiber=2)}, xfail=_hx(*_XDT)),
    Case(EF.regular_to_harmonic, dict(group="c8", max_order=2),
         {"group": GROUP, "max_order": INT}, {"x": _img(2, 3, 8, 4, 4, fiber=2)},
         accept={"max_order": {"None": 4, "0": OK}}, xfail=_hx(*_XDT, "x:list")),
    Case(EF.steerable_conv2d, {},
         {"stride": PAIR, "padding": PAIR, "dilation": PAIR, "groups": INT},
         {"x": _img(2, 3, 3, 6, 6, channel=1, fiber=2, small=(2, 3, 3, 2, 2)),
          "weight": _par(4, 3, _NB, ranks=(2, 4)),
          "basis": _par(_NB, 3, 3, 3, 3, ranks=(4, 6), make=lambda g: EF.steerable_basis(
              "so2", "harmonic", "harmonic", 3, in_order=1, out_order=1)),
          "bias": _B4},
         accept={"padding": {"0": OK}},
         xfail=_hx("stride=*", *(f"padding={v}" for v in ("-1", "1.5", "True", "None", "str",
                                                           "triple", "pair-float")),
                   "dilation=*", "x:channels", "x:small", *_XDT, "x:list", "basis:list",
                   "bias:*")),
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
    Case(EF.expand_steerable, {}, {"groups": INT},
         {"weight": _par(4, 3, _NB, ranks=(2, 4)),
          "basis": _par(_NB, 3, 3, 3, 3, ranks=(4, 6), make=lambda g: EF.steerable_basis(
              "so2", "harmonic", "harmonic", 3, in_order=1, out_order=1))}),
    Case(EF.steerable_basis, dict(group="so2", in_rep="harmonic", out_rep="harmonic",
                                  kernel_size=3, in_order=1, out_order=1),
         {"group": GROUP, "in_rep": CHOICE, "out_rep": CHOICE, "kernel_size": INT,
          "in_order": INT, "out_order": INT, "dtype": DTYPE},
         accept={"in_order": {"0": OK}, "out_order": {"0": OK}}),
]
